"""dataset=video end to end: conv energies, the z-sweep over frames, the companion baseline, the
image grid read back from TensorBoard, a user's .npz with another sprite, and bad input."""

import json
import math
import os
import re
import signal

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
from helpers import make_cfg, run_cli

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
    assert set(state["baseline"]) == {"model", "optimizer", "trained", "average"}


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
    proc = run_cli(["task=infer", f"run_dir={run_dir}", "x=[0.0]", f"hydra.run.dir={tmp_path / 'infer'}"], tmp_path)
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


@pytest.mark.parametrize("decoder", ["pixels", "warp"])
def test_unet_trains_on_every_window_of_clips_through_the_cli(tmp_path, subprocess_env, decoder):
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
    proc = run_cli([
        "experiment=video_latent", "energy=unet_latent", f"energy.decoder={decoder}", "energy.channels=4",
        "energy.hidden=16",
        f"dataset.path={tmp_path / 'clips.npy'}", "energy.z.k=1", "inference.k=1", "trainer.steps=20",
        "trainer.batch_size=16", "trainer.eval_every=10", "trainer.keep=best", "logger.landscape_every=0", "beta.steps=10",
        "dataset.augment=flips", f"hydra.run.dir={run_dir}"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    record = json.loads((run_dir / "metrics.json").read_text())
    assert record["status"] == "completed" and "baseline_coverage@0.01" in record["metrics"]
    assert (run_dir / "checkpoints" / "best.pt").is_file() and (run_dir / "figures" / "video_grid.png").is_file()


# -- the warp head: a displacement field from the last context frame, plus a residual ---------------
def test_matching_cost_is_zero_at_the_offset_a_sprite_moved_by():
    from ebm_cli.energies.unet import matching_cost

    prev = torch.zeros(1, 12, 12)
    prev[0, 3:6, 4:6] = torch.tensor([[1.0, 0.5], [0.2, 0.9], [0.7, 0.3]])
    last = torch.roll(prev, shifts=(2, -1), dims=(1, 2))  # moved 2 down, 1 left
    cost = matching_cost(prev, last, reach=3)  # (1, 49, 12, 12)
    assert cost.shape == (1, 49, 12, 12)
    offset = (3 - 2) * 7 + (3 + 1)  # window index of o = -v = (-2, +1)
    on_sprite = last[0] > 0
    assert torch.allclose(cost[0, offset][on_sprite], torch.tensor(0.0))
    assert (cost[0].sum((1, 2)).argmin() == offset)  # the only offset that matches everywhere


def test_warp_head_can_move_any_sprite_exactly_and_starts_as_a_blur():
    from ebm_cli.energies.unet import FrameHead

    head = FrameHead("warp", reach=2)
    assert head.per_output == 11  # 5 row logits, 5 column logits, the residual
    last = torch.rand(3, 10, 10)
    logits = torch.full((3, 11, 10, 10), -1e4)
    logits[:, 10] = 0.0  # no residual
    logits[:, 2 + 1] = 0.0  # every pixel from row offset +1
    logits[:, 5 + 2 - 2] = 0.0  # and column offset -2: the frame moved by (-1, +2)
    moved = head(logits, last)[:, 0]
    assert torch.allclose(moved[:, :-1, 2:], last[:, 1:, :-2])  # inside the frame, an exact shift
    blur = head(torch.zeros(3, 11, 10, 10), last)[:, 0]
    assert torch.allclose(blur[:, 5, 5], last[:, 3:8, 3:8].mean((1, 2)), atol=1e-6)


@pytest.mark.parametrize("z", ["discrete", "box"])
def test_warp_unet_energy_and_its_baseline_share_the_head(z):
    from ebm_cli.build import build_baseline

    cfg = make_cfg("experiment=video_latent", "energy=unet_latent", f"energy/z={z}", "energy.decoder=warp",
                   "energy.reach=2", "dataset.size=12", "dataset.train_size=20", "dataset.test_size=4",
                   "dataset.sprite=glyph")
    run = build_run(cfg)
    x = run.data.x_train[:5]
    zs = run.energy.z_space.nodes(torch.device("cpu"))[0] if z == "discrete" else torch.rand(4, 1) * 2 - 1
    g = run.energy.decode(x, zs)
    assert g.shape == (5, len(zs), 12, 12)
    # at initialisation every output is the blurred last frame: inside the pixel box, and all z alike
    assert torch.allclose(g[:, 0], g[:, -1]) and g.min() >= 0 and g.max() <= 1
    baseline = build_baseline(type(run.data), cfg.energy, run.meta)
    assert baseline.net.head.decoder == "warp" and baseline.net.head.reach == 2
    assert torch.allclose(baseline.predict(x), g[:, 0], atol=1e-6)


@pytest.mark.parametrize("override, message", [
    ("energy.decoder=flow", "energy.decoder=flow: must be one of pixels, warp"),
    ("energy.reach=0", "energy.reach=0: must be an integer >= 1"),
])
def test_bad_head_settings_are_one_line(override, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace("[", r"\[")):
        build_run(make_cfg("experiment=video_latent", "energy=unet_latent", override, "dataset.train_size=8",
                           "dataset.test_size=2"))


# -- augmentations: the same random flip / transpose for a context and its future ------------------
def test_flips_move_context_and_future_alike_and_keep_the_motion():
    data = Video(size=12, context=3, moves=1, sprite="glyph", sprite_size=3, speed=2.0, train_size=64,
                 test_size=4, augment="flips", seed=0)
    x, y = data.x_train, data.y_train
    torch.manual_seed(0)
    ax, ay = data.augment(x, y)
    assert ax.shape == x.shape and ay.shape == y.shape
    changed = (ax != x).flatten(1).any(1)
    assert 0 < int(changed.sum()) < len(x)  # a random choice per row, not per batch
    dihedral = []
    for fx in (lambda f: f, lambda f: f.flip(-1)):
        for fy in (lambda f: f, lambda f: f.flip(-2)):
            for ft in (lambda f: f, lambda f: f.transpose(-1, -2)):
                dihedral.append(lambda f, a=fx, b=fy, c=ft: c(b(a(f))))
    for i in range(len(x)):  # each row: one of the 8 transformations, the same for all its frames
        frames, moved = torch.cat([x[i], y[i][None]]), torch.cat([ax[i], ay[i][None]])
        assert any(torch.equal(op(frames), moved) for op in dihedral)
    torch.manual_seed(0)
    again = data.augment(x, y)
    assert torch.equal(again[0], ax) and torch.equal(again[1], ay)  # seeded: reproducible
    plain = Video(size=12, context=3, moves=1, train_size=8, test_size=2, seed=0)
    assert plain.augment(plain.x_train, plain.y_train)[0] is plain.x_train


def test_warp_needs_the_frames_and_the_futures_in_one_range():
    from ebm_cli.core.spaces import BoxSpace
    from ebm_cli.energies.unet import UNetRegressorEnergy

    box = BoxSpace(0.0, 1.0, (8, 8))
    UNetRegressorEnergy(channels=2, hidden=4, decoder="warp", x_shape=[3, 8, 8], x_low=0.0, x_high=1.0, y_space=box)
    with pytest.raises(UserError, match=r"decoder=warp: moves the context's pixels.*x in \[0, 255\], y in \[0, 1\]"):
        UNetRegressorEnergy(channels=2, hidden=4, decoder="warp", x_shape=[3, 8, 8], x_low=0.0, x_high=255.0,
                            y_space=box)


# -- energy=frames: the energy chosen from the data ----------------------------------------------------
@pytest.mark.parametrize("overrides,chosen,baseline", [
    ((), "ConvLatentEnergy", "ConvRegressorEnergy"),  # generated squares: every sprite looks the same
    (("dataset.sprite=glyph",), "UNetLatentEnergy", "UNetRegressorEnergy"),  # a new shape in every clip
    (("dataset.sprite=glyph", "energy.appearance=fixed"), "ConvLatentEnergy", "ConvRegressorEnergy"),
])
def test_frames_chooses_its_energy_from_the_data_and_its_baseline_follows(overrides, chosen, baseline, tmp_path):
    from ebm_cli.build import build_baseline, build_run
    from ebm_cli.tasks.infer import load_run

    cfg = make_cfg(*SMOKE, "dataset.size=12", "dataset.sprite_size=3", *overrides)
    run = build_run(cfg)
    assert type(run.energy).__name__ == chosen
    assert type(build_baseline(type(run.data), cfg.energy, run.meta)).__name__ == baseline
    if chosen == "UNetLatentEnergy":
        assert run.energy.net.head.decoder == "warp"
    # a run rebuilds the same energy from its checkpoint (the choice node and the data's arguments)
    train(make_cfg(*SMOKE, "dataset.size=12", "dataset.sprite_size=3", *overrides, "trainer.steps=2",
                   "logger.tensorboard=false"), tmp_path)
    assert type(load_run(tmp_path, torch.device("cpu"))[0]).__name__ == chosen
    # the choice is said in one line, with its reason and the key that changes it
    assert run.energy.chosen_because.startswith(f"energy: {chosen} (energy.")
    assert "energy.appearance=" in run.energy.chosen_because


@pytest.mark.parametrize("override,message", [
    ("energy.varies.reach=0", "energy.varies.reach=0: must be an integer >= 1"),  # the option the data did not pick
    ("energy.fixed.channels=0", "energy.fixed.channels=0: must be > 0"),
    ("energy.appearance=maybe", "energy.appearance=maybe: must be one of auto, fixed, varies"),
])
def test_a_bad_setting_of_either_option_is_one_line(override, message):
    from ebm_cli.build import build_run

    with pytest.raises(UserError, match=re.escape(message)):
        build_run(make_cfg(*SMOKE, override))
