"""Nothing already written is ever rewritten, and bad input is refused before any folder exists:
each family of the reliability issue injected for real (ebm-run's main() in-process, real files on
disk), checking the one line, the exit code, that no folder appeared and that every file
already on disk is byte-for-byte and time-for-time the same."""

import json
import shutil

import numpy as np
import pytest
import torch

from helpers import make_cfg, run_cli

SMOKE = ["debug=smoke", "logger.landscape_every=0"]


def ebm_run(args, cwd, env=None):
    return run_cli(args, cwd)


def snapshot(folder):
    """{path: (size, mtime, bytes)} of every file below folder."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns, p.read_bytes())
            for p in sorted(folder.rglob("*")) if p.is_file()}


def refused(proc, fragment):
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1, proc.stderr + proc.stdout[-2000:]
    assert len(lines) == 1 and lines[0].startswith("ebm-run: error: "), proc.stderr
    assert fragment in lines[0], lines[0]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A finished run, an interrupted one (a checkpoint, no metrics) and a diverged one, made by
    ebm-run."""
    root = tmp_path_factory.mktemp("runs")
    finished = ebm_run([*SMOKE, f"hydra.run.dir={root / 'finished'}"], root)
    assert finished.returncode == 0, finished.stderr
    diverged = ebm_run([*SMOKE, "trainer.max_abs=1e-6", f"hydra.run.dir={root / 'diverged'}"], root)
    assert diverged.returncode == 3, diverged.stderr
    interrupted = root / "interrupted"  # a preempted run: its checkpoint and its own Hydra copy
    shutil.copytree(root / "finished", interrupted)
    (interrupted / "metrics.json").unlink()
    return root


def test_training_into_a_diverged_runs_folder_is_refused(runs, subprocess_env):
    before = snapshot(runs / "diverged")
    proc = ebm_run([*SMOKE, f"hydra.run.dir={runs / 'diverged'}"], runs, subprocess_env)
    refused(proc, "holds a run that has diverged")
    assert snapshot(runs / "diverged") == before


def test_resuming_with_another_architecture_is_refused_before_hydra_writes(runs, subprocess_env):
    before = snapshot(runs / "interrupted")
    proc = ebm_run([*SMOKE, "energy.hidden=8", "trainer.resume=auto", f"hydra.run.dir={runs / 'interrupted'}"], runs,
                   subprocess_env)
    refused(proc, "holds a run with another config (energy.hidden: 64 there, 8 here)")
    assert snapshot(runs / "interrupted") == before  # .hydra/config.yaml and overrides untouched, no metrics.json


@pytest.mark.parametrize("task", ["task=infer", "task=compare_inference", "task=landscape"])
def test_a_task_that_reads_a_run_writes_only_into_its_own_folder(runs, subprocess_env, task):
    before = snapshot(runs / "finished")
    proc = ebm_run([task, f"run_dir={runs / 'finished'}", "x=[0.0]", f"hydra.run.dir={runs / 'finished'}"], runs,
                   subprocess_env)
    refused(proc, f"{task} writes only into a folder of its own")
    assert snapshot(runs / "finished") == before
    if task == "task=landscape":  # into a folder of its own: the finished run is only read
        out = runs / "landscape_out"
        proc = ebm_run([task, f"run_dir={runs / 'finished'}", f"hydra.run.dir={out}"], runs, subprocess_env)
        assert proc.returncode == 0, proc.stderr
        assert (out / "figures" / "energy.png").is_file() and snapshot(runs / "finished") == before


def test_a_sweep_never_reuses_a_sweep_folder(tmp_path, subprocess_env):
    sweep = tmp_path / "sweep"
    first = ebm_run(["-m", *SMOKE, "seed=0,1", f"hydra.sweep.dir={sweep}"], tmp_path, subprocess_env)
    assert first.returncode == 0, first.stderr
    before = snapshot(sweep)
    again = ebm_run(["-m", *SMOKE, "seed=0,1", "dataset.noise=0.05", f"hydra.sweep.dir={sweep}"], tmp_path,
                    subprocess_env)
    refused(again, "holds an earlier sweep's files")
    assert snapshot(sweep) == before


@pytest.mark.parametrize("values,fragment", [
    ("trainer.steps=10,abc", "sweep job 1 (debug=smoke logger.landscape_every=0 trainer.steps=abc): Error merging "
                             "override trainer.steps=abc"),
    ("trainer.lr=0.01,inf", "sweep job 1 (debug=smoke logger.landscape_every=0 trainer.lr=inf): trainer.lr=inf: "
                            "must be finite"),
])
def test_a_sweep_with_a_bad_job_is_refused_whole_with_nothing_left(tmp_path, subprocess_env, values, fragment):
    sweep = tmp_path / "sweep"
    proc = ebm_run(["-m", *SMOKE, values, f"hydra.sweep.dir={sweep}"], tmp_path, subprocess_env)
    refused(proc, fragment)
    assert not sweep.exists() and list(tmp_path.iterdir()) == [] or [p.name for p in tmp_path.iterdir()] == []


def test_a_job_that_fails_while_training_fails_alone_and_the_sweep_exits_1(tmp_path, subprocess_env):
    sweep = tmp_path / "sweep"
    proc = ebm_run(["-m", *SMOKE, "trainer.max_abs=1e8,1e-6", f"hydra.sweep.dir={sweep}"], tmp_path, subprocess_env)
    assert proc.returncode == 1, proc.stderr
    assert "training diverged at step 1" in proc.stderr.strip().splitlines()[-1]
    statuses = sorted(json.loads(p.read_text())["status"] for p in sweep.glob("*/metrics.json"))
    assert statuses == ["completed", "diverged"]


def write_bad_files(folder):
    """{override: the part of the message} for data files that must be refused."""
    folder.mkdir()
    (folder / "empty.csv").write_text("")
    (folder / "header.csv").write_text("a,b\n1,2\n")
    (folder / "binary.csv").write_bytes(b"\xff\xfe\x00\x81" * 50)
    (folder / "one_x.csv").write_text("x,y\n0.5,1\n0.5,2\n")
    (folder / "random.npz").write_bytes(bytes(range(256)) * 4)
    np.savez(folder / "zero.npz", context=np.zeros((0, 3, 8, 8)), futures=np.zeros((0, 2, 8, 8)))
    np.save(folder / "array.npz", np.zeros((4, 4)))
    (folder / "array.npz.npy").rename(folder / "array.npz")
    np.save(folder / "float.npy", np.zeros((4, 10, 8, 8), np.int16))
    (folder / "eos.tsv").write_text("el gato\tthe cat <eos>\nel perro\tthe dog\n")
    (folder / "tabs.tsv").write_text("el gato the cat\n")
    (folder / "not_text.tsv").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(200))
    return {
        f"dataset=curves_csv dataset.path={folder / 'empty.csv'}": "the file is empty",
        f"dataset=curves_csv dataset.path={folder / 'header.csv'}": "line 1: expected the header 'x,y'",
        f"dataset=curves_csv dataset.path={folder / 'binary.csv'}": "not a UTF-8 text file",
        f"dataset=curves_csv dataset.path={folder / 'one_x.csv'}": "1 distinct x value(s) cannot be split",
        f"experiment=video_latent dataset.path={folder / 'random.npz'}": "not a readable .npz file (not a numpy array",
        f"experiment=video_latent dataset.path={folder / 'zero.npz'}": "holds no frames",
        f"experiment=video_latent dataset.path={folder / 'array.npz'}": "holds a single array (a .npy)",
        f"experiment=video_latent dataset.path={folder / 'float.npy'}": "must be a uint8 array (T, N, H, W)",
        f"experiment=translation_latent dataset.path={folder / 'eos.tsv'}": "line 1: <eos> is reserved",
        f"experiment=translation_latent dataset.path={folder / 'tabs.tsv'}": "expected source<TAB>target, got 0 tabs",
        f"experiment=translation_latent dataset.path={folder / 'not_text.tsv'}": "not UTF-8 text",
        f"dataset=curves_csv dataset.path={folder}": "is a folder, not a file",
    }


def test_bad_data_files_are_one_line_before_any_folder(tmp_path, subprocess_env):
    """The same check the callback runs, for every file, and three of them through the CLI."""
    from ebm_cli.errors import UserError
    from ebm_cli.tasks.checks import check_before_writing

    cases = write_bad_files(tmp_path / "files")
    for overrides, fragment in cases.items():
        with pytest.raises(UserError) as err:
            check_before_writing(make_cfg(*SMOKE, *overrides.split()), tmp_path / "run")
        assert fragment in str(err.value) and "\n" not in str(err.value), (overrides, str(err.value))
    assert not (tmp_path / "run").exists()
    for overrides in list(cases)[:: len(cases) // 3]:
        proc = ebm_run([*SMOKE, *overrides.split(), f"hydra.run.dir={tmp_path / 'run'}"], tmp_path, subprocess_env)
        refused(proc, cases[overrides])
        assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("args,fragment", [
    (["objective=nonsense"], "objective=nonsense: not a metric of this run (one of coverage@0.05,"),
    (["seed=-1"], "seed=-1: must be in [0, 2^32)"),
    (["logger.slice_x=[]"], "logger.slice_x=[]: needs at least one value"),
    (["beta.value=inf"], "beta.value=inf: must be finite"),
    (["trainer.lr=inf"], "trainer.lr=inf: must be finite"),
    (["dataset.noise=inf"], "dataset.noise=inf: must be finite"),
    (["dataset.x_max=inf"], "dataset.x_max=inf: must be finite"),
    (["+trainer.stepz=3"], "trainer.stepz: not a setting of trainer"),
    (["dataset.path=my", "file.csv"], "quote a value with spaces or special characters"),  # unquoted in a shell
    (["dataset.path=données.csv"], "quote a value with spaces or special characters"),
    (["trainer.batch_size=100000000000"], "trainer.batch_size=100000000000 does not fit in memory (800 GB asked for)"),
    (["energy.hidden=1000000000"], "energy: MLPEnergy does not fit in memory"),
])
def test_values_no_check_refused_before(tmp_path, subprocess_env, args, fragment):
    run_dir = tmp_path / "run"
    proc = ebm_run([*SMOKE, *args, f"hydra.run.dir={run_dir}"], tmp_path, subprocess_env)
    refused(proc, fragment)
    assert not run_dir.exists() and list(tmp_path.iterdir()) == []


def test_run_folders_that_cannot_be_used_are_named(tmp_path, subprocess_env):
    (tmp_path / "a_file").write_text("x")
    refused(ebm_run([*SMOKE, f"hydra.run.dir={tmp_path / 'a_file' / 'run'}"], tmp_path, subprocess_env),
            "cannot create it (")
    refused(ebm_run(["task=infer", f"run_dir={tmp_path / 'a_file'}", "x=[0.0]"], tmp_path, subprocess_env),
            "is a file, not a run's folder")


def test_infer_inputs_and_hand_edited_checkpoints(runs, tmp_path, subprocess_env):
    refused(ebm_run(["task=infer", f"run_dir={runs / 'finished'}", "x=[[0.0,1.0]]", f"hydra.run.dir={tmp_path / 'o'}"],
                    tmp_path, subprocess_env), "this run's x has 1 coordinate(s), an input has 2")
    edited = tmp_path / "edited"
    shutil.copytree(runs / "finished", edited)
    for name in ("last.pt", "best.pt"):  # task=infer reads best.pt where there is one
        state = torch.load(edited / "checkpoints" / name, weights_only=True)
        del state["meta"]["y_space"]
        torch.save(state, edited / "checkpoints" / name)
    refused(ebm_run(["task=infer", f"run_dir={edited}", "x=[0.0]", f"hydra.run.dir={tmp_path / 'o'}"], tmp_path,
                    subprocess_env), "best.pt: cannot rebuild its energy (energy: MLPEnergy needs 'y_space'")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("args, fragment", [
    (["hydra.output_subdir=../finished/.hydra"], "hydra.output_subdir=../finished/.hydra: must be a folder inside the run folder"),
    (["hydra.output_subdir=/tmp/elsewhere/.hydra"], "hydra.output_subdir=/tmp/elsewhere/.hydra: must be a folder inside"),
    (["hydra.job_logging.handlers.file.filename={runs}/finished/ebm_run.log"], "filename="),
    (["-m", "seed=1,2", "hydra.sweep.subdir=fixed"], "jobs 0 and 1 would both write into"),
    (["-m", "seed=1,2", "hydra.sweep.subdir=../finished"], "must be a folder inside the sweep folder"),
    (["-m", "seed=1", "hydra.sweep.subdir=."], "must be a folder inside the sweep folder"),
])
def test_hydra_writes_only_inside_the_commands_folder(runs, tmp_path, args, fragment):
    """Hydra's own outputs (.hydra/, the log file, a sweep's job folders) pointed at another run's files
    are refused before anything is written; the finished run is unchanged."""
    before = snapshot(runs / "finished")
    args = [a.format(runs=runs) for a in args]
    where = f"hydra.sweep.dir={tmp_path / 'sweep'}" if "-m" in args else f"hydra.run.dir={tmp_path / 'run'}"
    flags = [a for a in args if a == "-m"]
    refused(ebm_run([*flags, *SMOKE, *[a for a in args if a != "-m"], where], runs), fragment)
    assert snapshot(runs / "finished") == before
    assert not (tmp_path / "run").exists() and not (tmp_path / "sweep").exists()


@pytest.mark.parametrize("kind", ["run", "sweep"])
def test_a_folder_name_too_long_for_the_file_system_is_one_line_and_nothing_is_written(tmp_path, kind):
    """hydra.run.dir with a 300-byte name, or a sweep whose job name (its overrides) is over 255
    bytes: refused before any folder or multirun.yaml exists, saying what to shorten."""
    from helpers import run_cli

    if kind == "run":
        args, said = ["debug=smoke", f"hydra.run.dir={tmp_path / ('r' * 300)}"], "hydra.run.dir: a folder name of 300 bytes"
    else:
        values = "[" + ",".join(str(i / 100) for i in range(80)) + "]"
        args = ["-m", "debug=smoke", f"x={values}", "seed=0,1", f"hydra.sweep.dir={tmp_path / 'sweep'}"]
        said = "set hydra.sweep.subdir=${hydra.job.num}"
    result = run_cli(args, tmp_path)
    assert result.returncode == 1
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("ebm-run: error: ") and said in line and "longer than file systems allow (255)" in line, line
    assert sorted(p.name for p in tmp_path.iterdir()) == []
