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

    infer = ebm_run(["task=infer", f"run_dir={run_dir}", "x=[0.0,0.5]", f"hydra.run.dir={tmp_path / 'infer'}"], tmp_path, subprocess_env)
    assert infer.returncode == 0, infer.stderr
    assert "energy F(x, y)" in infer.stdout and "0.5" in infer.stdout

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
