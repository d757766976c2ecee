"""The one builder: config nodes that name their class with `_target_` -> objects.

Every swappable component (dataset, energy, z space, inference method, loss, beta schedule) is
built by `build(node, path, **context)`:

1. its class is imported from `_target_` (a user's module in the working directory or on
   PYTHONPATH works: the CLI puts the working directory on sys.path);
2. the node's keys are checked against the constructor's keyword arguments and their type hints
   (a typed schema derived from the signature: a misspelled key or a wrong type is one line);
3. Hydra's `instantiate` builds nested components (energy.z, energy.free_energy) and a partial of the
   class, which is then called with the data-dependent arguments (`context`) the constructor asks
   for by name: sizes and boxes for energies, the y space for inference methods and losses.

An impossible value raised by a constructor (`BadArgument`) comes out as `inference.k=0: must be > 0`.
"""

import collections.abc
import dataclasses
import functools
import inspect
import math
import typing
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

import torch
from hydra.errors import InstantiationException
from hydra._internal.utils import _locate
from hydra.utils import instantiate
from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from ebm_cli.core.dataset import Dataset
from ebm_cli.core.energy import EnergyChoice, PredictorEnergy
from ebm_cli.core.inference import Inference
from ebm_cli.core.loss import Loss
from ebm_cli.errors import BadArgument, UserError, memory_detail, out_of_memory
from ebm_cli.runtime.memory import available_bytes

PRIMITIVES = (int, float, bool, str)
SHARED_BY_OPTIONS = ("z", "free_energy")  # what an EnergyChoice gives the option it picks


# -- importing and checking a node -------------------------------------------------------------------
def get_class(target: str) -> type:
    """hydra.utils.get_class without its ERROR log line ("[HYDRA] Error getting class ... Are you sure
    that module ... is installed?"): what failed is said once, in one line, by whoever catches."""
    cls = _locate(target)
    if not isinstance(cls, type):
        raise ValueError(f"Located non-class of type '{type(cls).__name__}' while loading '{target}'")
    return cls


def locate(target: str, path: str) -> type:
    """The class named by `_target_`; a target that cannot be imported is one line."""
    try:
        return get_class(target)
    except Exception as exc:  # ImportError wrapped by Hydra, or "not a class"
        cause = exc.__cause__ or exc
        reason = str(cause).strip().splitlines()
        reason = [r.strip() for r in reason if r.strip() and not r.startswith("Are you sure")]
        module = target.rsplit(".", 1)[0]
        raise UserError(f"{path}: cannot import {target} ({reason[-1] if reason else type(cause).__name__}); "
                        f"put {module.split('.')[0]}.py in the working directory or on PYTHONPATH") from None


def parameters(cls: type) -> Tuple[Dict[str, inspect.Parameter], bool]:
    """The constructor's keyword arguments (without self) and whether it takes **kwargs."""
    params = dict(inspect.signature(cls).parameters)
    var_kw = any(p.kind is p.VAR_KEYWORD for p in params.values())
    named = {k: p for k, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    return named, var_kw


def _config_type(annotation) -> Any:
    """The OmegaConf type that checks a value of this annotation (Any where it cannot)."""
    if annotation in PRIMITIVES:
        return annotation
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Union and len(args) == 2 and type(None) in args:  # Optional[X]
        inner = _config_type(next(a for a in args if a is not type(None)))
        return Optional[inner] if inner is not Any else Any
    if origin in (list, tuple, collections.abc.Sequence) and args:
        item = args[0]
        if item in PRIMITIVES and (origin is not tuple or len(args) == 1 or args[1] is Ellipsis):
            return List[item]
    return Any


def _hints(cls: type) -> Dict[str, Any]:
    try:
        return typing.get_type_hints(cls.__init__)
    except Exception:  # unresolvable string annotations: no type checks, keys only
        return {}


def checked_values(node: Dict[str, Any], path: str, provided=()) -> Dict[str, Any]:
    """The node (a plain dict with `_target_`) with its keys checked against the class's keyword
    arguments and its values converted to their annotated types; nested components checked too."""
    cls = locate(str(node["_target_"]), path)
    params, var_kw = parameters(cls)
    hints = _hints(cls)
    out: Dict[str, Any] = {"_target_": node["_target_"]}
    fields = []
    for key, value in node.items():
        if key.startswith("_"):  # _target_, _partial_, ...
            out[key] = value
            continue
        if key not in params and not var_kw:
            takes = ", ".join(k for k in params if k not in provided) or "no arguments"
            raise UserError(f"{path}.{key}: {cls.__name__} has no argument '{key}' (it takes: {takes})")
        if isinstance(value, dict) and "_target_" in value:
            out[key] = checked_values(value, f"{path}.{key}")
        else:
            fields.append((key, _config_type(hints.get(key, Any)), dataclasses.field(default=MISSING)))
            out[key] = value
    schema = dataclasses.make_dataclass(f"{cls.__name__}Config", fields)
    plain = {k: out[k] for k, _, _ in fields}
    try:
        typed = OmegaConf.to_container(OmegaConf.merge(OmegaConf.structured(schema), plain))
    except OmegaConfBaseException as exc:
        key = str(getattr(exc, "full_key", "") or "")
        value = plain.get(key.split(".")[0], "?")
        first = str(exc).strip().splitlines()[0]
        raise UserError(f"{path}.{key}={value}: {first}" if key else f"{path}: {first}") from None
    out.update(typed)
    for name, p in params.items():
        if p.default is p.empty and name not in out and name not in provided:
            raise UserError(f"{path}: {cls.__name__} needs '{name}', which its config does not set" +
                            (f" and the runner does not provide (it provides: {', '.join(provided)})" if provided else ""))
    return out


# -- building ----------------------------------------------------------------------------------------
def build(node, path: str, **context) -> Any:
    """The object that `node` (a config node or dict with `_target_`) describes; `context` holds
    the data-dependent arguments, passed to the constructor where it asks for them by name."""
    plain = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else dict(node)
    if not isinstance(plain, dict) or "_target_" not in plain:
        raise UserError(f"{path}: its config names no class (_target_: module.Class)")
    values = checked_values(plain, path, provided=tuple(context))
    cls = get_class(values["_target_"])
    params, _ = parameters(cls)
    try:
        factory = instantiate(OmegaConf.create(values), _partial_=True, _convert_="all")
    except InstantiationException as exc:  # a nested component's constructor refused its arguments
        raise _one_line(exc.__cause__ or exc, f"{path}.{_full_key(exc)}", values) from None
    wanted = {k: v for k, v in context.items() if k in params and k not in values}
    try:
        return factory(**wanted)
    except BadArgument as err:
        if err.name in wanted:  # a value from the data the component cannot use
            raise UserError(f"{path}={cls.__name__}: {err.name}={err.value} (from the data): {err.rule}") from None
        raise UserError(f"{path}.{err.name}={err.value}: {err.rule}") from None
    except UserError:
        raise
    except Exception as exc:
        raise _one_line(exc, path, values, cls.__name__) from None


def _full_key(exc: InstantiationException) -> str:
    lines = [ln for ln in str(exc).splitlines() if ln.startswith("full_key:")]
    return lines[0].split(":", 1)[1].strip() if lines else "?"


def _one_line(exc: BaseException, path: str, values: Dict[str, Any], name: str = "") -> UserError:
    if isinstance(exc, BadArgument):
        return UserError(f"{path}.{exc.name}={exc.value}: {exc.rule}")
    if isinstance(exc, UserError):
        return exc
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    if out_of_memory(exc):
        return UserError(f"{path}: {name or values.get('_target_')} does not fit in memory ({memory_detail(exc)}): "
                         f"lower its sizes ({path}.hidden, depth, channels, ...)")
    return UserError(f"{path}: {name or values.get('_target_')} failed to build ({type(exc).__name__}: {first})")


def materialise(meta: Dict[str, Any]) -> Dict[str, Any]:
    """A data kind's energy arguments with their `_target_` nodes (the y space) built."""
    return {k: instantiate(v) if isinstance(v, dict) and "_target_" in v else v for k, v in meta.items()}


# -- the device --------------------------------------------------------------------------------------
def resolve_device(name: str) -> torch.device:
    """auto = cuda when available; asking for cuda without one is a UserError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError(f"trainer.device={name}: no CUDA device is available on this machine (use cpu or auto)")
        index = torch.device(name).index
        if index is not None and index >= torch.cuda.device_count():
            raise UserError(f"trainer.device={name}: only {torch.cuda.device_count()} CUDA device(s) here")
    return torch.device(name)


# -- a whole run's components --------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _dataset(node_yaml: str, run_seed: int) -> Dataset:
    data = build(OmegaConf.create(node_yaml), "dataset", run_seed=run_seed)
    if not isinstance(data, Dataset):
        raise UserError(f"dataset: {type(data).__name__} must subclass ebm_cli.core.dataset.Dataset")
    data.check()
    return data


def build_dataset(cfg) -> Dataset:
    """The run's data (loaded once per process for the same dataset config and seed), on the host:
    generated or read on the CPU whatever the default device is; the runner moves what it uses."""
    with torch.device("cpu"):
        return _dataset(OmegaConf.to_yaml(cfg.dataset, resolve=True), int(cfg.seed))


def energy_node(node, meta: Dict[str, Any]) -> Tuple[str, Any, Optional[str]]:
    """(where it sits, the node, why) of the energy to build: `node` itself (why None), or the
    option that an EnergyChoice picks for data with these energy arguments, with the one line that
    says which and why (a training run logs it)."""
    plain = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node
    if not isinstance(plain, dict) or "_target_" not in plain:
        return "energy", node, None
    cls = locate(str(plain["_target_"]), "energy")
    if not (isinstance(cls, type) and issubclass(cls, EnergyChoice)):
        return "energy", node, None
    checked_values(plain, "energy")  # its own keys and values
    try:
        key, why = cls.choose(plain, meta)
    except BadArgument as err:
        raise UserError(f"energy.{err.name}={err.value}: {err.rule}") from None
    nodes = {}
    for name in cls.options:
        option = dict(plain.get(name) or {})
        if "target" not in option:
            raise UserError(f"energy.{name}: names no energy (target: module.Class, then its arguments)")
        nodes[name] = {"_target_": option.pop("target"), **option, **{k: plain[k] for k in SHARED_BY_OPTIONS if k in plain}}
        if name != key:  # built on the meta device (no memory) for its one-line errors only
            with torch.device("meta"), torch.random.fork_rng(devices=[]):
                build(nodes[name], f"energy.{name}", **materialise(meta))
    chosen = nodes[key]
    return f"energy.{key}", chosen, f"energy: {chosen['_target_'].rsplit('.', 1)[-1]} (energy.{key}: {why})"


def run_energy_args(cfg, data: Dataset) -> Dict[str, Any]:
    """What a training config's energy may ask for by name: the data's arguments
    (Dataset.energy_args) and whether the run's loss normalises over the y box (Loss.normalises_over_y,
    what energy=mlp's output=auto reads). Kept in the checkpoint, so a run's energy is rebuilt as it
    was trained."""
    loss_cls = locate(str(cfg.loss._target_), "loss")
    return {**data.energy_args(), "loss_normalises_over_y": bool(getattr(loss_cls, "normalises_over_y", False))}


def build_energy(node, meta: Dict[str, Any]) -> torch.nn.Module:
    """The energy of `node` (or of the option it picks: energy_node) for data with these energy
    arguments (Dataset.energy_args). Its size is first measured on the meta device (no memory): one
    that cannot fit is refused before its parameters are allocated and initialised, which for a
    huge layer takes minutes."""
    path, node, why = energy_node(node, meta)
    check_energy_size(node, meta, path)
    # Built on the host whatever the default device is, and moved by the caller: the seeded
    # initialisation draws from the CPU generator, so a seed gives the same weights on every device.
    with torch.device("cpu"):
        energy = build(node, path, **materialise(meta))
    if not isinstance(energy, torch.nn.Module):
        raise UserError(f"energy: {type(energy).__name__} must be a torch.nn.Module with forward(x, y) -> (B,)")
    # an EnergyChoice's pick (or a choice the energy made itself), said in the run's log (None otherwise)
    energy.chosen_because = why or getattr(energy, "chosen_because", None)
    return energy


def check_energy_size(node, meta: Dict[str, Any], path: str = "energy") -> None:
    """Refuse an energy whose parameters and buffers need more memory than the machine has free."""
    try:
        with torch.device("meta"), torch.random.fork_rng(devices=[]):  # the real build's random init is unchanged
            shell = build(node, path, **materialise(meta))
        tensors = [*shell.parameters(), *shell.buffers()]
    except Exception:  # a constructor that cannot run on the meta device: its real build will tell
        return
    needed, free = sum(t.numel() * t.element_size() for t in tensors), available_bytes()
    if free is not None and needed > 0.9 * free:
        raise UserError(f"energy: {type(shell).__name__} does not fit in memory ({needed / 1e9:.3g} GB of parameters, "
                        f"{free / 1e9:.3g} GB free): lower its sizes (energy.hidden, depth, channels, ...)")


def check_energy(energy: torch.nn.Module, data: Dataset) -> None:
    """An energy returns one finite-typed value per pair: forward(x, y) on two training rows must
    give shape (2,). Run in eval mode with the RNG state restored, so training is unchanged."""
    name = type(energy).__name__
    x, y = data.batch(torch.arange(min(2, data.num_rows), device="cpu"))
    was_training = energy.training
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        energy.eval()
        try:
            out = energy(x, y)
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [""])[0]
            raise UserError(f"energy {name}: forward(x, y) failed on 2 training pairs (x {tuple(x.shape)}, "
                            f"y {tuple(y.shape)}): {type(exc).__name__}: {first}") from None
        finally:
            energy.train(was_training)
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (len(x),) or not out.is_floating_point():
        got = f"shape {tuple(out.shape)} ({out.dtype})" if isinstance(out, torch.Tensor) else type(out).__name__
        raise UserError(f"energy {name}: forward(x, y) must return one float energy per pair, shape ({len(x)},) "
                        f"for {len(x)} pairs; it returned {got}")


def build_inference(node, y_space, seed: int, path: str = "inference", outputs: Optional[int] = None) -> Inference:
    """The inference method of `node`; k: null (the packaged methods' default) is `outputs`, the
    most valid outputs one input has in the data (Dataset.outputs_per_input), else 3."""
    plain = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else dict(node)
    if isinstance(plain, dict) and "k" in plain and plain["k"] is None:
        plain["k"] = outputs or 3
    method = build(plain, path, y_space=y_space, seed=seed)
    if not isinstance(method, Inference):
        raise UserError(f"{path}: {type(method).__name__} must subclass ebm_cli.core.inference.Inference")
    return method


def build_schedule(node) -> Any:
    """A beta schedule: any callable step -> beta > 0."""
    schedule = build(node, "beta")
    try:
        first = float(schedule(0))
    except Exception as exc:
        raise UserError(f"beta: {type(schedule).__name__}(step) must return the inverse temperature at that step "
                        f"({type(exc).__name__}: {exc})") from None
    if not (first > 0 and math.isfinite(first)):
        raise UserError(f"beta: {type(schedule).__name__}(0) = {first}; an inverse temperature must be finite and > 0")
    return schedule


@dataclass
class Run:
    """Everything a training run is made of, built and checked against each other."""

    data: Dataset
    meta: Dict[str, Any]  # the energy's data-dependent arguments (kept in checkpoints)
    energy: torch.nn.Module
    inference: Inference
    loss: Loss
    beta: Any
    device: torch.device
    validation: Optional[Dataset] = None  # trainer.eval_every: the split held out of the training rows
    batch_size: int = 128  # trainer.batch_size, or the data's own where it is null


VALIDATION_INPUTS = 256  # the least a validation split is evaluated on (when the data has them)


def build_run(cfg) -> Run:
    """Data, energy, inference method, loss and beta schedule of a training config, each checked
    against the others (the energy's output, what the inference method and loss need): every
    problem is one UserError, raised before anything is written."""
    device = resolve_device(cfg.trainer.device)
    with torch.device("cpu"):  # the data lives on the host (the loop moves batches), whatever the default device
        data, validation = build_dataset(cfg), None
        batch_size = cfg.trainer.batch_size or data.batch_size_hint()
        if cfg.trainer.eval_every:  # the split leaves the test inputs alone; the loss sees only the rest
            # at least 256 inputs: coverage on fewer moves in steps of noise that early stopping would read as a trend
            data, validation = data.split_validation(cfg.trainer.val_fraction, int(cfg.seed),
                                                     max_rows=max(VALIDATION_INPUTS, 2 * batch_size),
                                                     loss_rows=2 * batch_size)
        meta = run_energy_args(cfg, data)
    energy = build_energy(cfg.energy, meta)  # on the host, checked there, then moved to the run's device
    check_energy(energy, data)
    energy = energy.to(device)
    # What the inference method and the loss keep (a replay buffer) is on the run's device.
    with torch.device(device):
        inference = build_inference(cfg.inference, data.y_space, cfg.seed, outputs=data.outputs_per_input)
    inference.check(energy)
    with torch.device(device):
        loss = build(cfg.loss, "loss", y_space=data.y_space, inference=inference, data=data, device=device)
    if not isinstance(loss, Loss):
        raise UserError(f"loss: {type(loss).__name__} must subclass ebm_cli.core.loss.Loss")
    loss.check(energy)
    beta = build_schedule(cfg.beta)
    return Run(data, meta, energy, inference, loss, beta, device, validation, batch_size)


def build_baseline(data_cls: type, energy_config, meta: Dict[str, Any]) -> Optional[torch.nn.Module]:
    """The feed-forward MSE model beside the run's energy: the energy class's own `baseline` (the
    same backbone), else its data kind's, with the sizes of the run's energy config that its
    constructor shares (hidden, depth, activation, channels); None if neither has one."""
    node = energy_node(energy_config, meta)[1]  # an EnergyChoice's option: its baseline
    node = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node
    target = getattr(get_class(node["_target_"]), "baseline", None) or data_cls.baseline
    if target is None:
        return None
    params, _ = parameters(get_class(target))
    shared = {k: v for k, v in node.items() if k in params and not isinstance(v, dict) and not k.startswith("_")}
    with torch.device("cpu"):  # as the energy: built on the host, moved by the caller
        model = build({"_target_": target, **shared}, "baseline", **materialise(meta))
    if not isinstance(model, PredictorEnergy):
        raise UserError(f"trainer.baseline: {target} must be a PredictorEnergy (one prediction f(x))")
    return model


# -- training: optimizer, learning-rate schedule, callbacks --------------------------------------------
def build_optimizer(node, parameters, path: str = "optimizer") -> torch.optim.Optimizer:
    """A torch.optim optimizer (or a user's own subclass) over `parameters`, from its node
    (`_target_`, usually with `_partial_: true`; the runner passes the parameters as `params`)."""
    optimizer = build(node, path, params=list(parameters))
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise UserError(f"{path}: {type(optimizer).__name__} must subclass torch.optim.Optimizer")
    return optimizer


def build_scheduler(node, optimizer: torch.optim.Optimizer) -> Any:
    """A learning-rate scheduler over `optimizer` (torch's LRScheduler or ReduceLROnPlateau, or a user's
    subclass); None for `scheduler: null`."""
    if node is None:
        return None
    scheduler = build(node, "scheduler", optimizer=optimizer)
    if not isinstance(scheduler, (torch.optim.lr_scheduler.LRScheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)):
        raise UserError(f"scheduler: {type(scheduler).__name__} must subclass torch.optim.lr_scheduler.LRScheduler "
                        "(or ReduceLROnPlateau)")
    return scheduler


def build_callbacks(node, model: torch.nn.Module) -> Dict[str, Any]:
    """name -> Callback for each named `_target_` node of `callbacks` (a callback that asks for
    `model` gets the trained energy)."""
    from ebm_cli.training.callbacks import Callback  # training imports this module's neighbours, not the reverse

    plain = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else dict(node or {})
    callbacks = {}
    for name, sub in plain.items():
        if sub is None:  # callbacks.<name>=null drops a built-in
            continue
        callback = build(sub, f"callbacks.{name}", model=model)
        if not isinstance(callback, Callback):
            raise UserError(f"callbacks.{name}: {type(callback).__name__} must subclass "
                            "ebm_cli.training.callbacks.Callback")
        callbacks[name] = callback
    return callbacks
