"""Users' own components: an energy and a data kind in a module outside the package, named by
`_target_` in yaml files under --config-dir, trained and queried through the real CLI; a broken
plug-in is refused in one line with no run folder."""

import json
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest

from helpers import ebm_run_command, run_cli

PLUGIN = textwrap.dedent('''
    import torch
    from torch import nn

    from ebm_cli.core.dataset import Dataset


    class SquareEnergy(nn.Module):
        """F(x, y) = MLP([x, y])^2: non-negative, zero where the network crosses zero."""

        def __init__(self, hidden: int = 32, *, x_dim: int, y_dim: int):
            super().__init__()
            self.net = nn.Sequential(nn.Linear(x_dim + y_dim, hidden), nn.Tanh(), nn.Linear(hidden, 1))

        def forward(self, x, y):
            return self.net(torch.cat([x.flatten(1), y.flatten(1)], dim=1))[:, 0] ** 2


    class WrongShape(SquareEnergy):
        def forward(self, x, y):
            return super().forward(x, y)[:, None]  # (B, 1), not (B,)


    class ExitsLater(SquareEnergy):
        """Calls sys.exit(0) at its 20th forward pass: in training, after the pre-run check."""

        calls = 0

        def forward(self, x, y):
            self.calls += 1
            if self.calls == 20:
                import sys
                sys.exit(0)
            return super().forward(x, y)


    class ExitsAtOnce(SquareEnergy):
        def forward(self, x, y):
            raise SystemExit(3)


    class Plusminus(Dataset):
        """x in [0.2, 1] (2-D: x and x^2); y = +x or -x."""

        def __init__(self, train_size: int = 256, test_size: int = 16, eps: float = 0.1, run_seed: int = 0):
            gen = torch.Generator().manual_seed(run_seed)
            x = 0.2 + 0.8 * torch.rand(train_size, generator=gen)
            sign = torch.randint(0, 2, (train_size,), generator=gen) * 2 - 1
            self.x_train = torch.stack([x, x * x], 1)
            self.y_train = (sign * x)[:, None]
            t = torch.linspace(0.2, 1.0, test_size)
            self.x_test = torch.stack([t, t * t], 1)
            self.valid = torch.stack([t, -t], 1)[..., None]
            self.valid_mask = torch.ones(test_size, 2, dtype=torch.bool)
            self.eps = eps


    class NoValidSets(Dataset):
        def __init__(self, run_seed: int = 0):
            self.x_train = torch.zeros(4, 1)
            self.y_train = torch.zeros(4, 1)
            self.x_test = torch.zeros(2, 1)
            self.eps = 0.1
''')

SMALL = ["trainer.steps=30", "trainer.log_every=10", "logger.landscape_every=0", "inference.points=64"]


@pytest.fixture
def plugin(tmp_path):
    """tmp_path/plugin_mod.py and tmp_path/conf/{energy,dataset}/*.yaml; the CLI runs in tmp_path."""
    (tmp_path / "plugin_mod.py").write_text(PLUGIN)
    for group, name, text in [
        ("energy", "square", "_target_: plugin_mod.SquareEnergy\nhidden: 32\n"),
        ("energy", "wrong_shape", "_target_: plugin_mod.WrongShape\nhidden: 32\n"),
        ("energy", "missing_module", "_target_: no_such_module.Energy\n"),
        ("energy", "bad_key", "_target_: plugin_mod.SquareEnergy\nhiden: 32\n"),
        ("energy", "exits_later", "_target_: plugin_mod.ExitsLater\nhidden: 32\n"),
        ("energy", "exits_at_once", "_target_: plugin_mod.ExitsAtOnce\nhidden: 32\n"),
        ("dataset", "plusminus", "_target_: plugin_mod.Plusminus\ntrain_size: 256\ntest_size: 16\neps: 0.1\n"),
        ("dataset", "no_valid", "_target_: plugin_mod.NoValidSets\n"),
    ]:
        (tmp_path / "conf" / group).mkdir(parents=True, exist_ok=True)
        (tmp_path / "conf" / group / f"{name}.yaml").write_text(text)
    return tmp_path


def ebm_run(args, cwd, env):
    return subprocess.run(ebm_run_command() + list(args), cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_a_user_energy_and_data_kind_train_then_infer(plugin, subprocess_env):
    run_dir = plugin / "run"
    train = ebm_run(["--config-dir", "conf", "energy=square", "dataset=plusminus", *SMALL, f"hydra.run.dir={run_dir}"],
                    plugin, subprocess_env)
    assert train.returncode == 0, train.stderr
    record = json.loads((run_dir / "metrics.json").read_text())
    assert record["status"] == "completed" and 0 <= record["metrics"]["coverage@0.1"] <= 1
    assert "SquareEnergy on Plusminus data" in train.stdout
    # the checkpoint keeps the _target_: a command that trusts the user's classes (their --config-dir)
    # reloads the run; one that does not is refused before it builds anything
    untrusted = ebm_run(["task=infer", f"run_dir={run_dir}", "x=[[0.5,0.25]]", f"hydra.run.dir={plugin / 'no'}"],
                        plugin, subprocess_env)
    assert untrusted.returncode == 1 and not (plugin / "no").exists()
    assert untrusted.stderr.count("\n") == 1 and untrusted.stderr.startswith("ebm-run: error: checkpoint ")
    assert ("its config names 'plugin_mod.Plusminus', which is not ebm_cli's and not in this command's --config-dir; "
            "building it would run its code. If you trust it: trust=[plugin_mod.Plusminus]") in untrusted.stderr
    infer = ebm_run(["--config-dir", "conf", "task=infer", f"run_dir={run_dir}", "x=[[0.5,0.25]]",
                     f"hydra.run.dir={plugin / 'infer'}"], plugin, subprocess_env)
    assert infer.returncode == 0, infer.stderr
    assert "SquareEnergy" in infer.stdout and "energy F(x, y)" in infer.stdout
    # from another working directory, with the module on PYTHONPATH and the classes named by trust=
    elsewhere = plugin / "elsewhere"
    elsewhere.mkdir()
    again = ebm_run(["task=infer", f"run_dir={run_dir}", "x=[[0.5,0.25]]", f"hydra.run.dir={elsewhere / 'out'}",
                     "trust=[plugin_mod.SquareEnergy,plugin_mod.Plusminus]"],
                    elsewhere, {**subprocess_env, "PYTHONPATH": str(plugin)})
    assert again.returncode == 0, again.stderr
    # ... and without it on PYTHONPATH: one line naming the module, nothing of Hydra's own logger, no folder
    lost = ebm_run(["task=infer", f"run_dir={run_dir}", "x=[[0.5,0.25]]", f"hydra.run.dir={elsewhere / 'lost'}",
                    "trust=[plugin_mod.SquareEnergy,plugin_mod.Plusminus]"], elsewhere, subprocess_env)
    assert lost.returncode == 1 and not (elsewhere / "lost").exists()
    [line] = (lost.stdout + lost.stderr).strip().splitlines()
    assert line.startswith("ebm-run: error: ") and "cannot import plugin_mod." in line and "(No module named 'plugin_mod')" in line, line
    # a wrong input size for this run's 2-D x is one line
    wrong = ebm_run(["--config-dir", "conf", "task=infer", f"run_dir={run_dir}", "x=[0.5]",
                     f"hydra.run.dir={plugin / 'bad'}"], plugin, subprocess_env)
    assert wrong.returncode == 1 and "this run's x has 2 coordinate(s)" in wrong.stderr


BROKEN = [
    (["energy=wrong_shape", "dataset=plusminus"], "energy WrongShape: forward(x, y) must return one float energy per "
                                                  "pair, shape (2,) for 2 pairs; it returned shape (2, 1)"),
    (["energy=missing_module"], "energy: cannot import no_such_module.Energy (No module named 'no_such_module')"),
    (["energy=bad_key"], "energy.hiden: SquareEnergy has no argument 'hiden' (it takes: hidden)"),
    (["energy=square", "dataset=no_valid"], "dataset NoValidSets: sets no valid"),
    (["energy=square", "dataset=plusminus", "inference=z_sweep"], "inference=z_sweep needs an energy that decodes"),
    (["energy=square", "dataset=plusminus", "loss=free_energy"], "loss=free_energy has no negative phase"),
    (["energy=exits_at_once", "dataset=plusminus"], "a component called sys.exit(3) while the run was checked"),
]


@pytest.mark.parametrize("args,message", BROKEN, ids=[" ".join(a) for a, _ in BROKEN])
def test_a_broken_plugin_is_one_line_and_no_folder(plugin, subprocess_env, args, message):
    run_dir = plugin / "run"
    proc = run_cli(["--config-dir", "conf", *args, f"hydra.run.dir={run_dir}"], plugin)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ebm-run: error: "), proc.stderr
    assert message in lines[0]
    assert not run_dir.exists()


@pytest.mark.slow
def test_the_shipped_example_runs(tmp_path, subprocess_env):
    """experiments/plugin_energy: the README's commands, at smoke size."""
    example = Path(__file__).resolve().parents[1] / "experiments" / "plugin_energy"
    work = shutil.copytree(example, tmp_path / "plugin_energy", ignore=shutil.ignore_patterns("*.png", "__pycache__"))
    for args in (["energy=fourier"], ["dataset=roots"], ["energy=fourier", "dataset=roots"]):
        run_dir = tmp_path / "_".join(args).replace("=", "-")
        proc = run_cli(["--config-dir", "conf", *args, "debug=smoke", f"hydra.run.dir={run_dir}"], work)
        assert proc.returncode == 0, proc.stderr
        assert json.loads((run_dir / "metrics.json").read_text())["status"] == "completed"


def test_a_component_that_exits_mid_training_is_a_failure(plugin):
    """sys.exit(0) inside a user's energy is not a successful run: exit 1, one line, metrics.json failed."""
    run_dir = plugin / "run"
    proc = run_cli(["--config-dir", "conf", "energy=exits_later", "dataset=plusminus", *SMALL, f"hydra.run.dir={run_dir}"],
                   plugin)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == ("ebm-run: error: the run's code called sys.exit(0) during task=train: "
                                                   "a component must raise an exception, not exit")
    assert json.loads((run_dir / "metrics.json").read_text())["status"] == "failed"
