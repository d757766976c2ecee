"""Every check a command makes before it writes anything, in one place for every task: the run's
settings, its folder, its data, its components and how they fit, its checkpoint and inputs.

The pre-run callback calls `check_before_writing` before Hydra creates the run folder (and, for a
sweep, for every job before the sweep folder exists); the tasks call the same checks again when
they start (jobs of other sweepers, calls from Python), then build what they checked.
"""

import contextlib
from pathlib import Path
from typing import Iterable, Sequence

import torch

from ebm_cli.build import resolve_device
from ebm_cli.core.energy import LatentEnergy
from ebm_cli.errors import UserError, memory_detail, out_of_memory
from ebm_cli.runtime.memory import bounded_memory
from ebm_cli.runtime.run_folder import check_run_folder
from ebm_cli.tasks.infer import open_run
from ebm_cli.tasks.objective import task_config_yaml
from ebm_cli.tasks.prepare import prepare
from ebm_cli.training.checkpointing import check_resumable
from ebm_cli.training.distributed import launched
from ebm_cli.training.ema import weight_average_of
from ebm_cli.training.trainer import CallbackFailed
from ebm_cli.validate import validate


def check_first_step(cfg, run, trainer) -> None:
    """One training step's loss and gradients on a full batch (Trainer.forward and .backward, the
    run's own step up to its update, with the config's callbacks), and the inference method on two
    held-out inputs, computed and thrown away: a loss, an energy, a callback or a search that fails
    in training or evaluation (not only in a forward pass), or a batch or grid that does not fit in
    memory, is found before anything is written. The random state is restored afterwards."""
    data, energy = run.data, run.energy
    bounded = bounded_memory() if run.device.type == "cpu" else contextlib.nullcontext()
    with torch.random.fork_rng(devices=[]), bounded:
        beta = run.beta(0)
        if isinstance(energy, LatentEnergy):
            energy.set_beta(beta)
        energy.train()
        phase = f"one training step of trainer.batch_size={run.batch_size}"
        try:
            idx = torch.randint(0, data.num_rows, (run.batch_size,), device="cpu")  # rows of the host data
            x, y = data.augment(*data.batch(idx, run.device))
            trainer.backward(*trainer.forward(x, y, beta))
            energy.eval()
            phase = f"inference={run.inference.name} on two held-out inputs"
            run.inference(energy, data.x_test[:2].to(run.device))  # the evaluation's search
        except UserError:
            raise
        except Exception as exc:
            if isinstance(exc, CallbackFailed):  # a user's hook that fails on real gradients
                phase, exc = exc.where, exc.error
            first = (str(exc).strip().splitlines() or [""])[0]
            if out_of_memory(exc):
                raise UserError(f"{phase} does not fit in memory ({memory_detail(exc)}): lower trainer.batch_size, "
                                "the loss's or the inference method's grid or sample sizes, or the energy's") from None
            raise UserError(f"{phase} fails ({type(run.energy).__name__} with loss={run.loss.name}): "
                            f"{type(exc).__name__}: {first}") from None
        finally:
            energy.zero_grad(set_to_none=True)


def check_folder_for(cfg, out_dir: Path) -> None:
    """The folder this command writes into is its own: new (or empty), or, for a training run with
    trainer.resume=auto, its own interrupted run of the same config."""
    if cfg.task.name == "train":
        check_run_folder(out_dir, "train", cfg.trainer.resume, task_config_yaml(cfg))
    else:
        check_run_folder(out_dir, cfg.task.name)


def check_before_writing(cfg, out_dir: Path, overrides: Sequence[str] = (), trusted: Iterable[str] = ()) -> None:
    """Raise UserError for anything that would stop this command after it has written something.
    trusted: classes a finished run's stored config may name besides ebm_cli's (runtime/trust.py)."""

    validate(cfg)
    resolve_device(cfg.trainer.device)
    task = cfg.task.name
    check_folder_for(cfg, out_dir)
    if task == "train":
        run, baseline, trainer = prepare(cfg)  # data, energy, inference, loss, optimizer, callbacks: built and checked
        if cfg.trainer.resume == "auto" and out_dir.is_dir():
            average = weight_average_of(trainer)
            launch = launched()  # torchrun's processes: as many as it started
            check_resumable(out_dir, run.energy, trainer.optimizer, run.loss, baseline, average, trainer,
                            launch[1] if launch else int(cfg.trainer.get("devices", 1)))
        check_first_step(cfg, run, trainer)
        return
    if task == "bench":
        from ebm_cli.bench.settings import check_bench

        check_bench(cfg)
        return
    open_run(cfg, overrides, with_data=task != "infer", trusted=trusted)
