"""F_beta against closed forms, its limits in beta, and its stability from beta = 1e-3 to 1e6."""

import math

import pytest
import torch

from ebm_cli.core.spaces import BoxZ, CircleZ, DiscreteZ, SphereZ
from ebm_cli.errors import BadArgument
from ebm_cli.free_energy import FreeEnergy, soft_min

BETAS = [1e-3, 1e-2, 0.1, 1.0, 10.0, 1e2, 1e3, 1e4, 1e5, 1e6]


def quadratic(a, c, e0):
    """E(z) = a (z - c)^2 + e0 for a batch of (a, c, e0); z: (B, S, 1) -> (B, S)."""
    a, c, e0 = (torch.tensor(v, dtype=torch.float64)[:, None] for v in (a, c, e0))
    return lambda z: a * (z[..., 0].double() - c) ** 2 + e0


@pytest.mark.parametrize("beta", [0.5, 1.0, 4.0, 50.0])
def test_quadrature_matches_the_gaussian_integral(beta):
    a, c, e0 = [2.0, 8.0], [0.3, -1.0], [0.0, 5.0]
    # a wide box, so that the Gaussian's mass outside it is negligible
    f, z_best = FreeEnergy(points=4001)(quadratic(a, c, e0), BoxZ(1, -8.0, 8.0), beta, 2)
    exact = torch.tensor([e - 0.5 / beta * math.log(math.pi / (beta * ai)) for ai, e in zip(a, e0)], dtype=torch.float64)
    assert torch.allclose(f, exact, atol=1e-4)
    assert torch.allclose(z_best[:, 0].double(), torch.tensor(c, dtype=torch.float64), atol=5e-3)


def test_quadrature_does_not_depend_on_the_grid_size():
    fn = quadratic([3.0], [0.2], [1.0])
    values = [FreeEnergy(points=p)(fn, BoxZ(1, -4.0, 4.0), 2.0, 1)[0].item() for p in (200, 400, 1600)]
    assert max(values) - min(values) < 1e-4


def test_monte_carlo_estimate_is_close():
    fn = quadratic([2.0], [0.3], [0.0])
    gen = torch.Generator().manual_seed(0)
    # Monte Carlo draws fresh samples only while training (fixed seeded nodes otherwise)
    f, _ = FreeEnergy(method="monte_carlo", samples=200_000)(fn, BoxZ(1, -4.0, 4.0), 1.0, 1, training=True, generator=gen)
    assert f.item() == pytest.approx(-0.5 * math.log(math.pi / 2.0), abs=0.01)


@pytest.mark.parametrize("beta", BETAS)
def test_discrete_is_an_exact_log_sum_exp(beta):
    e = torch.tensor([[0.5, 2.0, -1.0, 3.0], [10.0, 10.0, 10.0, 10.0]], dtype=torch.float64)
    f, z_best = FreeEnergy()(lambda z: e, DiscreteZ(4), beta, 2)
    exact = torch.tensor([-1 / beta * math.log(sum(math.exp(-beta * v) for v in row)) if beta <= 10
                          else min(row) - 1 / beta * math.log(sum(math.exp(-beta * (v - min(row))) for v in row))
                          for row in e.tolist()], dtype=torch.float64)
    assert torch.allclose(f, exact, rtol=1e-10, atol=1e-10)
    assert z_best[:, 0].tolist() == [2.0, 0.0]


def test_beta_to_infinity_gives_the_minimum():
    fn = quadratic([1.0, 4.0], [0.1, -0.4], [0.7, -2.0])
    f_inf, _ = FreeEnergy(points=2001)(fn, BoxZ(1, -2.0, 2.0), float("inf"), 2)
    f_big, _ = FreeEnergy(points=2001)(fn, BoxZ(1, -2.0, 2.0), 1e4, 2)
    assert torch.allclose(f_inf, torch.tensor([0.7, -2.0], dtype=torch.float64), atol=1e-6)
    assert (f_big - f_inf).abs().max() < 1e-3
    e = torch.tensor([[0.3, 1.0, 2.0]])
    assert (FreeEnergy()(lambda z: e, DiscreteZ(3), 1e4, 1)[0] - 0.3).abs().item() < 1e-3


def test_small_beta_gives_mean_energy_minus_log_volume():
    """F_beta = mean_z E - log(V) / beta + O(beta): the log-volume term dominates as beta -> 0."""
    fn = quadratic([1.0], [0.0], [0.0])
    box = BoxZ(1, -1.0, 1.0)
    mean_e = 1.0 / 3.0  # mean of z^2 on [-1, 1]
    for beta in (1e-3, 1e-2):
        f, _ = FreeEnergy(points=2000)(fn, box, beta, 1)
        assert f.item() == pytest.approx(mean_e - box.log_volume / beta, abs=10 * beta)
    e = torch.tensor([[1.0, 2.0, 6.0]])
    f, _ = FreeEnergy()(lambda z: e, DiscreteZ(3), 1e-3, 1)
    assert f.item() == pytest.approx(3.0 - math.log(3) / 1e-3, abs=1e-2)


@pytest.mark.parametrize("beta", BETAS)
def test_no_nan_or_inf_anywhere(beta):
    e = torch.tensor([[1e3, -1e3, 0.0, 1e-6]], dtype=torch.float32)
    f = soft_min(e, beta)
    assert torch.isfinite(f).all() and f.item() <= -1e3 + 1e-3 - 0  # never above the minimum
    for space in (BoxZ(2, -1.0, 1.0), CircleZ(), DiscreteZ(5)):
        fn = (lambda z: 500.0 * (z.flatten(2) ** 2).sum(-1) - 300.0) if not isinstance(space, DiscreteZ) else (lambda z: 1e3 * z[..., 0])
        f, z_best = FreeEnergy(**({} if isinstance(space, DiscreteZ) else {"points": 32}))(fn, space, beta, 3)
        assert torch.isfinite(f).all() and torch.isfinite(z_best).all()


def test_circle_is_periodic_and_sphere_has_its_area():
    # E depends on cos z: the same F whatever the phase of the grid
    fn = lambda z: -torch.cos(z[..., 0])  # noqa: E731
    f, _ = FreeEnergy(points=256)(fn, CircleZ(), 1.0, 1)
    # ∫_0^{2pi} exp(cos z) dz = 2 pi I0(1)
    assert f.item() == pytest.approx(-math.log(2 * math.pi * 1.2660658777520082), abs=1e-6)
    assert math.exp(SphereZ(3).log_volume) == pytest.approx(4 * math.pi)
    gen = torch.Generator().manual_seed(0)
    f, z = FreeEnergy(samples=64)(lambda z: torch.zeros(z.shape[:2]), SphereZ(3), 1.0, 2, training=True, generator=gen)
    assert torch.allclose(f, torch.full((2,), -math.log(4 * math.pi)), atol=1e-5)
    assert torch.allclose(z.norm(dim=1), torch.ones(2))


def test_minimize_finds_the_minimum_in_higher_dimensions():
    target = torch.tensor([[0.3, -0.2, 0.5, 0.1], [-0.5, 0.4, 0.0, -0.3]])
    fn = lambda z: ((z - target[:, None]) ** 2).sum(-1) + 1.0  # noqa: E731
    gen = torch.Generator().manual_seed(0)
    f, z = FreeEnergy(eliminate="min", method="minimize", restarts=8, steps=300)(fn, BoxZ(4), float("inf"), 2,
                                                                                 generator=gen)
    assert torch.allclose(f, torch.ones(2), atol=1e-4) and torch.allclose(z, target, atol=1e-2)
    with pytest.raises(BadArgument, match="F_inf only"):
        FreeEnergy(method="minimize")
