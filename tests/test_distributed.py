"""Data-parallel training (trainer.devices=N, training/distributed.py): N processes on gloo train one
run into one folder; with a loss that draws nothing at random the weights are those of one process
with the same global batch and seed; the losses that sample train under it; an interrupted run
resumes bit-exact; a rank that fails is one line on rank 0.

Each run here starts real processes (spawn: a fresh interpreter per rank), so the runs are short."""

import json
import multiprocessing
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ebm_cli.errors import UserError
from ebm_cli.losses.cd import ContrastiveDivergence
from ebm_cli.losses.nll import NLL
from ebm_cli.runtime.checkpoint import load_checkpoint
from ebm_cli.tasks.checks import check_before_writing
from ebm_cli.tasks.train import train
from ebm_cli.training.distributed import Ranks
from helpers import make_cfg, run_cli, sigterm_at_call

# the default preset, shrunk; validation every 10 steps exercises rank 0's decisions (keep best.pt)
SHORT = ["debug=smoke", "trainer.eval_every=10", "trainer.patience=0", "logger.landscape_every=0"]


def weights(run_dir, name="last.pt"):
    return load_checkpoint(run_dir / "checkpoints" / name)


@pytest.fixture(scope="module")
def one_and_two(tmp_path_factory):
    """The default preset (its nll on the grid's cell midpoints: nothing drawn at random in the loss)
    trained by one process and by two."""
    root = tmp_path_factory.mktemp("ddp")
    args = [*SHORT, "loss.stratified=false"]
    one = train(make_cfg(*args), root / "one")
    done = run_cli([*args, "trainer.devices=2", f"hydra.run.dir={root / 'two'}"], cwd=root)  # as a user types it
    assert done.returncode == 0, done.stderr
    assert "trainer.devices=2: 2 processes train this run (gloo), 32 rows each per step" in done.stdout + done.stderr
    two = json.loads((root / "two" / "metrics.json").read_text())["metrics"]
    return root, one, two


def test_two_processes_train_the_weights_of_one_with_the_same_global_batch(one_and_two):
    root, one, two = one_and_two
    for name in ("last.pt", "best.pt"):
        a, b = weights(root / "one", name), weights(root / "two", name)
        assert a["step"] == b["step"]
        for key in ("model", "train_model"):
            for k in a[key]:
                assert torch.allclose(a[key][k], b[key][k], atol=1e-5, rtol=1e-4), (name, key, k)
    assert two["coverage@0.05"] == pytest.approx(one["coverage@0.05"], abs=0.02)
    assert two["chamfer"] == pytest.approx(one["chamfer"], rel=0.05, abs=1e-3)


def test_two_processes_write_one_folder_as_one_run(one_and_two):
    root = one_and_two[0] / "two"
    record = json.loads((root / "metrics.json").read_text())
    assert record["status"] == "completed" and record["step"] == 30
    assert len(list((root / "tb").glob("events.out.tfevents.*"))) == 1  # rank 0's writer only
    assert sorted(p.name for p in (root / "checkpoints").iterdir()) == ["best.pt", "last.pt", "previous.pt"]
    state = weights(root)
    assert len(state["loss_ranks"]) == 2  # each rank's loss state, for its resume


def test_torchrun_trains_the_same_run(one_and_two, subprocess_env):
    """`torchrun --nproc_per_node=2 -m ebm_cli ...`: rank 0 runs the command, rank 1 takes its config
    and folder; the weights are those of one process."""
    root = one_and_two[0]
    folder = root / "torchrun"
    command = [str(Path(sys.executable).with_name("torchrun")), "--standalone", "--nproc_per_node=2", "-m", "ebm_cli",
               *SHORT, "loss.stratified=false", f"hydra.run.dir={folder}"]
    done = subprocess.run(command, cwd=root, env=subprocess_env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "2 processes started by the launcher train this run (gloo), 32 rows each per step" in done.stdout + done.stderr
    a, b = weights(root / "one"), weights(folder)
    for k in a["train_model"]:
        assert torch.allclose(a["train_model"][k], b["train_model"][k], atol=1e-5, rtol=1e-4), k
    assert json.loads((folder / "metrics.json").read_text())["status"] == "completed"


def test_torchrun_ranks_stop_waiting_when_rank_0_trains_nothing(tmp_path, subprocess_env):
    """`torchrun ... -m ebm_cli --cfg job` (or a refused config): rank 1, waiting for a config, is told
    there is none and ends; the command does not hang."""
    command = [str(Path(sys.executable).with_name("torchrun")), "--standalone", "--nproc_per_node=2", "-m", "ebm_cli"]
    shown = subprocess.run([*command, "--cfg", "job"], cwd=tmp_path, env=subprocess_env, capture_output=True, text=True,
                           timeout=120)
    assert shown.returncode == 0 and "trainer:" in shown.stdout
    refused = subprocess.run([*command, "trainer.steps=-1"], cwd=tmp_path, env=subprocess_env, capture_output=True,
                             text=True, timeout=120)
    assert refused.returncode != 0 and "trainer.steps=-1: must be >= 0" in refused.stderr


def test_a_submitit_job_of_two_tasks_trains_one_run(one_and_two, tmp_path):
    """`-m launcher=submitit_local hydra.launcher.tasks_per_node=2` (as on SLURM, one node): the job's
    two tasks are the run's two ranks, task 0 writes; the weights are those of one process."""
    sweep = tmp_path / "sweep"
    done = run_cli(["-m", "launcher=submitit_local", "hydra.launcher.tasks_per_node=2", *SHORT, "loss.stratified=false",
                    f"hydra.sweep.dir={sweep}"], tmp_path)
    assert done.returncode == 0, done.stderr
    [job] = [p for p in sweep.iterdir() if p.is_dir() and p.name.startswith("0_")]
    assert "2 processes started by the launcher" in (job / "ebm_run.log").read_text()
    a, b = weights(one_and_two[0] / "one"), weights(job)
    for k in a["train_model"]:
        assert torch.allclose(a["train_model"][k], b["train_model"][k], atol=1e-5, rtol=1e-4), k
    record = json.loads((job / "metrics.json").read_text())
    assert record["status"] == "completed" and record["job"] == 0  # task 0's summary entry, written once


@pytest.mark.parametrize("loss", ["cd", "hinge", "nce"])
def test_the_losses_that_sample_train_under_two_processes(tmp_path, loss):
    """Each rank draws its own negatives (its stream: seed, step, rank); the run trains and ends."""
    metrics = train(make_cfg(*SHORT, f"loss={loss}", "trainer.devices=2"), tmp_path)
    record = json.loads((tmp_path / "metrics.json").read_text())
    assert record["status"] == "completed" and record["step"] == 30
    assert all(v == v for v in metrics.values())  # no NaN
    state = weights(tmp_path)
    first = state["loss_ranks"][0]
    if loss == "cd":  # the replay buffers are the ranks' own: different chains
        assert not torch.equal(first["buffer"], state["loss_ranks"][1]["buffer"])


def test_an_interrupted_two_process_run_resumes_bit_exact(tmp_path, monkeypatch):
    """cd (per-rank replay buffers and negatives): a SIGTERM to rank 0 mid-step stops both ranks at
    the next step with a checkpoint; resumed, the run ends with the uninterrupted one's weights."""
    args = [*SHORT, "loss=cd", "trainer.devices=2", "trainer.ckpt_every=10"]
    whole = tmp_path / "whole"
    expected = train(make_cfg(*args), whole)
    original = sigterm_at_call(monkeypatch, ContrastiveDivergence, 15)  # rank 0 only: the others are processes
    cut = tmp_path / "cut"
    with pytest.raises(UserError, match="stopped by SIGTERM at step 14"):  # call 10 was the validation's
        train(make_cfg(*args), cut)
    assert weights(cut)["step"] == 14
    monkeypatch.setattr(ContrastiveDivergence, "__call__", original)
    resumed = train(make_cfg(*args, "trainer.resume=auto"), cut)
    assert {k: v for k, v in resumed.items() if not k.endswith("_time_s")} == \
        {k: v for k, v in expected.items() if not k.endswith("_time_s")}
    a, b = weights(whole), weights(cut)
    for key in ("model", "train_model"):
        assert all(torch.equal(a[key][k], b[key][k]) for k in a[key])
    for rank in (0, 1):
        assert torch.equal(a["loss_ranks"][rank]["buffer"], b["loss_ranks"][rank]["buffer"])


def test_a_rank_that_cannot_start_is_one_line_naming_it(tmp_path):
    ranks = Ranks(2, "seed: 0\n", tmp_path / "run", train)  # a config the rank cannot build a run from
    with pytest.raises(UserError, match=r"trainer.devices=2: rank 1 could not start: \w+"):
        ranks.wait_ready()
    assert not any(p.is_alive() for p in ranks.processes)
    assert not os.path.exists(ranks.init_file)  # the rendezvous file is gone


def test_a_rank_that_dies_mid_run_is_one_line_on_rank_0(tmp_path, monkeypatch):
    """Rank 1 killed during training: rank 0's next collective fails, and the error names the rank."""
    original, calls = NLL.__call__, []

    def kill_rank_1_in_step_5(self, *a):
        calls.append(None)
        if len(calls) == 5:
            for process in multiprocessing.active_children():
                if process.name == "ebm-run rank 1":
                    os.kill(process.pid, signal.SIGKILL)
                    process.join(10)
        return original(self, *a)

    monkeypatch.setattr(NLL, "__call__", kill_rank_1_in_step_5)
    with pytest.raises(UserError, match="trainer.devices=2: ebm-run rank 1 was ended by the signal SIGKILL"):
        train(make_cfg(*SHORT, "trainer.devices=2"), tmp_path)


@pytest.mark.parametrize("overrides,message", [
    (("trainer.devices=0",), "trainer.devices=0: must be >= 1"),
    (("trainer.devices=2", "trainer.batch_size=63"), "trainer.batch_size=63: must be a multiple of trainer.devices=2"),
    (("trainer.devices=2", "trainer.device=cuda:1"), "trainer.device=cuda:1: names one GPU"),
])
def test_impossible_device_counts_are_refused_before_a_folder(tmp_path, overrides, message):
    with pytest.raises(UserError, match=re.escape(message)):
        check_before_writing(make_cfg("debug=smoke", *overrides), tmp_path / "run")
    assert not (tmp_path / "run").exists()
