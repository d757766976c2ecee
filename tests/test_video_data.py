"""The toy video generator's valid sets, the .npz / .npy loaders (and malformed files), metrics."""

import numpy as np
import pytest
import torch

from ebm_cli.datasets.video import Video
from ebm_cli.datasets.video.data import generate_clip, render, sprite_mask
from ebm_cli.datasets.video.metrics import mse_distance, sharpness_ratio
from ebm_cli.errors import UserError


def load_video(**overrides):
    """The video dataset with small defaults (the run's seed 0 unless run_seed is given)."""
    defaults = dict(path=None, size=16, context=3, moves=3, sprite="square", sprite_size=3, speed=2.0, noise=0.0,
                    train_size=64, test_size=16, test_fraction=0.25, run_seed=0)
    return Video(**{**defaults, **overrides})


def sprite_position(frame):
    rows, cols = np.nonzero(frame > 0.5)
    return rows.min(), cols.min()


@pytest.mark.parametrize("size,moves,speed", [(16, 3, 3.0), (16, 3, 2.0), (32, 3, 3.0), (32, 5, 4.0)])
def test_generated_futures_are_the_known_moves_of_the_sprite(size, moves, speed):
    rng = np.random.default_rng(0)
    sprite = sprite_mask("square", 3)
    step = int(speed)
    for _ in range(50):
        context, futures = generate_clip(rng, size, 3, moves, sprite, speed=speed)
        assert context.shape == (3, size, size) and futures.shape == (moves, size, size)
        # the sprite is whole in every frame, and the K valid futures are pairwise different
        for frame in [*context, *futures]:
            assert frame.sum() == 9
        assert len({f.tobytes() for f in futures}) == moves
        # the context moves at constant velocity, horizontally by the speed (or bounced off a side wall)
        pos = [sprite_position(f) for f in context]
        v_row = pos[1][0] - pos[0][0]
        assert pos[2][0] - pos[1][0] == v_row and abs(v_row) <= step // 2
        # all futures share the next column (the sprite keeps its horizontal motion) ...
        cols = {sprite_position(f)[1] for f in futures}
        assert len(cols) == 1 and abs(cols.pop() - pos[2][1]) <= step
        # ... and move j is the straight continuation plus (j - (K - 1) / 2) * speed rows
        rows = [sprite_position(f)[0] for f in futures]
        straight = pos[2][0] + v_row
        assert rows == [straight + (j - (moves - 1) // 2) * step for j in range(moves)]


def test_moves_that_cannot_fit_the_frame_are_named():
    with pytest.raises(UserError, match="dataset.moves=5 moves 4 pixels apart do not fit a sprite of 3 pixels in 16 rows"):
        generate_clip(np.random.default_rng(0), 16, 3, 5, sprite_mask("square", 3), speed=4.0)


def test_load_video_splits_generated_clips_into_rows_and_valid_sets():
    data = load_video()
    assert data.x_test.shape == (16, 3, 16, 16) and data.valid.shape == (16, 3, 16, 16)
    assert data.valid_mask.sum(1).min() >= 1
    # every training row's target is one of its context's valid futures; contexts repeat per future
    assert len(data.x_train) == len(data.y_train) >= 64
    assert data.x_train.dtype == torch.float32 and 0 <= data.x_train.min() and data.x_train.max() <= 1
    again = load_video()
    assert torch.equal(again.valid, data.valid)  # seeded


def test_npz_and_npy_files_load_like_generated_clips(tmp_path):
    rng = np.random.default_rng(1)
    context = rng.random((10, 2, 8, 8)).astype(np.float32)
    futures = rng.random((10, 4, 8, 8)).astype(np.float32)
    counts = rng.integers(1, 5, 10)
    np.savez(tmp_path / "clips.npz", context=context, futures=futures, num_futures=counts)
    data = load_video(path=str(tmp_path / "clips.npz"), test_fraction=0.3)
    assert data.x_test.shape == (3, 2, 8, 8) and data.valid.shape == (3, 4, 8, 8)
    assert int(data.valid_mask.sum()) + len(data.y_train) == int(counts.sum())
    clips = rng.integers(0, 256, (5, 6, 8, 8), dtype=np.uint8)  # (T, N, H, W)
    np.save(tmp_path / "mnist.npy", clips)
    data = load_video(path=str(tmp_path / "mnist.npy"), context=4, test_fraction=0.5)
    assert data.x_test.shape == (3, 4, 8, 8) and data.valid.shape == (3, 1, 8, 8)
    assert data.valid_mask.all() and data.num_rows == 3
    x, y = data.batch(torch.arange(3))  # a .npy's windows are read when a batch asks for them
    assert x.shape == (3, 4, 8, 8) and y.shape == (3, 8, 8) and x.dtype == torch.float32
    # the future of a test clip is frame C of that clip, scaled to [0, 1]
    clip = int(np.nonzero([np.allclose(clips[:4, n] / 255, data.x_test[0].numpy()) for n in range(6)])[0][0])
    assert np.allclose(data.valid[0, 0].numpy(), clips[4, clip] / 255)


@pytest.mark.parametrize("write,fragment", [
    (lambda p: p.write_bytes(b"not a zip"), "not a readable .npz file"),
    (lambda p: np.savez(p, context=np.zeros((2, 1, 4, 4))), "no array named 'futures'"),
    (lambda p: np.savez(p, context=np.zeros((2, 4, 4)), futures=np.zeros((2, 1, 4, 4))), "'context' must be (N, C, H, W)"),
    (lambda p: np.savez(p, context=np.zeros((2, 1, 4, 4)), futures=np.zeros((3, 1, 4, 4))), "disagree on N, H or W"),
    (lambda p: np.savez(p, context=np.full((2, 1, 4, 4), 2.0), futures=np.zeros((2, 1, 4, 4))), "finite values in [0, 1]"),
    (lambda p: np.savez(p, context=np.zeros((2, 1, 4, 4)), futures=np.zeros((2, 2, 4, 4)), num_futures=np.array([0, 1])),
     "'num_futures' must be N = 2 integers between 1 and K = 2"),
])
def test_malformed_npz_files_are_named_in_one_line(tmp_path, write, fragment):
    path = tmp_path / "bad.npz"
    write(path)
    with pytest.raises(UserError) as err:
        load_video(path=str(path))
    assert str(path) in str(err.value) and fragment in str(err.value) and "\n" not in str(err.value)


def test_malformed_npy_files_are_named(tmp_path):
    path = tmp_path / "bad.npy"
    pixels = np.random.default_rng(0).integers(0, 256, (3, 2, 4, 4))
    cases = [
        (pixels.astype(np.int16), "must be a uint8 array (T, N, H, W) (or floats in [0, 1]), got int16"),
        (pixels.astype(np.float32), "float frames must be in [0, 1], found 0 to 255 (divide by 255"),
        ((pixels > 128).astype(np.uint8), "its uint8 frames hold only 0 and 1 of 255 (a mask?)"),  # every prediction right
        (np.zeros((3, 2, 4, 4), np.float32), "its frames are black (every pixel 0)"),
        (pixels.astype(np.uint8), "dataset.context=3 needs at least 4"),
    ]
    for array, fragment in cases:
        np.save(path, array)
        with pytest.raises(UserError) as err:
            load_video(path=str(path))
        assert fragment in str(err.value) and "\n" not in str(err.value)


def test_frame_files_as_users_save_them_load_like_the_uint8_file(tmp_path, monkeypatch, caplog):
    """Floats in [0, 1], a channel axis of one (either side), an upper-case .NPY, a Fortran-ordered
    file read from disk, a .npz of uint8 pixels: the same windows as the uint8 (T, N, H, W) file."""
    from ebm_cli.datasets.video import data as video_data

    clips = np.random.default_rng(4).integers(0, 256, (5, 7, 8, 8), dtype=np.uint8)
    np.save(tmp_path / "ref.npy", clips)
    ref = load_video(path=str(tmp_path / "ref.npy"), context=3, test_fraction=0.4)
    np.save(tmp_path / "floats.npy", clips / np.float64(255))
    np.save(tmp_path / "channel_first.npy", clips[:, :, None])
    np.save(tmp_path / "channel_last.npy", clips[..., None])
    np.save(tmp_path / "fortran.npy", np.asfortranarray(clips))
    (tmp_path / "upper.NPY").write_bytes((tmp_path / "ref.npy").read_bytes())
    for name in ("floats.npy", "channel_first.npy", "channel_last.npy", "fortran.npy", "upper.NPY"):
        data = load_video(path=str(tmp_path / name), context=3, test_fraction=0.4)
        assert torch.equal(data.x_test, ref.x_test) and torch.equal(data.valid, ref.valid), name
        idx = torch.arange(data.num_rows)
        assert all(torch.equal(a, b) for a, b in zip(data.batch(idx), ref.batch(idx))), name
    monkeypatch.setattr(video_data, "IN_MEMORY_BYTES", 0)  # as a file bigger than memory would be: from disk
    for name in ("channel_first.npy", "channel_last.npy", "upper.NPY"):
        data = load_video(path=str(tmp_path / name), context=3, test_fraction=0.4)
        assert isinstance(data.windows.clips, np.memmap), name  # frames read one by one, never the file whole
        idx = torch.arange(data.num_rows)
        assert all(torch.equal(a, b) for a, b in zip(data.batch(idx), ref.batch(idx))), name
    for name, what in (("floats.npy", "float frames over 0 MB"), ("fortran.npy", "a Fortran-ordered array over 0 MB")):
        with pytest.raises(UserError, match=what):  # converting it would hold it whole
            load_video(path=str(tmp_path / name), context=3, test_fraction=0.4)
    monkeypatch.undo()
    context, futures = clips[:3].transpose(1, 0, 2, 3), clips[3:4].transpose(1, 0, 2, 3)  # (N, C, H, W), (N, 1, H, W)
    np.savez(tmp_path / "u8.npz", context=context, futures=futures)
    np.savez(tmp_path / "f32.npz", context=context / np.float32(255), futures=futures / np.float32(255))
    u8, f32 = (load_video(path=str(tmp_path / n), test_fraction=0.4) for n in ("u8.npz", "f32.npz"))
    assert torch.equal(u8.x_test, f32.x_test) and torch.equal(u8.y_train, f32.y_train)
    np.savez(tmp_path / "mask.npz", context=(context > 128).astype(np.uint8), futures=(futures > 128).astype(np.uint8))
    with pytest.raises(UserError, match="'context' frames hold only 0 and 1 of 255"):
        load_video(path=str(tmp_path / "mask.npz"))
    assert not caplog.records  # 5 frames of 7 clips; 5 frames of 2 clips (T > N) is worth a line
    np.save(tmp_path / "long.npy", clips[:, :2])
    load_video(path=str(tmp_path / "long.npy"), context=3, test_fraction=0.5)
    assert any("np.swapaxes(frames, 0, 1)" in r.getMessage() for r in caplog.records)


def test_metrics_on_hand_made_frames():
    sprite = sprite_mask("square", 2)
    up, down = render([(0, 0)], sprite, 4)[0], render([(2, 0)], sprite, 4)[0]  # 4 of 16 pixels each
    blur = (up + down) / 2
    pred = torch.tensor(np.stack([up, blur]))[None]  # (1, 2, 4, 4)
    valid = torch.tensor(np.stack([up, down]))[None]
    d = mse_distance(pred, valid)
    assert d[0, 0].tolist() == pytest.approx([0.0, 8 / 16])  # identical; 8 differing pixels of 16
    assert d[0, 1].tolist() == pytest.approx([8 * 0.25 / 16, 8 * 0.25 / 16])  # the blur is half-way to both
    ones = torch.ones(1, 2, dtype=torch.bool)
    assert sharpness_ratio(valid, ones, valid, ones) == pytest.approx(1.0)


def test_sharpness_ratio_of_a_blur_of_separate_futures():
    sprite = sprite_mask("square", 2)
    futures = torch.tensor(render([(1, 1), (1, 5), (5, 3)], sprite, 9))[None]  # three separate sprites
    ones = torch.ones(1, 3, dtype=torch.bool)
    # the same frames: 1; at half contrast: 0.5
    assert sharpness_ratio(futures, ones, futures, ones) == pytest.approx(1.0)
    assert sharpness_ratio(futures / 2, ones, futures, ones) == pytest.approx(0.5)
    # their mean (what MSE regression predicts): each sprite at 1/3 has a ninth of the squared
    # gradient, three of them a third: sqrt(1/3). (The mean |gradient| would not drop at all.)
    mean = futures.mean(1, keepdim=True)
    assert sharpness_ratio(mean, ones[:, :1], futures, ones) == pytest.approx(3 ** -0.5)
    # one sprite in the wrong place is still perfectly sharp
    assert sharpness_ratio(futures[:, :1].roll(1, dims=-1), ones[:, :1], futures, ones) == pytest.approx(1.0)


def test_a_big_npy_is_read_from_disk_frame_by_frame_as_a_small_one_is_in_memory(tmp_path, monkeypatch):
    """Past IN_MEMORY_BYTES a .npy stays on disk and every batch reads its own frames: the same
    rows, the same held-out windows, the same splits as the array held in memory."""
    from ebm_cli.datasets.video import data as video_data

    clips = np.random.default_rng(3).integers(0, 256, (7, 9, 6, 6), dtype=np.uint8)
    np.save(tmp_path / "clips.npy", clips)
    held = load_video(path=str(tmp_path / "clips.npy"), context=2, test_fraction=0.3)
    monkeypatch.setattr(video_data, "IN_MEMORY_BYTES", 0)
    read = load_video(path=str(tmp_path / "clips.npy"), context=2, test_fraction=0.3)
    assert isinstance(read.windows.clips, np.memmap) and not isinstance(held.windows.clips, np.memmap)
    assert torch.equal(read.x_test, held.x_test) and torch.equal(read.valid, held.valid)
    idx = torch.tensor([0, 5, 3, 3, read.num_rows - 1])
    for a, b in zip(read.batch(idx), held.batch(idx)):
        assert torch.equal(a, b)
    # a window is frames s .. s + C of its clip: check one against the array
    x, y = read.batch(torch.tensor([4]))
    clip, start = int(read.windows.clip[4]), int(read.windows.start[4])
    assert torch.equal(x[0], torch.from_numpy(clips[start : start + 2, clip] / np.float32(255)))
    assert torch.equal(y[0], torch.from_numpy(clips[start + 2, clip] / np.float32(255)))
    train_r, val_r = read.split_validation(0.3, seed=0, max_rows=4)
    train_h, val_h = held.split_validation(0.3, seed=0, max_rows=4)
    assert train_r.num_rows == train_h.num_rows and torch.equal(val_r.x_test, val_h.x_test)


def test_the_held_out_windows_of_a_file_are_capped(tmp_path):
    clips = np.random.default_rng(0).integers(0, 256, (12, 10, 4, 4), dtype=np.uint8)
    np.save(tmp_path / "clips.npy", clips)
    data = load_video(path=str(tmp_path / "clips.npy"), context=3, test_fraction=0.5, max_test=7)
    assert len(data.x_test) == 7 and data.valid.shape == (7, 1, 4, 4)  # of 5 clips x 9 windows
    assert data.num_rows == 5 * 9


def test_a_null_batch_size_keeps_the_pixels_per_batch():
    """trainer.batch_size=null (the video preset's): 128 frames of 16 x 16, as many pixels for bigger
    frames, between 16 and 128 frames."""
    assert load_video(size=16).batch_size_hint() == 128
    assert load_video(size=32, sprite_size=3).batch_size_hint() == 32
    assert load_video(size=64, sprite_size=3, train_size=8, test_size=2).batch_size_hint() == 16
    from ebm_cli.build import build_run
    from helpers import make_cfg

    run = build_run(make_cfg("experiment=video_latent", "debug=smoke", "dataset.size=32", "trainer.batch_size=null"))
    assert run.batch_size == 32
    assert build_run(make_cfg("experiment=video_latent", "debug=smoke", "trainer.batch_size=8")).batch_size == 8
