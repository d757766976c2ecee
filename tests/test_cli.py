"""`ebm-run` from an unrelated working directory: the installed script in a subprocess where the
process is the point (a whole run, `python -m`, the environment), its main() in-process for the
one-line refusals."""

import json
import subprocess
import sys

import pytest

from helpers import ebm_run_command, run_cli


def ebm_run(args, cwd, env, module=False):
    cmd = [sys.executable, "-m", "ebm_cli"] if module else ebm_run_command()
    return subprocess.run(cmd + list(args), cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_smoke_run_then_infer(tmp_path, subprocess_env):
    run_dir = tmp_path / "run"
    proc = ebm_run(["debug=smoke", f"hydra.run.dir={run_dir}"], tmp_path, subprocess_env)
    assert proc.returncode == 0, proc.stderr
    assert "coverage@0.05" in proc.stdout
    metrics = json.loads((run_dir / "metrics.json").read_text())["metrics"]
    assert 0 <= metrics["precision@0.05"] <= 1
    assert (run_dir / ".hydra" / "config.yaml").is_file() and (run_dir / "ebm_run.log").is_file()
    assert list((run_dir / "tb").glob("events.out.tfevents.*"))
    assert not (tmp_path / "outputs").exists()  # everything went to hydra.run.dir
    # the end says where the results are, and how to open TensorBoard
    assert f"results: {run_dir} (metrics.json, figures/, checkpoints/)" in proc.stdout
    assert f"TensorBoard: tensorboard --logdir {run_dir / 'tb'}" in proc.stdout

    infer_dir = tmp_path / "infer"
    infer = ebm_run(["task=infer", f"run_dir={run_dir}", "x=[0.0,0.5]", f"hydra.run.dir={infer_dir}"], tmp_path, subprocess_env)
    assert infer.returncode == 0, infer.stderr
    assert "energy F(x, y)" in infer.stdout and "0.5" in infer.stdout
    found = json.loads((infer_dir / "candidates.json").read_text())  # the candidates are in its folder too
    assert [r["x"] for r in found] == [0.0, 0.5] and all(r["candidates"] for r in found)
    lines = (infer_dir / "candidates.csv").read_text().splitlines()
    assert lines[0] == "x,rank,y,text,energy" and len(lines) == 1 + sum(len(r["candidates"]) for r in found)
    assert f"results: {infer_dir} (candidates.json, candidates.csv)" in infer.stdout
    assert "TensorBoard" not in infer.stdout  # it logged nothing there

    # the same folder again would overwrite a finished run: refused, nothing touched
    before = (run_dir / "metrics.json").read_bytes()
    again = ebm_run(["debug=smoke", f"hydra.run.dir={run_dir}"], tmp_path, subprocess_env)
    assert again.returncode == 1 and "already holds a finished run" in again.stderr
    assert (run_dir / "metrics.json").read_bytes() == before


BAD_INPUTS = [
    (["trainer.stepz=3"], "Key 'stepz' not in 'TrainerConfig'"),
    (["trainer.steps=abc"], "could not be converted to Integer"),
    (["energy=transformer"], "Could not find 'energy/transformer' (available: chain, conv_latent, conv_regressor, decoder, frames, latent_mlp, mlp, regressor, unet_latent, unet_regressor)"),
    (["beta.value=0"], "beta.value=0.0: must be > 0"),
    (["inference.k=0"], "inference.k=0: must be > 0"),
    (["trainer.device=cuda"], "no CUDA device is available"),
    (["dataset=curves_csv"], "dataset.path is required"),
    (["dataset=curves_csv", "dataset.path=missing.csv"], "dataset.path=missing.csv: no such file"),
    (["task=infer", "x=[0.0]"], "task=infer needs run_dir"),
    # a preset's key that the swapped-in option lacks: the key and the class's own arguments
    (["experiment=curves_latent", "energy=mlp"], "energy.prior: MLPEnergy has no argument 'prior' (it takes: hidden, depth, activation, output)"),
    # an interpolation that cannot be resolved
    (["inference.k=${energy.z.k}"], "inference.k: Interpolation key 'energy.z.k' not found"),
    # an energy for other data
    (["experiment=translation_latent", "energy=mlp"], "energy: MLPEnergy needs 'x_dim'"),
    (["energy.hidden=abc"], "energy.hidden=abc: Value 'abc' of type 'str' could not be converted to Integer"),
    (["+energy.hiden=3"], "energy.hiden: MLPEnergy has no argument 'hiden'"),
    (["energy=chain"], "AttentionChainEnergy needs 'src_vocab'"),
    (["inference=dp"], "inference=dp needs a chain-structured energy"),
]


@pytest.mark.parametrize("args,message", BAD_INPUTS, ids=[" ".join(a) for a, _ in BAD_INPUTS])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, subprocess_env, args, message):
    if "no CUDA" in message:
        pytest.importorskip("torch")
        import torch

        if torch.cuda.is_available():
            pytest.skip("this machine has a GPU")
    run_dir = tmp_path / "run"
    proc = run_cli(args + [f"hydra.run.dir={run_dir}"], tmp_path)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ebm-run: error: "), proc.stderr
    assert message in lines[0]
    assert not run_dir.exists() and list(tmp_path.iterdir()) == []


def test_python_dash_m_is_the_same_program(tmp_path, subprocess_env):
    proc = ebm_run(["trainer.lr=fast"], tmp_path, subprocess_env, module=True)
    assert proc.returncode == 1 and proc.stderr.startswith("ebm-run: error: ")


def test_broken_checkpoint_via_cli(tmp_path, subprocess_env):
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    (tmp_path / "run" / "checkpoints" / "last.pt").write_bytes(b"\x00" * 100)
    proc = run_cli(["task=infer", f"run_dir={tmp_path / 'run'}", "x=[0.0]", f"hydra.run.dir={tmp_path / 'out'}"], tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
    assert "cannot be read" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_traceback_only_with_hydra_full_error(tmp_path, subprocess_env):
    plain = run_cli(["beta.value=-1"], tmp_path)
    assert "Traceback" not in plain.stderr
    full = ebm_run(["beta.value=-1"], tmp_path, {**subprocess_env, "HYDRA_FULL_ERROR": "1"})
    assert full.returncode != 0 and "Traceback" in full.stderr and "beta.value=-1.0: must be > 0" in full.stderr


def test_run_dir_without_checkpoint(tmp_path, subprocess_env):
    (tmp_path / "empty_run").mkdir()
    proc = run_cli(["task=infer", f"run_dir={tmp_path / 'empty_run'}", "x=[0.0]", f"hydra.run.dir={tmp_path / 'out'}"],
                   tmp_path)
    assert proc.returncode == 1 and "has no checkpoints/last.pt" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_version_is_ebm_clis_own(tmp_path):
    import torch

    from ebm_cli import __version__

    done = run_cli(["--version"], tmp_path)
    assert done.returncode == 0
    assert done.stdout.strip().startswith(f"ebm-run {__version__} (torch {torch.__version__}, hydra-core 1.3.")
    assert not list(tmp_path.iterdir())  # no folder


def test_a_commands_folder_carries_its_tasks_name(tmp_path):
    done = run_cli(["debug=smoke", "logger.progress=false"], tmp_path)
    assert done.returncode == 0, done.stderr
    [folder] = (tmp_path / "outputs").glob("*/*")
    assert folder.name.endswith("-train")


@pytest.mark.parametrize("plugin,extra", [("launcher/joblib", "sweep"), ("sweeper/optuna", "sweep"),
                                          ("launcher/submitit_slurm", "cluster")])
def test_a_missing_plugin_names_the_extra_to_install(plugin, extra):
    """What Hydra raises when a plugin's package is not installed, as ebm-run says it."""
    from hydra.errors import MissingConfigException

    from ebm_cli.errors import one_line

    group = plugin.split("/")[0]
    exc = MissingConfigException(f"In '{plugin.split('/')[-1]}': Could not find 'hydra/{plugin}'\n\nAvailable options in "
                                 f"'hydra/{group}':\n\tbasic\nConfig search path:\n\tprovider=hydra", plugin)
    assert one_line(exc) == (f"{plugin.split('/')[-1]} is a Hydra plugin of the [{extra}] extra, which is not "
                             f'installed: pip install ".[{extra}]" (in the ebm-cli folder)')


def test_a_users_module_that_cannot_be_imported_is_one_line_and_nothing_from_hydra(tmp_path):
    (tmp_path / "conf" / "energy").mkdir(parents=True)
    (tmp_path / "conf" / "energy" / "mine.yaml").write_text("_target_: my_missing.Energy\n")
    for args in (["debug=smoke", "energy._target_=my_energy.FourierEnergy"],
                 [f"--config-dir={tmp_path / 'conf'}", "debug=smoke", "energy=mine"]):
        done = run_cli(args, tmp_path)
        assert done.returncode == 1
        module = "my_energy" if "energy=mine" not in args else "my_missing"
        assert (done.stdout + done.stderr).strip().splitlines() == [
            f"ebm-run: error: energy: cannot import {args[-1].split('=')[-1] if module == 'my_energy' else 'my_missing.Energy'} "
            f"(No module named '{module}'); put {module}.py in the working directory or on PYTHONPATH"]
    assert not (tmp_path / "outputs").exists()


def test_a_path_under_the_home_folder_is_the_home_folder(tmp_path, monkeypatch):
    """`dataset.path=~/four.csv` as typed: the shell leaves that ~ alone (dataset.path is not a
    variable name) and Hydra's grammar refused it; the runner expands it, in a sweep's list too."""
    from ebm_cli.cli import expand_home

    monkeypatch.setenv("HOME", str(tmp_path))
    assert expand_home("dataset.path=~/a.csv") == f"dataset.path={tmp_path}/a.csv"
    assert expand_home("dataset.path=~/a.csv,~/b.csv,c~/d") == f"dataset.path={tmp_path}/a.csv,{tmp_path}/b.csv,c~/d"
    assert expand_home("~trainer.ema") == "~trainer.ema" and expand_home("--cfg") == "--cfg"
    assert expand_home("dataset.path=~user/a.csv") == "dataset.path=~user/a.csv"  # only ~ itself
    (tmp_path / "four.csv").write_text("x,y\n" + "".join(f"{i / 10},{k}\n" for i in range(10) for k in (-1, 1)))
    proc = run_cli(["dataset=curves_csv", "dataset.path=~/four.csv", "--cfg", "job"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert f"path: {tmp_path}/four.csv" in proc.stdout


def test_every_task_ends_saying_where_its_results_are(smoke_run, tmp_path):
    """The last lines of compare_inference and landscape name their folder and files; a training
    run without TensorBoard (logger.tensorboard=false) prints no `tensorboard --logdir` line."""
    run_dir = smoke_run[0]
    for task, files in (("compare_inference", "compare_inference.json"), ("landscape", "energy.png")):
        out = tmp_path / task
        result = run_cli([f"task={task}", f"run_dir={run_dir}", f"hydra.run.dir={out}"], tmp_path)
        assert result.returncode == 0, result.stderr
        last = result.stdout.strip().splitlines()[-1]
        where = out / "figures" if task == "landscape" else out
        assert last.startswith(f"results: {where} (") and files in last, last
        assert all((where / name).is_file() for name in last[last.index("(") + 1:-1].split(", "))
    quiet = tmp_path / "quiet"
    result = run_cli(["debug=smoke", "trainer.steps=20", "logger.tensorboard=false", f"hydra.run.dir={quiet}"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == f"results: {quiet} (metrics.json, figures/, checkpoints/)"
    assert "tensorboard --logdir" not in result.stdout and not (quiet / "tb").exists()
