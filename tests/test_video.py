"""dataset=video end to end: conv energies, the z-sweep over frames, the companion baseline, the
image grid read back from TensorBoard, a user's .npz with another sprite, and bad input."""

import json
import math
import os
import signal
import subprocess

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from ebm_cli.build import build_energy, build_inference, build_run
from ebm_cli.core.energy import pairwise_energy
from ebm_cli.datasets.video import Video
from ebm_cli.datasets.video.data import generate_video
from ebm_cli.errors import UserError
from ebm_cli.losses.free_energy import FreeEnergyLoss
from ebm_cli.tasks.train import train
from helpers import ebm_run_command, make_cfg

SMOKE = ["experiment=video_latent", "debug=smoke"]


@pytest.fixture(scope="module")
def video_data():
    return Video(path=None, size=16, context=3, moves=3, sprite="square", sprite_size=3, speed=3.0, noise=0.0,
                 train_size=32, test_size=8, seed=0, run_seed=0)


@pytest.fixture(scope="module")
def smoke_video_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("video_run")
    return run_dir, train(make_cfg(*SMOKE), run_dir)


def test_conv_latent_decodes_one_frame_per_z_and_its_free_energy_is_the_soft_min(video_data):
    cfg = make_cfg(*SMOKE)
    energy = build_energy(cfg.energy, video_data.energy_args())
    x, y = video_data.x_test[:4], video_data.valid[:4, 0]
    z, _ = energy.nodes()
    g = energy.decode(x, z)
    assert g.shape == (4, 3, 16, 16)
    e = (y[:, None] - g).flatten(2).pow(2).sum(-1)  # E(x, y, z) = ||y - Dec(Enc(x), z)||^2, (4, 3)
    with energy.at_beta(math.inf):
        assert torch.allclose(energy(x, y), e.min(1).values, rtol=1e-5)
    with energy.at_beta(2.0):
        assert torch.allclose(energy(x, y), -torch.logsumexp(-2.0 * e, 1) / 2.0, rtol=1e-5)
    # the batched pairwise form agrees with one (x, y) pair at a time
    ys = video_data.valid[:4]
    pair = pairwise_energy(energy, x, ys)
    loop = torch.stack([energy(x, ys[:, j]) for j in range(3)], 1)
    assert torch.allclose(pair, loop, rtol=1e-5, atol=1e-5)


def test_z_sweep_returns_k_frames_for_the_latent_model_and_one_for_the_regressor(video_data):
    cfg = make_cfg(*SMOKE)
    meta = video_data.energy_args()
    x = video_data.x_test[:5]
    cands = build_inference(cfg.inference, video_data.y_space, cfg.seed)(build_energy(cfg.energy, meta).eval(), x)
    assert cands.y.shape == (5, 3, 16, 16) and cands.z.shape == (5, 3, 1)
    regressor = build_energy(make_cfg(*SMOKE, "energy=conv_regressor").energy, meta).eval()
    one = build_inference(cfg.inference, video_data.y_space, cfg.seed)(regressor, x)
    assert one.mask.sum(1).tolist() == [1] * 5
    assert torch.allclose(one.y[:, 0], regressor.predict(x).clamp(0, 1))


def test_smoke_run_logs_the_image_grid_and_reports_model_and_baseline(smoke_video_run):
    run_dir, metrics = smoke_video_run
    for key in ("coverage@0.01", "precision@0.01", "best_of_k", "sharpness_ratio", "latent_entropy",
                "baseline_precision@0.01", "baseline_sharpness_ratio"):
        assert key in metrics and math.isfinite(metrics[key])
    assert metrics["candidates_per_x"] <= 3
    acc = EventAccumulator(str(run_dir / "tb"), size_guidance={"images": 0})
    acc.Reload()
    assert "landscape/video_grid" in acc.Tags()["images"] and "landscape/latent_usage" in acc.Tags()["images"]
    images = acc.Images("landscape/video_grid")
    assert [i.step for i in images] == [15, 30]  # during training (landscape_every=15) and at the end
    assert images[-1].width > images[-1].height > 100  # rows of frames, many columns
    assert (run_dir / "figures" / "video_grid.png").is_file()
    # the baseline is saved with the model, so that task=landscape can draw it again
    state = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert set(state["baseline"]) == {"model", "optimizer"}


def test_the_regressor_alone_is_the_baseline_and_predicts_one_frame(tmp_path):
    m = train(make_cfg(*SMOKE, "energy=conv_regressor", "logger.landscape_every=0", "logger.tensorboard=false"), tmp_path)
    assert m["candidates_per_x"] == 1.0
    assert not any(k.startswith("baseline_") for k in m)  # nothing trained next to it
    assert "baseline" not in torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)


def test_landscape_task_redraws_the_grid(smoke_video_run, tmp_path):
    from ebm_cli.tasks.infer import landscape

    run_dir, _ = smoke_video_run
    paths = landscape(make_cfg("task=landscape", f"run_dir={run_dir}"), tmp_path)
    assert tmp_path / "figures" / "video_grid.png" in paths


def test_preempted_run_resumes_model_and_baseline_exactly(tmp_path, monkeypatch):
    short = [*SMOKE, "trainer.steps=20", "trainer.ckpt_every=10", "logger.landscape_every=0", "logger.tensorboard=false"]
    uninterrupted = train(make_cfg(*short), tmp_path / "full")
    original = FreeEnergyLoss.__call__
    calls = []

    def sigterm_at_step_12(self, energy, x, y, beta):
        calls.append(1)  # the loss is called once per training step: this is step len(calls) - 1
        if len(calls) - 1 == 12:
            os.kill(os.getpid(), signal.SIGTERM)
        return original(self, energy, x, y, beta)

    monkeypatch.setattr(FreeEnergyLoss, "__call__", sigterm_at_step_12)
    with pytest.raises(UserError, match="stopped by SIGTERM at step 13"):
        train(make_cfg(*short), tmp_path / "cut")
    monkeypatch.undo()
    resumed = train(make_cfg(*short, "trainer.resume=auto"), tmp_path / "cut")
    timing = ("train_time_s", "infer_time_s")
    assert {k: v for k, v in resumed.items() if k not in timing} == {k: v for k, v in uninterrupted.items() if k not in timing}
    a, b = (torch.load(d / "checkpoints" / "last.pt", weights_only=True)["baseline"]["model"] for d in (tmp_path / "cut", tmp_path / "full"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_an_npz_with_another_sprite_trains_and_evaluates(tmp_path):
    context, futures, counts = generate_video(200 + 40, size=16, context=3, moves=3, sprite="plus", sprite_size=5,
                                              speed=4.0, noise=0.0, seed=7)
    path = tmp_path / "plus.npz"
    np.savez(path, context=context, futures=futures, num_futures=counts)
    metrics = train(make_cfg(*SMOKE, f"dataset.path={path}", "logger.landscape_every=0"), tmp_path / "run")
    assert 0 <= metrics["coverage@0.01"] <= 1 and metrics["candidates_per_x"] >= 1
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["status"] == "completed"


@pytest.mark.parametrize("overrides,message", [
    (["energy=mlp"], "inference=z_sweep needs an energy that decodes its predictions"),
    (["inference=grid"], "inference=grid needs a y of at most 3 dimensions, not 256"),
    (["loss=hinge"], "loss=hinge finds each x's correct answers within x_window of a 1-D x"),
    (["energy.free_energy.eliminate=min", "loss=nll"], "loss=nll takes log Z on a y-grid, which 256 dimensions cannot have"),
    (["dataset.sprite=star"], "dataset.sprite=star: must be one of square, plus, diamond"),
    (["dataset.sprite_size=16"], "dataset.sprite_size=16: must be below dataset.size=16"),
    (["dataset.moves=6"], "dataset.moves=6: moves 3 pixels apart span 15 rows; a sprite of 3 pixels in 16 rows leaves room for 13"),
])
def test_impossible_video_settings_are_named(overrides, message):
    with pytest.raises(UserError) as err:
        build_run(make_cfg(*SMOKE, *overrides))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_frame_energies_are_refused_on_curves():
    with pytest.raises(UserError, match=r"energy=ConvLatentEnergy: x_shape=\[1\] \(from the data\): conv energies need frames"):
        build_run(make_cfg("energy=conv_latent"))


def test_infer_on_a_video_run_says_where_the_predictions_are(smoke_video_run, tmp_path, subprocess_env):
    run_dir, _ = smoke_video_run
    proc = subprocess.run(ebm_run_command() + ["task=infer", f"run_dir={run_dir}", "x=[0.0]",
                                               f"hydra.run.dir={tmp_path / 'infer'}"],
                          cwd=tmp_path, env=subprocess_env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "task=infer takes flat inputs x" in lines[0] and "(3, 16, 16)" in lines[0]


# -- U-Net frame energies (skip connections carry the context's appearance) -------------------------
@pytest.mark.parametrize("z", ["discrete", "box"])
def test_unet_latent_decodes_one_frame_per_z_and_its_baseline_shares_the_backbone(z):
    from ebm_cli.build import build_baseline, build_run
    from ebm_cli.energies.unet import UNetLatentEnergy, UNetRegressorEnergy

    cfg = make_cfg("experiment=video_latent", "energy=unet_latent", f"energy/z={z}", "dataset.size=12",
                   "dataset.train_size=20", "dataset.test_size=4", "dataset.sprite=glyph")
    run = build_run(cfg)
    energy = run.energy
    assert isinstance(energy, UNetLatentEnergy)
    x, y = run.data.x_train[:5], run.data.y_train[:5]
    zs = energy.z_space.nodes(torch.device("cpu"))[0] if z == "discrete" else torch.rand(4, 1) * 2 - 1
    g = energy.decode(x, zs)
    assert g.shape == (5, len(zs), 12, 12)
    assert energy(x, y).shape == (5,) and torch.isfinite(energy(x, y)).all()
    baseline = build_baseline(type(run.data), cfg.energy, run.meta)
    assert isinstance(baseline, UNetRegressorEnergy) and baseline.predict(x).shape == (5, 12, 12)
    # the same backbone: the encoder's layers have the same shapes
    assert [p.shape for p in baseline.net.enc1.parameters()] == [p.shape for p in energy.net.enc1.parameters()]


def test_glyph_sprites_differ_clip_by_clip():
    from ebm_cli.datasets.video import Video

    data = Video(sprite="glyph", sprite_size=4, size=12, train_size=30, test_size=5, moves=1)
    shapes = {tuple((frame > 0).flatten().tolist()) for frame in data.x_test[:, 0]}
    assert len(shapes) == 5  # every held-out clip shows its own shape (at its own place)
    sums = {round(float(c[0].sum()), 3) for c in data.x_train}
    assert len(sums) > 10  # and the training clips many


def test_unet_trains_on_every_window_of_clips_through_the_cli(tmp_path, subprocess_env):
    """A real .npy of moving glyphs, every window, a U-Net, validation during training: end to end."""
    from ebm_cli.datasets.video.data import glyph, render

    rng = np.random.default_rng(0)
    clips = np.zeros((6, 16, 12, 12), np.uint8)
    for n in range(16):
        shape = glyph(rng, 3)
        path = [(1 + t, (1 + 2 * t) % 9) for t in range(6)]
        clips[:, n] = (render(path, shape, 12) * 255).astype(np.uint8)
    np.save(tmp_path / "clips.npy", clips)
    run_dir = tmp_path / "run"
    proc = subprocess.run(ebm_run_command() + [
        "experiment=video_latent", "energy=unet_latent", "energy.channels=4", "energy.hidden=16",
        f"dataset.path={tmp_path / 'clips.npy'}", "energy.z.k=1", "inference.k=1", "trainer.steps=20",
        "trainer.batch_size=16", "trainer.eval_every=10", "trainer.keep=best", "logger.landscape_every=0",
        f"hydra.run.dir={run_dir}"], cwd=tmp_path, env=subprocess_env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    record = json.loads((run_dir / "metrics.json").read_text())
    assert record["status"] == "completed" and "baseline_coverage@0.01" in record["metrics"]
    assert (run_dir / "checkpoints" / "best.pt").is_file() and (run_dir / "figures" / "video_grid.png").is_file()
