"""Whole-process wall time and metrics of every preset, for two installs of ebm-run run one after
the other on the same machine (e.g. the commit before the speed work and this one).

    python experiments/speed/compare_presets.py --before /path/to/old/.venv/bin/ebm-run \
        --after .venv/bin/ebm-run --out speed_runs

Each preset runs with --before, then with --after, in a fresh process, timed from the outside
(start-up, data, training, evaluation, figures, checkpoints and TensorBoard included). Prints a
markdown table and writes it, with every metric, to <out>/presets.json.
"""

import argparse
import json
import subprocess
import time
from pathlib import Path

PRESETS = {
    "default": [],
    "curves_latent": ["experiment=curves_latent"],
    "curves_latent_mixture": ["experiment=curves_latent_mixture"],
    "cd": ["loss=cd"],
    "hinge": ["loss=hinge"],
    "video_latent": ["experiment=video_latent"],
    "translation_latent": ["experiment=translation_latent"],
}
SHOWN = ("coverage@", "precision@", "chamfer", "sharpness_ratio", "latent_used")


def run(ebm_run: str, overrides, folder: Path) -> dict:
    start = time.perf_counter()
    proc = subprocess.run([ebm_run, *overrides, f"hydra.run.dir={folder}", "logger.progress=false"],
                          capture_output=True, text=True)
    wall = time.perf_counter() - start
    record = {"wall_s": round(wall, 2), "exit_code": proc.returncode}
    metrics_file = folder / "metrics.json"
    if metrics_file.exists():
        record["metrics"] = json.loads(metrics_file.read_text()).get("metrics", {})
    if proc.returncode:
        record["error"] = (proc.stderr.strip().splitlines() or [""])[-1]
    return record


def shown(metrics: dict) -> str:
    return ", ".join(f"{k} {v:.3g}" for k, v in metrics.items() if k.startswith(SHOWN))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, help="the ebm-run executable of the old install")
    parser.add_argument("--after", required=True, help="the ebm-run executable of the new install")
    parser.add_argument("--out", type=Path, default=Path("speed_runs"))
    parser.add_argument("--presets", nargs="*", default=list(PRESETS), choices=list(PRESETS))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results = {}
    for name in args.presets:
        results[name] = {side: run(exe, PRESETS[name], args.out / f"{name}_{side}")
                         for side, exe in (("before", args.before), ("after", args.after))}
        (args.out / "presets.json").write_text(json.dumps(results, indent=2))
        b, a = results[name]["before"], results[name]["after"]
        print(f"{name}: {b['wall_s']} s -> {a['wall_s']} s ({b['wall_s'] / a['wall_s']:.1f}x)", flush=True)
    lines = ["| preset | command | before: wall | after: wall | speed-up | before: metrics | after: metrics |",
             "| --- | --- | ---: | ---: | ---: | --- | --- |"]
    for name, r in results.items():
        b, a = r["before"], r["after"]
        command = " ".join(["ebm-run", *PRESETS[name]])
        lines.append(f"| {name} | `{command}` | {b['wall_s']:.1f} s | {a['wall_s']:.1f} s | "
                     f"{b['wall_s'] / a['wall_s']:.1f}x | {shown(b.get('metrics', {})) or b.get('error')} | "
                     f"{shown(a.get('metrics', {})) or a.get('error')} |")
    table = "\n".join(lines)
    (args.out / "presets.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
