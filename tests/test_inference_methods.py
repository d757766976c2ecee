"""Every inference method on analytic energies with known minima, Langevin against the Gibbs
density, dynamic programming against brute-force enumeration, and the CD loss."""

import itertools
import math
from importlib import resources

import pytest
import torch
from omegaconf import OmegaConf

from ebm_cli.build import build_inference
from ebm_cli.core.energy import ChainEnergy, Energy
from ebm_cli.core.spaces import BoxSpace, DiscreteZ
from ebm_cli.dynamic_programming import _forward_log_sum_exp, forward_free_energy, kbest_viterbi, sequence_energy, viterbi
from ebm_cli.errors import UserError
from ebm_cli.inference.dp import DPInference
from ebm_cli.inference.hmc import hmc_chains, reflect
from ebm_cli.inference.langevin import langevin_chains

TOL = 0.02  # every method must land within this distance of a true minimum


class Analytic(Energy):
    """F(x, y) = f(y) for a fixed function f of y: (B, D) -> (B,); x is ignored. `box` is the y box
    that inference methods are given (y_space=)."""

    def __init__(self, f, dims: int, low=-2.0, high=2.0):
        super().__init__()
        self.f, self.box = f, BoxSpace(low, high, (dims,))

    def forward(self, x, y):
        return self.f(y)


def bowl(y):  # minimum at (0.5, ...)
    return (y - 0.5).pow(2).sum(1)


def double_well_1d(y):  # minima at -1 (global, deeper by 0.3) and +1
    return (y[:, 0] ** 2 - 1) ** 2 + 0.15 * y[:, 0]


def double_well_2d(y):  # minima at (-1, 0) (global) and (1, 0)
    return (y[:, 0] ** 2 - 1) ** 2 + 0.15 * y[:, 0] + 2 * y[:, 1] ** 2


def gaussian_mixture(weights, means, sd):
    """F = -log p for a 1-D mixture of Gaussians with a shared standard deviation."""
    def f(y):
        terms = [math.log(w) - (y[:, 0] - m) ** 2 / (2 * sd ** 2) - math.log(sd * math.sqrt(2 * math.pi))
                 for w, m in zip(weights, means)]
        return -torch.logsumexp(torch.stack(terms), dim=0)
    return f


mixture = gaussian_mixture([0.6, 0.4], [-1.0, 1.0], 0.3)  # modes near -1 (global) and 1


CASES = {
    "bowl_1d": (bowl, 1, [[0.5]]),
    "bowl_2d": (bowl, 2, [[0.5, 0.5]]),
    "double_well_1d": (double_well_1d, 1, [[-1.0187], [0.9812]]),
    "double_well_2d": (double_well_2d, 2, [[-1.0187, 0.0], [0.9812, 0.0]]),
    "mixture": (mixture, 1, [[-1.0], [1.0]]),
}
METHODS = ["grid", "gradient", "langevin", "hmc", "dfo", "cem"]


def packaged(name):
    """The packaged config of inference=<name> (configs/inference/<name>.yaml): its defaults."""
    return OmegaConf.create((resources.files("ebm_cli.configs") / "inference" / f"{name}.yaml").read_text())


# Settings that differ from the defaults (which are sized for the trained curves energies, whose
# wells are narrow and steep): these minima are 2 apart and the energies are of order 1, so
# candidates within 0.2 are one minimum, Langevin takes larger steps, a 2-D box of width 4 needs
# more gradient steps, and a coarser grid keeps 2-D grids small.
COMMON = {"dedup": 0.2}
SETTINGS = {("grid", 2): {"points": 201}, ("gradient", 2): {"steps": 500},
            ("langevin", 1): {"step_size": 0.01}, ("langevin", 2): {"step_size": 0.01},
            ("hmc", 1): {"step_size": 0.3, "beta_start": 5.0}, ("hmc", 2): {"step_size": 0.3, "beta_start": 5.0},
            ("dfo", 1): {"temperature": 0.01}, ("dfo", 2): {"temperature": 0.01}}


def method(name, box, k):
    cfg = OmegaConf.merge(packaged(name), {"k": k, **COMMON, **SETTINGS.get((name, box.size), {})})
    return build_inference(cfg, box, seed=0)


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("name", METHODS)
def test_each_method_finds_the_global_minimum_and_with_several_starts_all_minima(name, case):
    f, dims, minima = CASES[case]
    energy = Analytic(f, dims)
    minima = torch.tensor(minima)
    x = torch.zeros(2, 1)  # two identical inputs: a batch, not a single problem
    inference = method(name, energy.box, len(minima))
    inference.check(energy)
    cands = inference(energy, x)
    assert cands.mask[:, : len(minima)].all(), f"{name} found fewer than {len(minima)} minima on {case}"
    for b in range(2):
        found = cands.y[b][cands.mask[b]].flatten(1)
        # the best candidate is the global minimum ...
        assert (found[0] - minima[0]).norm() < TOL, (name, case, found)
        # ... and every minimum has a candidate near it
        assert torch.cdist(minima, found).min(dim=1).values.max() < TOL, (name, case, found)


def ks_statistic(samples: torch.Tensor, cdf) -> float:
    """The one-sample Kolmogorov-Smirnov statistic of 1-D samples against an exact CDF."""
    ys = samples.double().sort().values
    n = len(ys)
    emp = torch.arange(1, n + 1, dtype=torch.float64) / n
    c = cdf(ys)
    return float(torch.maximum((emp - c).abs(), (emp - 1 / n - c).abs()).max())


def test_hmc_at_beta_one_samples_the_gibbs_density_exactly():
    """HMC chains on F = -log p(y) of a 1-D Gaussian mixture, at beta = 1: the Metropolis test
    makes them exact whatever the step, so a large one (0.3) is fine. Moments and the KS statistic
    against the mixture's CDF, as for Langevin; a well-tuned acceptance rate."""
    w, mu, sd = torch.tensor([0.6, 0.4], dtype=torch.float64), torch.tensor([-0.8, 0.8], dtype=torch.float64), 0.5
    energy = Analytic(gaussian_mixture(w.tolist(), mu.tolist(), sd), 1, low=-5.0, high=5.0)
    gen = torch.Generator().manual_seed(0)
    n = 4000
    y0 = -3 + 6 * torch.rand(1, n, 1, generator=gen)
    y, acceptance = hmc_chains(energy, torch.zeros(1, 1), y0, energy.box, steps=400, step_size=0.3, leapfrog=5,
                               beta=lambda t: 1.0, generator=gen)
    y = y[0, :, 0].double()
    assert 0.7 < float(acceptance) <= 1.0
    mean, second = (w * mu).sum(), (w * (mu ** 2 + sd ** 2)).sum()
    assert abs(float(y.mean() - mean)) < 0.05 and abs(float((y ** 2).mean() - second)) < 0.05
    ks = ks_statistic(y, lambda v: (w * 0.5 * (1 + torch.erf((v[:, None] - mu) / (sd * math.sqrt(2))))).sum(1))
    assert ks < 1.63 / math.sqrt(n), ks  # the 1% critical value for n samples


def test_hmc_at_a_larger_beta_samples_the_sharper_density_and_rejects_too_large_steps():
    """F = y^2 / 2 at beta = 4 is N(0, 1/4) (the step is step_size / sqrt(beta)); a step far too
    large for it (past the leapfrog's stability limit, twice the density's spread) is mostly
    rejected."""
    energy = Analytic(lambda y: 0.5 * y[:, 0] ** 2, 1, low=-6.0, high=6.0)
    gen = torch.Generator().manual_seed(1)
    y0 = torch.zeros(1, 4000, 1)
    y, acceptance = hmc_chains(energy, torch.zeros(1, 1), y0, energy.box, steps=100, step_size=0.4, leapfrog=5,
                               beta=lambda t: 4.0, generator=gen)
    assert abs(float(y.var()) - 0.25) < 0.02 and float(acceptance) > 0.8
    ks = ks_statistic(y[0, :, 0], lambda v: 0.5 * (1 + torch.erf(v * 2 / math.sqrt(2))))
    assert ks < 1.63 / math.sqrt(4000), ks
    _, low_acceptance = hmc_chains(energy, torch.zeros(1, 1), y0, energy.box, steps=20, step_size=4.0, leapfrog=8,
                                   beta=lambda t: 4.0, generator=gen)
    assert float(low_acceptance) < 0.3


def test_hmc_samples_a_density_that_presses_against_a_wall():
    """F = 3 y on [0, 1]: the truncated exponential exp(-3 y), densest at the wall y = 0, which the
    chains hit and bounce off all the time; KS against its exact CDF."""
    energy = Analytic(lambda y: 3.0 * y[:, 0], 1, low=0.0, high=1.0)
    gen = torch.Generator().manual_seed(0)
    y, acceptance = hmc_chains(energy, torch.zeros(1, 1), torch.rand(1, 4000, 1, generator=gen), energy.box,
                               steps=100, step_size=0.3, leapfrog=5, beta=lambda t: 1.0, generator=gen)
    # a bounce mid-step breaks the leapfrog's energy conservation, so fewer are accepted; the
    # reflection is reversible and keeps volume, so the Metropolis test keeps the samples exact
    assert 0.3 < float(acceptance) < 1.0
    ks = ks_statistic(y[0, :, 0], lambda v: (1 - torch.exp(-3 * v)) / (1 - math.exp(-3)))
    assert ks < 1.63 / math.sqrt(4000), ks


def test_hmc_reflects_off_the_box_walls_and_samples_a_flat_energy_uniformly():
    y, p = reflect(torch.tensor([1.3, -0.4, 2.6, 0.5]), torch.ones(4), 0.0, 1.0)
    assert torch.allclose(y, torch.tensor([0.7, 0.4, 0.6, 0.5])) and p.tolist() == [-1, -1, 1, 1]
    energy = Analytic(lambda y: 0 * y[:, 0], 1, low=0.0, high=1.0)
    gen = torch.Generator().manual_seed(0)
    y, acceptance = hmc_chains(energy, torch.zeros(1, 1), torch.full((1, 4000, 1), 0.5), energy.box, steps=30,
                               step_size=0.7, leapfrog=4, beta=lambda t: 1.0, generator=gen)
    assert float(acceptance) == 1.0 and ((y >= 0) & (y <= 1)).all()
    assert ks_statistic(y[0, :, 0], lambda v: v) < 1.63 / math.sqrt(4000)


def test_langevin_at_beta_one_samples_the_gibbs_density():
    """Chains on F = -log p(y) of a 1-D Gaussian mixture, at beta = 1, sample p itself. (Modes
    close enough for chains to cross between them in the run; the discretisation bias of a step
    of 5e-3 is well below the tolerances.)"""
    w, mu, sd = torch.tensor([0.6, 0.4], dtype=torch.float64), torch.tensor([-0.8, 0.8], dtype=torch.float64), 0.5
    energy = Analytic(gaussian_mixture(w.tolist(), mu.tolist(), sd), 1, low=-5.0, high=5.0)
    gen = torch.Generator().manual_seed(0)
    n = 4000
    y0 = -3 + 6 * torch.rand(1, n, 1, generator=gen)
    y = langevin_chains(energy, torch.zeros(1, 1), y0, energy.box, steps=3000, step_size=5e-3, beta=lambda t: 1.0,
                        generator=gen)[0, :, 0].double()
    mean, second = (w * mu).sum(), (w * (mu ** 2 + sd ** 2)).sum()
    assert abs(float(y.mean() - mean)) < 0.05 and abs(float((y ** 2).mean() - second)) < 0.05
    # one-sample Kolmogorov-Smirnov statistic against the mixture's exact CDF
    ys = y.sort().values
    cdf = (w * 0.5 * (1 + torch.erf((ys[:, None] - mu) / (sd * math.sqrt(2))))).sum(1)
    emp = torch.arange(1, n + 1, dtype=torch.float64) / n
    ks = float(torch.maximum((emp - cdf).abs(), (emp - 1 / n - cdf).abs()).max())
    assert ks < 1.63 / math.sqrt(n), ks  # the 1% critical value for n samples


def test_langevin_without_noise_is_projected_gradient_descent():
    energy = Analytic(bowl, 1)
    y0 = torch.tensor([[[1.9]], [[-1.9]]])
    y = langevin_chains(energy, torch.zeros(2, 1), y0, energy.box, steps=500, step_size=0.05, beta=lambda t: 1.0,
                        noise=False)
    assert torch.allclose(y, torch.full_like(y, 0.5), atol=1e-4)


def random_chain(b, steps, s, shared=False, seed=0):
    gen = torch.Generator().manual_seed(seed)
    u = torch.randn(b, steps, s, generator=gen, dtype=torch.float64)
    p = torch.randn(s, s, generator=gen, dtype=torch.float64) if shared else torch.randn(b, steps - 1, s, s, generator=gen, dtype=torch.float64)
    return u, p


def brute_force(u, p):
    b, steps, s = u.shape
    seqs = torch.tensor(list(itertools.product(range(s), repeat=steps)))
    e = torch.stack([sequence_energy(u, p, seq.expand(b, steps)) for seq in seqs], dim=1)  # (B, S^T)
    return seqs, e


@pytest.mark.parametrize("shared", [False, True])
@pytest.mark.parametrize("steps,s", [(1, 4), (3, 3), (5, 2), (4, 4)])
def test_viterbi_kbest_and_forward_match_enumerating_every_sequence(steps, s, shared):
    u, p = random_chain(3, steps, s, shared, seed=steps * 10 + s)
    seqs, e = brute_force(u, p)
    k = min(6, s ** steps)
    best, paths = kbest_viterbi(u, p, k)
    assert torch.allclose(best, e.sort(dim=1).values[:, :k])
    for j in range(k):  # each returned path has the energy reported for it
        assert torch.allclose(sequence_energy(u, p, paths[:, j]), best[:, j])
    e1, path1 = viterbi(u, p)
    assert torch.equal(path1, seqs[e.argmin(dim=1)])
    for beta in [1e-3, 0.1, 1.0, 10.0, 1e3, 1e6]:
        f = forward_free_energy(u, p, beta)
        assert torch.isfinite(f).all()
        assert torch.allclose(f, -torch.logsumexp(-beta * e, dim=1) / beta, rtol=1e-9, atol=1e-9)
    assert (forward_free_energy(u, p, 1e6) - e1).abs().max() < 1e-5  # beta -> inf: the Viterbi energy
    assert torch.equal(forward_free_energy(u, p, math.inf), e1)


@pytest.mark.parametrize("layout", ["shared", "per_sequence", "per_step", "per_group"])
@pytest.mark.parametrize("beta", [0.05, 1.0])
def test_forward_by_matrix_products_equals_log_sum_exp_in_every_layout(layout, beta):
    """The scaled matrix-product forward algorithm (beta <= 1) against log-sum-exp at every step:
    values and gradients, float32 inputs, 12 steps of 16 states."""
    gen = torch.Generator().manual_seed(3)
    lead = (3, 5) if layout == "per_group" else (5,)
    u = (2 * torch.randn(*lead, 12, 16, generator=gen)).requires_grad_(True)
    p_shape = {"shared": (16, 16), "per_sequence": (5, 16, 16), "per_step": (5, 11, 16, 16), "per_group": (3, 16, 16)}
    p = (2 * torch.randn(*p_shape[layout], generator=gen)).requires_grad_(True)
    fast, exact = forward_free_energy(u, p, beta), _forward_log_sum_exp(u, p, beta)
    assert fast.shape == lead and fast.dtype == torch.float32
    assert torch.allclose(fast, exact, rtol=1e-5, atol=1e-4)
    for g_fast, g_exact in zip(torch.autograd.grad(fast.sum(), [u, p]), torch.autograd.grad(exact.sum(), [u, p])):
        assert torch.allclose(g_fast, g_exact, rtol=1e-4, atol=1e-5)


def test_forward_with_forbidden_transitions_stays_finite_and_exact():
    """Hard constraints (p = 1e9 or inf) count as nothing: log Z over the allowed sequences only."""
    u, p = random_chain(2, 4, 3, shared=True, seed=5)
    p[0, 1], p[:, 2] = 1e9, math.inf  # no move 0 -> 1, and state 2 is never entered after the first step
    seqs, e = brute_force(u, p)
    f = forward_free_energy(u, p, 1.0)
    assert torch.isfinite(f).all()
    assert torch.allclose(f, -torch.logsumexp(-e, dim=1), rtol=1e-9, atol=1e-9)


def test_kbest_beyond_the_number_of_sequences_is_masked():
    u, p = random_chain(2, 2, 2)
    best, _ = kbest_viterbi(u, p, 6)
    assert torch.isfinite(best[:, :4]).all() and torch.isinf(best[:, 4:]).all()


class Chain(ChainEnergy):
    """A chain energy with fixed potentials: K modes, u (B, K, T, S) and p (K, S, S)."""

    def __init__(self, u, p):
        super().__init__(DiscreteZ(u.shape[1]))
        self.u, self.p = u, p

    def potentials(self, x):
        return self.u, self.p


def test_dp_inference_returns_the_k_best_sequences_and_refuses_other_energies():
    """One Viterbi path per mode, ranked by -log P(y | x, z) = E(x, y, z) + log Z(x, z): the same
    as enumerating every sequence of every mode."""
    b, modes, steps, s = 2, 4, 4, 3
    gen = torch.Generator().manual_seed(0)
    u = torch.randn(b, modes, steps, s, generator=gen, dtype=torch.float64)
    p = torch.randn(modes, s, s, generator=gen, dtype=torch.float64)
    best_cost, best_seq = [], []
    for z in range(modes):
        seqs, e = brute_force(u[:, z], p[z])  # (S^T, T), (B, S^T)
        cost = e + torch.logsumexp(-e, dim=1, keepdim=True)  # -log P(y | x, z)
        best_cost.append(cost.min(dim=1).values)
        best_seq.append(seqs[cost.argmin(dim=1)])
    best_cost, best_seq = torch.stack(best_cost, 1), torch.stack(best_seq, 1)  # (B, K), (B, K, T)
    cands = DPInference(k=3, split_prob=1.0)(Chain(u, p), torch.zeros(b, 1))  # argmax per mode only
    assert cands.y.shape == (b, 3, steps) and cands.mask.all()
    order = best_cost.argsort(dim=1)[:, :3]
    assert torch.allclose(cands.energy, best_cost.gather(1, order))
    assert torch.equal(cands.y, best_seq.gather(1, order[..., None].expand(b, 3, steps)))
    assert torch.equal(cands.z[..., 0].long(), order)
    with pytest.raises(UserError, match="needs a chain-structured energy"):
        DPInference(k=3).check(Analytic(bowl, 1))


def test_cd_trains_and_its_replay_buffer_is_checkpointed_and_resumed(tmp_path):
    import shutil

    from ebm_cli.runtime.checkpoint import load_checkpoint
    from ebm_cli.tasks.train import train
    from helpers import make_cfg

    overrides = ["debug=smoke", "loss=cd", "loss.buffer_size=256", "logger.landscape_every=0"]
    metrics = train(make_cfg(*overrides), tmp_path / "full")
    assert math.isfinite(metrics["chamfer"])
    state = load_checkpoint(tmp_path / "full" / "checkpoints" / "last.pt")
    buffer = state["loss"]["buffer"]
    assert buffer.shape == (256, 1) and torch.isfinite(buffer).all()
    # an interrupted run (killed after its step-20 checkpoint) resumed: same buffer, same weights
    interrupted = tmp_path / "cut"
    shutil.copytree(tmp_path / "full", interrupted)
    checkpoints = interrupted / "checkpoints"
    (checkpoints / "previous.pt").replace(checkpoints / "last.pt")  # the step-20 one becomes the latest
    (interrupted / "metrics.json").unlink()  # as if killed before finishing
    state20 = load_checkpoint(interrupted / "checkpoints" / "last.pt")
    assert state20["step"] == 20 and not torch.equal(state20["loss"]["buffer"], buffer)
    resumed = train(make_cfg(*overrides, "trainer.resume=auto"), interrupted)
    final = load_checkpoint(interrupted / "checkpoints" / "last.pt")
    assert torch.equal(final["loss"]["buffer"], buffer)
    assert all(torch.equal(final["model"][k], state["model"][k]) for k in state["model"])
    assert resumed["chamfer"] == pytest.approx(metrics["chamfer"])


def test_compare_inference_runs_every_applicable_method(smoke_run, tmp_path, capsys):
    import json

    from ebm_cli.tasks.compare import compare_inference
    from helpers import make_cfg

    run_dir, _, _ = smoke_run
    results = compare_inference(make_cfg("task=compare_inference", f"run_dir={run_dir}"), tmp_path)
    by_name = {r["method"]: r for r in results}
    assert sorted(n for n, r in by_name.items() if r["applicable"]) == sorted(["grid", "gradient", "langevin", "hmc",
                                                                                "dfo", "cem"])
    assert "needs an energy that decodes its predictions" in by_name["z_sweep"]["reason"]
    assert "chain-structured" in by_name["dp"]["reason"]
    for name in ("grid", "gradient", "langevin", "hmc", "dfo", "cem"):
        r = by_name[name]
        assert 0 <= r["coverage@0.05"] <= 1 and r["energy_evals"] > 0 and r["wall_ms"] > 0
    saved = json.loads((tmp_path / "compare_inference.json").read_text())
    assert [r["method"] for r in saved["results"]] == list(by_name)
    out = capsys.readouterr().out
    assert "inference methods on MLPEnergy" in out and all(name in out for name in by_name)


def test_grid_gives_the_exact_gibbs_probabilities():
    energy = Analytic(mixture, 1, low=-3.0, high=3.0)
    grid_method = method("grid", energy.box, 2)
    grid, p = grid_method.probabilities(energy, torch.zeros(2, 1), beta=1.0)
    assert p.shape == (2, len(grid)) and torch.allclose(p.sum(1), torch.ones(2))
    # at beta = 1, F = -log(mixture density): P on the grid is the density times the cell width
    dy = float(grid[1, 0] - grid[0, 0])
    density = torch.exp(-mixture(grid))
    assert torch.allclose(p[0], density * dy / (density * dy).sum(), atol=1e-6)
    assert abs(float((p[0] * grid[:, 0]).sum()) - (0.6 * -1 + 0.4 * 1)) < 1e-3  # the mixture's mean


@pytest.mark.parametrize("activation", ["silu", "relu", "gelu", "tanh", "softplus"])
@pytest.mark.parametrize("depth", [0, 1, 3])
@pytest.mark.parametrize("output", ["linear", "softplus", "square", "square_plus_linear"])
def test_mlp_closed_form_y_gradient_equals_autograd(activation, depth, output):
    """MLPEnergy's grad_y by hand (x's share once, no graph) against autograd, for C chains per x,
    with either output; an activation without a closed form (softplus) falls back to autograd."""
    from ebm_cli.core.energy import pairwise_energy, y_gradient
    from ebm_cli.energies.mlp import MLPEnergy

    torch.manual_seed(0)
    energy = MLPEnergy(16, depth, activation, output, x_dim=3, x_low=-1.0, x_high=2.0,
                       y_space=BoxSpace(-2.0, 1.5, (2,)))
    x, y = torch.randn(5, 3), torch.randn(5, 4, 2, requires_grad=True)
    (expected,) = torch.autograd.grad(pairwise_energy(energy, x, y).sum(), y)
    assert (energy.y_gradient(x) is None) == (activation == "softplus" and depth > 0)
    got = y_gradient(energy, x)(y.detach())
    assert got.shape == y.shape and not got.requires_grad
    assert torch.allclose(got, expected, atol=1e-6)


def test_many_langevin_chains_run_in_blocks_on_every_core_with_the_same_result_on_any_thread_count():
    """Enough chains of a closed-form energy run as blocks on all the CPU threads (langevin._blocks,
    threads.share_cores): without noise the same states as one computation; with noise each block's own
    generator makes the result independent of how many threads ran the blocks."""
    from ebm_cli.core.energy import y_gradient
    from ebm_cli.energies.mlp import MLPEnergy
    from ebm_cli.inference import langevin

    torch.manual_seed(0)
    box = BoxSpace(-1.0, 1.0, (2,))
    energy = MLPEnergy(128, 2, "silu", "square", x_dim=1, x_low=-1.0, x_high=1.0, y_space=box)
    x, y0 = torch.rand(3, 1) * 2 - 1, torch.rand(3, 1500, 2) * 2 - 1  # 3 x rows, 1500 chains each
    blocks = langevin._blocks(energy, x, y0)
    assert len(blocks) == 6  # 1024 chains of 128 hidden units a block: per row chains 0-1023 and 1024-1499
    assert len(langevin._blocks(energy, x, y0[:, :600])) == 1  # too few chains: one computation (on one thread)
    assert langevin._blocks(Analytic(bowl, 2), x, y0) is None  # autograd: one computation on torch's threads
    run = lambda noise, gen=None: langevin_chains(energy, x, y0, box, 20, 0.05, lambda t: 4.0, 1.0, noise, gen)

    one_computation = langevin._run_chains(y_gradient(energy, x), y0, box, 20, 0.05, lambda t: 4.0, 1.0, False, None)
    assert torch.allclose(run(False), one_computation, atol=1e-6)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        on_two = run(True, torch.Generator().manual_seed(3))
        torch.set_num_threads(1)
        on_one = run(True, torch.Generator().manual_seed(3))
    finally:
        torch.set_num_threads(before)
    assert torch.equal(on_one, on_two)
    assert not torch.allclose(on_two, one_computation, atol=1e-3)  # the noise was applied ...
    assert on_two.abs().max() <= 1.0  # ... and every block projected into the box
    with torch.device("meta"):  # a tensor made without the chains' device (the blocks' seeds) fails here
        assert torch.equal(run(True, torch.Generator().manual_seed(3)), on_two)
    assert langevin_chains(energy, x, y0[:, :0], box, 5, 0.05, lambda t: 4.0).shape == (3, 0, 2)  # no chains
