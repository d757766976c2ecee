"""The builder: `_target_` nodes -> objects, keys and types checked against the constructor,
data-dependent arguments passed by name, impossible values named by their config path."""

import pytest
import torch
from omegaconf import OmegaConf

from ebm_cli.build import build, build_energy, check_energy
from ebm_cli.core.dataset import Dataset
from ebm_cli.core.spaces import BoxSpace, DiscreteZ
from ebm_cli.errors import UserError
from ebm_cli.energies.latent import DecoderEnergy
from ebm_cli.schedules import Annealed
from helpers import make_cfg

BOX = BoxSpace(-1.0, 1.0, (1,))
META = {"x_dim": 1, "x_shape": [1], "x_low": -1.0, "x_high": 1.0, "y_space": BOX.to_config()}


def test_nested_components_and_data_arguments():
    node = make_cfg("energy=decoder", "energy.z.k=4", "energy.hidden=8").energy
    energy = build_energy(node, META)
    assert isinstance(energy, DecoderEnergy) and energy.z_space == DiscreteZ(4)
    assert energy.y_space == BOX  # from the data, by name
    assert energy.free_energy.eliminate == "softmin"


def test_values_are_converted_to_the_annotated_types():
    schedule = build(OmegaConf.create({"_target_": "ebm_cli.schedules.Annealed", "start": "1", "end": 3, "steps": "10"}),
                     "beta")
    assert isinstance(schedule, Annealed) and schedule.steps == 10 and isinstance(schedule.start, float)


@pytest.mark.parametrize("node,message", [
    ({"_target_": "ebm_cli.schedules.Constant", "value": "hot"}, "beta.value=hot: Value 'hot' of type 'str' could not "
                                                                   "be converted to Float"),
    ({"_target_": "ebm_cli.schedules.Constant", "valu": 1.0}, "beta.valu: Constant has no argument 'valu' (it takes: value)"),
    ({"_target_": "ebm_cli.schedules.Constant", "value": -1.0}, "beta.value=-1.0: must be > 0"),
    ({"_target_": "ebm_cli.schedules.Nope"}, "beta: cannot import ebm_cli.schedules.Nope"),
    ({"value": 1.0}, "beta: its config names no class (_target_: module.Class)"),
    ({"_target_": "ebm_cli.schedules.Annealed", "shape": "wavy"}, "beta.shape=wavy: must be one of linear, exponential, cosine"),
])
def test_a_bad_node_is_one_line_naming_its_path(node, message):
    with pytest.raises(UserError) as err:
        build(OmegaConf.create(node), "beta")
    assert str(err.value).startswith(message)


def test_a_nested_components_bad_value_names_the_nested_path():
    node = make_cfg("energy=decoder", "energy/z=box", "energy.z.dim=0").energy
    with pytest.raises(UserError, match=r"^energy\.z\.dim=0: must be >= 1$"):
        build_energy(node, META)
    node = make_cfg("energy=decoder", "energy.free_energy.method=quadrature").energy
    with pytest.raises(UserError, match=r"^energy\.free_energy\.method=quadrature: is for a continuous z"):
        build_energy(node, META)


def test_a_required_argument_nobody_provides():
    with pytest.raises(UserError, match="energy: MLPEnergy needs 'x_dim', which its config does not set and the "
                                        "runner does not provide"):
        build(make_cfg().energy, "energy", y_space=BOX)


def test_the_energy_contract_is_checked_on_two_rows():
    class Data(Dataset):
        x_train, y_train = torch.zeros(5, 1), torch.zeros(5, 1)

    class Fine(torch.nn.Module):
        def forward(self, x, y):
            return (x - y).flatten(1).pow(2).sum(1)

    class Raises(torch.nn.Module):
        def forward(self, x, y):
            raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")

    class Integer(torch.nn.Module):
        def forward(self, x, y):
            return torch.zeros(len(x), dtype=torch.long)

    check_energy(Fine(), Data())
    with pytest.raises(UserError, match=r"energy Raises: forward\(x, y\) failed on 2 training pairs .*RuntimeError: mat1"):
        check_energy(Raises(), Data())
    with pytest.raises(UserError, match=r"energy Integer: forward\(x, y\) must return one float energy per pair"):
        check_energy(Integer(), Data())


def test_checking_an_energy_leaves_the_random_state_alone():
    class Noisy(torch.nn.Module):
        def forward(self, x, y):
            return torch.rand(len(x))

    class Data(Dataset):
        x_train, y_train = torch.zeros(2, 1), torch.zeros(2, 1)

    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    check_energy(Noisy(), Data())
    assert torch.equal(torch.rand(3), expected)


def test_the_package_has_no_import_cycles():
    """ebm_cli's modules import each other without a cycle at module level (imports inside a
    function are deferred on purpose and not counted): the run's parts stay separable."""
    import ast
    from pathlib import Path

    import ebm_cli

    root = Path(ebm_cli.__file__).parent
    modules = {}
    for path in root.rglob("*.py"):
        parts = ("ebm_cli", *path.relative_to(root).with_suffix("").parts)
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph = {}
    for name, path in modules.items():
        deps = set()
        for node in ast.parse(path.read_text(encoding="utf-8")).body:  # module level only
            if isinstance(node, ast.Import):
                deps |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                deps |= {node.module, *(f"{node.module}.{alias.name}" for alias in node.names)}
        graph[name] = {d for d in deps if d in modules and d != name}
    state = {}

    def cycle_from(name, trail):
        state[name] = "open"
        for dep in sorted(graph[name]):
            if state.get(dep) == "open":
                return trail + [name, dep]
            if dep not in state:
                found = cycle_from(dep, trail + [name])
                if found:
                    return found
        state[name] = "done"
        return None

    for name in sorted(graph):
        if name not in state:
            found = cycle_from(name, [])
            assert found is None, " -> ".join(found)
