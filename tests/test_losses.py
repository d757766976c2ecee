"""The training objectives: the NLL's partition function and the hinge's negatives."""

import math

from types import SimpleNamespace

import pytest
import torch

from ebm_cli.core.energy import Energy
from ebm_cli.core.spaces import BoxSpace
from ebm_cli.losses.hinge import Hinge
from ebm_cli.losses.nll import NLL

BOX = BoxSpace(-3.0, 3.0, (1,))  # the y box of Quadratic


class Quadratic(Energy):
    """F(x, y) = a (y - x)^2: Z = sqrt(pi / (beta a)) when the box (BOX) is wide."""

    def __init__(self, a=50.0):
        super().__init__()
        self.a = a

    def forward(self, x, y):
        return self.a * (y[:, 0] - x[:, 0]) ** 2


@pytest.mark.parametrize("beta", [0.5, 1.0, 4.0])
def test_log_partition_matches_gaussian_integral(beta):
    energy, x = Quadratic(), torch.tensor([[0.0], [0.7], [-1.1]])
    torch.manual_seed(0)
    for stratified in (False, True):
        log_z = NLL(512, stratified=stratified, y_space=BOX).log_partition(energy, x, beta)[0]
        assert torch.allclose(log_z, torch.full((3,), 0.5 * math.log(math.pi / (beta * energy.a))), atol=2e-3)


def test_nll_is_lowest_at_the_true_density():
    """The NLL of data from N(x, 1/(2 beta a)) is minimised by the matching energy scale."""
    torch.manual_seed(0)
    x = torch.zeros(4000, 1)
    y = torch.randn(4000, 1) * math.sqrt(1 / (2 * 50.0))
    losses = {a: NLL(512, y_space=BOX)(Quadratic(a), x, y, 1.0)[0].item() for a in (10.0, 50.0, 250.0)}
    assert losses[50.0] < losses[10.0] and losses[50.0] < losses[250.0]


def test_hinge_negatives_avoid_every_correct_answer():
    # training data: two branches y = +-0.5 at every x
    xs = torch.linspace(-1, 1, 201)
    x_train = torch.cat([xs, xs])[:, None]
    y_train = torch.cat([torch.full_like(xs, 0.5), torch.full_like(xs, -0.5)])[:, None]

    class Flat(Energy):
        def forward(self, x, y):
            return 0.1 * y[:, 0] ** 2  # lowest at 0, between the branches

    box = BoxSpace(-1.0, 1.0, (1,))
    hinge = Hinge(1.0, 0.1, 0.02, proposals=201, data=SimpleNamespace(x_train=x_train, y_train=y_train), y_space=box)
    x = torch.tensor([[0.0], [0.3]])
    y = torch.tensor([[0.5], [-0.5]])
    y_bar, uniform, ok = hinge.negatives(Flat(), x, y)
    # the free minimum y = 0 is incorrect for both branches: it is the most offending answer
    assert torch.allclose(y_bar, torch.zeros(2, 1), atol=0.01)
    far = ((uniform - 0.5).abs() >= 0.1) & ((uniform + 0.5).abs() >= 0.1)
    assert torch.equal(ok, far[..., 0])
    loss, stats = hinge(Flat(), x, y, 1.0)
    assert loss.item() > 0 and {"e_pos", "e_neg", "e_uniform"} <= set(stats)


@pytest.mark.parametrize("beta", [0.5, 1.0, 20.0])
def test_regressor_closed_form_log_partition_matches_quadrature(beta):
    from ebm_cli.energies.mlp import RegressorEnergy

    torch.manual_seed(0)
    energy = RegressorEnergy(16, 2, "tanh", x_dim=1, x_low=-1.0, x_high=1.0, y_space=BoxSpace(-1.2, 1.2, (1,)))
    x = torch.linspace(-1, 1, 7)[:, None]
    exact = energy.log_partition(x, beta)
    quadrature = NLL(4000, stratified=False, y_space=energy.y_space).log_partition(energy, x, beta)[0]
    assert torch.allclose(exact, quadrature, atol=1e-4)
