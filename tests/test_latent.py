"""Latent energies E(x, y, z): free energy over z, exact log Z, inference returning z, training runs."""

import math

import pytest
import torch
from hydra.errors import MissingConfigException
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from ebm_cli.build import build_energy, build_run
from ebm_cli.core.energy import pairwise_energy
from ebm_cli.core.spaces import BoxSpace
from ebm_cli.errors import UserError, one_line
from ebm_cli.inference.grid import GridInference
from ebm_cli.inference.z_sweep import ZSweepInference
from ebm_cli.tasks import infer as infer_task
from ebm_cli.tasks.train import train
from ebm_cli.validate import validate
from helpers import make_cfg

Y_SPACE = BoxSpace(-1.5, 1.5, (1,))
META = {"x_dim": 1, "x_shape": [1], "x_low": -1.0, "x_high": 1.0, "y_shape": [1], "y_space": Y_SPACE.to_config()}
BETAS = [1e-3, 1e-1, 1.0, 10.0, 1e3, 1e6]


def decoder(z_kind="discrete", prior="learned", seed=0, **z):
    torch.manual_seed(seed)
    cfg = make_cfg("energy=decoder", f"energy.prior={prior}", f"energy/z={z_kind}",
                   *[f"energy.z.{k}={v}" for k, v in z.items()])
    return build_energy(cfg.energy, META)


def test_discrete_free_energy_is_an_exact_log_sum_exp_and_tends_to_the_min():
    energy = decoder(k=4)
    x, y = torch.tensor([[0.3], [-0.7]]), torch.tensor([[0.1], [0.9]])
    z = torch.arange(4.0)[:, None]
    e = energy.energies(x, y, z.unsqueeze(0).expand(2, 4, 1))  # (2, 4), by hand below
    for beta in BETAS:
        energy.set_beta(beta)
        f, z_best = energy.free_energy_with_z(x, y)
        expected = -torch.logsumexp(-beta * e.double(), dim=1) / beta
        assert torch.isfinite(f).all()
        assert torch.allclose(f.double(), expected, rtol=1e-5, atol=1e-5 * max(1, 1 / beta)), beta
        assert torch.equal(z_best[:, 0], e.argmin(dim=1).float())
    energy.set_beta(1e4)
    f_big = energy(x, y)
    with energy.at_beta(math.inf):
        f_inf = energy(x, y)
    assert torch.allclose(f_inf, e.min(dim=1).values)
    assert (f_big - f_inf).abs().max() < 1e-3  # F_beta -> F_inf


@pytest.mark.parametrize("z_kind,z", [("discrete", {"k": 3}), ("box", {"dim": 1}), ("circle", {})])
@pytest.mark.parametrize("beta", [0.5, 5.0, 50.0])
def test_exact_log_partition_is_the_integral_of_exp_minus_beta_free_energy(z_kind, z, beta):
    """log Z(x) in closed form equals log ∫ exp(-beta F_beta(x, y)) dy on a fine y-grid."""
    energy = decoder(z_kind, seed=1, **z)
    energy.set_beta(beta)
    assert energy.exact_partition
    x = torch.tensor([[-0.4], [0.6]])
    ys = torch.linspace(-1.5, 1.5, 6001)
    with torch.no_grad():
        f = torch.stack([energy(x[i : i + 1].expand(len(ys), 1), ys[:, None]) for i in range(2)])  # (2, G)
        numeric = torch.logsumexp(-beta * f.double(), dim=1) + math.log(float(ys[1] - ys[0]))
        exact = energy.log_partition(x, beta)
    assert torch.allclose(exact.double(), numeric, atol=2e-3), (exact, numeric)


@pytest.mark.parametrize("z_kind,extra", [
    ("discrete", []), ("box", ["energy.z.dim=2"]), ("circle", []), ("sphere", ["energy.z.dim=3"]),
    ("box", ["energy.z.dim=3", "energy.free_energy.eliminate=min", "energy.free_energy.method=minimize",
             "energy.free_energy.steps=5"]),
    ("box", ["energy.z.dim=1", "energy.free_energy.method=monte_carlo"]),
    ("box", ["energy.z.dim=1", "energy.prior=l2", "energy.reg=0.5"]),
])
@pytest.mark.parametrize("name", ["decoder", "latent_mlp"])
def test_every_z_space_and_method_gives_finite_values_and_gradients(name, z_kind, extra):
    if name == "latent_mlp":
        extra = [o for o in extra if "prior" not in o and "reg" not in o]  # R(z) belongs to the decoder
    cfg = make_cfg(f"energy={name}", f"energy/z={z_kind}", *extra)
    validate(cfg)
    energy = build_energy(cfg.energy, META)
    x, y = torch.rand(5, 1) * 2 - 1, (torch.rand(5, 1) * 2 - 1).requires_grad_(True)
    for beta in BETAS:
        energy.set_beta(beta)
        f = energy(x, y)
        assert f.shape == (5,) and torch.isfinite(f).all(), (beta, f)
        (gy,) = torch.autograd.grad(f.sum(), y, retain_graph=True)
        assert torch.isfinite(gy).all()
    f.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in energy.parameters() if p.grad is not None)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in energy.parameters())


def test_z_sweep_returns_one_distinct_candidate_per_z_with_its_z():
    energy = decoder(prior="none", k=3)
    with torch.no_grad():  # three well separated decoders: g(x, z) = z - 1 (+ nothing)
        last = energy.net[-1]
        last.weight.zero_()
        last.bias.copy_(torch.tensor([-1.0, 0.0, 1.0]) / float(energy.y_norm.half_width))
    energy.set_beta(1000.0)
    x = torch.tensor([[0.0], [0.5]])
    cands = ZSweepInference(k=3, dedup=0.02, y_space=Y_SPACE)(energy, x)
    assert cands.mask.all()
    got = sorted(zip(cands.y[0, :, 0].tolist(), cands.z[0, :, 0].tolist()))
    assert [v for pair in got for v in pair] == pytest.approx([-1.0, 0.0, 0.0, 1.0, 1.0, 2.0], abs=1e-5)
    # grid inference on F_inf finds the same three minima, and their z by argmin over z
    with energy.at_beta(math.inf):
        grid = GridInference(k=3, points=601, dedup=0.02, y_space=Y_SPACE)(energy, x)
    found = sorted(zip(grid.y[1, :, 0].tolist(), grid.z[1, :, 0].tolist()))
    assert [v for pair in found for v in pair] == pytest.approx([v for pair in got for v in pair], abs=1e-2)


def test_min_share_drops_modes_the_prior_switches_off():
    energy = decoder(prior="learned", k=3)
    with torch.no_grad():
        last = energy.net[-1]
        last.weight.zero_()
        # heads at -1, 0, 1; prior energies 0, 0, 0.01 (exp(-1000 * 0.01) = 5e-5 of the best's weight)
        last.bias.copy_(torch.tensor([-1.0 / 1.5, 0.0, 1.0 / 1.5, 0.0, 0.0, 0.01]))
    energy.set_beta(1000.0)
    x = torch.zeros(1, 1)
    assert ZSweepInference(k=3, dedup=0.02, y_space=Y_SPACE)(energy, x).mask.sum() == 3
    kept = ZSweepInference(k=3, dedup=0.02, min_share=0.05, y_space=Y_SPACE)(energy, x)
    assert kept.mask.sum() == 2 and 2.0 not in kept.z[0][kept.mask[0]].flatten().tolist()


@pytest.mark.parametrize("overrides,fragment", [
    (["energy=mlp", "loss=free_energy"], "loss=free_energy has no negative phase"),
    (["energy=decoder", "energy.prior=learned", "loss=free_energy"], "loss=free_energy"),
    (["energy=mlp", "inference=z_sweep"], "inference=z_sweep needs an energy that decodes its predictions"),
    (["energy=decoder", "energy.z.k=0"], "energy.z.k=0: must be >= 1"),
    (["energy=decoder", "energy.prior=l2"], "energy.prior=l2: R(z) = reg ||z||^2 needs a box z"),
    (["energy=decoder", "energy/z=box", "energy.free_energy.method=minimize"],
     "energy.free_energy.method=minimize: gives F_inf only"),
    (["energy=decoder", "energy.free_energy.method=quadrature"], "energy.free_energy.method=quadrature: is for a continuous z"),
    (["energy=decoder", "energy/z=sphere", "energy.z.dim=1"], "energy.z.dim=1: must be >= 2 for a sphere"),
])
def test_impossible_latent_settings_are_named(overrides, fragment):
    with pytest.raises(UserError) as err:
        build_run(make_cfg(*overrides))
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_an_unknown_z_space_is_named_with_the_available_ones():
    """The z kind is a config group (energy/z=...): an unknown one fails when the config is composed."""
    with pytest.raises(MissingConfigException) as err:
        build_run(make_cfg("energy=decoder", "energy/z=torus"))
    message = one_line(err.value)
    assert "energy/z/torus" in message and "available: box, circle, discrete, sphere" in message


@pytest.fixture(scope="module")
def latent_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("latent_run")
    cfg = make_cfg("experiment=curves_latent", "debug=smoke", "beta=anneal", "beta.steps=30")
    return run_dir, cfg, train(cfg, run_dir)


def test_latent_run_logs_its_images_and_usage(latent_run):
    run_dir, cfg, metrics = latent_run
    acc = EventAccumulator(str(run_dir / "tb"), size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    for name in ("latent_energy", "free_energy_betas", "ribbon", "latent_usage"):
        images = acc.Images(f"landscape/{name}")
        assert [im.step for im in images] == [15, 30], name
        assert images[-1].width > 200 and images[-1].height > 100
        assert (run_dir / "figures" / f"{name}.png").stat().st_size > 1000
    betas = [s.value for s in acc.Scalars("Training/beta")]
    assert betas == sorted(betas) and betas[0] < betas[-1]  # the annealing schedule, logged
    assert 0 <= metrics["latent_entropy"] <= math.log(3) + 1e-6
    assert 1 <= metrics["latent_used"] <= 3
    assert acc.Scalars("metrics/latent_entropy")[-1].value == pytest.approx(metrics["latent_entropy"])


def test_latent_checkpoint_keeps_the_final_beta_and_infer_prints_z(latent_run, capsys):
    run_dir, cfg, _ = latent_run
    energy, run_cfg, _ = infer_task.load_run(run_dir, torch.device("cpu"))
    assert energy.beta == pytest.approx(1000.0)  # the schedule's final value, saved with the weights
    results = infer_task.infer(make_cfg("task=infer", f"run_dir={run_dir}", "x=[0.0,0.5]"))
    assert [len(r["candidates"]) for r in results] == [3, 3]  # the run's own inference: z_sweep, k = K
    assert sorted(c["z"][0] for c in results[0]["candidates"]) == [0.0, 1.0, 2.0]
    assert "z_sweep" in capsys.readouterr().out
    # naming a method on the command line uses it instead; inference.<key> alone edits the run's
    grid = infer_task.infer(make_cfg("task=infer", f"run_dir={run_dir}", "x=[0.0]", "inference=grid", "inference.k=1"),
                         overrides=["inference=grid", "inference.k=1"])
    assert len(grid[0]["candidates"]) == 1 and "z" in grid[0]["candidates"][0]
    one = infer_task.infer(make_cfg("task=infer", f"run_dir={run_dir}", "x=[0.0]", "inference.k=1"), overrides=["inference.k=1"])
    assert len(one[0]["candidates"]) == 1
    # naming the run's own method keeps its settings (k = K = 3) and changes only the named keys
    same = ["inference=z_sweep", "inference.dedup=0.03"]
    kept = infer_task.infer(make_cfg("task=infer", f"run_dir={run_dir}", "x=[0.0]", *same), overrides=same)
    assert len(kept[0]["candidates"]) == 3
    with pytest.raises(UserError, match="inference.min_share=2.0"):
        bad = ["inference=z_sweep", "inference.min_share=2"]
        infer_task.infer(make_cfg("task=infer", f"run_dir={run_dir}", "x=[0.0]", *bad), overrides=bad)


def test_general_latent_mlp_trains_by_nll_through_its_free_energy(tmp_path):
    metrics = train(make_cfg("debug=smoke", "energy=latent_mlp", "energy/z=circle", "energy.free_energy.points=8",
                             "loss.grid_points=32", "logger.landscape_every=0"), tmp_path)
    assert math.isfinite(metrics["chamfer"]) and "latent_entropy" in metrics


def test_decoder_trains_by_hinge_through_its_free_energy(tmp_path):
    metrics = train(make_cfg("debug=smoke", "energy=decoder", "loss=hinge", "logger.landscape_every=0"), tmp_path)
    assert math.isfinite(metrics["chamfer"])



@pytest.mark.parametrize("extra", [["energy.prior=learned"], ["energy/z=box"], ["energy/z=circle", "energy.free_energy.eliminate=min"],
                                   ["energy/z=sphere", "energy.z.dim=3"]])
def test_decoder_batched_pairwise_form_equals_one_pair_at_a_time(extra):
    torch.manual_seed(0)
    energy = build_energy(make_cfg("energy=decoder", *extra).energy, META).eval()
    energy.set_beta(7.0)
    x, y = torch.rand(4, 1), (torch.rand(4, 9, 1) * 3 - 1.5).requires_grad_(True)
    fast = pairwise_energy(energy, x, y)
    slow = energy(x.repeat_interleave(9, 0), y.reshape(-1, 1)).view(4, 9)
    assert torch.allclose(fast, slow, atol=1e-5)
    (g_fast,) = torch.autograd.grad(fast.sum(), y)
    (g_slow,) = torch.autograd.grad(slow.sum(), y)
    assert torch.allclose(g_fast, g_slow, atol=1e-4)
