"""Device leaks, caught on the CPU: "works on the CPU, crashes on CUDA" without a GPU.

A tensor created without an explicit device (`torch.zeros(n)`, `torch.arange(n)`, `torch.tensor(v)`)
lands on the *default* device. On a CPU-only machine that is the CPU, which is also where the run's
tensors are, so such a leak passes every CPU test and only crashes (or silently copies) on CUDA,
where the run's tensors are on the GPU and the leaked one is still on the CPU.

These tests make the default device the meta device (`with torch.device("meta")`: tensors with a
shape and no data) while the run itself runs on the CPU (trainer.device=cpu). A leaked tensor is
then a meta tensor, and the run fails where it meets the run's CPU tensors ("Tensor on device cpu
is not on the expected device meta"), or where it is read back (`float()`, `.item()`, `.numpy()`
cannot read a meta tensor): see test_the_meta_default_device_catches_a_leak.

For this to work, the run builds its own state on purpose, not in the ambient default device: the
data is generated or read on the host (`with torch.device("cpu")` in ebm_cli.build), the modules
are built on the host and moved to the run's device, and every tensor that the training step,
the samplers, inference, dynamic programming, the losses, the metrics and the figures create
names its device (`device=x.device`, `*_like`, `x.new_*`).

What a meta default cannot catch (a CPU `torch.Generator` passed to a draw on the GPU, a CPU index
into a GPU tensor) is covered by the `gpu` tests in test_gpu.py, which run where CUDA is.
"""

import contextlib
import json
import math
import shutil

import pytest
import torch

from ebm_cli import build
from ebm_cli.build import build_run
from ebm_cli.plots.figures import save_figures
from ebm_cli.tasks.checks import check_before_writing
from ebm_cli.tasks.compare import compare_inference
from ebm_cli.tasks.evaluate import evaluate_model
from ebm_cli.tasks.infer import infer, landscape, open_run
from ebm_cli.tasks.train import resume, train
from helpers import make_cfg

# Every preset at smoke sizes (fewer steps and rows: what matters is that every stage runs): a
# landscape drawn and the validation split evaluated during the run, not only at its end, and a
# checkpoint before the last one (step 10 of 12) for resuming.
PRESETS = {
    "default": (),
    "curves_latent": ("experiment=curves_latent",),
    "curves_latent_mixture": ("experiment=curves_latent_mixture", "beta.steps=6"),
    "cd": ("loss=cd", "loss.buffer_size=256", "loss.steps=5"),
    "hinge": ("loss=hinge",),
    "video_latent": ("experiment=video_latent", "energy.fixed.hidden=32", "logger.video_examples=2", "beta.steps=6"),
    "translation_latent": ("experiment=translation_latent", "energy.hidden=16", "trainer.batch_size=8",
                           "beta.steps=6"),
}
SMOKE = ("debug=smoke", "trainer.device=cpu", "logger.progress=false", "trainer.steps=12", "trainer.batch_size=16",
         "trainer.log_every=5", "trainer.ckpt_every=10", "trainer.eval_every=6", "logger.landscape_every=10",
         "dataset.train_size=96", "dataset.test_size=8")

# Every packaged inference method (ebm_cli/configs/inference/*.yaml) on a run whose energy it serves,
# with fewer iterations than its defaults (the same code runs).
METHODS = {
    ("default", "grid"): ("inference.points=64",),
    ("default", "gradient"): ("inference.steps=20", "inference.starts=8"),
    ("default", "langevin"): ("inference.steps=20", "inference.chains=16"),
    ("default", "hmc"): ("inference.steps=5", "inference.chains=16"),
    ("default", "cem"): ("inference.iters=4",),
    ("default", "dfo"): ("inference.iters=3",),
    ("curves_latent", "z_sweep"): (),
    ("translation_latent", "dp"): (),
}


@contextlib.contextmanager
def meta_default():
    """The default device is the meta device: a tensor made without a device is a meta tensor.
    The per-process dataset cache is emptied, so that the data is built (here) too."""
    build._dataset.cache_clear()
    try:
        with torch.device("meta"):
            yield
    finally:
        build._dataset.cache_clear()


def preset_cfg(preset, *more):
    return make_cfg(*SMOKE, *PRESETS[preset], *more)


def assert_finite(metrics):
    bad = {k: v for k, v in metrics.items() if not math.isfinite(v)}
    assert not bad, f"non-finite metrics: {bad}"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """trained(preset) -> (run folder, metrics) of that preset's smoke run, trained under the meta
    default once per module."""
    runs = {}

    def get(preset):
        if preset not in runs:
            run_dir = tmp_path_factory.mktemp(f"meta_{preset}")
            with meta_default():
                runs[preset] = (run_dir, train(preset_cfg(preset), run_dir))
        return runs[preset]

    return get


# The loss zoo's losses (and cd with HMC negatives) on the default preset; the square (energy.output=auto's
# pick for them, named here as the loss zoo names it) or softplus for the ones that assume F >= 0.
ZOO = {
    "energy": ("energy.output=square",), "perceptron": (), "log": (), "lvq2": ("energy.output=square",), "mce": (),
    "square_square": ("energy.output=square",), "square_exponential": ("energy.output=softplus",), "dsm": (),
    "ssm": ("loss.noise=0.01",), "nce": ("loss.noise=gaussian",),
    "cd": ("loss.sampler=hmc", "loss.steps=2", "loss.buffer_size=64"),
}


@pytest.mark.parametrize("loss", list(ZOO))
def test_every_loss_trains_without_a_device_leak(loss, tmp_path):
    cfg = preset_cfg("default", f"loss={loss}", *ZOO[loss])
    with meta_default():
        check_before_writing(cfg, tmp_path / "checked")
        metrics = train(cfg, tmp_path / "run")
    assert_finite(metrics)
    assert "energy_range" in metrics and "energy_gap" in metrics


def test_the_meta_default_device_catches_a_leak():
    """Why the tests below catch leaks: under the meta default, a tensor made without a device
    cannot meet the run's CPU tensors, nor be read back; with its device named, it runs."""
    with torch.device("meta"):
        with pytest.raises(RuntimeError, match="meta"):
            torch.zeros(3) + torch.ones(3, device="cpu")  # a leak: zeros(3) is on the meta device
        with pytest.raises(RuntimeError, match="meta"):
            float(torch.tensor(2.0).sum())  # a leaked value read back
        x = torch.ones(3, device="cpu")
        fixed = torch.zeros(3, device=x.device) + torch.zeros_like(x) + x.new_zeros(3) + x
        assert fixed.device.type == "cpu" and float(fixed.sum()) == 3.0


@pytest.mark.parametrize("preset", list(PRESETS))
def test_training_each_preset_has_no_device_leak(preset, trained, tmp_path):
    cfg = preset_cfg(preset)
    with meta_default():
        check_before_writing(cfg, tmp_path / "checked")  # the CLI's pre-run check: one step and a search
    run_dir, metrics = trained(preset)  # trained, validated, landscapes drawn, checkpointed, evaluated
    assert_finite(metrics)
    assert any((run_dir / "figures").iterdir())
    assert json.loads((run_dir / "metrics.json").read_text())["best_validation"]["step"] is not None
    # the run's own state is on its device, not the ambient one
    with meta_default():
        run = build_run(cfg)
    tensors = [run.data.x_train, run.data.y_train, run.data.x_test, run.data.valid, *run.energy.parameters(),
               *run.energy.buffers(), *(run.loss.state_dict().values())]
    assert {t.device.type for t in tensors} == {"cpu"}


@pytest.mark.parametrize("preset,method", list(METHODS))
def test_every_inference_method_has_no_device_leak(preset, method, trained):
    run_dir, _ = trained(preset)
    overrides = [f"inference={method}", *METHODS[preset, method]]
    cfg = make_cfg("task=landscape", f"run_dir={run_dir}", "trainer.device=cpu", *overrides)
    with meta_default():
        run = open_run(cfg, overrides, with_data=True)  # the checkpoint, loaded
        assert run.inference.name == method
        result = evaluate_model(run.energy, run.inference, run.data, run.device)
    assert_finite(result["metrics"])
    assert result["candidates"].y.device.type == "cpu"


@pytest.mark.parametrize("preset", ["default", "curves_latent", "video_latent", "translation_latent"])
def test_landscape_task_and_figures_have_no_device_leak(preset, trained, tmp_path):
    run_dir, _ = trained(preset)
    with meta_default():
        paths = landscape(make_cfg("task=landscape", f"run_dir={run_dir}", "trainer.device=cpu"), tmp_path)
    assert paths and all(p.stat().st_size > 0 for p in paths)


def test_compare_task_has_no_device_leak(trained, tmp_path):
    run_dir, _ = trained("default")
    with meta_default():
        compared = compare_inference(make_cfg("task=compare_inference", f"run_dir={run_dir}", "trainer.device=cpu"),
                                     tmp_path)
    assert sum(r["applicable"] for r in compared) == 6  # grid, gradient, langevin, hmc, dfo, cem


def test_infer_task_has_no_device_leak(trained):
    run_dir, _ = trained("default")
    with meta_default():
        results = infer(make_cfg("task=infer", f"run_dir={run_dir}", "x=[0.0,0.5]", "trainer.device=cpu"))
    assert len(results) == 2 and all(r["candidates"] for r in results)
    # sentences: task=infer parses words into token ids
    sentence_run, _ = trained("translation_latent")
    source = open_run(make_cfg("task=landscape", f"run_dir={sentence_run}", "trainer.device=cpu"), with_data=True)
    sentence = source.data.source_text(source.data.x_test[0])
    with meta_default():
        results = infer(make_cfg("task=infer", f"run_dir={sentence_run}", f"x=['{sentence}']", "trainer.device=cpu"))
    assert results[0]["candidates"]


# Continuous latents take other paths: seeded z nodes drawn on the host (a sphere), a z of several
# dimensions on the figures' axes, a subset of a z-grid as the video grid's columns.
CONTINUOUS_Z = {
    "curves_sphere_z": ("experiment=curves_latent", "energy/z=sphere", "energy.z.dim=2", "energy.free_energy.points=4"),
    "video_box_z": ("experiment=video_latent", "energy/z=box", "energy.z.dim=2", "energy.free_energy.points=4",
                    "logger.video_examples=2"),
}


@pytest.mark.parametrize("name", list(CONTINUOUS_Z))
def test_continuous_latents_have_no_device_leak(name, tmp_path):
    cfg = make_cfg(*SMOKE, *CONTINUOUS_Z[name])
    with meta_default():
        check_before_writing(cfg, tmp_path / "checked")  # a training step (Monte Carlo over z) and the search
        run = build_run(cfg)
        result = evaluate_model(run.energy, run.inference, run.data, run.device)
        figs = run.data.figures(run.energy, cfg.logger, run.device, candidates=result["candidates"])
        paths = save_figures(figs, tmp_path / "figures")
    assert_finite(result["metrics"])
    assert len(paths) >= 2


def test_resume_has_no_device_leak(trained, tmp_path):
    """An interrupted run (killed after its step-10 checkpoint) continued with trainer.resume=auto."""
    run_dir, _ = trained("cd")  # a loss with state: its replay buffer is restored too
    cut = tmp_path / "cut"
    shutil.copytree(run_dir / "checkpoints", cut / "checkpoints")
    (cut / "checkpoints" / "previous.pt").replace(cut / "checkpoints" / "last.pt")  # step 10 of 12
    with meta_default():
        metrics = train(preset_cfg("cd", "trainer.resume=auto"), cut)
    assert_finite(metrics)


def test_resume_onto_another_device_restores_the_host_rng(trained, tmp_path):
    """A run continued on another device: the checkpoint's RNG states (python, numpy, torch, cuda)
    are host state and must be read onto the host whatever the run's device is; mapped onto the GPU,
    resuming on CUDA failed ("RNG state must be a torch.ByteTensor"). The meta device stands in
    for the GPU: resume() must not map the checkpoint onto the device it is given."""
    run_dir, _ = trained("default")
    cut = tmp_path / "cut"
    shutil.copytree(run_dir / "checkpoints", cut / "checkpoints")
    cfg = preset_cfg("default")
    run = build_run(cfg)
    opt = torch.optim.Adam(run.energy.parameters())
    assert resume(cut, "auto", run.energy, opt, torch.device("meta")) == cfg.trainer.steps
    assert {p.device.type for p in run.energy.parameters()} == {"cpu"}


def test_bench_has_no_device_leak(tmp_path):
    bench = pytest.importorskip("ebm_cli.bench")
    cfg = make_cfg("task=bench", "task.size=tiny", "trainer.device=cpu")
    with meta_default():
        bench.run_bench(cfg, tmp_path)
