"""Every option of every config group composes, builds into its components, and passes the checks;
every component yaml names its class and lists exactly the class's keyword arguments."""

import inspect
from importlib import resources

import pytest
from hydra.utils import get_class
from omegaconf import OmegaConf

from ebm_cli.build import build_run, parameters
from ebm_cli.errors import UserError
from ebm_cli.validate import validate
from helpers import make_cfg

GROUPS = ["task", "dataset", "energy", "energy/z", "energy/free_energy", "inference", "beta", "loss", "trainer",
          "logger", "experiment", "debug", "launcher", "hparams_search"]
COMPONENT_GROUPS = ["dataset", "energy", "energy/z", "energy/free_energy", "inference", "beta", "loss"]
# Options that select a Hydra plugin compose only where its extra is installed.
PLUGINS = {
    ("launcher", "joblib"): "hydra_plugins.hydra_joblib_launcher",
    ("launcher", "submitit_local"): "hydra_plugins.hydra_submitit_launcher",
    ("launcher", "submitit_slurm"): "hydra_plugins.hydra_submitit_launcher",
    ("hparams_search", "curves_optuna"): "hydra_plugins.hydra_optuna_sweeper",
}
FRAMES = ["dataset=video", "inference=z_sweep", "inference.dedup=1.0"]
SENTENCES = ["dataset=translation", "energy=chain", "inference=dp"]
# What an option needs beside it to make a working run (the defaults are curves, mlp, grid, nll).
REQUIRED = {
    ("dataset", "curves_csv"): ["dataset.path=__CSV__"],
    ("task", "infer"): ["run_dir=__RUN__", "x=[0.0]"],
    ("task", "landscape"): ["run_dir=__RUN__"],
    ("task", "compare_inference"): ["run_dir=__RUN__"],
    ("inference", "z_sweep"): ["energy=decoder"],
    ("inference", "dp"): SENTENCES,
    ("loss", "free_energy"): ["energy=decoder", "inference=z_sweep"],
    ("dataset", "video"): ["energy=conv_latent", *FRAMES, "loss=free_energy"],
    ("energy", "conv_latent"): [*FRAMES, "loss=free_energy"],
    ("energy", "conv_regressor"): FRAMES,
    ("energy", "unet_latent"): [*FRAMES, "loss=free_energy"],
    ("energy", "frames"): [*FRAMES, "loss=free_energy"],
    ("energy", "unet_regressor"): FRAMES,
    ("dataset", "translation"): SENTENCES[1:],
    ("energy", "chain"): SENTENCES,
    ("energy/z", "box"): ["energy=decoder"],
    ("energy/z", "circle"): ["energy=decoder"],
    ("energy/z", "sphere"): ["energy=decoder"],
    ("energy/z", "discrete"): ["energy=decoder"],
    ("energy/free_energy", "min"): ["energy=decoder"],
    ("energy/free_energy", "softmin"): ["energy=decoder"],
    ("launcher", "submitit_slurm"): ["trainer.device=cpu"],  # the preset asks for cuda, which CI lacks
}


# The data-dependent arguments the runner passes by name, per group.
PROVIDED_BY_RUNNER = {
    "dataset": {"run_seed"},
    "energy": {"x_dim", "x_shape", "y_dim", "y_shape", "x_low", "x_high", "y_space", "src_vocab", "tgt_vocab", "length",
               "loss_normalises_over_y"},
    "inference": {"y_space", "seed"},
    "loss": {"y_space", "inference", "data", "device"},
}


def options(group):
    folder = resources.files("ebm_cli.configs").joinpath(*group.split("/"))
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


CASES = [(g, o) for g in GROUPS for o in options(g)]


def test_every_group_has_options():
    for group in GROUPS:
        assert options(group), f"config group {group} has no options"


@pytest.mark.parametrize("group,option", CASES, ids=[f"{g}={o}" for g, o in CASES])
def test_option_composes_and_builds(group, option, tmp_path):
    if (group, option) in PLUGINS:
        pytest.importorskip(PLUGINS[(group, option)])
    csv = tmp_path / "d.csv"
    csv.write_text("x,y\n" + "".join(f"{i / 10},{(-1) ** i * 0.5}\n" for i in range(10)))
    extra = [o.replace("__CSV__", str(csv)).replace("__RUN__", str(tmp_path)) for o in REQUIRED.get((group, option), [])]
    cfg = make_cfg("debug=smoke", f"{group}={option}", *extra)
    validate(cfg)
    if cfg.task.name == "train":
        run = build_run(cfg)  # data, energy, inference, loss and schedule, checked against each other
        assert run.energy is not None and run.beta(0) > 0


def yaml_of(group, option):
    return OmegaConf.load(resources.files("ebm_cli.configs").joinpath(*group.split("/"), f"{option}.yaml"))


COMPONENTS = [(g, o) for g in COMPONENT_GROUPS for o in options(g)]


@pytest.mark.parametrize("group,option", COMPONENTS, ids=[f"{g}={o}" for g, o in COMPONENTS])
def test_component_yaml_lists_its_class_arguments(group, option):
    """A component is its class and its yaml: the composed node names the class, and sets every
    keyword argument the runner does not provide (so each one can be overridden without +)."""
    cfg = make_cfg(f"{group}={option}", *REQUIRED.get((group, option), []))
    node = OmegaConf.select(cfg, group.replace("/", "."))
    cls = get_class(node._target_)
    params, _ = parameters(cls)
    settable = {k for k in params if k not in PROVIDED_BY_RUNNER.get(group, set())}
    assert set(node) - {"_target_"} == settable, f"{group}={option}: yaml keys vs {cls.__name__} arguments"
    assert cls.__doc__ and "Args:" in (cls.__doc__ or "") or not settable, f"{cls.__name__} documents no Args"


def test_defaults_are_the_documented_ones():
    cfg = make_cfg()
    assert cfg.task.name == "train"
    targets = [cfg[g]._target_ for g in ("dataset", "energy", "inference", "loss", "beta")]
    assert targets == ["ebm_cli.datasets.curves.Curves", "ebm_cli.energies.mlp.MLPEnergy",
                       "ebm_cli.inference.grid.GridInference", "ebm_cli.losses.nll.NLL", "ebm_cli.schedules.Constant"]
    assert len(cfg.dataset.branches) == 3


@pytest.mark.parametrize(
    "override,fragment",
    [
        ("trainer.steps=-1", "trainer.steps=-1: must be >= 0"),
        ("beta.value=0", "beta.value=0.0: must be > 0"),
        ("inference.k=0", "inference.k=0: must be > 0"),
        ("dataset.eps=0", "dataset.eps=0.0: must be > 0"),
        ("energy.activation=swish", "energy.activation=swish: must be one of"),
        ("trainer.device=tpu", "trainer.device=tpu"),
        ("dataset.x_min=2", "dataset.x_min=2.0: must be below"),
        ("dataset.x_max=inf", "dataset.x_max=inf: must be finite"),
        ("beta.value=inf", "beta.value=inf: must be finite"),
        ("energy.hidden=abc", "energy.hidden=abc: Value 'abc' of type 'str' could not be converted to Integer"),
        ("+energy.hiden=3", "energy.hiden: MLPEnergy has no argument 'hiden'"),
    ],
)
def test_impossible_values_are_named(override, fragment):
    with pytest.raises(UserError) as err:
        cfg = make_cfg("debug=smoke", override)
        validate(cfg)
        build_run(cfg)
    assert fragment in str(err.value)


def test_constructor_defaults_match_the_yaml():
    """Where a class's keyword argument has a default, the packaged yaml of its plain option uses it
    too, so a component built from Python behaves as `ebm-run group=option`."""
    plain = {("energy", "mlp"), ("energy", "regressor"), ("energy", "conv_regressor"),
             ("energy", "unet_regressor"), ("inference", "grid"),
             ("inference", "gradient"), ("inference", "langevin"), ("inference", "dfo"), ("inference", "cem"),
             ("inference", "dp"), ("inference", "z_sweep"), ("loss", "nll"), ("loss", "hinge"), ("loss", "cd"),
             ("dataset", "curves"), ("dataset", "video"), ("dataset", "translation"), ("energy/free_energy", "softmin")}
    for group, option in sorted(plain):
        node = yaml_of(group, option)
        sig = inspect.signature(get_class(node._target_)).parameters
        for key, value in node.items():
            if group == "inference" and key == "k" and value is None:  # null: from the data, which Python lacks
                continue
            if key != "_target_" and sig[key].default is not inspect.Parameter.empty:
                default = sig[key].default
                default = list(default) if isinstance(default, tuple) else default
                assert OmegaConf.to_container(node)[key] == default, f"{group}={option}: {key}"


def test_task_settings_live_with_their_task():
    """A training run's task node is its name alone (nothing of the bench's in --cfg job, --help or
    TensorBoard's config text); task=bench has its settings, typed; a bench setting elsewhere is refused."""
    for task in ("train", "infer", "landscape", "compare_inference"):
        assert list(make_cfg(f"task={task}").task) == ["name"]
    bench = make_cfg("task=bench", "task.repeats=3")
    assert bench.task.repeats == 3 and bench.task.size == "full" and "contention" in bench.task
    with pytest.raises(Exception, match="task.size"):
        make_cfg("task.size=tiny")
    with pytest.raises(Exception, match="task.repeats=many"):
        make_cfg("task=bench", "task.repeats=many")


def test_task_name_alone_is_refused_and_old_runs_task_keys_do_not_block_a_resume():
    from ebm_cli.runtime.run_folder import config_difference

    with pytest.raises(UserError, match="task=bench"):
        validate(make_cfg("task.name=bench"))
    old = "task:\n  name: train\n  size: full\n  repeats: null\nseed: 0\n"  # saved before task settings moved
    assert config_difference(old, "task:\n  name: train\nseed: 0\n") is None
    assert "seed" in config_difference(old, "task:\n  name: train\nseed: 1\n")
