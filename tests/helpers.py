"""Helpers for the tests: compose the real packaged configs, write data files, find ebm-run."""

import contextlib
import io
import logging
import os
import shutil
import subprocess
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


def run_cli(args, cwd, env=None) -> subprocess.CompletedProcess:
    """`ebm-run <args>` from the folder cwd, in this process: the exit code, stdout and stderr that
    the console script would give. ebm-run's main() is the same code a subprocess runs; what a
    subprocess adds is a second of start-up, so the tests whose point is the message, the exit code
    and what lands on disk run here, and those whose point is the process (signals, the installed
    script, `python -m`, a launcher's workers) keep a real one. env: variables set for the call."""
    from hydra.core.global_hydra import GlobalHydra

    from ebm_cli import cli

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    out, err, code = io.StringIO(), io.StringIO(), 0
    saved_env = {k: os.environ.get(k) for k in (env or {})}
    here, argv = os.getcwd(), sys.argv
    try:
        os.environ.update(env or {})
        os.chdir(cwd)
        sys.argv = ["ebm-run", *map(str, args)]
        GlobalHydra.instance().clear()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                cli.main()
            except SystemExit as exit_:
                code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    finally:
        os.chdir(here)
        sys.argv = argv
        GlobalHydra.instance().clear()
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        for handler in root.handlers:  # Hydra's job logging: the run's log file and console
            if handler not in handlers:
                handler.close()
        root.handlers[:], root.level = handlers, level
    return subprocess.CompletedProcess(["ebm-run", *map(str, args)], code, out.getvalue(), err.getvalue())


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


def sigterm_at_call(monkeypatch, loss_class, n: int):
    """loss_class.__call__ sends this process SIGTERM at its n-th call (a stop in the middle of a
    training step; validation calls count too). Returns the original __call__, to put back."""
    import signal

    original, calls = loss_class.__call__, []

    def call(self, *args):
        calls.append(None)
        if len(calls) == n:
            os.kill(os.getpid(), signal.SIGTERM)
        return original(self, *args)

    monkeypatch.setattr(loss_class, "__call__", call)
    return original
