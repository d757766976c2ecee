"""Where the wall time of one `ebm-run` goes: imports, composing the config, the pre-run check,
building the run, the training steps, the evaluations on the validation split, the landscape images,
checkpoints, the final evaluation, the figures and TensorBoard.

    python experiments/speed/time_split.py                 # the default experiment
    python experiments/speed/time_split.py loss=cd         # any overrides

It runs the same code path as the `ebm-run` console script (ebm_cli.cli.main), in this process, with
timers wrapped around the phases (the wrappers add microseconds); prints one table, slowest first.
The phases nest: "training steps" excludes the callbacks timed on their own (validation, landscapes,
checkpoints, scalars), "final evaluation and records" is what follows the last step.
"""

import sys
import time

START = time.perf_counter()

import functools  # noqa: E402
import importlib  # noqa: E402
from collections import defaultdict  # noqa: E402

TOTALS = defaultdict(float)
ACTIVE = []  # the phases open now: an inner phase's time is taken out of the outer one's


def timed(owner, name: str, phase: str) -> None:
    """Wrap owner.name so that its time is added to TOTALS[phase] (nested phases counted once)."""
    original = getattr(owner, name)

    @functools.wraps(original)
    def wrapper(*args, **kwargs):
        started, ACTIVE[:] = time.perf_counter(), ACTIVE + [[phase, 0.0]]
        try:
            return original(*args, **kwargs)
        finally:
            _, inner = ACTIVE.pop()
            spent = time.perf_counter() - started
            TOTALS[phase] += spent - inner
            if ACTIVE:
                ACTIVE[-1][1] += spent

    setattr(owner, name, wrapper)


def main() -> None:
    importlib.import_module("torch")  # the first and largest import

    TOTALS["import torch"] = time.perf_counter() - START
    started = time.perf_counter()
    importlib.import_module("torch._dynamo")  # torch.optim imports it at the first optimizer step, compiled or not

    TOTALS["import torch._dynamo (by torch.optim)"] = time.perf_counter() - started
    started = time.perf_counter()
    import ebm_cli.cli as cli
    from ebm_cli import callbacks
    from ebm_cli.tasks import checks, prepare, train
    from ebm_cli.training import checkpointing, run_callbacks, trainer
    from ebm_cli.runtime import tb

    TOTALS["import ebm_cli (hydra, matplotlib, rich, tensorboard)"] = time.perf_counter() - started
    timed(callbacks.ValidateConfig, "on_run_start", "pre-run checks (config, folder, one step)")
    timed(checks, "check_first_step", "pre-run checks (config, folder, one step)")
    timed(prepare, "build_run", "building the run (data, energy, loss, inference)")
    timed(train, "prepare", "building the run (data, energy, loss, inference)")
    timed(train, "_train", "final evaluation and records (metrics, figures, TensorBoard)")
    timed(trainer.Trainer, "step", "training steps")
    timed(run_callbacks.Validation, "on_step_end", "evaluations on the validation split")
    timed(run_callbacks.Landscapes, "on_step_end", "landscape images during training")
    timed(run_callbacks.ScalarLogging, "on_step_end", "TensorBoard scalars")
    timed(checkpointing.Checkpointer, "save", "checkpoints")
    timed(tb.TBLogger, "close", "TensorBoard (flush and close)")
    sys.argv = ["ebm-run", "logger.progress=false", *sys.argv[1:]]
    try:
        cli.main()
    except SystemExit as exit_:
        if exit_.code:
            raise
    total = time.perf_counter() - START
    TOTALS["other (Hydra's run set-up, logging, exit)"] = total - sum(TOTALS.values())
    print("\n| phase | seconds | share |\n| --- | ---: | ---: |")
    for phase, seconds in sorted(TOTALS.items(), key=lambda kv: -kv[1]):
        print(f"| {phase} | {seconds:.2f} | {seconds / total:.0%} |")
    print(f"| whole process (this script, from its first line) | {total:.2f} | 100% |")


if __name__ == "__main__":
    main()
