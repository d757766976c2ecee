"""Data, not code: branch expressions are parsed against a grammar, never evaluated as Python; a
checkpoint's stored config builds only classes this command trusts (runtime/trust.py)."""

import shutil

import pytest
import torch

from ebm_cli.datasets.curves.data import branch_functions, group_by_x
from ebm_cli.datasets.curves.expression import parse_branch
from ebm_cli.errors import UserError
from ebm_cli.runtime.checkpoint import load_checkpoint
from helpers import run_cli

ATTACKS = [
    ("__import__('os').system('touch {marker}')", "unknown function"),
    ("().__class__.__base__.__subclasses__()", "unknown function"),
    ("(1).__class__", "attribute is not allowed"),
    ("[open('{marker}', 'w') for _ in (1,)]", "listcomp is not allowed"),
    ("(lambda: open('{marker}', 'w'))()", "unknown function"),
    ("x.__class__", "attribute is not allowed"),
    ("sin.__globals__", "attribute is not allowed"),
    ("open('{marker}', 'w')", "unknown function 'open'"),
    ("exec('1')", "unknown function 'exec'"),
    ("x[0]", "subscript is not allowed"),
    ("'x'", "constant is not allowed"),
    ("x if x else 1", "ifexp is not allowed"),
    ("sin(x=1)", "sin takes one argument"),
    ("sin(*[x])", "sin takes one argument"),
    ("x @ x", "binop is not allowed"),
    ("y", "unknown name 'y'"),
    ("(" * 600 + "x" + ")" * 600, "longer than 1000 characters"),
    ("0.4 *", "cannot parse"),
    ("-" * 500 + "x", "nested more than 100 deep"),
]


@pytest.mark.parametrize("text, why", ATTACKS)
def test_a_branch_outside_the_grammar_is_refused_and_runs_nothing(tmp_path, text, why):
    marker = tmp_path / "ran"
    with pytest.raises(UserError, match="dataset.branches: .*" + why.replace("(", r"\(").replace(")", r"\)")):
        branch_functions([text.format(marker=marker)])
    assert not marker.exists()


def test_the_grammar_computes_what_python_would():
    x = torch.linspace(-0.9, 0.9, 7, dtype=torch.float64)
    cases = {"0.4 * x": 0.4 * x, "-x ** 2 + pi": -x ** 2 + torch.pi, "sin(3 * x) - 0.5": torch.sin(3 * x) - 0.5,
             "abs(x) % 0.3": x.abs() % 0.3, "sqrt(abs(x)) / 2 + e": x.abs().sqrt() / 2 + torch.e,
             "2": torch.full_like(x, 2.0), "tanh(exp(x)) * sign(x) - log(2)": torch.tanh(x.exp()) * x.sign() - torch.log(torch.tensor(2.0))}
    for text, expected in cases.items():
        assert torch.allclose(parse_branch(text)(x), expected.to(x.dtype)), text


def test_huge_numbers_are_floats_not_hour_long_integers():
    x = torch.zeros(3)
    assert torch.isinf(parse_branch("9 ** 9 ** 9 + x")(x)).all()  # float overflow, not a 9**387420489-digit int
    assert torch.isnan(parse_branch("(-8) ** 0.5 + x")(x)).all()  # not a complex number
    assert torch.isinf(parse_branch("1" + "0" * 400 + " + x")(x)).all()  # an integer literal too big for a float


def test_large_x_values_group_right():
    """x around 1e13: scaled to integers of 10**-6 they would overflow int64; as float32 they group
    (1e13 and 1e13 + 1 are one float32, 1e13 + 1e10 another)."""
    x = torch.tensor([1e13, 1e13, 1e13 + 1, 1e13 + 1e10, -3e15, -3e15], dtype=torch.float64)
    xs, valid, mask = group_by_x(x, torch.arange(6.0, dtype=torch.float64))
    assert xs.tolist() == pytest.approx([-3e15, 1e13, 1e13 + 1e10], rel=1e-7)
    assert mask.sum(1).tolist() == [2, 3, 1]


def _tamper(run_dir, old: str, new: str):
    """A copy of the run whose stored config names another class."""
    for path in (run_dir / "checkpoints").glob("*.pt"):
        state = load_checkpoint(path)
        state["config"] = state["config"].replace(old, new)
        torch.save(state, path)


@pytest.mark.parametrize("task", ["infer", "landscape", "compare_inference"])
def test_a_checkpoint_naming_a_foreign_class_is_refused_before_anything_is_built(smoke_run, tmp_path, task):
    shared = tmp_path / "shared_run"
    shutil.copytree(smoke_run[0], shared)
    _tamper(shared, "_target_: ebm_cli.energies.mlp.MLPEnergy", "_target_: subprocess.Popen")
    args = [f"task={task}", f"run_dir={shared}", f"hydra.run.dir={tmp_path / 'out'}"] + (["x=[0.1]"] if task == "infer" else [])
    result = run_cli(args, tmp_path)
    assert result.returncode == 1 and not (tmp_path / "out").exists()
    assert result.stderr.count("\n") == 1
    assert "its config names 'subprocess.Popen', which is not ebm_cli's" in result.stderr
    assert "trust=[subprocess.Popen]" in result.stderr


def test_trust_lets_a_named_class_through(smoke_run, tmp_path):
    """trust=[...] is the user's decision: the class is then built (here it cannot be: one line on why)."""
    shared = tmp_path / "shared_run"
    shutil.copytree(smoke_run[0], shared)
    _tamper(shared, "_target_: ebm_cli.energies.mlp.MLPEnergy", "_target_: collections.OrderedDict")
    result = run_cli(["task=infer", f"run_dir={shared}", "x=[0.1]", f"hydra.run.dir={tmp_path / 'out'}",
                      "trust=[collections.OrderedDict]"], tmp_path)
    assert result.returncode == 1 and "which is not ebm_cli's" not in result.stderr
    assert "cannot rebuild its energy" in result.stderr


@pytest.mark.parametrize("stored, named", [
    ({"energy": {"_target_": "ebm_cli.tasks.infer.logging.FileHandler", "filename": "x"}},
     "ebm_cli.tasks.infer.logging.FileHandler"),  # ebm_cli's text, logging's class
    ({"energy": {"_target_": "ebm_cli.energies.frames.FrameEnergy", "fixed": {"target": "logging.FileHandler"}}},
     "logging.FileHandler"),  # an energy option's class
    ([{"a": [{"_target_": "os.system"}]}], "os.system"),  # nested in lists
])
def test_a_foreign_class_is_found_however_it_is_named(stored, named):
    from ebm_cli.runtime.trust import check_trusted

    with pytest.raises(UserError, match=f"its config names '{named}', which is not ebm_cli's"):
        check_trusted(stored, [], "checkpoint c.pt")
    check_trusted(stored, [named], "checkpoint c.pt")  # trust=[...] lets it through


def test_a_stored_config_with_an_interpolation_is_refused():
    from ebm_cli.runtime.trust import check_trusted

    with pytest.raises(UserError, match="holds an interpolation"):
        check_trusted({"energy": {"_target_": "ebm_cli.energies.mlp.MLPEnergy", "hidden": "${oc.env:HOME}"}}, [], "c")


def test_a_runs_own_hydra_copy_under_the_config_dir_vouches_for_nothing(tmp_path):
    from ebm_cli.runtime.trust import targets_in_config_dirs

    (tmp_path / "energy").mkdir()
    (tmp_path / "energy" / "mine.yaml").write_text("_target_: my_module.MyEnergy\n")
    (tmp_path / "downloaded_run" / ".hydra").mkdir(parents=True)
    (tmp_path / "downloaded_run" / ".hydra" / "config.yaml").write_text("energy:\n  _target_: os.system\n")
    assert targets_in_config_dirs([str(tmp_path)]) == {"my_module.MyEnergy"}


def test_hydras_blocklist_still_refuses_what_trust_would_let_through(tmp_path):
    """trust=[...] lifts ebm-run's own check only; the components are built by Hydra's instantiate,
    whose blocklist (hydra-core >= 1.3.4, the package's floor) refuses a config that would run a
    command: nothing runs."""
    from hydra.utils import instantiate

    marker = tmp_path / "ran"
    with pytest.raises(Exception):
        instantiate({"_target_": "os.system", "_args_": [f"touch {marker}"]})
    assert not marker.exists()
