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
    metrics = train(cfg, run_dir, changed=["debug=smoke", "trainer.lr=0.02"])  # as if typed
    return run_dir, cfg, metrics


@pytest.fixture
def subprocess_env():
    env = dict(os.environ)
    env.pop("HYDRA_FULL_ERROR", None)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def pytest_configure(config):
    """Under pytest-xdist every worker has a core of its own: one thread per worker (and for the
    ebm-run processes it starts), instead of every worker's torch spreading over every core."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        os.environ["OMP_NUM_THREADS"] = "1"
        import torch

        torch.set_num_threads(1)
