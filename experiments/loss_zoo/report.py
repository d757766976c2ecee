"""The loss zoo's table and figure, from a finished `ebm-run experiment=loss_zoo` sweep folder.

    python experiments/loss_zoo/report.py multirun/<date>/<time> --out experiments/loss_zoo

Reads every job's metrics.json (its loss, metrics, `collapsed`) and checkpoint, prints the markdown
table (coverage, precision, chamfer, energy range, energy gap, collapsed, job wall time), writes it
to <out>/table.md, and draws every job's landscape F(x, y) - min_y F(x, y) side by side in
<out>/loss_zoo.png, all on one colour scale (a flat landscape is one colour). A job's wall time runs from its config being written (.hydra/config.yaml) to
its metrics.json: building, training, evaluation, figures and checkpoints.
"""

import argparse
import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from ebm_cli.build import build_dataset  # noqa: E402
from ebm_cli.plots.landscape import draw_landscape, energy_grid  # noqa: E402
from ebm_cli.tasks.infer import load_run  # noqa: E402


def jobs(sweep: Path):
    """(loss, job folder, metrics.json record) for every finished job, in the sweep's order."""
    out = []
    for path in sorted(sweep.glob("*/metrics.json"), key=lambda p: int(p.parent.name.split("_")[0])):
        record = json.loads(path.read_text())
        loss = next((o.split("=", 1)[1] for o in record.get("overrides", []) if o.startswith("loss=")), "nll")
        start = path.parent / ".hydra" / "config.yaml"
        record["wall_s"] = path.stat().st_mtime - start.stat().st_mtime if start.exists() else math.nan
        out.append((loss, path.parent, record))
    return out


def table(rows) -> str:
    head = ("| loss | coverage | precision | chamfer | energy range | energy gap | collapsed | wall |\n"
            "| --- | ---: | ---: | ---: | ---: | ---: | :---: | ---: |")
    lines = [head]
    for loss, _, record in rows:
        m = record.get("metrics", {})
        if record.get("status") != "completed":
            lines.append(f"| `{loss}` | {record.get('status')}: {record.get('error', '')} | | | | | | |")
            continue
        cov = next(v for k, v in m.items() if k.startswith("coverage@"))
        prec = next(v for k, v in m.items() if k.startswith("precision@"))
        lines.append(f"| `{loss}` | {cov:.3f} | {prec:.3f} | {m['chamfer']:.4f} | {m['energy_range']:.3g} | "
                     f"{m['energy_gap']:.3g} | {'**yes**' if record.get('collapsed') else 'no'} | "
                     f"{record['wall_s']:.0f} s |")
    return "\n".join(lines)


VMAX = 5.0  # one colour scale for every panel, in units of F at beta = 1: exp(-5) is a 150-fold drop in P


def figure(rows, path: Path, resolution: int = 96) -> None:
    done = [r for r in rows if r[2].get("status") == "completed"]
    cols = 4
    n_rows = math.ceil(len(done) / cols)
    fig, axes = plt.subplots(n_rows, cols, figsize=(4.0 * cols, 3.2 * n_rows), dpi=90, squeeze=False)
    for ax in axes.flat[len(done):]:
        ax.axis("off")
    for ax, (loss, folder, record) in zip(axes.flat, done):
        energy, cfg, _ = load_run(folder, torch.device("cpu"))
        data = build_dataset(cfg)
        lo, hi = data.x_range
        xs, ys, f = energy_grid(energy, data.y_space, lo, hi, resolution)
        points = torch.cat([data.x_train, data.y_train], dim=1)[:: max(1, len(data.x_train) // 800)]
        draw_landscape(ax, xs, ys, f, points=points, colorbar=False, vmax=VMAX)
        ax.get_legend().remove()
        cov = next(v for k, v in record["metrics"].items() if k.startswith("coverage@"))
        ax.set_title(f"{loss}: coverage {cov:.2f}" + (" (collapsed)" if record.get("collapsed") else ""), fontsize=10)
    fig.suptitle(f"F(x, y) − min_y F(x, y) after training with each loss (same energy, same budget; "
                 f"colour scale 0 to {VMAX:g} in every panel)")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep", type=Path, help="the sweep folder of ebm-run experiment=loss_zoo")
    parser.add_argument("--out", type=Path, default=Path("."), help="where table.md and loss_zoo.png go")
    args = parser.parse_args()
    rows = jobs(args.sweep)
    if not rows:
        raise SystemExit(f"{args.sweep}: no job folders with a metrics.json")
    args.out.mkdir(parents=True, exist_ok=True)
    text = table(rows)
    (args.out / "table.md").write_text(text + "\n")
    figure(rows, args.out / "loss_zoo.png")
    print(text)
    print(f"\nwrote {args.out / 'table.md'} and {args.out / 'loss_zoo.png'}")


if __name__ == "__main__":
    main()
