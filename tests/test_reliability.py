"""Faults injected for real: kills, signals, NaN energies, broken files, a full disk.

Each checks the exit code or error, the message, that the last good checkpoint still loads,
and that a resumed run ends exactly where an uninterrupted one does.
"""

import errno
import json
import os
import re
import shlex
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
from helpers import ebm_run_command, make_cfg, run_cli, sigterm_at_call

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
    assert [s.step for s in acc.Scalars("Training/loss")] == list(range(5, 41, 5))


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
    from ebm_cli.build import build_dataset, build_energy, run_energy_args

    energy = build_energy(cfg.energy, run_energy_args(cfg, build_dataset(cfg)))
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
@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_a_signal_via_cli_exits_with_the_documented_code(tmp_path, subprocess_env, sig):
    run_dir = tmp_path / "run"
    proc = subprocess.Popen(ebm_run_command() + SHORT + ["trainer.steps=100000", f"hydra.run.dir={run_dir}"],
                            cwd=tmp_path, env=subprocess_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (run_dir / "checkpoints" / "last.pt").exists() and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(getattr(signal, sig))
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == PREEMPTED_EXIT_CODE
    assert err.strip().splitlines()[-1].startswith(f"ebm-run: error: stopped by {sig} at step")
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


def test_last_checkpoint_is_never_absent_while_a_save_replaces_it(tmp_path):
    """A reader polling last.pt (another task, a sync tool) never finds it missing while saves replace
    it, and always reads a whole checkpoint."""
    import threading

    folder = tmp_path / "checkpoints"
    state = {"model": {"w": torch.zeros(256, 256)}, "config": "", "meta": {}, "step": 0}
    ckpt.save_checkpoint(folder, state)
    missing, steps, done = [], set(), threading.Event()

    def poll():
        while not done.is_set():
            if not (folder / "last.pt").exists():
                missing.append(1)
            else:
                try:
                    steps.add(ckpt.load_checkpoint(folder / "last.pt")["step"])
                except UserError:  # the file is read while a rename lands: still never a torn write
                    pass

    reader = threading.Thread(target=poll)
    reader.start()
    for step in range(1, 41):
        ckpt.save_checkpoint(folder, {**state, "step": step})
    done.set()
    reader.join()
    assert not missing and len(steps) > 1
    assert torch.load(folder / "previous.pt", weights_only=True)["step"] == 39


def test_a_kill_between_the_renames_leaves_a_loadable_last_checkpoint(tmp_path, monkeypatch):
    """The process dies after previous.pt is in place and before the new last.pt is: last.pt is the
    old one, whole, and task=infer reads it."""
    folder = tmp_path / "checkpoints"
    state = {"model": {"w": torch.ones(3)}, "config": "", "meta": {}, "step": 10}
    ckpt.save_checkpoint(folder, state)
    real_replace, calls = os.replace, []

    def dying_replace(src, dst):
        calls.append(str(dst))
        if str(dst).endswith("last.pt"):
            raise KeyboardInterrupt  # the kill, at the last rename
        return real_replace(src, dst)

    monkeypatch.setattr(ckpt.os, "replace", dying_replace)
    with pytest.raises(KeyboardInterrupt):
        ckpt.save_checkpoint(folder, {**state, "step": 20})
    monkeypatch.undo()
    assert ckpt.load_checkpoint(folder / "last.pt")["step"] == 10
    assert ckpt.load_checkpoint(folder / "previous.pt")["step"] == 10
    assert ckpt.find_checkpoint(tmp_path) == folder / "last.pt"


@pytest.mark.parametrize("case", ["nan_weights", "nan_input", "inf_input"])
def test_non_finite_weights_or_inputs_are_refused_not_served(smoke_run, tmp_path, case):
    """A checkpoint with NaN weights, or x=[nan] / x=[inf]: one line and exit 1, not an empty table."""
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(smoke_run[0], run_dir)
    x = {"nan_input": "x=[0.1,nan]", "inf_input": "x=[inf]"}.get(case, "x=[0.1]")
    if case == "nan_weights":
        for path in (run_dir / "checkpoints").glob("*.pt"):
            state = torch.load(path, weights_only=True)
            name = next(iter(state["model"]))
            state["model"][name] = torch.full_like(state["model"][name], float("nan"))
            torch.save(state, path)
    result = run_cli(["task=infer", f"run_dir={run_dir}", x, f"hydra.run.dir={tmp_path / 'out'}"], tmp_path)
    assert result.returncode == 1 and not (tmp_path / "out").exists()
    expected = "non-finite weights in" if case == "nan_weights" else "inputs must be finite numbers"
    assert result.stderr.count("\n") == 1 and expected in result.stderr


@pytest.mark.parametrize("kind", ["run", "sweep", "resume"])
def test_two_commands_into_one_folder_at_the_same_instant_one_runs_one_is_refused(tmp_path, subprocess_env,
                                                                                  monkeypatch, kind):
    """Two runs, two sweeps, or two trainer.resume=auto of one interrupted run, started together:
    both pass the checks (the folder does not exist yet, or holds the run to continue); the folder's
    lock lets one write, the other gets one line and writes nothing."""
    folder = tmp_path / kind
    args = ["debug=smoke", "logger.progress=false"]
    if kind == "resume":  # a run stopped at step 14, its checkpoint at 10
        sigterm_at_call(monkeypatch, NLL, 15)
        args = [*SHORT, "logger.progress=false", "trainer.eval_every=0"]
        assert run_cli([*args, f"hydra.run.dir={folder}"], tmp_path).returncode == PREEMPTED_EXIT_CODE
        monkeypatch.undo()
        args.append("trainer.resume=auto")
    where = [f"hydra.sweep.dir={folder}", "seed=0,1"] if kind == "sweep" else [f"hydra.run.dir={folder}"]
    procs = [subprocess.Popen(ebm_run_command() + ["-m"] * (kind == "sweep") + args + where, cwd=tmp_path, env=subprocess_env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 1], results
    refused = next(err for code, err in results if code == 1)
    assert len(refused.strip().splitlines()) == 1 and refused.startswith("ebm-run: error: "), refused
    assert "another ebm-run (pid" in refused or "holds an earlier sweep" in refused or "already holds a finished" in refused
    runs = sorted(folder.glob("*/metrics.json")) if kind == "sweep" else [folder / "metrics.json"]
    assert len(runs) == (2 if kind == "sweep" else 1)
    for record in runs:
        assert json.loads(record.read_text())["status"] == "completed"
        assert len(list((record.parent / "tb").glob("events.out.tfevents.*"))) == (2 if kind == "resume" else 1)
    if kind == "resume":  # TensorBoard has each step once: the resumed writer purged what followed step 10
        events = EventAccumulator(str(folder / "tb")).Reload()
        steps = [e.step for e in events.Scalars("Training/loss")]
        assert len(steps) == len(set(steps)) and max(steps) == 40


def test_a_held_folder_refuses_a_second_writer(tmp_path):
    from ebm_cli.runtime import folder_lock

    folder = tmp_path / "run"
    code = ("import sys, time; from ebm_cli.runtime.folder_lock import hold; hold(sys.argv[1]); "
            "print('held', flush=True); time.sleep(30)")
    holder = subprocess.Popen([sys.executable, "-c", code, str(folder)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(UserError, match=f"another ebm-run \\(pid {holder.pid}\\) is writing to this run folder"):
            folder_lock.hold(folder)
    finally:
        holder.kill()
        holder.wait()
    folder_lock.hold(folder)  # released by the kernel when its holder died, even by SIGKILL
    folder_lock.release_all()


@pytest.mark.parametrize("damage", ["both_corrupt", "no_rng", "last_is_a_folder", "optimizer_shape", "nan_weights",
                                    "nan_moments", "negative_step", "unexpected_weight"])
def test_a_refused_resume_changes_nothing_and_the_run_stays_resumable(tmp_path, damage):
    """trainer.resume=auto on a folder whose checkpoints cannot continue it: one line, exit 1, no
    metrics.json written; once a good checkpoint is back, the same command resumes."""
    run_dir = tmp_path / "run"
    args = [*SHORT, "trainer.steps=20", "logger.progress=false", f"hydra.run.dir={run_dir}"]
    first = run_cli(args, tmp_path)
    assert first.returncode == 0, first.stderr
    (run_dir / "metrics.json").unlink()  # as if preempted after its last checkpoint
    folder = run_dir / "checkpoints"
    for name in ("best.pt",):
        (folder / name).unlink(missing_ok=True)
    good = {name: (folder / name).read_bytes() for name in ("last.pt", "previous.pt")}
    if damage == "both_corrupt":
        for name in good:
            (folder / name).write_bytes(os.urandom(512))
    elif damage in ("no_rng", "optimizer_shape", "nan_weights", "nan_moments", "negative_step", "unexpected_weight"):
        for name in good:
            state = torch.load(folder / name, weights_only=True)
            moments = state["optimizer"]["state"][0]
            if damage == "no_rng":
                del state["rng"]
            elif damage == "optimizer_shape":  # another run's moments: a parameter's, of another shape
                moments["exp_avg"] = moments["exp_avg"].flatten()[:3].clone()
            elif damage == "nan_moments":
                moments["exp_avg_sq"] = torch.full_like(moments["exp_avg_sq"], float("nan"))
            elif damage == "negative_step":
                state["step"] = -5
            elif damage == "unexpected_weight":
                state["model"]["extra"] = torch.zeros(1)
            else:
                for key in ("model", "train_model"):
                    weights = state.get(key, {})
                    for weight in [k for k, v in weights.items() if v.is_floating_point()][:1]:
                        weights[weight] = torch.full_like(weights[weight], float("inf"))
            torch.save(state, folder / name)
    else:
        (folder / "last.pt").unlink()
        (folder / "last.pt").mkdir()
        (folder / "previous.pt").write_bytes(os.urandom(512))
    before = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    refused = run_cli([*args, "trainer.resume=auto"], tmp_path)
    assert refused.returncode == 1 and refused.stderr.count("\n") == 1, refused.stderr
    assert "trainer.resume=auto" in refused.stderr
    said = {"optimizer_shape": "has shape (3,), the parameter", "nan_weights": "non-finite weights in",
            "nan_moments": "non-finite values in the optimiser's exp_avg_sq of",
            "negative_step": "its step -5 is not a count of steps",
            "unexpected_weight": 'Unexpected key(s) in state_dict: "extra"'}.get(damage, "")
    assert said in refused.stderr, refused.stderr
    assert {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()} == before  # nothing written
    if (folder / "last.pt").is_dir():
        (folder / "last.pt").rmdir()
    for name, data in good.items():
        (folder / name).write_bytes(data)
    again = run_cli([*args, "trainer.resume=auto"], tmp_path)
    assert again.returncode == 0, again.stderr
    assert json.loads((run_dir / "metrics.json").read_text())["status"] == "completed"


def test_sighup_of_a_closed_session_saves_a_checkpoint_like_sigterm(tmp_path, monkeypatch):
    """A closed SSH session sends SIGHUP: the run saves at its step and can be resumed."""
    fail_at(monkeypatch, 9, lambda loss, stats: (os.kill(os.getpid(), signal.SIGHUP), (loss, stats))[1])
    with pytest.raises(UserError, match="stopped by SIGHUP at step 10") as err:
        train(make_cfg(*SHORT), tmp_path)
    assert err.value.exit_code == PREEMPTED_EXIT_CODE
    assert json.loads((tmp_path / "metrics.json").read_text())["status"] == "preempted"
    assert torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)["step"] == 10


def test_a_stop_in_training_says_the_command_that_continues_it(tmp_path, monkeypatch):
    """SIGTERM in a step: the one line gives the whole command (--config-dir, the overrides as typed,
    trainer.resume=auto, the folder); run as said, it finishes the run."""
    from ebm_cli.losses.nll import NLL

    conf = tmp_path / "conf" / "optimizer"
    conf.mkdir(parents=True)
    (conf / "slow.yaml").write_text("_target_: torch.optim.SGD\n_partial_: true\nlr: 0.01\nmomentum: 0.9\n")
    sigterm_at_call(monkeypatch, NLL, 15)
    run_dir = tmp_path / "my run,seed=1"  # a space and Hydra's own separators: the command is quoted for both
    args = [f"--config-dir={tmp_path / 'conf'}", *SHORT, "optimizer=slow", "logger.progress=false",
            "trainer.eval_every=0", f"hydra.run.dir='{run_dir}'"]
    stopped = run_cli(args, tmp_path)
    assert stopped.returncode == PREEMPTED_EXIT_CODE, stopped.stderr
    [line] = stopped.stderr.strip().splitlines()
    said = "ebm-run: error: stopped by SIGTERM at step 14; checkpoint saved, continue with: "
    assert line.startswith(said), line
    command = shlex.split(line[len(said):])
    assert command == ["ebm-run", *args[:-1], "trainer.resume=auto", f"hydra.run.dir='{run_dir}'"]
    monkeypatch.undo()
    done = run_cli(command[1:], tmp_path)
    assert done.returncode == 0, done.stderr
    record = json.loads((run_dir / "metrics.json").read_text())
    assert record["status"] == "completed" and record["step"] == 40


def test_resume_without_a_folder_names_the_interrupted_runs_instead_of_starting_afresh(tmp_path):
    args = [*SHORT, "logger.progress=false", "trainer.eval_every=0"]
    assert run_cli(args, tmp_path).returncode == 0
    [first] = (tmp_path / "outputs").glob("*/*")
    record = json.loads((first / "metrics.json").read_text())
    (first / "metrics.json").write_text(json.dumps({**record, "status": "preempted"}))  # as a stop leaves it
    folders = set((tmp_path / "outputs").glob("*/*"))
    refused = run_cli([*args, "trainer.resume=auto"], tmp_path)
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines() == [
        "ebm-run: error: trainer.resume=auto continues the run in hydra.run.dir, and none was given (this "
        "command's own folder would be new and empty): add hydra.run.dir=<the run's folder>; interrupted runs, "
        f"latest first: outputs/{first.parent.name}/{first.name} (these overrides)"]
    assert set((tmp_path / "outputs").glob("*/*")) == folders  # no new folder
    assert run_cli([*args, "trainer.resume=auto", f"hydra.run.dir={first}"], tmp_path).returncode == 0


def test_sigterm_during_the_final_evaluation_is_one_line_and_the_run_resumes(tmp_path, monkeypatch):
    """A signal outside the training steps (here while the test metrics are computed): exit 75, one
    line, metrics.json "preempted"; the same command with trainer.resume=auto then finishes."""
    from ebm_cli.tasks import train as train_module

    real = train_module.evaluate_model
    calls = []

    def evaluate_then_sigterm(model, inference, data, device):
        calls.append(data)
        if not getattr(data, "validation_split", False):  # the final evaluation on the test inputs
            os.kill(os.getpid(), signal.SIGTERM)
        return real(model, inference, data, device)

    monkeypatch.setattr(train_module, "evaluate_model", evaluate_then_sigterm)
    run_dir = tmp_path / "run"
    args = [*SHORT, "logger.progress=false", f"hydra.run.dir={run_dir}"]
    stopped = run_cli(args, tmp_path)
    assert stopped.returncode == PREEMPTED_EXIT_CODE, stopped.stderr
    [line] = stopped.stderr.strip().splitlines()
    said = ("ebm-run: error: stopped by SIGTERM outside the training steps; what was saved is kept, and a run "
            "continues from its last checkpoint with: ")
    assert line.startswith(said), line
    command = shlex.split(line[len(said):])  # the exact command, typed as said
    assert command == ["ebm-run", *args[:-1], "trainer.resume=auto", f"hydra.run.dir='{run_dir}'"]
    assert json.loads((run_dir / "metrics.json").read_text())["status"] == "preempted"
    monkeypatch.undo()
    done = run_cli(command[1:], tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads((run_dir / "metrics.json").read_text())["status"] == "completed"


# Where a signal can reach a training command, and the object whose call sends it there.
SIGNAL_PHASES = {
    "the start-up checks": ("ebm_cli.tasks.checks", "check_first_step"),
    "building the run": ("ebm_cli.tasks.train", "prepare"),
    "a training step": ("ebm_cli.losses.nll.NLL", "__call__"),
    "the final evaluation": ("ebm_cli.tasks.train", "evaluate_model"),
    "the figures": ("ebm_cli.tasks.train", "save_figures"),
}


@pytest.mark.parametrize("phase", list(SIGNAL_PHASES))
@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT", "SIGHUP", "SIGUSR1"])
def test_every_stop_signal_at_every_phase_is_one_line_and_the_run_continues(tmp_path, monkeypatch, sig, phase):
    """A real signal to this process at each phase of `ebm-run`: exit 75 and one line; before the
    folder exists nothing is written, afterwards metrics.json says "preempted", and the command the
    line gives finishes the run (a checkpoint where there was a step to save)."""
    import importlib

    where, name = SIGNAL_PHASES[phase]
    module_name, _, class_name = where.rpartition(".") if where.endswith("NLL") else (where, "", "")
    owner = getattr(importlib.import_module(module_name), class_name) if class_name else importlib.import_module(where)
    real, calls = getattr(owner, name), []

    def signalled(*args, **kwargs):
        calls.append(None)
        if len(calls) == (12 if phase == "a training step" else 1):
            os.kill(os.getpid(), getattr(signal, sig))
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, signalled)
    run_dir = tmp_path / "run"
    args = [*SHORT, "logger.progress=false", "trainer.eval_every=0", f"hydra.run.dir={run_dir}"]
    stopped = run_cli(args, tmp_path)
    monkeypatch.undo()
    assert calls, f"{where}.{name} was not called"
    assert stopped.returncode == PREEMPTED_EXIT_CODE, stopped.stderr
    [line] = stopped.stderr.strip().splitlines()
    assert "Traceback" not in stopped.stdout + stopped.stderr
    if phase == "the start-up checks":
        assert line == f"ebm-run: error: stopped by {sig} before anything was written; run the same command again"
        assert not run_dir.exists()
        return
    said = "at step 11; checkpoint saved" if phase == "a training step" else "outside the training steps"
    assert line.startswith(f"ebm-run: error: stopped by {sig} {said}"), line
    assert json.loads((run_dir / "metrics.json").read_text())["status"] == "preempted"
    command = shlex.split(line.split("continue with: " if "continue with: " in line else "with: ", 1)[1])
    done = run_cli(command[1:], tmp_path)
    assert done.returncode == 0, done.stderr
    record = json.loads((run_dir / "metrics.json").read_text())
    assert record["status"] == "completed" and record["step"] == 40


def test_a_signal_stops_a_sweep_whole_and_says_how_its_job_continues(tmp_path, monkeypatch):
    """`ebm-run -m` (the basic launcher, jobs in this process): a SIGINT in the first job's steps
    saves it and starts no later job (one Ctrl-C, not one per job); the line's command finishes it."""
    calls = []
    real = NLL.__call__

    def call(self, *args):
        calls.append(None)
        if len(calls) == 12:
            os.kill(os.getpid(), signal.SIGINT)
        return real(self, *args)

    monkeypatch.setattr(NLL, "__call__", call)
    sweep = tmp_path / "sweep"
    stopped = run_cli(["-m", *SHORT, "logger.progress=false", "trainer.eval_every=0", "seed=0,1,2",
                       f"hydra.sweep.dir={sweep}"], tmp_path)
    monkeypatch.undo()
    assert stopped.returncode == PREEMPTED_EXIT_CODE, stopped.stderr
    [line] = stopped.stderr.strip().splitlines()
    said = re.match(r"ebm-run: error: sweep stopped, its later jobs not started: stopped by SIGINT at step \d+; "
                    r"checkpoint saved, continue with: ", line)
    assert said, line
    [job] = [p for p in sweep.iterdir() if p.is_dir()]  # no later job began
    assert job.name.startswith("0_") and "seed=0" in job.name
    assert json.loads((job / "metrics.json").read_text())["status"] == "preempted"
    command = shlex.split(line[said.end():])
    assert "seed=0" in command and f"hydra.run.dir='{job}'" in command and "-m" not in command
    done = run_cli(command[1:], tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads((job / "metrics.json").read_text())["step"] == 40


def test_a_second_ctrl_c_stops_at_once_and_the_run_continues_from_its_last_checkpoint(tmp_path, monkeypatch):
    """Two SIGINTs within one step: no wait for the step's end; one line; the last periodic
    checkpoint is kept and the line's command finishes the run."""
    real, calls = NLL.__call__, []

    def call(self, *args):
        calls.append(None)
        if len(calls) == 25:
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)
        return real(self, *args)

    monkeypatch.setattr(NLL, "__call__", call)
    run_dir = tmp_path / "run"
    stopped = run_cli([*SHORT, "logger.progress=false", "trainer.eval_every=0", f"hydra.run.dir={run_dir}"], tmp_path)
    monkeypatch.undo()
    assert stopped.returncode == PREEMPTED_EXIT_CODE, stopped.stderr
    [line] = stopped.stderr.strip().splitlines()
    said = ("ebm-run: error: stopped at once by a second SIGINT; the last checkpoint is kept, and the run continues "
            "from it with: ")
    assert line.startswith(said), line
    assert torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["step"] == 20
    assert json.loads((run_dir / "metrics.json").read_text())["status"] == "preempted"
    done = run_cli(shlex.split(line[len(said):])[1:], tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads((run_dir / "metrics.json").read_text())["status"] == "completed"


@pytest.mark.parametrize("task", ["infer", "landscape"])
def test_a_signal_during_a_task_that_reads_a_run_is_one_line_and_the_run_is_untouched(smoke_run, tmp_path, monkeypatch,
                                                                                     task):
    """task=infer / landscape stopped by a signal: exit 75, one line saying to run it again into a new
    folder (there is no checkpoint of its own to continue); the run it read is not changed."""
    from ebm_cli.tasks import infer as infer_module

    run_dir = smoke_run[0]
    before = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    name = "write_candidates" if task == "infer" else "save_figures"
    real = getattr(infer_module, name)

    def signalled(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGUSR1)
        return real(*args, **kwargs)

    monkeypatch.setattr(infer_module, name, signalled)
    out = tmp_path / "out"
    stopped = run_cli([f"task={task}", f"run_dir={run_dir}", "x=[0.1]", f"hydra.run.dir={out}"], tmp_path)
    monkeypatch.undo()
    assert stopped.returncode == PREEMPTED_EXIT_CODE, stopped.stderr
    assert stopped.stderr.strip().splitlines() == [
        f"ebm-run: error: stopped by SIGUSR1 during task={task}, before it finished; run it again into a new folder "
        "(this one is left incomplete)"]
    assert {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()} == before
    again = run_cli([f"task={task}", f"run_dir={run_dir}", "x=[0.1]", f"hydra.run.dir={tmp_path / 'again'}"], tmp_path)
    assert again.returncode == 0, again.stderr
