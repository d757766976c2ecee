"""A multirun of ebm-run: one folder per job, named by its overrides, and a summary. The launchers
that start processes of their own (joblib, submitit) run under the installed script; the basic
launcher and the Optuna sweeper run their jobs in ebm-run's own process, here in-process."""

import csv
import json
import subprocess

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from helpers import ebm_run_command, run_cli


@pytest.mark.slow
def test_six_job_sweep_writes_a_sorted_summary(tmp_path, subprocess_env):
    sweep = tmp_path / "sweep"
    proc = run_cli(["-m", "debug=smoke", "seed=0,1,2", "energy.hidden=32,64", "logger.landscape_every=0",
                    "trainer.eval_every=10", f"hydra.sweep.dir={sweep}"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    printed = " ".join(proc.stdout.split())  # a long sweep path wraps the table's title
    assert "6 jobs, best first by the validation coverage" in printed
    # where the results are, and the one TensorBoard command that shows every job (each a run of its own)
    assert proc.stdout.strip().splitlines()[-2:] == [f"results: {sweep} (summary.csv, one folder per job)",
                                                     f"TensorBoard: tensorboard --logdir {sweep}"]
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir())
    assert [j.name.split("_", 1)[0] for j in jobs] == [str(i) for i in range(6)]
    assert jobs[0].name == "0_debug=smoke,energy.hidden=32,logger.landscape_every=0,seed=0,trainer.eval_every=10"
    with open(sweep / "summary.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 6 and {r["status"] for r in rows} == {"completed"}
    objective = [float(r["objective"]) for r in rows]
    assert objective == sorted(objective, reverse=True)
    # the sweep compares the jobs on their validation splits, never on the test split it reports
    by_job = {j.name: json.loads((j / "metrics.json").read_text()) for j in jobs}
    for r in rows:
        assert r["objective_split"] == "validation"
        assert float(r["objective"]) == pytest.approx(by_job[r["job"]]["best_validation"]["coverage"])
        assert float(r["coverage@0.05"]) == pytest.approx(by_job[r["job"]]["metrics"]["coverage@0.05"])
    for job in jobs:
        record = json.loads((job / "metrics.json").read_text())
        assert "energy.hidden=32" in record["overrides"] or "energy.hidden=64" in record["overrides"]
        acc = EventAccumulator(str(job / "tb"))
        acc.Reload()
        assert "_hparams_/session_start_info" in acc.PluginTagToContent("hparams")


def run_sweep(tmp_path, env, *args, in_process=False):
    sweep = tmp_path / "sweep"
    command = ["-m", "debug=smoke", "logger.landscape_every=0", *args, f"hydra.sweep.dir={sweep}"]
    if in_process:
        proc = run_cli(command, tmp_path)
    else:
        proc = subprocess.run(ebm_run_command() + command, cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=600)
    rows = list(csv.DictReader(open(sweep / "summary.csv", newline=""))) if (sweep / "summary.csv").exists() else []
    return proc, sweep, rows


@pytest.mark.slow
def test_joblib_launcher_runs_jobs_in_parallel_and_reports_failures(tmp_path, subprocess_env):
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
    proc, sweep, rows = run_sweep(tmp_path, subprocess_env, "launcher=joblib", "seed=0,1", "trainer.max_abs=1e8,1e-6")
    assert proc.returncode == 1  # a failed job, even one in another process, fails the sweep
    assert proc.stderr.strip().splitlines()[-1].startswith("ebm-run: error: 2 job(s) failed")
    assert sorted(r["status"] for r in rows) == ["completed", "completed", "diverged", "diverged"]
    assert all(r["error"].startswith("training diverged at step 1") for r in rows if r["status"] == "diverged")


@pytest.mark.slow
def test_submitit_local_launcher(tmp_path, subprocess_env):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    proc, sweep, rows = run_sweep(tmp_path, subprocess_env, "launcher=submitit_local", "seed=0,1")
    assert proc.returncode == 0, proc.stderr
    assert [r["status"] for r in rows] == ["completed", "completed"]
    assert all(json.loads(p.read_text())["status"] == "completed" for p in sweep.glob("*/metrics.json"))


@pytest.mark.slow
def test_optuna_search_with_sqlite_storage(tmp_path, subprocess_env):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    proc, sweep, rows = run_sweep(tmp_path, subprocess_env, "hparams_search=curves_optuna",
                                  "hydra.sweeper.n_trials=3", f"hydra.sweeper.storage={storage}", in_process=True)
    assert proc.returncode == 0, proc.stderr
    assert len(rows) == 3 and all(r["status"] == "completed" for r in rows)
    assert "Best value" in proc.stdout + proc.stderr
    import optuna

    study = optuna.load_study(study_name="curves", storage=storage)
    assert len(study.trials) == 3
    assert max(t.value for t in study.trials) == pytest.approx(max(float(r["objective"]) for r in rows))
    for job in sweep.iterdir():
        if job.is_dir():
            acc = EventAccumulator(str(job / "tb"))
            acc.Reload()
            assert "_hparams_/experiment" in acc.PluginTagToContent("hparams")


@pytest.mark.slow
def test_tensorboard_serves_a_finished_sweep(tmp_path, subprocess_env):
    import shutil
    import socket
    import sys
    import time
    import urllib.request
    from pathlib import Path

    proc, sweep, rows = run_sweep(tmp_path, subprocess_env, "seed=0,1", in_process=True)
    assert proc.returncode == 0, proc.stderr
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    tensorboard = Path(sys.executable).with_name("tensorboard")
    cmd = [str(tensorboard) if tensorboard.exists() else shutil.which("tensorboard"),
           "--logdir", str(sweep), "--host", "127.0.0.1", "--port", str(port), "--load_fast=false"]
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"

    def get(path, data=None):
        req = urllib.request.Request(base + path, data=data, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())

    try:
        runs, deadline = [], time.time() + 90
        while len(runs) < 4 and time.time() < deadline:
            try:
                runs = get("/data/runs")
            except OSError:
                pass
            time.sleep(0.5)
        # each job: its run, and its validation curves as a run of their own (a colour of their own)
        jobs = [d.name for d in sweep.iterdir() if d.is_dir()]
        assert sorted(runs) == sorted([f"{j}/tb" for j in jobs] + [f"{j}/tb/validation" for j in jobs])
        assert any("seed=1" in r for r in runs)  # run names say their overrides
        images = get("/data/plugin/images/tags")
        assert sorted(r for r in images if images[r]) == sorted(f"{j}/tb" for j in jobs)
        assert all("landscape/energy" in tags for tags in images.values() if tags)
        experiment = get("/data/plugin/hparams/experiment", json.dumps({"experimentName": ""}).encode())
        names = {h["name"] for h in experiment["hparamInfos"]}
        assert {"seed", "trainer.lr", "energy.hidden"} <= names
        assert "metrics/coverage@0.05" in {m["name"]["tag"] for m in experiment["metricInfos"]}
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_a_job_without_a_validation_split_is_compared_by_its_test_metric(tmp_path):
    """trainer.eval_every=0 (or a run that ended before its first evaluation): the test metric, said so."""
    from ebm_cli.runtime.summary import summarise

    validated = {"status": "completed", "evaluated_step": 100, "best_validation": {"step": 100, "coverage": 0.7}}
    for job, record in {
        "0_a": {**validated, "metrics": {"coverage@0.05": 0.9}},
        "1_b": {"status": "completed", "metrics": {"coverage@0.05": 0.5}, "best_validation": {"step": None, "coverage": None}},
        "2_c": {"status": "completed", "metrics": {"coverage@0.05": 0.8}},
        "3_d": {**validated, "evaluated_step": 300, "metrics": {"coverage@0.05": 0.95}},  # keep=last: not the best's
        "4_e": {"status": "diverged", "error": "training diverged at step 3"},
        "5_f": {**validated, "best_validation": {"step": 100, "coverage": 0.6}, "metrics": {"coverage@0.05": 0.99}},
    }.items():
        (tmp_path / job).mkdir()
        (tmp_path / job / "metrics.json").write_text(json.dumps(record))
    rows = summarise(tmp_path, "coverage", "maximize")
    assert [(r["job"], r["objective"], r["objective_split"]) for r in rows] == [
        ("0_a", 0.7, "validation"), ("5_f", 0.6, "validation"),  # compared on validation, first
        ("3_d", 0.95, "test"), ("2_c", 0.8, "test"), ("1_b", 0.5, "test"), ("4_e", None, None)]

