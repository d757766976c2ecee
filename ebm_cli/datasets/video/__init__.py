"""dataset=video: several plausible next frames of a clip (the lecture's first example)."""

import copy
from typing import Optional

import numpy as np
import torch

from ebm_cli.core.dataset import Dataset, check_data_file
from ebm_cli.core.metrics import multi_output_metrics
from ebm_cli.core.spaces import BoxSpace
from ebm_cli.datasets.video.figures import video_figures
from ebm_cli.datasets.video.data import SPRITES, _bad, generate_video, load_npz, open_npy
from ebm_cli.datasets.video.metrics import best_of_k_quality, mse_distance, sharpness_ratio
from ebm_cli.datasets.video.windows import ClipWindows
from ebm_cli.errors import require, require_choice, require_non_negative, require_positive


AUGMENTS = ("none", "flips")


class Video(Dataset):
    """Frames: x_train (N, C, H, W) contexts, y_train (N, H, W) one valid next frame per row (a
    context with several valid futures appears once per future); x_test (M, C, H, W); valid
    (M, K, H, W) padded, with valid_mask (M, K). Pixels are in [0, 1]. Generated clips (a sprite
    moves over C context frames, then takes one of K known moves: turn up, go straight, turn down)
    or a file: `.npz` with `context` (N, C, H, W), `futures` (N, K, H, W) and optional `num_futures`
    (N,); or a Moving-MNIST-style `.npy` (T, N, H, W) of N clips (uint8, or floats in [0, 1]), whose every window of C + 1
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
        max_test: file: at most this many held-out samples, a seeded subset of the held-out clips'
            windows (the full-size Moving MNIST file has 34 000 of them).
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
                 train_size: int = 5000, test_size: int = 200, test_fraction: float = 0.2, max_test: int = 2000,
                 eps: float = 0.01, windows: str = "all", augment: str = "none", seed: Optional[int] = None,
                 run_seed: int = 0):
        require_positive(context=context, moves=moves, sprite_size=sprite_size, speed=speed, train_size=train_size,
                         test_size=test_size, max_test=max_test, eps=eps)
        require_non_negative(noise=noise)
        require_choice("sprite", sprite, SPRITES)
        require_choice("windows", windows, ("all", "first"))
        require_choice("augment", augment, AUGMENTS)
        require(0 < test_fraction < 1, "test_fraction", test_fraction, "must be between 0 and 1")
        seed = seed if seed is not None else run_seed
        self.eps, self.augment_with = eps, augment
        self.windows: Optional[ClipWindows] = None  # a .npy's training rows, read as they are used
        self.appearance = "fixed" if path is None and sprite != "glyph" else "varies"
        if path is not None and path.lower().endswith(".npy"):
            check_data_file(path)
            self._from_clips(path, context, windows, test_fraction, max_test, seed)
            return
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
            contexts, futures, counts = load_npz(path)
            if len(contexts) < 2:
                raise _bad(path, "needs at least 2 clips (some to train on, some to test)")
            order = _clip_order(len(contexts), seed)  # a seeded order, the first ones held out
            contexts, futures, counts = contexts[order], futures[order], counts[order]
            clips = order
            n_test = _held_out(len(contexts), test_fraction)
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
        self._outputs = int(counts.max())

    def batch_size_hint(self) -> int:
        """As many pixels per batch as 128 frames of 16 x 16 (a step costs about the same whatever the
        frames' size), at least 16 frames and at most 128."""
        h, w = self.y_shape
        return int(min(128, max(16, round(128 * 16 * 16 / (h * w)))))

    @property
    def outputs_per_input(self) -> int:
        """K futures per context (generated or a .npz), one per window of a .npy."""
        return self._outputs

    def _from_clips(self, path: str, context: int, windows: str, test_fraction: float, max_test: int, seed: int) -> None:
        """A .npy of clips (T, N, H, W): the held-out clips' windows (at most max_test of them) as
        tensors, the training clips' windows as rows read when a batch uses them."""
        clips = open_npy(path, context)
        t, n = clips.shape[:2]
        starts = np.arange(t - context) if windows == "all" else np.arange(1)
        order = _clip_order(n, seed)
        n_test = _held_out(n, test_fraction)

        def rows(of: np.ndarray) -> ClipWindows:  # every window of these clips, clip by clip
            return ClipWindows(clips, np.repeat(of, len(starts)), np.tile(starts, len(of)), context)

        test = rows(order[:n_test])
        if len(test) > max_test:
            test = test.take(np.sort(np.random.default_rng(seed).permutation(len(test))[:max_test]))
        self.x_test, future = test.read(np.arange(len(test)))
        self.valid, self.valid_mask = future[:, None], torch.ones(len(test), 1, dtype=torch.bool)
        self.windows = rows(order[n_test:])
        self._outputs = 1  # one future per window
        self.train_groups = torch.from_numpy(self.windows.clip)  # a validation split keeps a clip together
        self.y_space = BoxSpace(0.0, 1.0, self.windows.frame_shape)
        self.source = path

    # -- the training rows: tensors, or a .npy's windows read as they are used --------------------------
    @property
    def num_rows(self) -> int:
        return len(self.windows) if self.windows is not None else len(self.x_train)

    def batch(self, idx, device=None):
        if self.windows is None:
            return super().batch(idx, device)
        x, y = self.windows.read(idx.cpu().numpy())
        return (x, y) if device is None else (x.to(device), y.to(device))

    def take_rows(self, keep):
        if self.windows is None:
            return super().take_rows(keep)
        part = copy.copy(self)
        part.windows, part.train_groups = self.windows.take(keep.cpu().numpy()), self.train_groups[keep]
        return part

    def with_rows(self, x, y):
        part = super().with_rows(x, y)
        part.windows = None  # its rows are these tensors
        return part

    @property
    def x_shape(self):
        return (self.windows.context, *self.windows.frame_shape) if self.windows is not None else super().x_shape

    @property
    def y_shape(self):
        return self.windows.frame_shape if self.windows is not None else super().y_shape

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
        """The multi-output metrics with per-pixel MSE, how sharp the predictions are, and the PSNR
        and SSIM of the best of the k predictions for each valid future (psnr_best, ssim_best; not
        on the validation split)."""
        y, mask = y.cpu(), mask.cpu()
        metrics = multi_output_metrics(y, mask, self.valid, self.valid_mask, self.eps, mse_distance)
        metrics["sharpness_ratio"] = sharpness_ratio(y, mask, self.valid, self.valid_mask)
        if not self.validation_split:  # scored every few hundred steps: not worth its time there
            metrics.update(best_of_k_quality(y, mask, self.valid, self.valid_mask, self.y_space.high - self.y_space.low))
        return metrics

    def energy_args(self):
        """The energy's arguments, and whether the sprites' appearance varies from clip to clip
        (`appearance`: fixed for a generated sprite shape, varies for glyphs and files), which
        energy=frames chooses its energy by."""
        return {**super().energy_args(), "appearance": self.appearance}

    def figures(self, energy, logger, device, candidates=None, baseline=None):
        return video_figures(energy, self, logger, device, baseline)


def _clip_order(n: int, seed: int) -> np.ndarray:
    """The clips of a file in a seeded order: the first ones are held out whole."""
    return np.random.default_rng(seed).permutation(n)


def _held_out(n: int, fraction: float) -> int:
    """How many of n clips are held out: at least one."""
    return max(1, int(round(fraction * n)))
