"""Faults injected for real: kills, signals, NaN energies, broken files, a full disk.

Each checks the exit code or error, the message, that the last good checkpoint still loads,
and that a resumed run ends exactly where an uninterrupted one does.
"""

import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from ebm_cli.errors import UserError, one_line
from ebm_cli.losses.nll import NLL
from ebm_cli.runtime import checkpoint as ckpt
from ebm_cli.runtime.signals import PREEMPTED_EXIT_CODE
from ebm_cli.tasks.train import DIVERGED_EXIT_CODE, resume, train
from helpers import ebm_run_command, make_cfg, run_cli

# Small and quick, with a checkpoint every 10 steps and no figures in the loop.
SHORT = ["debug=smoke", "trainer.steps=40", "trainer.ckpt_every=10", "trainer.log_every=5", "logger.landscape_every=0"]
TIMING = ("train_time_s", "infer_time_s")


def same_metrics(a, b):
    return {k: v for k, v in a.items() if k not in TIMING} == {k: v for k, v in b.items() if k not in TIMING}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("uninterrupted")
    metrics = train(make_cfg(*SHORT), run_dir)
    return run_dir, metrics


def fail_at(monkeypatch, step_to_fail, action):
    """Wrap the NLL so that `action()` happens during training step `step_to_fail` (0-based)."""
    original, calls = NLL.__call__, []

    def wrapped(self, energy, x, y, beta):
        loss, stats = original(self, energy, x, y, beta)
        calls.append(None)  # one call per training step: this is step len(calls) - 1
        if len(calls) - 1 == step_to_fail:
            loss, stats = action(loss, stats)
        return loss, stats

    monkeypatch.setattr(NLL, "__call__", wrapped)


def test_sigterm_saves_and_resume_matches_uninterrupted(tmp_path, monkeypatch, uninterrupted):
    def send_sigterm(loss, stats):
        os.kill(os.getpid(), signal.SIGTERM)
        return loss, stats

    fail_at(monkeypatch, 14, send_sigterm)  # received during step 15: saved at 15, before step 16
    with pytest.raises(UserError, match="stopped by SIGTERM at step 15") as err:
        train(make_cfg(*SHORT), tmp_path)
    assert err.value.exit_code == PREEMPTED_EXIT_CODE
    assert json.loads((tmp_path / "metrics.json").read_text())["status"] == "preempted"
    assert torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)["step"] == 15
    monkeypatch.undo()

    metrics = train(make_cfg(*SHORT, "trainer.resume=auto"), tmp_path)
    assert same_metrics(metrics, uninterrupted[1])
    a = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)["model"]
    b = torch.load(uninterrupted[0] / "checkpoints" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    # TensorBoard: every logged step once, in order, across the two sessions
    acc = EventAccumulator(str(tmp_path / "tb"), size_guidance={"scalars": 0})
    acc.Reload()
    assert [s.step for s in acc.Scalars("train/loss")] == list(range(5, 41, 5))


def test_nan_energy_stops_within_the_step(tmp_path, monkeypatch):
    fail_at(monkeypatch, 22, lambda loss, stats: (loss * float("nan"), stats))
    with pytest.raises(UserError, match="training diverged at step 23: loss=nan") as err:
        train(make_cfg(*SHORT), tmp_path)
    assert err.value.exit_code == DIVERGED_EXIT_CODE
    report = json.loads((tmp_path / "divergence.json").read_text())
    assert report["step"] == 23 and report["last_finite"]["step"] == 22 and report["seed"] == 0
    assert json.loads((tmp_path / "metrics.json").read_text())["status"] == "diverged"
    # the last good checkpoint (step 20) is intact and the run can go on from it
    assert torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)["step"] == 20


def test_absurd_energy_counts_as_divergence(tmp_path, monkeypatch):
    fail_at(monkeypatch, 3, lambda loss, stats: (loss, {**stats, "e_pos": stats["e_pos"] * 0 + 1e12}))
    with pytest.raises(UserError, match="e_pos=1e\\+12") as err:
        train(make_cfg(*SHORT), tmp_path)
    assert err.value.exit_code == DIVERGED_EXIT_CODE


def test_resume_falls_back_from_a_broken_last_checkpoint(tmp_path, uninterrupted):
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    good = torch.load(uninterrupted[0] / "checkpoints" / "previous.pt", weights_only=True)
    torch.save(good, folder / "previous.pt")
    cfg = make_cfg(*SHORT)
    from ebm_cli.build import build_dataset, build_energy

    energy = build_energy(cfg.energy, build_dataset(cfg).energy_args())
    opt = torch.optim.Adam(energy.parameters())
    for broken in (b"", (uninterrupted[0] / "checkpoints" / "last.pt").read_bytes()[:500], os.urandom(4096)):
        (folder / "last.pt").write_bytes(broken)
        assert resume(tmp_path, "auto", energy, opt, torch.device("cpu")) == good["step"]
    (folder / "previous.pt").write_bytes(os.urandom(100))
    with pytest.raises(UserError, match="no usable checkpoint"):
        resume(tmp_path, "auto", energy, opt, torch.device("cpu"))


def test_mismatched_architecture_is_named(tmp_path, uninterrupted):
    (tmp_path / "checkpoints").mkdir()
    state = torch.load(uninterrupted[0] / "checkpoints" / "last.pt", weights_only=True)
    torch.save(state, tmp_path / "checkpoints" / "last.pt")
    with pytest.raises(UserError, match="another config .energy.hidden: 64 there, 8 here"):
        train(make_cfg(*SHORT, "energy.hidden=8", "trainer.resume=auto"), tmp_path)


def test_disk_full_while_saving_keeps_the_old_checkpoint(tmp_path, monkeypatch):
    ckpt.save_checkpoint(tmp_path, {"step": 1})

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(UserError, match="No space left on device"):
        ckpt.save_checkpoint(tmp_path, {"step": 2})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]
    assert torch.load(tmp_path / "last.pt", weights_only=True) == {"step": 1}


def test_sigkill_mid_save_leaves_the_old_checkpoint(tmp_path):
    script = textwrap.dedent(f"""
        import os, time, torch
        from ebm_cli.runtime import checkpoint
        from pathlib import Path
        folder = Path({str(tmp_path)!r})
        checkpoint.save_checkpoint(folder, {{"step": 1, "w": torch.ones(1000)}})
        os.fsync = lambda fd: time.sleep(60)   # hold the save open between write and rename
        checkpoint.save_checkpoint(folder, {{"step": 2, "w": torch.zeros(1000)}})
    """)
    proc = subprocess.Popen([sys.executable, "-c", script])
    tmp = tmp_path / ".last.pt.tmp"
    deadline = time.time() + 60
    while not (tmp.exists() and tmp.stat().st_size > 0) and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert tmp.exists()  # the half-done save
    assert torch.load(tmp_path / "last.pt", weights_only=True)["step"] == 1
    ckpt.remove_stale_temporaries(tmp_path)
    assert not tmp.exists()


@pytest.mark.slow
def test_sigkill_mid_run_then_resume_equals_uninterrupted(tmp_path, subprocess_env, uninterrupted):
    run_dir = tmp_path / "run"
    args = SHORT + ["trainer.steps=40", "trainer.ckpt_every=10", f"hydra.run.dir={run_dir}"]
    env = {**subprocess_env}  # bigger batches below: slower steps, so the kill lands between checkpoints
    proc = subprocess.Popen(ebm_run_command() + args + ["trainer.batch_size=512"], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = run_dir / "checkpoints" / "last.pt"
    deadline = time.time() + 120
    while not last.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (run_dir / "metrics.json").exists()
    step = torch.load(last, weights_only=True)["step"]
    assert 10 <= step < 40
    # the same command again is refused (it would overwrite); with resume=auto it continues
    again = subprocess.run(ebm_run_command() + args + ["trainer.batch_size=512"], cwd=tmp_path, env=env,
                           capture_output=True, text=True)
    assert again.returncode == 1 and "trainer.resume=auto" in again.stderr
    done = subprocess.run(ebm_run_command() + args + ["trainer.batch_size=512", "trainer.resume=auto"],
                          cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    resumed = json.loads((run_dir / "metrics.json").read_text())["metrics"]
    reference = train(make_cfg(*SHORT, "trainer.batch_size=512"), tmp_path / "reference")
    assert same_metrics(resumed, reference)


@pytest.mark.slow
def test_sigterm_via_cli_exits_with_the_documented_code(tmp_path, subprocess_env):
    run_dir = tmp_path / "run"
    proc = subprocess.Popen(ebm_run_command() + SHORT + ["trainer.steps=100000", f"hydra.run.dir={run_dir}"],
                            cwd=tmp_path, env=subprocess_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (run_dir / "checkpoints" / "last.pt").exists() and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == PREEMPTED_EXIT_CODE
    assert err.strip().splitlines()[-1].startswith("ebm-run: error: stopped by SIGTERM at step")
    state = json.loads((run_dir / "metrics.json").read_text())
    assert state["status"] == "preempted"
    assert torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["step"] == state["step"]


@pytest.mark.slow
def test_multirun_with_a_failing_job_completes_the_others(tmp_path, subprocess_env):
    """A job that fails while it trains (here: it diverges) fails alone; the sweep exits with 1."""
    sweep = tmp_path / "sweep"
    proc = run_cli(["-m", "debug=smoke", "trainer.max_abs=1e8,1e-6,1e9", f"hydra.sweep.dir={sweep}"], tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].startswith("ebm-run: error: training diverged at step 1")
    statuses = {p.parent.name.split("_")[0]: json.loads(p.read_text())["status"] for p in sweep.glob("*/metrics.json")}
    assert statuses == {"0": "completed", "1": "diverged", "2": "completed"}
    summary = (sweep / "summary.csv").read_text()
    assert "training diverged at step 1" in summary and summary.count("completed") == 2


@pytest.mark.slow
def test_multirun_with_a_bad_value_is_refused_whole(tmp_path, subprocess_env):
    """A value that a job's checks refuse refuses the whole sweep, before its folder exists."""
    sweep = tmp_path / "sweep"
    proc = run_cli(["-m", "debug=smoke", "beta.value=1,-1,2", f"hydra.sweep.dir={sweep}"], tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == ["ebm-run: error: sweep job 1 (debug=smoke beta.value=-1): "
                                                "beta.value=-1.0: must be > 0"]
    assert not sweep.exists()


def test_gpu_out_of_memory_is_reported_as_such():
    exc = torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB\nmore details")
    assert one_line(exc).startswith("GPU out of memory: CUDA out of memory. Tried to allocate 20.00 GiB")


def test_same_seed_same_metrics_other_seed_differs(tmp_path, uninterrupted):
    again = train(make_cfg(*SHORT), tmp_path / "again")
    assert same_metrics(again, uninterrupted[1])
    other = train(make_cfg(*SHORT, "seed=1"), tmp_path / "other")
    assert not same_metrics(other, uninterrupted[1])


def test_a_launchers_own_handler_still_sees_the_signal(tmp_path, monkeypatch):
    """submitit requeues a preempted job from its SIGUSR1 handler: ours saves first, then calls it."""
    seen = []
    previous = signal.signal(signal.SIGUSR1, lambda signum, frame: seen.append(signum))
    try:
        def send_usr1(loss, stats):
            os.kill(os.getpid(), signal.SIGUSR1)
            return loss, stats

        fail_at(monkeypatch, 4, send_usr1)
        with pytest.raises(UserError, match="stopped by SIGUSR1 at step 5"):
            train(make_cfg(*SHORT), tmp_path)
        assert seen == [signal.SIGUSR1]
        assert torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)["step"] == 5
    finally:
        signal.signal(signal.SIGUSR1, previous)
