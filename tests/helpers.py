"""Helpers for the tests: compose the real packaged configs, write data files, find ebm-run."""

import shutil
import sys
from pathlib import Path

from ebm_cli import compose_config


def make_cfg(*overrides: str):
    """The composed ebm-run config (the same files `ebm-run` reads), with overrides."""
    return compose_config(*overrides)


def ebm_run_command():
    """The installed console script, next to this interpreter (the venv's bin/)."""
    script = Path(sys.executable).with_name("ebm-run")
    return [str(script)] if script.exists() else [shutil.which("ebm-run") or "ebm-run"]


def write_csv(path: Path, branches, xs, noise=0.0, seed=0):
    """A curves CSV (header x,y): one row per (x, branch)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    lines = ["x,y"]
    for x in xs:
        for f in branches:
            lines.append(f"{x:.6f},{f(x) + noise * float(torch.randn(1, generator=gen)):.6f}")
    path.write_text("\n".join(lines) + "\n")
    return path
