"""On CUDA: every preset's smoke run, every inference method, the tasks on a finished run, resuming,
the bench, and one deterministic computation on both devices. Marked `gpu` and skipped where
torch sees no CUDA device (`pytest -m gpu` on a GPU machine runs them; elsewhere they are
collected and skipped). They need nothing beyond the installed package and torch: no network, no
files but the ones they write.

test_devices.py catches most device leaks on the CPU (a meta default device); what it cannot see
runs here: a CPU generator passed to a draw on the GPU, a CPU index into a GPU tensor, a checkpoint
mapped onto the GPU whose RNG states must stay on the host, cuBLAS / cuDNN themselves.
"""

import math
import shutil

import pytest
import torch

from helpers import make_cfg

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (torch sees none)")]

PRESETS = {
    "default": (),
    "curves_latent": ("experiment=curves_latent",),
    "curves_latent_mixture": ("experiment=curves_latent_mixture",),
    "cd": ("loss=cd",),
    "hinge": ("loss=hinge",),
    "video_latent": ("experiment=video_latent",),
    "translation_latent": ("experiment=translation_latent",),
}
# debug=smoke on the GPU: landscapes drawn and the validation split evaluated during the run too
SMOKE = ("debug=smoke", "trainer.device=cuda", "logger.progress=false", "logger.landscape_every=10",
         "trainer.eval_every=10")

# every packaged inference method (ebm_cli/configs/inference/*.yaml), on a run whose energy it serves
METHODS = [("default", m) for m in ("grid", "gradient", "langevin", "hmc", "cem", "dfo")] + [
    ("curves_latent", "z_sweep"), ("curves_latent", "grid"), ("curves_latent", "langevin"),
    ("video_latent", "z_sweep"), ("video_latent", "gradient"), ("translation_latent", "dp")]


def assert_finite(metrics):
    bad = {k: v for k, v in metrics.items() if not math.isfinite(v)}
    assert not bad, f"non-finite metrics: {bad}"


def preset_cfg(preset, *more):
    return make_cfg(*SMOKE, *PRESETS[preset], *more)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """trained(preset) -> (run folder, metrics) of that preset's smoke run on CUDA, trained once."""
    from ebm_cli.tasks.train import train

    runs = {}

    def get(preset):
        if preset not in runs:
            run_dir = tmp_path_factory.mktemp(f"cuda_{preset}")
            runs[preset] = (run_dir, train(preset_cfg(preset), run_dir))
        return runs[preset]

    return get


# the loss zoo's losses (and cd with HMC negatives), each a smoke run on CUDA, bf16 for two of them
ZOO = {"energy": (), "perceptron": (), "log": (), "lvq2": (), "mce": (), "square_square": (),
       "square_exponential": (), "dsm": (), "ssm": (), "nce": ("loss.noise=gaussian",),
       "cd": ("loss.sampler=hmc", "loss.steps=3", "trainer.precision=bf16"),
       "hinge": ("trainer.precision=bf16",)}


@pytest.mark.parametrize("loss", list(ZOO))
def test_every_loss_trains_on_cuda(loss, tmp_path):
    from ebm_cli.tasks.train import train

    metrics = train(preset_cfg("default", f"loss={loss}", *ZOO[loss]), tmp_path)
    assert_finite(metrics)
    assert "energy_range" in metrics


@pytest.mark.parametrize("preset", list(PRESETS))
def test_each_preset_trains_on_cuda(preset, trained):
    run_dir, metrics = trained(preset)
    assert_finite(metrics)
    assert metrics["train_time_s"] > 0
    assert any((run_dir / "figures").iterdir())
    state = torch.load(run_dir / "checkpoints" / "last.pt", map_location="cpu", weights_only=True)
    assert all(torch.isfinite(v).all() for v in state["model"].values() if torch.is_tensor(v) and v.is_floating_point())


def test_the_model_trains_and_is_evaluated_on_the_gpu(tmp_path, monkeypatch):
    """The energy and the loss's state live on CUDA while training and evaluating; the RNG states
    saved with them stay host state."""
    from ebm_cli.tasks import train as train_module

    seen = []
    original = train_module.evaluate_model

    def spy(energy, inference, data, device):
        seen.append({p.device.type for p in energy.parameters()})
        return original(energy, inference, data, device)

    monkeypatch.setattr(train_module, "evaluate_model", spy)
    metrics = train_module.train(preset_cfg("cd"), tmp_path)
    assert_finite(metrics)
    assert seen and all(devices == {"cuda"} for devices in seen)  # validation and test evaluations
    saved = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)  # as saved: where it lived
    assert all(v.device.type == "cuda" for v in saved["model"].values() if torch.is_tensor(v))
    assert saved["loss"]["buffer"].device.type == "cuda"  # cd's replay buffer
    assert saved["rng"]["torch"].device.type == "cpu"


@pytest.mark.parametrize("preset,method", METHODS)
def test_every_inference_method_on_cuda(preset, method, trained):
    from ebm_cli.tasks.evaluate import evaluate_model
    from ebm_cli.tasks.infer import open_run

    run_dir, _ = trained(preset)
    cfg = make_cfg("task=landscape", f"run_dir={run_dir}", f"inference={method}", "trainer.device=cuda")
    run = open_run(cfg, [f"inference={method}"], with_data=True)
    assert run.inference.name == method
    assert {p.device.type for p in run.energy.parameters()} == {"cuda"}
    result = evaluate_model(run.energy, run.inference, run.data, run.device)
    assert_finite(result["metrics"])
    cands = result["candidates"]
    assert cands.y.device.type == "cuda" and bool(cands.mask[:, 0].all())


@pytest.mark.parametrize("preset", ["default", "curves_latent", "video_latent", "translation_latent"])
def test_landscape_task_on_cuda(preset, trained, tmp_path):
    from ebm_cli.tasks.infer import landscape

    run_dir, _ = trained(preset)
    paths = landscape(make_cfg("task=landscape", f"run_dir={run_dir}", "trainer.device=cuda"), tmp_path)
    assert paths and all(p.stat().st_size > 0 for p in paths)


def test_infer_and_compare_tasks_on_cuda(trained, tmp_path):
    from ebm_cli.tasks.compare import compare_inference
    from ebm_cli.tasks.infer import infer

    run_dir, _ = trained("default")
    results = infer(make_cfg("task=infer", f"run_dir={run_dir}", "x=[0.0,0.5]", "trainer.device=cuda"))
    assert len(results) == 2 and all(r["candidates"] for r in results)
    compared = compare_inference(make_cfg("task=compare_inference", f"run_dir={run_dir}", "trainer.device=cuda"),
                                 tmp_path)
    applicable = [r for r in compared if r["applicable"]]
    assert len(applicable) >= 5
    for r in applicable:
        assert 0 <= r["coverage@0.05"] <= 1 and math.isfinite(r["mean_energy"])


@pytest.mark.parametrize("trained_on", ["cuda", "cpu"])
def test_resume_on_cuda(trained_on, trained, tmp_path):
    """A run killed after its step-20 checkpoint, continued on CUDA with trainer.resume=auto: from a
    CUDA run's checkpoint, and from a CPU run's (trainer.device may change on resume)."""
    from ebm_cli.tasks.train import train

    preset = "cd"  # a loss with state: its replay buffer is restored onto the GPU too
    if trained_on == "cuda":
        source = trained(preset)[0]
    else:
        source = tmp_path / "cpu_run"
        train(preset_cfg(preset, "trainer.device=cpu"), source)
    cut = tmp_path / "cut"
    shutil.copytree(source / "checkpoints", cut / "checkpoints")
    (cut / "checkpoints" / "previous.pt").replace(cut / "checkpoints" / "last.pt")  # the step-20 checkpoint
    metrics = train(preset_cfg(preset, "trainer.resume=auto"), cut)
    assert_finite(metrics)
    final = torch.load(cut / "checkpoints" / "last.pt", map_location="cpu", weights_only=True)
    assert final["step"] == 30


def test_bench_on_cuda(tmp_path):
    bench = pytest.importorskip("ebm_cli.bench")
    rows = bench.run_bench(make_cfg("task=bench", "task.size=tiny", "trainer.device=cuda"), tmp_path)
    assert rows and (tmp_path / "bench.json").is_file()
    for row in rows:
        if row.get("ours_s") is not None:
            assert math.isfinite(row["ours_s"])


@pytest.mark.parametrize("pairwise", ["shared", "per_sequence", "per_step"])
@pytest.mark.parametrize("beta", [0.3, 1.0, 5.0])
def test_dynamic_programming_agrees_on_cpu_and_cuda(pairwise, beta):
    """The forward algorithm's F_beta to 1e-4 and Viterbi's paths, identical on both devices."""
    from ebm_cli.dynamic_programming import forward_free_energy, viterbi

    gen = torch.Generator().manual_seed(0)
    b, steps, s = 16, 9, 7
    u = torch.randn(b, steps, s, generator=gen)
    p = torch.randn(*{"shared": (s, s), "per_sequence": (b, s, s), "per_step": (b, steps - 1, s, s)}[pairwise],
                    generator=gen)
    f_cpu = forward_free_energy(u, p, beta)
    f_gpu = forward_free_energy(u.cuda(), p.cuda(), beta)
    assert f_gpu.device.type == "cuda"
    torch.testing.assert_close(f_gpu.cpu(), f_cpu, rtol=1e-4, atol=1e-4)
    e_cpu, path_cpu = viterbi(u, p)
    e_gpu, path_gpu = viterbi(u.cuda(), p.cuda())
    torch.testing.assert_close(e_gpu.cpu(), e_cpu, rtol=1e-4, atol=1e-4)
    assert torch.equal(path_gpu.cpu(), path_cpu)
