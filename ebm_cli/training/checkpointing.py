"""Checkpoints of a training run, and resuming from them (trainer.resume=auto).

A checkpoint holds everything that makes a resumed run the uninterrupted one: the evaluated weights
("model": the moving average, what task=infer loads) and the trained ones ("train_model"), the
optimizer, scheduler and callbacks (Trainer.state_dict), the RNG states, the validation history
(the stopper), the loss's state (cd's replay buffer; one per rank in a data-parallel run), the MSE
baseline's, and the config and data metadata that task=infer rebuilds the run from.
"""

import logging
from pathlib import Path

from ebm_cli.errors import NotResumable, UserError
from ebm_cli.runtime.checkpoint import load_latest, remove_stale_temporaries, restore, rng_state, save_checkpoint, \
    set_rng_state
from ebm_cli.runtime.compat import CHECKPOINT_FORMAT
from ebm_cli.runtime.run_folder import check_run_folder

log = logging.getLogger("ebm_cli")


class Checkpointer:
    """save(step, name) writes run_dir/checkpoints/<name> (last.pt by default; the previous one is kept
    as previous.pt). Collective in a data-parallel run: every rank calls it, rank 0 writes."""

    def __init__(self, run_dir: Path, trainer, average, stopper, config_yaml: str, meta, baseline=None):
        self.folder = Path(run_dir) / "checkpoints"
        self.trainer, self.average, self.stopper, self.baseline = trainer, average, stopper, baseline
        self.config_yaml, self.meta = config_yaml, meta

    def save(self, step: int, name: str = "last.pt") -> None:
        trainer, sync, loss = self.trainer, self.trainer.sync, self.trainer.loss
        loss_ranks = sync.gather(loss.state_dict()) if sync.world > 1 else None  # cd's replay buffer is per rank
        if not sync.is_main:
            return
        evaluated, energy = self.average.evaluated, trainer.energy
        save_checkpoint(self.folder, {
            **trainer.state_dict(),  # optimizer, scheduler, callbacks
            "model": evaluated.state_dict(), "step": step,
            "rng": rng_state(), "config": self.config_yaml, "meta": self.meta, "best": self.stopper.state_dict(),
            "format": CHECKPOINT_FORMAT,
            **({"train_model": energy.state_dict(), "average": self.average.state_dict()} if evaluated is not energy else {}),
            **({"loss": loss.state_dict()} if loss.state_dict() else {}),
            **({"loss_ranks": loss_ranks} if loss_ranks is not None else {}),
            **({"baseline": self.baseline.state_dict()} if self.baseline is not None else {}),
        }, name)


def resume(run_dir: Path, mode: str, energy, opt, device, loss_fn=None, baseline=None, config_yaml=None,
           stopper=None, average=None, trainer=None, world: int = 1) -> int:
    """Restore model, optimiser and RNG states (and the evaluations so far into `stopper`, the moving
    average of the weights into `average`) from run_dir's last good checkpoint; the step.

    mode=never refuses a folder that already holds checkpoints (they would be overwritten); mode=auto
    refuses a run of another config (config_yaml: this run's).
    """
    check_run_folder(run_dir, "train", mode, config_yaml, started=True)
    folder = run_dir / "checkpoints"
    if mode == "never":
        return 0
    remove_stale_temporaries(folder)
    return _restore_or_refuse(folder, energy, opt, loss_fn, baseline, stopper, average, trainer, world)


def check_resumable(run_dir: Path, energy, opt, loss_fn=None, baseline=None, average=None, trainer=None,
                    world: int = 1) -> None:
    """The pre-run check of trainer.resume=auto: the checkpoint the run would continue from, restored
    into the check's own throwaway build (weights, optimiser moments and their shapes, finiteness,
    RNG state, loss and callback states), so that a checkpoint that cannot continue the run is
    refused before Hydra writes into its folder. Reads only; the random state is put back."""
    before = rng_state()
    try:
        _restore_or_refuse(Path(run_dir) / "checkpoints", energy, opt, loss_fn, baseline, None, average, trainer, world)
    finally:
        set_rng_state(before)


def _restore_or_refuse(folder: Path, energy, opt, loss_fn, baseline, stopper, average, trainer, world: int) -> int:
    try:
        return restore_latest(folder, energy, opt, loss_fn, baseline, stopper, average, trainer, world=world)
    except UserError as err:  # the run stays as it was (cli.record_failure leaves its metrics.json alone)
        raise NotResumable(f"trainer.resume=auto: {err}") from None
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise NotResumable(f"trainer.resume=auto: a checkpoint in {folder} is incomplete or of another version "
                           f"({type(exc).__name__}: {exc})") from None


def restore_latest(folder: Path, energy, opt, loss_fn, baseline, stopper, average, trainer=None, rank: int = 0,
                   world: int = 1) -> int:
    """The states of folder's last good checkpoint, restored (read only); its step, or 0 where there is none.
    rank of world: a data-parallel run's rank takes its own loss state (a run whose loss keeps one per
    process continues on as many processes)."""
    # Read on the host whatever the run's device is: the RNG states must stay there (set_rng_state,
    # numpy), and load_state_dict copies weights, optimiser moments and a loss's state to where they live.
    state, path = load_latest(folder, map_location="cpu")
    if state is None:
        return 0
    if isinstance(state["step"], bool) or not isinstance(state["step"], int) or state["step"] < 0:
        raise UserError(f"checkpoint {path}: its step {state['step']!r} is not a count of steps (a whole number >= 0)")
    if not isinstance(state.get("rng"), dict):
        raise UserError(f"checkpoint {path} has no RNG state: it cannot continue the run exactly")
    saved_ranks = len(state["loss_ranks"]) if "loss_ranks" in state else 1
    if saved_ranks != world and ("loss_ranks" in state or "loss" in state):
        raise UserError(f"checkpoint {path} was trained by {saved_ranks} process(es), with a loss state of each "
                        f"(loss={getattr(loss_fn, 'name', '?')}): continue it on {saved_ranks}, not {world}")
    if "train_model" in state and average is not None:  # trained with a moving average: "model" is the average
        restore(path, {**state, "model": state["train_model"]}, energy, opt)
        restore(path, state, average.evaluated)
        average.load_state_dict(state.get("average", {}))
    else:
        restore(path, state, energy, opt)
    if "loss_ranks" in state and loss_fn is not None:  # a data-parallel run: each rank's own
        loss_fn.load_state_dict(state["loss_ranks"][rank])
    elif "loss" in state and loss_fn is not None:  # e.g. contrastive divergence's replay buffer
        loss_fn.load_state_dict(state["loss"])
    if baseline is not None and "baseline" in state:
        baseline.load_state_dict(state["baseline"])
    if trainer is not None:  # the scheduler's and callbacks' states
        trainer.load_state_dict(state)
    set_rng_state(state["rng"])
    if stopper is not None and state.get("best"):
        stopper.load_state_dict(state["best"])
    log.info("resuming from %s (step %d)", path, state["step"])
    return int(state["step"])

