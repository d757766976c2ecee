"""dataset=video: several plausible next frames of a clip (the lecture's first example)."""

from typing import Optional

import numpy as np
import torch

from ebm_cli.core.dataset import Dataset, check_data_file
from ebm_cli.core.metrics import multi_output_metrics
from ebm_cli.core.spaces import BoxSpace
from ebm_cli.datasets.video.figures import video_figures
from ebm_cli.datasets.video.data import SPRITES, _bad, generate_video, load_npy, load_npz
from ebm_cli.datasets.video.metrics import mse_distance, sharpness_ratio
from ebm_cli.errors import UserError, require, require_choice, require_non_negative, require_positive


AUGMENTS = ("none", "flips")


class Video(Dataset):
    """Frames: x_train (N, C, H, W) contexts, y_train (N, H, W) one valid next frame per row (a
    context with several valid futures appears once per future); x_test (M, C, H, W); valid
    (M, K, H, W) padded, with valid_mask (M, K). Pixels are in [0, 1]. Generated clips (a sprite
    moves over C context frames, then takes one of K known moves: turn up, go straight, turn down)
    or a file: `.npz` with `context` (N, C, H, W), `futures` (N, K, H, W) and optional `num_futures`
    (N,); or a Moving-MNIST-style uint8 `.npy` (T, N, H, W) of N clips, whose every window of C + 1
    frames is a (context, one future) sample. Test clips are held out whole. The distance is the
    per-pixel MSE.

    Args:
        path: a `.npz` or `.npy` file; None = generate.
        size: generated frame height and width.
        context: context frames C (also: how a `.npy` clip is split).
        moves: K valid next moves (generated).
        sprite: square | plus | diamond | glyph (generated; glyph: a new random shape in every clip).
        sprite_size: the sprite's width in pixels.
        speed: pixels per frame (whole pixels), also the vertical step between moves.
        noise: std of Gaussian noise on the generated context frames (the futures stay clean).
        train_size: generated clips to train on (one training row per valid future).
        test_size: generated held-out clips.
        test_fraction: file: share of the clips held out (all windows of a clip on one side).
        windows: `.npy`: all = every window of C + 1 frames of a clip, N x (T - C) samples; first =
            the first window of each clip only.
        augment: none | flips: each training row mirrored left-right and/or up-down at random, and
            (square frames) transposed: the same transformation for its context and its future, so
            the motion stays valid (the walls are symmetric). Every validation and test input is
            left as it is.
        eps: per-pixel MSE tolerance of coverage@eps / precision@eps. 0.01 = 2.56 fully wrong
            pixels of 256; two futures of the default sprite are 0.070 apart, and the average of
            the three futures (what an MSE regressor predicts) is 0.023 from each.
        seed: the data's own seed; None = the run's.
        run_seed: the run's seed (from the runner).
    """

    baseline = "ebm_cli.energies.conv.ConvRegressorEnergy"
    x_range = (0.0, 1.0)

    def __init__(self, path: Optional[str] = None, size: int = 16, context: int = 3, moves: int = 3,
                 sprite: str = "square", sprite_size: int = 3, speed: float = 3.0, noise: float = 0.0,
                 train_size: int = 5000, test_size: int = 200, test_fraction: float = 0.2, eps: float = 0.01,
                 windows: str = "all", augment: str = "none", seed: Optional[int] = None, run_seed: int = 0):
        require_positive(context=context, moves=moves, sprite_size=sprite_size, speed=speed, train_size=train_size,
                         test_size=test_size, eps=eps)
        require_non_negative(noise=noise)
        require_choice("sprite", sprite, SPRITES)
        require_choice("windows", windows, ("all", "first"))
        require_choice("augment", augment, AUGMENTS)
        require(0 < test_fraction < 1, "test_fraction", test_fraction, "must be between 0 and 1")
        seed = seed if seed is not None else run_seed
        self.eps, self.augment_with = eps, augment
        if path is None:
            require(size >= 4, "size", size, "must be >= 4")
            require(sprite_size < size, "sprite_size", sprite_size, f"must be below dataset.size={size}")
            require(noise <= 1, "noise", noise, "must be <= 1 (pixels are in [0, 1])")
            step = max(1, round(speed))
            spread = (moves - 1) * step  # rows between the first and the last move
            require(spread <= size - sprite_size, "moves", moves,
                    f"moves {step} pixels apart span {spread} rows; a sprite of {sprite_size} pixels in {size} "
                    f"rows leaves room for {size - sprite_size}")
            contexts, futures, counts = generate_video(train_size + test_size, size, context, moves, sprite, sprite_size,
                                                       speed, noise, seed)
            n_test, self.source = test_size, "generated"
            clips = np.arange(len(contexts))
        else:
            check_data_file(path)
            if path.endswith(".npy"):
                contexts, futures, counts, clips = load_npy(path, context, windows)
            else:
                contexts, futures, counts = load_npz(path)
                clips = np.arange(len(contexts))
            n_clips = int(clips.max()) + 1
            if n_clips < 2:
                raise _bad(path, "needs at least 2 clips (some to train on, some to test)")
            # clips in a seeded order, the first ones held out whole: no clip is on both sides
            rank = np.empty(n_clips, np.int64)
            rank[np.random.default_rng(seed).permutation(n_clips)] = np.arange(n_clips)
            order = np.argsort(rank[clips], kind="stable")
            contexts, futures, counts, clips = contexts[order], futures[order], counts[order], clips[order]
            n_test = int((rank[clips] < max(1, int(round(test_fraction * n_clips)))).sum())
            self.source = path
        train_c, train_f, train_n = contexts[n_test:], futures[n_test:], counts[n_test:]
        rows = np.repeat(np.arange(len(train_c)), train_n)  # one training row per valid future
        which = np.concatenate([np.arange(m) for m in train_n]) if len(train_n) else np.zeros(0, np.int64)
        k = futures.shape[1]
        self.x_train = torch.from_numpy(train_c[rows])
        self.y_train = torch.from_numpy(train_f[rows, which])
        self.train_groups = torch.from_numpy(clips[n_test:][rows])  # a validation split keeps a clip together
        self.x_test = torch.from_numpy(contexts[:n_test])
        self.valid = torch.from_numpy(futures[:n_test])
        self.valid_mask = torch.from_numpy(np.arange(k)[None, :] < counts[:n_test, None])
        self.y_space = BoxSpace(0.0, 1.0, tuple(self.y_train.shape[1:]))

    def augment(self, x, y):
        """x (B, C, H, W), y (B, H, W): with augment=flips, each row's frames flipped and transposed alike."""
        if self.augment_with == "none":
            return x, y
        frames = torch.cat([x, y[:, None]], dim=1)  # (B, C + 1, H, W): one transformation per row
        b, square = len(frames), frames.shape[-1] == frames.shape[-2]
        for axis, allowed in ((-1, True), (-2, True), (None, square)):
            if allowed:
                pick = (torch.rand(b, device=frames.device) < 0.5)[:, None, None, None]
                moved = frames.flip(axis) if axis is not None else frames.transpose(-1, -2)
                frames = torch.where(pick, moved, frames)
        return frames[:, :-1], frames[:, -1]

    def distance(self, a, b):
        return mse_distance(a, b)

    def metrics(self, y, mask):
        """The multi-output metrics with per-pixel MSE, and how sharp the predictions are."""
        y, mask = y.cpu(), mask.cpu()
        metrics = multi_output_metrics(y, mask, self.valid, self.valid_mask, self.eps, mse_distance)
        metrics["sharpness_ratio"] = sharpness_ratio(y, mask, self.valid, self.valid_mask)
        return metrics

    def figures(self, energy, logger, device, candidates=None, baseline=None):
        return video_figures(energy, self, logger, device, baseline)
