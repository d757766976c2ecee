"""Train vs validation curves of runs, read back from their TensorBoard event files:

    python experiments/video_real/plot_curves.py curves.png RUN_DIR [RUN_DIR ...]

Left: the training loss (every trainer.log_every steps) and the validation loss (every
trainer.eval_every steps) of each run; right: its validation coverage. A gap that opens between the
two losses is overfitting.
"""

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402


OLD_PREFIXES = {"train/": "Training/", "val/": "Validation/"}  # the tags of runs before ebm-cli renamed them


def scalars(run_dir: Path):
    """{tag: (steps, values)} of one run's TensorBoard scalars, tb/ and tb/validation/ (older runs'
    train/ and val/ read as Training/ and Validation/)."""
    renamed = {}
    for folder in (run_dir / "tb", run_dir / "tb" / "validation"):  # the validation curves are a run of their own
        if not folder.is_dir():
            continue
        events = EventAccumulator(str(folder))
        events.Reload()
        for tag in events.Tags()["scalars"]:
            new = next((n + tag[len(o):] for o, n in OLD_PREFIXES.items() if tag.startswith(o)), tag)
            renamed[new] = ([e.step for e in events.Scalars(tag)], [e.value for e in events.Scalars(tag)])
    return renamed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("runs", nargs="+", type=Path)
    a = parser.parse_args()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for i, run in enumerate(a.runs):
        tags, colour = scalars(run), f"C{i}"
        coverage = next((t for t in tags if t.startswith("Validation/coverage@")), None)
        if "Validation/loss" not in tags or coverage is None:
            raise SystemExit(f"{run}: no validation curves (train it with trainer.eval_every=N)")
        left.plot(*tags["Training/loss"], color=colour, alpha=0.5, label=f"{run.name}: train")
        left.plot(*tags["Validation/loss"], "o-", color=colour, label=f"{run.name}: validation")
        right.plot(*tags[coverage], "o-", color=colour, label=run.name)
        right.set_ylabel(coverage)
    left.set(xlabel="step", ylabel="loss", yscale="log")
    right.set(xlabel="step", ylim=(0, 1))
    left.legend(fontsize=8)
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(a.out, dpi=90)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
