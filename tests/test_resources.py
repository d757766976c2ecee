"""Resources that fail under a run, for real: a full disk (a small tmpfs), a folder that turns read-only
(a read-only bind mount) or is removed mid-run, a removed working directory, and a joblib sweep whose
parent process is stopped or killed.

Each ends in one line naming the path (or the signal), a non-zero exit, no traceback from any thread,
no half-written file, and the last good checkpoint intact. Mounting needs root (as in CI's
container); elsewhere those tests skip.
"""

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from ebm_cli.runtime.checkpoint import load_checkpoint
from helpers import ebm_run_command, run_cli

# The default preset, shortened: every writer (checkpoints, best.pt, TensorBoard, figures, metrics.json)
QUICK = ["trainer.steps=300", "trainer.eval_every=100"]
# A run that goes on until the test interrupts it (no early stop), a checkpoint every 100 steps.
LONG = ["trainer.steps=100000", "trainer.patience=0", "trainer.ckpt_every=100", "trainer.eval_every=100"]


def _mount(*args) -> bool:
    return subprocess.run(["mount", *map(str, args)], capture_output=True).returncode == 0


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs at tmp_path/disk (unmounted afterwards); skips where mounting is not allowed."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0 or not _mount("-t", "tmpfs", "-o", "size=1m", "tmpfs", disk):
        pytest.skip("mounting a tmpfs needs root")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def fill(disk: Path, leave_kib: int) -> None:
    """Fill the disk so that about leave_kib KiB stay free."""
    (disk / "filler").unlink(missing_ok=True)
    stat = os.statvfs(disk)
    free = stat.f_bavail * stat.f_frsize
    with open(disk / "filler", "wb") as fh:
        fh.write(b"\0" * max(0, free - leave_kib * 1024))


def assert_clean_failure(run_dir: Path, code: int, out: str, err: str, reason: str) -> str:
    """One line, this reason, no traceback, no temporary file left, every checkpoint loadable; the line."""
    lines = err.strip().splitlines()
    assert code == 1, (code, err)
    assert len(lines) == 1 and lines[0].startswith("ebm-run: error: cannot write ") and lines[0].endswith(reason), err
    assert "Traceback" not in out + err and "Logging error" not in out + err
    if run_dir.exists():
        assert not [p for p in run_dir.rglob("*.tmp")], "a half-written file was left"
        for checkpoint in run_dir.glob("checkpoints/*.pt"):
            load_checkpoint(checkpoint)  # raises if it is not a whole checkpoint
        if (run_dir / "metrics.json").exists():
            assert json.loads((run_dir / "metrics.json").read_text())["status"] in ("failed", "completed")
    return lines[0]


def test_a_full_disk_at_any_moment_is_one_line_and_leaves_nothing_half_written(small_disk):
    """The same run with less and less free space: it fails at start, at a checkpoint, at best.pt,
    in TensorBoard's writer thread, at the figures, or completes; never a traceback. (Which writer
    meets the full disk first between two checkpoints moves with the libraries' file sizes and the
    writer thread's timing; TensorBoard's own failure is pinned down by the test below.)"""
    run_dir = small_disk / "run"
    failed_in = {}
    for leave_kib in (0, 40, 120, 240, 280, 320, 360, 600):
        for old in small_disk.iterdir():
            if old.name != "filler":
                subprocess.run(["rm", "-rf", str(old)], check=True)
        fill(small_disk, leave_kib)
        result = run_cli([*QUICK, f"hydra.run.dir={run_dir}"], small_disk.parent)
        if result.returncode == 0:
            assert json.loads((run_dir / "metrics.json").read_text())["status"] == "completed"
            failed_in[leave_kib] = "completed"
            continue
        line = assert_clean_failure(run_dir, result.returncode, result.stdout, result.stderr, "No space left on device")
        assert str(small_disk) in line  # names the path it could not write
        failed_in[leave_kib] = "checkpoint" if "checkpoint" in line else "TensorBoard" if "TensorBoard" in line else "other"
    assert {"checkpoint", "other"} <= set(failed_in.values()), failed_in


def test_tensorboards_writer_thread_on_a_full_disk_is_one_line_and_no_thread_traceback(small_disk, capfd):
    """SummaryWriter writes from a background thread: the disk's refusal there comes back on the
    next call (or at close) as one UserError naming tb/, and the thread prints no traceback."""
    from ebm_cli.errors import UserError
    from ebm_cli.runtime.tb import TBLogger

    fill(small_disk, 8)  # room for the events file's header, not for 2000 steps of scalars
    tb = TBLogger(small_disk / "tb")
    with pytest.raises(UserError) as refused:
        for step in range(1, 2001):
            tb.scalars({"loss": 1.0 / step, "grad_norm": float(step)}, step, "Training/")
        tb.close()
    assert str(refused.value) == f"cannot write TensorBoard events in {small_disk / 'tb'}: No space left on device"
    tb.scalars({"loss": 1.0}, 2002)  # the writer is dropped: later calls do nothing
    tb.close()
    out, err = capfd.readouterr()
    assert "Traceback" not in out + err and "Exception in thread" not in out + err


def _interrupt_mid_run(tmp_path, env, run_dir: Path, fault) -> subprocess.CompletedProcess:
    """ebm-run on LONG until its first checkpoint is on disk, then fault(run_dir); its result."""
    proc = subprocess.Popen([*ebm_run_command(), *LONG, f"hydra.run.dir={run_dir}"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (run_dir / "checkpoints" / "last.pt").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    fault(run_dir)
    try:
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_a_run_folder_made_read_only_mid_run_is_one_line_and_keeps_its_checkpoint(tmp_path, subprocess_env):
    """A bind mount of the run folder made read-only under the running process: every new write of
    the run is refused by the kernel (EROFS), as on a disk remounted read-only."""
    if os.geteuid() != 0:
        pytest.skip("a read-only bind mount needs root")
    run_dir = tmp_path / "run"
    mounted = []

    def read_only(folder):
        if _mount("--bind", folder, folder):
            mounted.append(folder)
            assert _mount("-o", "remount,ro,bind", folder)

    try:
        result = _interrupt_mid_run(tmp_path, subprocess_env, run_dir, read_only)
    finally:
        for folder in mounted:
            subprocess.run(["umount", "-l", str(folder)], capture_output=True)
    if not mounted:
        pytest.skip("bind mounts are not allowed here")
    line = assert_clean_failure(run_dir, result.returncode, result.stdout, result.stderr, "Read-only file system")
    assert str(run_dir) in line
    assert load_checkpoint(run_dir / "checkpoints" / "last.pt")["step"] >= 100


@pytest.mark.parametrize("removed", ["run folder", "tb"])
def test_a_folder_removed_mid_run_is_one_line_and_not_made_again(tmp_path, subprocess_env, removed):
    run_dir = tmp_path / "run"
    target = run_dir if removed == "run folder" else run_dir / "tb"

    def remove(folder):
        subprocess.run(["rm", "-rf", str(target)], check=True)

    result = _interrupt_mid_run(tmp_path, subprocess_env, run_dir, remove)
    line = assert_clean_failure(run_dir, result.returncode, result.stdout, result.stderr, "No such file or directory")
    assert str(run_dir) in line
    assert not target.exists()  # the run did not quietly make it again


def test_a_removed_working_directory_is_one_line(tmp_path, subprocess_env):
    gone = tmp_path / "gone"
    gone.mkdir()
    command = " ".join(ebm_run_command())
    proc = subprocess.run(["bash", "-c", f'cd "{gone}" && rmdir "{gone}" && exec {command} trainer.steps=10'],
                          env=subprocess_env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "ebm-run: error: the working directory was removed; cd into an existing folder and run again"]


def _children(pid: int):
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [int(p) for p in found]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = Path(f"/proc/{pid}/stat")
    return not (state.exists() and state.read_text().split(") ")[-1].startswith("Z"))  # a zombie has ended


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_a_joblib_sweep_whose_parent_stops_stops_its_workers_at_a_saved_step(tmp_path, subprocess_env, stop):
    """The sweep's parent signalled (or killed outright): no worker goes on training or writing;
    each job saved a checkpoint at its step and says preempted in its metrics.json."""
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
    sweep = tmp_path / "sweep"
    proc = subprocess.Popen([*ebm_run_command(), "-m", "launcher=joblib", *LONG, "seed=0,1", f"hydra.sweep.dir={sweep}"],
                            cwd=tmp_path, env=subprocess_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 180
    while len(list(sweep.glob("*/checkpoints/last.pt"))) < 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    workers = _children(proc.pid)
    os.kill(proc.pid, stop)
    _, err = proc.communicate(timeout=120)
    if stop == signal.SIGTERM:
        assert proc.returncode == 75, err
        assert err.strip().splitlines()[-1].startswith("ebm-run: error: stopped by SIGTERM")
    deadline = time.monotonic() + 30  # a killed parent's workers notice within a second or so
    while any(_alive(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_alive(w) for w in workers), "a worker outlived its sweep"
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir())
    assert len(jobs) == 2
    for job in jobs:
        record = json.loads((job / "metrics.json").read_text())
        assert record["status"] == "preempted", record
        assert load_checkpoint(job / "checkpoints" / "last.pt")["step"] == record["step"]
        sizes = {p: p.stat().st_size for p in job.rglob("*") if p.is_file()}
        time.sleep(1.5)
        assert sizes == {p: p.stat().st_size for p in job.rglob("*") if p.is_file()}, "something still writes"
