"""Toy video frames: a sprite moves over C context frames, then takes one of K known moves.

Generated clips and file clips (DESIGN.md section 3: `.npz` with `context` and `futures`, or a
Moving-MNIST-style `.npy` uint8 array (T, N, H, W)) end up as the same `VideoData`: training rows
(context, one valid next frame) and, for every held-out context, its set of valid next frames.
"""

import os
import zipfile
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np
import torch

from ebm_cli.errors import UserError

SPRITES = ("square", "plus", "diamond")


@dataclass
class VideoData:
    """x_train: (N, C, H, W) contexts, y_train: (N, H, W) one valid next frame per row (a context
    with several valid futures appears once per future); x_test: (M, C, H, W); valid: (M, K, H, W)
    padded, with valid_mask (M, K). Pixels are in [0, 1] (y_low, y_high)."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    valid: torch.Tensor
    valid_mask: torch.Tensor
    source: str
    y_low: float = 0.0
    y_high: float = 1.0
    x_low: float = 0.0
    x_high: float = 1.0


def sprite_mask(name: str, size: int) -> np.ndarray:
    """A (size, size) float mask of the sprite's pixels."""
    if name not in SPRITES:
        raise UserError(f"dataset.sprite={name}: must be one of {', '.join(SPRITES)}")
    r = np.arange(size) - (size - 1) / 2
    rr, cc = np.meshgrid(r, r, indexing="ij")
    if name == "square":
        return np.ones((size, size), np.float32)
    if name == "plus":
        return ((np.abs(rr) < 0.75) | (np.abs(cc) < 0.75)).astype(np.float32)
    return (np.abs(rr) + np.abs(cc) <= (size - 1) / 2 + 0.25).astype(np.float32)  # diamond


def _reflect(pos: float, low: float, high: float) -> float:
    """Bounce a coordinate off the walls [low, high]."""
    span = high - low
    p = (pos - low) % (2 * span)
    return low + (p if p <= span else 2 * span - p)


def render(positions, sprite: np.ndarray, size: int) -> np.ndarray:
    """Frames (T, size, size) with the sprite's top-left corner at each (row, col) (rounded)."""
    s = sprite.shape[0]
    frames = np.zeros((len(positions), size, size), np.float32)
    for t, (r, c) in enumerate(positions):
        r, c = int(round(r)), int(round(c))
        frames[t, r : r + s, c : c + s] = np.maximum(frames[t, r : r + s, c : c + s], sprite)
    return frames


def generate_clip(rng: np.random.Generator, size: int, context: int, moves: int, sprite: np.ndarray, speed: float):
    """One clip: context frames (C, H, W) and its K valid next frames (K, H, W).

    The sprite moves right or left at `speed` whole pixels per frame, bouncing off the side walls,
    with a vertical drift of whole pixels; at the next frame, move j adds a vertical step of
    (j - (K - 1) / 2) * speed (for K = 3: turns up, goes straight, turns down). The clip is drawn
    again until the vertical path and every move stay inside the frame, so the context fixes each
    move's frame exactly and the K futures are distinct (apart, with speed >= sprite size).
    """
    s = sprite.shape[0]
    hi = size - s
    step = max(1, int(round(speed)))
    offsets = [(j - (moves - 1) / 2) * step for j in range(moves)]
    if offsets[-1] - offsets[0] > hi:
        raise UserError(f"dataset.moves={moves} moves {step} pixels apart do not fit a sprite of {s} pixels in {size} rows")
    while True:
        v_col = step * int(rng.choice([-1, 1]))
        v_row = int(rng.integers(-(step // 2), step // 2 + 1))
        r0, c0 = int(rng.integers(0, hi + 1)), int(rng.integers(0, hi + 1))
        rows = [r0 + t * v_row for t in range(context)]
        next_rows = [rows[-1] + v_row + o for o in offsets]
        if min(rows + next_rows) >= 0 and max(rows + next_rows) <= hi:
            break
    cols = [_reflect(c0 + t * v_col, 0, hi) for t in range(context + 1)]
    frames = render(list(zip(rows, cols)), sprite, size)
    return frames, render([(r, cols[context]) for r in next_rows], sprite, size)


def generate_video(cfg, seed: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """contexts (N, C, H, W), futures (N, K, H, W) zero-padded, num_futures (N,), N = train + test."""
    rng = np.random.default_rng(seed)
    sprite = sprite_mask(cfg.sprite, cfg.sprite_size)
    n = cfg.train_size + cfg.test_size
    contexts = np.zeros((n, cfg.context, cfg.size, cfg.size), np.float32)
    futures = np.zeros((n, cfg.moves, cfg.size, cfg.size), np.float32)
    counts = np.zeros(n, np.int64)
    for i in range(n):
        frames, valid = generate_clip(rng, cfg.size, cfg.context, cfg.moves, sprite, cfg.speed)
        contexts[i], futures[i, : len(valid)], counts[i] = frames, valid, len(valid)
    if cfg.noise > 0:  # noisy observations of the context; the futures stay clean targets
        contexts = np.clip(contexts + rng.normal(0, cfg.noise, contexts.shape), 0, 1).astype(np.float32)
    return contexts, futures, counts


def _bad(path: str, what: str) -> UserError:
    return UserError(f"{path}: {what}")


def load_npz(path: str) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """context (N, C, H, W), futures (N, K, H, W), num_futures (N,) from a DESIGN.md `.npz`."""
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise _bad(path, f"not a readable .npz file ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
    for key in ("context", "futures"):
        if key not in arrays:
            raise _bad(path, f"no array named '{key}' (it has: {', '.join(sorted(arrays)) or 'nothing'})")
    context, futures = arrays["context"], arrays["futures"]
    if context.ndim != 4:
        raise _bad(path, f"'context' must be (N, C, H, W), got shape {context.shape}")
    if futures.ndim != 4:
        raise _bad(path, f"'futures' must be (N, K, H, W), got shape {futures.shape}")
    if context.shape[0] != futures.shape[0] or context.shape[2:] != futures.shape[2:]:
        raise _bad(path, f"'context' {context.shape} and 'futures' {futures.shape} disagree on N, H or W")
    for key, a in (("context", context), ("futures", futures)):
        if not np.issubdtype(a.dtype, np.number):
            raise _bad(path, f"'{key}' must be numeric, got {a.dtype}")
        if not np.isfinite(a).all() or a.min() < 0 or a.max() > 1:
            raise _bad(path, f"'{key}' must hold finite values in [0, 1]")
    n, k = futures.shape[:2]
    counts = arrays.get("num_futures", np.full(n, k))
    if counts.shape != (n,) or not np.issubdtype(counts.dtype, np.integer) or counts.min() < 1 or counts.max() > k:
        raise _bad(path, f"'num_futures' must be N = {n} integers between 1 and K = {k}")
    return context.astype(np.float32), futures.astype(np.float32), counts.astype(np.int64)


def load_npy(path: str, context_frames: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A Moving-MNIST-style uint8 (T, N, H, W) array: frames [0, C) are the context, frame C the
    one valid future."""
    try:
        clips = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise _bad(path, f"not a readable .npy file ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
    if clips.ndim != 4 or clips.dtype != np.uint8:
        raise _bad(path, f"must be a uint8 array (T, N, H, W), got {clips.dtype} of shape {clips.shape}")
    if clips.shape[0] < context_frames + 1:
        raise _bad(path, f"has {clips.shape[0]} frames per clip; dataset.context={context_frames} needs at least {context_frames + 1}")
    clips = clips.astype(np.float32) / 255.0
    context = np.ascontiguousarray(clips[:context_frames].transpose(1, 0, 2, 3))
    futures = np.ascontiguousarray(clips[context_frames][:, None])
    return context, futures, np.ones(len(context), np.int64)


def load_video(cfg, seed: Optional[int]) -> VideoData:
    """Generate (cfg.path None) or load the clips, and split them into training rows and a test set.
    The dataset's own seed wins over the run's."""
    seed = cfg.seed if getattr(cfg, "seed", None) is not None else (seed or 0)
    if cfg.path is None:
        context, futures, counts = generate_video(cfg, seed)
        n_test, source = cfg.test_size, "generated"
    else:
        if not os.path.isfile(cfg.path):
            raise UserError(f"dataset.path={cfg.path}: no such file")
        if cfg.path.endswith(".npy"):
            context, futures, counts = load_npy(cfg.path, cfg.context)
        else:
            context, futures, counts = load_npz(cfg.path)
        if len(context) < 2:
            raise _bad(cfg.path, "needs at least 2 samples (some to train on, some to test)")
        order = np.random.default_rng(seed).permutation(len(context))
        context, futures, counts = context[order], futures[order], counts[order]
        n_test, source = max(1, int(round(cfg.test_fraction * len(context)))), cfg.path
    train_c, train_f, train_n = context[n_test:], futures[n_test:], counts[n_test:]
    rows = np.repeat(np.arange(len(train_c)), train_n)  # one training row per valid future
    which = np.concatenate([np.arange(m) for m in train_n]) if len(train_n) else np.zeros(0, np.int64)
    k = futures.shape[1]
    return VideoData(
        x_train=torch.from_numpy(train_c[rows]),
        y_train=torch.from_numpy(train_f[rows, which]),
        x_test=torch.from_numpy(context[:n_test]),
        valid=torch.from_numpy(futures[:n_test]),
        valid_mask=torch.from_numpy(np.arange(k)[None, :] < counts[:n_test, None]),
        source=source,
    )


def mse_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-pixel MSE between frames a: (M, P, H, W) and b: (M, V, H, W) -> (M, P, V)."""
    a, b = a.flatten(2).double(), b.flatten(2).double()
    return (a.pow(2).sum(-1)[:, :, None] + b.pow(2).sum(-1)[:, None, :] - 2 * a @ b.transpose(1, 2)).clamp(min=0) / a.shape[-1]


def sharpness(frames: torch.Tensor) -> torch.Tensor:
    """Root-mean-square spatial gradient magnitude of frames (..., H, W) (the Tenengrad focus
    measure). Squared, not absolute: the average of several translated sprites has the same total
    variation (mean |gradient|) as one sharp sprite, but a third of its gradient energy."""
    dy = frames[..., 1:, :-1] - frames[..., :-1, :-1]
    dx = frames[..., :-1, 1:] - frames[..., :-1, :-1]
    return (dx.pow(2) + dy.pow(2)).mean().sqrt()


def sharpness_ratio(pred: torch.Tensor, pred_mask: torch.Tensor, valid: torch.Tensor, valid_mask: torch.Tensor) -> float:
    """Sharpness of the predictions over that of the true frames (1 = as sharp; the mean of three
    separate futures, the MSE regressor's blur, scores sqrt(1/3) = 0.58)."""
    return float(sharpness(pred[pred_mask]) / sharpness(valid[valid_mask]).clamp(min=1e-12))
