"""`ebm-run task=bench`: the tiny bench runs every case with its checks, writes bench.json and
bench_env.json, runs without its peers, and refuses a bad setting before writing anything."""

import json
import subprocess
import sys

import pytest
import torch

from ebm_cli.bench import run_bench
from ebm_cli.bench.settings import bench_settings
from ebm_cli.errors import UserError
from ebm_cli.schema import BENCH_CASES
from helpers import ebm_run_command, make_cfg, run_cli

ROW_KEYS = {"case", "size", "ours", "peer", "ours_s", "peer_s", "ratio", "check"}
ROW_CASES = {"langevin", "gradient", "chain_logz", "chain_viterbi", "free_energy", "cd_step", "time_to_quality"}


def tiny(*overrides):
    return make_cfg("task=bench", "task.size=tiny", "trainer.device=cpu", *overrides)


def read_rows(run_dir):
    rows = json.loads((run_dir / "bench.json").read_text())
    assert isinstance(rows, list) and rows
    for r in rows:
        assert ROW_KEYS <= set(r), r
        assert r["check"] in ("passed", "skipped"), r
    return rows


def test_tiny_bench_runs_every_case_and_passes_its_checks(tmp_path):
    rows = run_bench(tiny(), tmp_path)
    assert read_rows(tmp_path) == rows
    assert {r["case"] for r in rows} == ROW_CASES
    for r in rows:
        if r["check"] == "passed":
            assert r["ours_s"] > 0 and r["peer_s"] > 0 and r["ratio"] == pytest.approx(r["peer_s"] / r["ours_s"])
    peers = {r["peer"] for r in rows}
    assert "eager loop" in peers and "per-row loop" in peers
    env = json.loads((tmp_path / "bench_env.json").read_text())
    assert env["device"].startswith("cpu") and env["versions"]["torch"] == torch.__version__
    assert env["size"] == "tiny" and env["cases"] == list(BENCH_CASES)
    assert (tmp_path / "time_to_quality" / "metrics.json").is_file()  # ours: a real ebm-run training run


def test_contention_runs_each_case_again_beside_a_busy_neighbour(tmp_path, monkeypatch):
    """task.contention=true: every row gains the *_busy columns, measured while the neighbour process
    was running (it is seen running during the case, and gone afterwards)."""
    from ebm_cli.bench import chain
    from ebm_cli.bench.neighbour import Neighbour

    seen, original = [], chain.run

    def watched(*a, **k):
        alive = [n for n in Neighbour.started if n.running]
        seen.append(len(alive))
        return original(*a, **k)

    started, enter = [], Neighbour.__enter__
    monkeypatch.setattr(Neighbour, "started", started, raising=False)
    monkeypatch.setattr(Neighbour, "__enter__", lambda self: started.append(self) or enter(self))
    monkeypatch.setattr(chain, "run", watched)
    rows = run_bench(tiny("task.cases=[chain,time_to_quality]", "task.contention=true"), tmp_path)
    assert seen == [0, 1]  # idle, then beside the neighbour
    assert not any(n.running for n in started)
    for r in read_rows(tmp_path):
        assert {"ours_s_busy", "peer_s_busy", "ratio_busy"} <= set(r)
        if r["check"] == "passed":
            assert r["ours_s_busy"] > 0 and r["ratio_busy"] == pytest.approx(r["peer_s_busy"] / r["ours_s_busy"])
    assert (tmp_path / "beside_neighbour" / "time_to_quality" / "metrics.json").is_file()
    assert json.loads((tmp_path / "bench_env.json").read_text())["contention"]["neighbour_threads"] == 1
    assert [r["case"] for r in rows][:2] == ["chain_logz", "chain_viterbi"]


def test_no_tensor_relies_on_the_default_device(tmp_path):
    """Under a meta default device, a tensor made without the run's device would be meta and fail."""
    cfg = tiny()
    with torch.device("meta"):
        rows = run_bench(cfg, tmp_path)
    assert {r["case"] for r in rows} == ROW_CASES and all(r["check"] in ("passed", "skipped") for r in rows)


def test_the_bench_runs_without_its_peers(tmp_path, monkeypatch):
    for module in ("torchebm", "torch_struct", "torchcrf"):
        monkeypatch.setitem(sys.modules, module, None)  # `import torchebm` now raises ImportError
    rows = run_bench(tiny("task.cases=[langevin,chain]"), tmp_path)
    skipped = [r for r in rows if r["check"] == "skipped"]
    assert skipped and all(r["peer_s"] is None and r["ratio"] is None for r in skipped)
    assert all('pip install ".[bench]"' in r["note"] for r in skipped)
    assert {r["peer"] for r in rows if r["check"] == "passed"} == {"eager loop"}
    assert json.loads((tmp_path / "bench_env.json").read_text())["versions"]["torchebm"] is None


def test_a_failed_check_is_reported_after_writing(tmp_path, monkeypatch):
    from ebm_cli.bench import free_energy

    monkeypatch.setattr(free_energy, "ATOL", -1.0)  # no difference can pass
    with pytest.raises(UserError, match=r"bench: 1 check\(s\) failed, first free_energy 8x8x4 vs per-row loop"):
        run_bench(tiny("task.cases=[free_energy]"), tmp_path)
    assert [r["check"] for r in json.loads((tmp_path / "bench.json").read_text())] == ["failed"]


@pytest.mark.parametrize("override,message", [
    ("task.size=huge", "task.size=huge: must be one of full, tiny"),
    ("task.cases=[chain,nope]", "task.cases=nope: must be one of langevin, gradient, chain, free_energy, cd_step, "
                                "time_to_quality"),
    ("task.chain_sizes=[12x3]", "task.chain_sizes=12x3: must be 3 positive whole numbers joined by x"),
    ("task.chain_sizes=[4x1x5]", "task.chain_sizes=4x1x5: needs sequences of length >= 2"),
    ("task.repeats=0", "task.repeats=0: must be a whole number > 0"),
    ("task.time_limit=-1", "task.time_limit=-1.0: must be > 0"),
    ("task.neighbour_threads=0", "task.neighbour_threads=0: must be a whole number > 0"),
])
def test_bad_settings_are_one_line_errors(override, message):
    with pytest.raises(UserError) as err:
        bench_settings(make_cfg("task=bench", override))
    assert str(err.value).startswith(message)


def test_presets_and_overrides():
    full = bench_settings(make_cfg("task=bench"))
    assert full.langevin_batches == (256, 4096, 65536) and full.chain_sizes[0] == (256, 128, 32)
    mixed = bench_settings(make_cfg("task=bench", "task.size=tiny", "task.langevin_batches=[8,16]"))
    assert mixed.langevin_batches == (8, 16) and mixed.langevin_steps == 5  # a set value wins over the preset


def test_misspelled_key_fails_at_composition():
    with pytest.raises(Exception, match="sizee"):
        make_cfg("task=bench", "task.sizee=tiny")


def ebm_run(args, cwd, env):
    return subprocess.run(ebm_run_command() + list(args), cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)


@pytest.mark.slow
def test_ebm_run_task_bench(tmp_path, subprocess_env):
    run_dir = tmp_path / "run"
    proc = ebm_run(["task=bench", "task.size=tiny", "task.cases=[chain,free_energy]", "trainer.device=cpu",
                    f"hydra.run.dir={run_dir}"], tmp_path, subprocess_env)
    assert proc.returncode == 0, proc.stderr
    rows = read_rows(run_dir)
    assert {r["case"] for r in rows} == {"chain_logz", "chain_viterbi", "free_energy"}
    assert "ebm-run bench (tiny)" in proc.stdout and "per-row loop" in proc.stdout
    assert (run_dir / "bench_env.json").is_file() and not (tmp_path / "outputs").exists()
    assert proc.stdout.strip().splitlines()[-1] == f"results: {run_dir} (bench.json, bench_env.json)"


@pytest.mark.slow
def test_ebm_run_bad_bench_setting_is_one_line_and_writes_nothing(tmp_path, subprocess_env):
    run_dir = tmp_path / "run"
    proc = run_cli(["task=bench", "task.size=huge", f"hydra.run.dir={run_dir}"], tmp_path)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert lines == ["ebm-run: error: task.size=huge: must be one of full, tiny"], proc.stderr
    assert not run_dir.exists() and list(tmp_path.iterdir()) == []
