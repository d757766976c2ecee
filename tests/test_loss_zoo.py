"""The loss zoo: every loss of the tutorial, score matching and NCE on analytic cases (value and
gradient against the formula in its docstring; a margin loss is zero once its margin is met), each
built from its packaged config, and refused in one line where it does not apply."""

import math
from importlib import resources
from types import SimpleNamespace

import pytest
import torch
from omegaconf import OmegaConf

from ebm_cli.build import build
from ebm_cli.core.energy import Energy
from ebm_cli.core.spaces import BoxSpace, SequenceSpace
from ebm_cli.errors import UserError

BOX = BoxSpace(-1.0, 1.0, (1,))


def two_branches():
    """Training data: y = +-0.5 at 201 x in [-1, 1]."""
    xs = torch.linspace(-1, 1, 201)
    return SimpleNamespace(x_train=torch.cat([xs, xs])[:, None],
                           y_train=torch.cat([torch.full_like(xs, 0.5), torch.full_like(xs, -0.5)])[:, None])


def loss_of(name, space=BOX, data=None, **settings):
    """loss=<name> built from its packaged yaml, as the runner builds it."""
    node = OmegaConf.create((resources.files("ebm_cli.configs") / "loss" / f"{name}.yaml").read_text())
    node = OmegaConf.merge(node, settings)
    return build(node, "loss", data=data or two_branches(), y_space=space, device="cpu", inference=None)


s = torch.sigmoid
# name: (settings, Q(E+, E-), dQ/dE+, dQ/dE-), with the formulas of the docstrings
MARGIN_LOSSES = {
    "hinge": ({"margin": 0.7}, lambda p, n: torch.relu(0.7 + p - n),
              lambda p, n: ((0.7 + p - n) > 0).float(), lambda p, n: -((0.7 + p - n) > 0).float()),
    "perceptron": ({}, lambda p, n: p - torch.minimum(p, n), lambda p, n: (p > n).float(), lambda p, n: -(p > n).float()),
    "log": ({}, lambda p, n: torch.log1p(torch.exp(p - n)), lambda p, n: s(p - n), lambda p, n: -s(p - n)),
    "lvq2": ({"delta": 2.0}, lambda p, n: torch.clamp((p - n) / (2.0 * n), 0, 1),
             lambda p, n: ((p > n) & (p - n < 2 * n)).float() / (2.0 * n),
             lambda p, n: -((p > n) & (p - n < 2 * n)).float() * p / (2.0 * n ** 2)),
    "mce": ({}, lambda p, n: s(p - n), lambda p, n: s(p - n) * (1 - s(p - n)), lambda p, n: -s(p - n) * (1 - s(p - n))),
    "square_square": ({"margin": 1.5}, lambda p, n: p ** 2 + torch.relu(1.5 - n) ** 2,
                      lambda p, n: 2 * p, lambda p, n: -2 * torch.relu(1.5 - n)),
    "square_exponential": ({"gamma": 0.5}, lambda p, n: p ** 2 + 0.5 * torch.exp(-n),
                           lambda p, n: 2 * p, lambda p, n: -0.5 * torch.exp(-n)),
}


@pytest.mark.parametrize("name", list(MARGIN_LOSSES))
def test_each_margin_loss_matches_its_formula_in_value_and_gradient(name):
    settings, q, dq_pos, dq_neg = MARGIN_LOSSES[name]
    loss = loss_of(name, **settings)
    # energies > 0 (LVQ2's assumption) that put E- below, near and above E+
    p = torch.tensor([0.2, 0.9, 1.3, 2.0, 0.05, 3.0], requires_grad=True)
    n = torch.tensor([1.5, 1.0, 0.4, 2.1, 2.5, 0.2], requires_grad=True)
    value = loss.pair(p, n)
    assert torch.allclose(value, q(p, n), atol=1e-6)
    g_pos, g_neg = torch.autograd.grad(value.sum(), [p, n])
    assert torch.allclose(g_pos, dq_pos(p.detach(), n.detach()), atol=1e-5), (name, g_pos)
    assert torch.allclose(g_neg, dq_neg(p.detach(), n.detach()), atol=1e-5), (name, g_neg)


@pytest.mark.parametrize("name, met", [
    ("hinge", (0.2, 1.3)),  # E- >= E+ + m (m = 1)
    ("perceptron", (0.5, 0.5)),  # no margin: zero as soon as E- >= E+
    ("lvq2", (0.5, 0.6)),
    ("square_square", (0.0, 1.0)),  # E+ = 0, E- >= m
])
def test_a_margin_loss_is_zero_once_its_margin_is_met(name, met):
    loss = loss_of(name)
    e_pos, e_neg = torch.tensor([met[0]]), torch.tensor([met[1]])
    assert float(loss.pair(e_pos, e_neg)) == 0.0
    assert float(loss.pair(e_pos, e_neg - 0.3)) > 0  # and not once the offending answer comes closer


class Tilted(Energy):
    """F(x, y) = c y^2 + 0.5: lowest at y = 0, between the branches, for every x."""

    def __init__(self, c=0.4):
        super().__init__()
        self.c = torch.nn.Parameter(torch.tensor(c))

    def forward(self, x, y):
        return self.c * y[:, 0] ** 2 + 0.5


class OtherBranch(Energy):
    """F(x, y) = c (y + 0.5)^2 + 0.5: lowest on the branch y = -0.5, which is a correct answer at every x."""

    def __init__(self, c=2.0):
        super().__init__()
        self.c = torch.nn.Parameter(torch.tensor(c))

    def forward(self, x, y):
        return self.c * (y[:, 0] + 0.5) ** 2 + 0.5


@pytest.mark.parametrize("name", list(MARGIN_LOSSES))
def test_each_margin_loss_scores_the_most_offending_incorrect_answer(name):
    """With uniform=0 the loss is Q(F(x, y), F(x, y_bar)) on the lowest *incorrect* answer. The energy
    is lowest on the other branch, y = -0.5, which is correct too and must be left out even for a
    sample of the branch y = 0.5: y_bar is then the edge of the excluded region, -0.5 +- exclude."""
    settings, q, _, _ = MARGIN_LOSSES[name]
    loss = loss_of(name, uniform=0, proposals=400, **settings)
    energy, x, y = OtherBranch(), torch.tensor([[0.0], [0.3]]), torch.tensor([[0.5], [-0.5]])
    value, stats = loss(energy, x, y, 1.0)
    e_pos = energy(x, y).detach()
    e_bar = 2.0 * (0.1 * 1.001) ** 2 + 0.5  # F at the boundary of the correct region around -0.5
    assert float(stats["e_neg"]) == pytest.approx(e_bar, abs=1e-4)
    assert float(value.detach()) == pytest.approx(float(q(e_pos, torch.full_like(e_pos, e_bar)).mean()), abs=1e-4)


@pytest.mark.parametrize("name", ["hinge", "log", "square_square"])
def test_a_margin_loss_adds_the_mean_over_its_uniform_incorrect_answers(name):
    """With uniform=R: Q(E+, E_bar) + the mean of Q(E+, E_r) over the R uniform answers that are
    incorrect, averaged over the batch; recomputed from the same draws."""
    settings, q, _, _ = MARGIN_LOSSES[name]
    loss = loss_of(name, uniform=8, **settings)
    energy, x, y = OtherBranch(), torch.tensor([[0.0], [0.3], [-0.7]]), torch.tensor([[0.5], [-0.5], [0.5]])
    torch.manual_seed(3)
    value, _ = loss(energy, x, y, 1.0)
    torch.manual_seed(3)
    y_bar, uniform, ok = loss.negatives(energy, x, y)
    with torch.no_grad():
        e_pos, e_bar = energy(x, y), energy(x, y_bar)
        e_uni = torch.stack([energy(x, uniform[:, r]) for r in range(8)], dim=1)
        spread = (q(e_pos[:, None], e_uni) * ok).sum(1) / ok.sum(1).clamp(min=1)
        expected = (q(e_pos, e_bar) + spread).mean()
    assert not ok.all() and ok.any()  # some uniform draws fall near a branch and are left out
    assert float(value.detach()) == pytest.approx(float(expected), rel=1e-5)


def test_the_energy_loss_is_the_data_energy():
    loss, energy = loss_of("energy"), Tilted(0.4)
    x, y = torch.zeros(3, 1), torch.tensor([[0.0], [0.5], [1.0]])
    value, _ = loss(energy, x, y, 1.0)
    assert float(value.detach()) == pytest.approx(0.4 * (0 + 0.25 + 1) / 3 + 0.5)
    (grad,) = torch.autograd.grad(value, energy.c)  # d mean(c y^2 + 0.5) / dc = mean y^2
    assert float(grad) == pytest.approx(1.25 / 3)


class Quadratic(Energy):
    """F(x, y) = a y^2 / 2: at beta = 1 the density N(0, 1/a), whose score is -a y."""

    def __init__(self, a):
        super().__init__()
        self.a = torch.nn.Parameter(torch.tensor(float(a)))

    def forward(self, x, y):
        return 0.5 * self.a * y[:, 0] ** 2


def test_denoising_score_matching_matches_its_closed_form():
    """y ~ N(0, tau^2), y~ = y + sigma eps: 1/2 E(sigma s(y~) + eps)^2 = 1/2 ((1 - sigma^2 a)^2 + sigma^2 a^2 tau^2),
    with gradient sigma^2 (a (sigma^2 + tau^2) - 1) in a: zero at the blurred data's 1 / (sigma^2 + tau^2)."""
    sigma, tau, a = 0.3, 0.5, 2.0
    loss = loss_of("dsm", BoxSpace(-5.0, 5.0, (1,)), sigma=sigma)
    torch.manual_seed(0)
    n = 400_000
    energy, y = Quadratic(a), tau * torch.randn(n, 1)
    value, _ = loss(energy, torch.zeros(n, 1), y, 1.0)
    assert float(value.detach()) == pytest.approx(0.5 * ((1 - sigma ** 2 * a) ** 2 + sigma ** 2 * a ** 2 * tau ** 2), rel=0.01)
    (grad,) = torch.autograd.grad(value, energy.a)
    assert float(grad) == pytest.approx(sigma ** 2 * (a * (sigma ** 2 + tau ** 2) - 1), abs=3e-3)


def test_sliced_score_matching_matches_hyvarinens_objective():
    """For a 1-D y a Rademacher v is +-1, so the loss is s'(y) + s(y)^2 / 2 exactly: -a + a^2 mean(y^2) / 2,
    with gradient -1 + a mean(y^2), zero at a = 1 / mean(y^2) (the data's precision)."""
    loss, energy = loss_of("ssm", BoxSpace(-5.0, 5.0, (1,))), Quadratic(3.0)
    y = 0.5 * torch.randn(1000, 1, generator=torch.Generator().manual_seed(0))
    m2 = float((y ** 2).mean())
    value, _ = loss(energy, torch.zeros(1000, 1), y, 1.0)
    assert float(value.detach()) == pytest.approx(-3.0 + 0.5 * 9.0 * m2, rel=1e-5)
    (grad,) = torch.autograd.grad(value, energy.a)
    assert float(grad) == pytest.approx(-1 + 3.0 * m2, rel=1e-4)


def test_sliced_score_matching_in_two_dimensions():
    """F = (a1 y1^2 + a2 y2^2) / 2: s = -A y, ds/dy = -A, so the loss is -(a1 + a2) + E (v^T A y)^2 / 2,
    whose mean over Rademacher v is -(a1 + a2) + (a1^2 E y1^2 + a2^2 E y2^2) / 2."""

    class Anisotropic(Energy):
        def forward(self, x, y):
            return 0.5 * (2.0 * y[:, 0] ** 2 + 5.0 * y[:, 1] ** 2)

    loss = loss_of("ssm", BoxSpace(-5.0, 5.0, (2,)), projections=64)
    torch.manual_seed(0)
    y = torch.randn(4000, 2) * torch.tensor([0.7, 0.3])
    value, _ = loss(Anisotropic(), torch.zeros(4000, 1), y, 1.0)
    m2 = (y ** 2).mean(0)
    expected = -(2.0 + 5.0) + 0.5 * float(4.0 * m2[0] + 25.0 * m2[1])
    assert float(value.detach()) == pytest.approx(expected, abs=0.03)


class Constant(Energy):
    def __init__(self, c):
        super().__init__()
        self.c = torch.nn.Parameter(torch.tensor(float(c)))

    def forward(self, x, y):
        return self.c.expand(len(y))


@pytest.mark.parametrize("beta", [0.5, 2.0])
def test_nce_learns_the_normaliser(beta):
    """A constant energy c against uniform noise on a box of volume V: the loss is
    softplus(-G) + nu softplus(G), G = -beta c + log V - log nu, smallest at exp(-beta c) = 1 / V:
    the energy takes the log of the normaliser itself."""
    box = BoxSpace(-1.0, 2.0, (1,))  # V = 3
    loss = loss_of("nce", box, noise_samples=8)
    x, y = torch.zeros(64, 1), torch.rand(64, 1) * 3 - 1
    best = math.log(3.0) / beta
    for c in (best - 0.5, best, best + 0.5):
        energy = Constant(c)
        value, _ = loss(energy, x, y, beta)
        g = -beta * c + math.log(3.0) - math.log(8)
        assert float(value.detach()) == pytest.approx(math.log1p(math.exp(-g)) + 8 * math.log1p(math.exp(g)), rel=1e-5)
        (grad,) = torch.autograd.grad(value, energy.c)
        # downhill towards the normaliser from either side, flat at it
        assert (float(grad) < -1e-4) == (c < best - 1e-6) and (float(grad) > 1e-4) == (c > best + 1e-6)


def test_nce_gaussian_noise_density_is_the_fitted_gaussian():
    data = SimpleNamespace(x_train=torch.zeros(500, 1), y_train=0.3 + 0.2 * torch.randn(500, 2))
    loss = loss_of("nce", BoxSpace(-2.0, 2.0, (2,)), data=data, noise="gaussian", scale=2.0)
    y = torch.randn(7, 3, 2)
    normal = torch.distributions.Normal(data.y_train.mean(0), 2.0 * data.y_train.std(0))
    assert torch.allclose(loss.log_q(y), normal.log_prob(y).sum(-1), atol=1e-5)
    assert loss.sample(4, "cpu").shape == (4, 16, 2)


@pytest.mark.parametrize("name", ["dsm", "ssm", "nce", "perceptron", "log", "lvq2", "mce", "square_square",
                                  "square_exponential"])
def test_a_loss_that_needs_a_continuous_y_says_so_for_sentences(name):
    with pytest.raises(UserError, match=f"loss={name}.*(token sequence|continuous y)"):
        loss_of(name, SequenceSpace(states=5, length=4))


@pytest.mark.parametrize("name", ["lvq2", "square_square", "square_exponential"])
def test_a_loss_that_assumes_a_non_negative_energy_gets_the_square_and_refuses_a_signed_output_in_one_line(name):
    """energy=mlp's output=auto is the square under these losses; F = a^2 + b and F = a, which can go
    below 0, are refused before training with what to type instead."""
    from helpers import make_cfg

    from ebm_cli.build import build_run

    run = build_run(make_cfg("debug=smoke", f"loss={name}"))
    assert run.energy.output == "square" and run.energy.non_negative and run.loss.needs_non_negative_energy
    for output in ("square_plus_linear", "linear"):
        with pytest.raises(UserError, match=f"loss={name} assumes F\\(x, y\\) >= 0.*output={output}.*energy.output=square") as err:
            build_run(make_cfg("debug=smoke", f"loss={name}", f"energy.output={output}"))
        assert "\n" not in str(err.value)


@pytest.mark.parametrize("loss,output", [("nll", "square_plus_linear"), ("cd", "square"), ("hinge", "square")])
def test_the_mlp_output_auto_follows_whether_the_loss_normalises_over_y_and_says_so(loss, output):
    """output=auto: F = a^2 + b under the NLL (a square's zero set cannot add a missing branch there),
    the square elsewhere; the run's log line names the choice; an explicit output wins."""
    from helpers import make_cfg

    from ebm_cli.build import build_run

    run = build_run(make_cfg("debug=smoke", f"loss={loss}"))
    assert run.energy.output == output and run.meta["loss_normalises_over_y"] == (loss == "nll")
    assert f"output {output} (energy.output=auto" in run.energy.chosen_because
    assert build_run(make_cfg("debug=smoke", f"loss={loss}", "energy.output=linear")).energy.output == "linear"


def test_a_trained_square_plus_linear_keeps_its_constant_at_zero_and_is_rebuilt_from_its_checkpoint(smoke_run):
    """The default run (loss=nll): F = a^2 + b, b's constant held at 0 (the NLL cannot see it: its
    gradient is roundoff, which Adam would turn into a random walk); task=infer rebuilds the same
    energy from the checkpoint's meta, not the square that output=auto gives without it."""
    from ebm_cli.core.energy import pairwise_energy
    from ebm_cli.tasks.infer import load_run

    energy, run_cfg, state = load_run(smoke_run[0], torch.device("cpu"))
    assert run_cfg.energy.output == "auto" and state["meta"]["loss_normalises_over_y"] is True
    assert energy.output == "square_plus_linear" and not energy.non_negative
    bias = energy.net[-1].bias
    assert float(bias.detach()[1]) == 0.0 and float(bias.detach()[0]) != 0.0  # trained, but not its constant
    x, y = torch.rand(4, 1), torch.rand(4, 3, 1)
    pairwise_energy(energy, x, y).sum().backward()
    assert float(bias.grad[1]) == 0.0 and float(bias.grad[0]) != 0.0


# -- collapse, measured by the run itself ---------------------------------------------------------------
def scalars(run_dir, tag):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir / "tb"), size_guidance={"scalars": 0})
    acc.Reload()
    return [e.value for e in acc.Scalars(tag)]


def test_the_energy_loss_collapses_and_the_run_says_so(tmp_path, subprocess_env):
    """ebm-run loss=energy on a non-negative energy: Training/energy_range falls to ~0 in TensorBoard,
    one warning line says the energy collapsed, and metrics.json records it."""
    import json

    from helpers import run_cli

    run_dir = tmp_path / "run"
    proc = run_cli(["debug=smoke", "loss=energy", "energy.output=square", "logger.progress=false",
                    f"hydra.run.dir={run_dir}"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout + proc.stderr
    assert len([ln for ln in out.splitlines() if "the energy collapsed: flat over the y box" in ln]) == 1, out[-3000:]
    record = json.loads((run_dir / "metrics.json").read_text())
    assert record["collapsed"] is True and record["metrics"]["energy_range"] < 0.01
    ranges = scalars(run_dir, "Training/energy_range")
    assert len(ranges) == 3 and ranges[-1] < 0.01 and ranges[-1] < ranges[0]


def test_a_contrastive_loss_keeps_its_landscape_apart(tmp_path):
    """The same energy and budget with the NLL: not collapsed, and the range is logged at every
    log_every step; its energy_gap is in metrics.json."""
    import json

    from ebm_cli.tasks.train import train
    from helpers import make_cfg

    metrics = train(make_cfg("debug=smoke", "energy.output=square"), tmp_path)
    record = json.loads((tmp_path / "metrics.json").read_text())
    assert record["collapsed"] is False and metrics["energy_range"] > 1.0 and "energy_gap" in metrics
    assert len(scalars(tmp_path, "Training/energy_range")) == 3


def test_sentences_have_no_box_and_no_energy_range(tmp_path):
    """A chain energy over token sequences: nothing measured, no `collapsed` field."""
    import json

    from ebm_cli.tasks.train import train
    from helpers import make_cfg

    metrics = train(make_cfg("experiment=translation_latent", "debug=smoke"), tmp_path)
    assert "energy_range" not in metrics and "collapsed" not in json.loads((tmp_path / "metrics.json").read_text())


def test_cd_with_hmc_negatives_logs_its_acceptance_rate(tmp_path):
    from ebm_cli.tasks.train import train
    from helpers import make_cfg

    train(make_cfg("debug=smoke", "loss=cd", "loss.sampler=hmc", "loss.steps=3"), tmp_path)
    rates = scalars(tmp_path, "Training/acceptance")
    assert len(rates) == 3 and all(0 < r <= 1 for r in rates)


def test_hmc_inference_reports_its_acceptance_rate(tmp_path):
    import json

    from ebm_cli.tasks.train import train
    from helpers import make_cfg

    metrics = train(make_cfg("debug=smoke", "inference=hmc", "inference.chains=16", "inference.steps=10"), tmp_path)
    assert 0 < metrics["acceptance"] <= 1
    assert json.loads((tmp_path / "metrics.json").read_text())["metrics"]["acceptance"] == metrics["acceptance"]


def test_score_matching_keeps_the_energy_eager_under_trainer_compile(tmp_path, caplog):
    """torch.compile has no double backward: with loss=dsm, trainer.compile=true says so in one line
    and trains the eager energy."""
    import logging

    from ebm_cli.tasks.train import train
    from helpers import make_cfg

    with caplog.at_level(logging.INFO, logger="ebm_cli"):
        metrics = train(make_cfg("debug=smoke", "loss=dsm", "trainer.compile=true"), tmp_path)
    lines = [r.getMessage() for r in caplog.records if "the energy stays eager" in r.getMessage()]
    assert len(lines) == 1 and "loss=dsm" in lines[0] and math.isfinite(metrics["chamfer"])


def test_a_checkpoint_from_before_the_mlp_output_option_is_rebuilt_as_it_was_trained(smoke_run, tmp_path):
    """A run saved when energy=mlp had no `output` was F = MLP itself (one output): task=infer and
    task=landscape rebuild it linear, not with today's default."""
    from helpers import make_cfg

    from ebm_cli.runtime.checkpoint import load_checkpoint, save_checkpoint
    from ebm_cli.tasks.infer import load_run
    from ebm_cli.tasks.train import train

    old = tmp_path / "old"
    train(make_cfg("debug=smoke", "energy.output=linear"), old)  # the weights of that time: one output
    (old / "checkpoints" / "best.pt").unlink()  # runs of that time kept last.pt only
    state = load_checkpoint(old / "checkpoints" / "last.pt")
    cfg = OmegaConf.create(state["config"])
    del cfg.energy["output"]
    state["config"] = OmegaConf.to_yaml(cfg)
    del state["format"]  # written before checkpoints carried their format
    save_checkpoint(old / "checkpoints", state)
    energy, run_cfg, _ = load_run(old, torch.device("cpu"))
    assert energy.output == "linear" and run_cfg.energy.output == "linear"
    assert load_run(smoke_run[0], torch.device("cpu"))[0].output == "square_plus_linear"  # today's runs keep theirs


def test_a_margin_loss_searches_a_many_dimensional_y_by_uniform_points():
    """y of 40 numbers (a 1-D x): 2**40 cells and 80 boundary points per correct answer are out of
    reach, so the search takes `proposals` uniform points; the loss still runs."""
    box = BoxSpace(-1.0, 1.0, (40,))
    data = SimpleNamespace(x_train=torch.linspace(-1, 1, 50)[:, None], y_train=torch.rand(50, 40) - 0.5)
    loss = loss_of("hinge", box, data=data, proposals=32)
    assert not loss.stratify and not loss.boundary

    class Norm(Energy):
        def forward(self, x, y):
            return y.pow(2).sum(1)

    value, stats = loss(Norm(), data.x_train[:4], data.y_train[:4], 1.0)
    assert math.isfinite(float(value.detach())) and stats["e_neg"].numel() == 1
