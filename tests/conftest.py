"""Shared fixtures: one real smoke run, a clean environment for subprocesses."""

import os

import pytest

from helpers import make_cfg


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory):
    """One finished `debug=smoke` training run, shared by the tests that read it back."""
    from ebm_cli.tasks.train import train

    run_dir = tmp_path_factory.mktemp("smoke_run")
    cfg = make_cfg("debug=smoke")
    metrics = train(cfg, run_dir)
    return run_dir, cfg, metrics


@pytest.fixture
def subprocess_env():
    env = dict(os.environ)
    env.pop("HYDRA_FULL_ERROR", None)
    env["PYTHONUNBUFFERED"] = "1"
    return env
