"""Toy video clips: the generator (a sprite moves over C context frames, then takes one of K known
moves) and the file formats (`.npz` with `context` and `futures`, or a Moving-MNIST-style `.npy`
array (T, N, H, W) of uint8 pixels or floats in [0, 1]). The generator and the .npz return
contexts (N, C, H, W), futures (N, K, H, W) zero-padded and the number of valid futures of each
sample (N,); a large uint8 .npy stays a memory-mapped array whose windows are read as they are
used (windows.py).
"""

import logging
import zipfile
from typing import Tuple

import numpy as np

from ebm_cli.errors import UserError

log = logging.getLogger(__name__)

SPRITES = ("square", "plus", "diamond", "glyph")  # glyph: a new random shape in every clip
IN_MEMORY_BYTES = 512 * 2**20  # a .npy up to this size is read whole; a bigger one frame by frame as batches ask


def glyph(rng: np.random.Generator, size: int) -> np.ndarray:
    """A random (size, size) shape with grey levels: each pixel on with probability 1/2, at 0.5 to 1,
    the middle pixel always on; every clip of sprite=glyph draws its own, so that a model has to
    carry the context's appearance into the next frame instead of learning one shape."""
    shape = (rng.random((size, size)) < 0.5) * rng.uniform(0.5, 1.0, (size, size))
    shape[size // 2, size // 2] = 1.0
    return shape.astype(np.float32)


def sprite_mask(name: str, size: int) -> np.ndarray:
    """A (size, size) float mask of the sprite's pixels (a fixed shape: not glyph)."""
    if name not in SPRITES[:3]:
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


def generate_video(n: int, size: int, context: int, moves: int, sprite: str, sprite_size: int, speed: float,
                   noise: float, seed: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """contexts (N, C, H, W), futures (N, K, H, W) zero-padded, num_futures (N,) for n clips."""
    rng = np.random.default_rng(seed)
    mask = sprite_mask(sprite, sprite_size) if sprite != "glyph" else None
    contexts = np.zeros((n, context, size, size), np.float32)
    futures = np.zeros((n, moves, size, size), np.float32)
    counts = np.zeros(n, np.int64)
    for i in range(n):
        shape = mask if mask is not None else glyph(rng, sprite_size)
        frames, valid = generate_clip(rng, size, context, moves, shape, speed)
        contexts[i], futures[i, : len(valid)], counts[i] = frames, valid, len(valid)
    if noise > 0:  # noisy observations of the context; the futures stay clean targets
        contexts = np.clip(contexts + rng.normal(0, noise, contexts.shape), 0, 1).astype(np.float32)
    return contexts, futures, counts


def _bad(path: str, what: str) -> UserError:
    return UserError(f"{path}: {what}")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    if "pickle" in text:  # numpy's advice about allow_pickle: the file is simply not an array file
        return "not a numpy array file, or one of pickled Python objects"
    return text.splitlines()[0] if text else type(exc).__name__


def load_npz(path: str) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """context (N, C, H, W), futures (N, K, H, W), num_futures (N,) from a `.npz` (the README's
    "Video frames" section)."""
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise _bad(path, "holds a single array (a .npy): a .npz holds the arrays 'context' and 'futures'")
        with loaded:
            arrays = {k: loaded[k] for k in loaded.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, KeyError) as exc:
        raise _bad(path, f"not a readable .npz file ({_first_line(exc)})") from None
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
    if 0 in context.shape or 0 in futures.shape:
        raise _bad(path, f"holds no frames ('context' {context.shape}, 'futures' {futures.shape})")
    frames = {}
    for key, a in (("context", context), ("futures", futures)):
        if not np.issubdtype(a.dtype, np.number):
            raise _bad(path, f"'{key}' must be numeric, got {a.dtype}")
        if a.dtype == np.uint8:  # pixels 0..255, as in the .npy
            frames[key] = a.astype(np.float32) / 255.0
            continue
        found = _outside_unit_range(a)
        if found:
            raise _bad(path, f"'{key}' must hold finite values in [0, 1] (or be uint8 0..255), found {found} in {a.dtype}")
        frames[key] = a
    context, futures = frames["context"], frames["futures"]
    n, k = futures.shape[:2]
    counts = arrays.get("num_futures", np.full(n, k))
    if counts.shape != (n,) or not np.issubdtype(counts.dtype, np.integer) or counts.min() < 1 or counts.max() > k:
        raise _bad(path, f"'num_futures' must be N = {n} integers between 1 and K = {k}")
    for key in ("context", "futures"):
        _refuse_black(path, frames[key], 1 / 255, f"'{key}' ")
    return context.astype(np.float32), futures.astype(np.float32), counts.astype(np.int64)


def open_npy(path: str, context_frames: int) -> np.ndarray:
    """A Moving-MNIST-style (T, N, H, W) array of N clips, checked: every window of C + 1
    consecutive frames of a clip is a sample, frames [t, t + C) the context and frame t + C its one
    valid future (windows.py). uint8 pixels, or floats in [0, 1] (made uint8); a channel axis of one
    is dropped. Up to IN_MEMORY_BYTES it is read whole; a bigger uint8 file in C order stays a memory
    map, whose frames are read from disk as batches use them (a bigger float or Fortran-ordered one
    is refused in one line: converting it would hold it whole)."""
    try:
        clips = np.load(path, allow_pickle=False, mmap_mode="r")
    except (OSError, ValueError, EOFError) as exc:
        raise _bad(path, f"not a readable .npy file ({_first_line(exc)})") from None
    if not isinstance(clips, np.ndarray):
        clips.close()
        raise _bad(path, "is a .npz archive, not a single (T, N, H, W) array: name it .npz")
    if clips.ndim == 5 and 1 in (clips.shape[2], clips.shape[4]):  # one channel: (T, N, 1, H, W) or (T, N, H, W, 1)
        # a reshape keeps the memory map (np.squeeze would give a plain array that maps the file whole)
        axis = 2 if clips.shape[2] == 1 else 4
        clips = clips.reshape(clips.shape[:axis] + clips.shape[axis + 1:])
    if clips.ndim != 4 or not (clips.dtype == np.uint8 or np.issubdtype(clips.dtype, np.floating)):
        raise _bad(path, f"must be a uint8 array (T, N, H, W) (or floats in [0, 1]), got {clips.dtype} of shape {clips.shape}")
    if 0 in clips.shape:
        raise _bad(path, f"holds no frames (shape {clips.shape})")
    t, n = clips.shape[:2]
    floats = clips.dtype != np.uint8
    if floats or not clips.flags.c_contiguous:  # the windows read uint8 frames by their offsets in the file
        if clips.nbytes > IN_MEMORY_BYTES:
            raise _bad(path, f"{'float frames' if floats else 'a Fortran-ordered array'} over "
                             f"{IN_MEMORY_BYTES // 2**20} MB: save it as uint8 (T, N, H, W) in C order, "
                             "np.save(path, np.ascontiguousarray(np.rint(frames * 255).astype(np.uint8)))")
        clips = _as_uint8(path, clips)
    _refuse_black(path, clips[:, :64], 1, "uint8 " if not floats else "")
    if t > n:  # Moving MNIST is (20, 10000, 64, 64); N clips of T frames saved as (N, T, H, W) would mix clips
        log.warning("%s: read as %d clips of %d frames each (T, N, H, W: Moving MNIST's order); a file of "
                    "clips by frames (N, T, H, W) needs np.swapaxes(frames, 0, 1)", path, n, t)
    if t < context_frames + 1:
        raise _bad(path, f"has {t} frames per clip; dataset.context={context_frames} needs at least {context_frames + 1}")
    if n < 2:
        raise _bad(path, "needs at least 2 clips (some to train on, some to test)")
    if clips.nbytes <= IN_MEMORY_BYTES:  # small enough to hold: batches index it in memory
        return np.ascontiguousarray(clips)
    return clips


def _refuse_black(path: str, frames: np.ndarray, top: float, kind: str) -> None:
    """Frames no brighter than `top` (1 of 255, or 1/255 of 1): black to the metrics, where every
    prediction would be "right"; a uint8 file of 0 and 1 is a mask saved without its scale."""
    if frames.max() > top:
        return
    if frames.max() > 0:
        raise _bad(path, f"its {kind}frames hold only 0 and 1 of 255 (a mask?): save them as frames * 255 "
                         "(uint8) or frames * 1.0 (floats in [0, 1])")
    raise _bad(path, f"its {kind}frames are black (every pixel 0)")


def _outside_unit_range(a: np.ndarray) -> str:
    """What of float frames a lies outside [0, 1] ("0 to 255", "NaN or infinite values"), or ""."""
    if not np.isfinite(a).all():
        return "NaN or infinite values"
    return f"{a.min():.4g} to {a.max():.4g}" if a.min() < 0 or a.max() > 1 else ""


def _as_uint8(path: str, clips: np.ndarray) -> np.ndarray:
    """Float frames in [0, 1] (or a Fortran-ordered uint8 array) of at most IN_MEMORY_BYTES as a
    C-ordered uint8 array in memory (T, N, H, W): the windows read uint8 frames by their offsets."""
    frames = np.asarray(clips)
    if frames.dtype != np.uint8:
        found = _outside_unit_range(frames)
        if found:
            raise _bad(path, f"float frames must be in [0, 1], found {found} (divide by 255, or save them as uint8)")
        frames = np.rint(frames * 255.0).astype(np.uint8)
    return np.ascontiguousarray(frames)
