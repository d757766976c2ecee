"""Train the preset of each held-out set's data kind on it, with only dataset.path changed, and
write the table (results.md) and every run's numbers (results.json).

    python experiments/quality/run_sets.py sets/ runs/                 # every set
    python experiments/quality/run_sets.py sets/ runs/ --only mm64      # the sets whose names contain this
    python experiments/quality/run_sets.py sets/ runs/ --ebm-run /path/to/another/ebm-run   # another version
    python experiments/quality/run_sets.py sets/ runs/ trainer.weight_decay=0.001          # an override for every run
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

PRESETS = {".csv": ["dataset=curves_csv"], ".npy": ["experiment=video_latent"], ".npz": ["experiment=video_latent"],
           ".tsv": ["experiment=translation_latent"]}
SHOWN = ("coverage@", "precision@", "psnr_best", "ssim_best", "baseline_coverage@", "chamfer", "sharpness_ratio")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sets")
    parser.add_argument("runs")
    parser.add_argument("--only", default="")
    parser.add_argument("--ebm-run", default=shutil.which("ebm-run") or "ebm-run")
    parser.add_argument("--seed", type=int, default=0)
    a, extra = parser.parse_known_args()  # anything else: more overrides for every run
    os.makedirs(a.runs, exist_ok=True)
    results = {}
    for name in sorted(os.listdir(a.sets)):
        stem, ext = os.path.splitext(name)
        if ext not in PRESETS or a.only not in name:
            continue
        run_dir = os.path.abspath(os.path.join(a.runs, stem))
        shutil.rmtree(run_dir, ignore_errors=True)
        cmd = [a.ebm_run, *PRESETS[ext], f"dataset.path={os.path.abspath(os.path.join(a.sets, name))}",
               f"seed={a.seed}", "logger.progress=false", f"hydra.run.dir={run_dir}", *extra]
        start = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.perf_counter() - start
        record = json.load(open(os.path.join(run_dir, "metrics.json"))) if os.path.exists(os.path.join(run_dir, "metrics.json")) else {}
        metrics = record.get("metrics", {})
        results[name] = {"command": " ".join(cmd[1:-3]), "wall_s": round(wall, 1), "exit": proc.returncode,
                         "step": record.get("step"), "metrics": metrics,
                         "error": proc.stderr.strip().splitlines()[-1] if proc.returncode else ""}
        shown = {k: v for k, v in metrics.items() if k.startswith(SHOWN)}
        print(f"{name:14s} exit {proc.returncode} step {record.get('step')} wall {wall:6.1f}s "
              + " ".join(f"{k}={v:.4g}" for k, v in shown.items()) + (f" {results[name]['error']}" if proc.returncode else ""),
              flush=True)
    json.dump(results, open(os.path.join(a.runs, "results.json"), "w"), indent=2)
    with open(os.path.join(a.runs, "results.md"), "w") as fh:
        fh.write("| set | coverage | precision | baseline coverage | PSNR / SSIM (best of k) | steps | wall |\n")
        fh.write("| --- | ---: | ---: | ---: | ---: | ---: | ---: |\n")
        for name, r in results.items():
            m = r["metrics"]
            pick = lambda prefix: next((f"{v:.3f}" for k, v in m.items() if k.startswith(prefix)), "")  # noqa: E731
            psnr = f"{m['psnr_best']:.1f} / {m['ssim_best']:.3f}" if "psnr_best" in m else ""
            fh.write(f"| `{name}` | {pick('coverage@')} | {pick('precision@')} | {pick('baseline_coverage@')} | {psnr} "
                     f"| {r['step']} | {r['wall_s']:.0f} s |\n")
    print(f"wrote {a.runs}/results.md")


if __name__ == "__main__":
    sys.exit(main())
