"""Clips of real handwritten digits (scikit-learn's `load_digits`: 1797 8x8 scans, shipped inside the
package) moving over a frame, in the runner's two file formats:

    python experiments/video_real/make_clips.py digits.npy --clips 600            # one future
    python experiments/video_real/make_clips.py digits3.npz --clips 600 --moves 3 # three futures

- `.npy` (T, N, H, W) uint8: each clip is one digit moving at a constant velocity and bouncing off
  the walls for T frames; the next frame is fully determined by the context. The runner reads every
  window of C + 1 frames of a clip (dataset.windows=all).
- `.npz` (context, futures, num_futures): after C context frames the digit takes one of K moves
  (turn up / go straight / turn down), as the generated squares of experiment=video_latent do.

Every clip shows its own digit scan (drawn without replacement, so at most 1797 clips): the clips
the runner holds out show digits that no training clip shows, and a model must carry the context's
appearance into the next frame. Needs scikit-learn (`pip install scikit-learn`); the runner itself does not.
"""

import argparse

import numpy as np


def digit_sprites(n: int, scale: int, rng) -> np.ndarray:
    """n distinct digit scans (n, 8*scale, 8*scale), float32 in [0, 1]."""
    from sklearn.datasets import load_digits

    images = load_digits().images.astype(np.float32) / 16.0  # (1797, 8, 8)
    if n > len(images):
        raise SystemExit(f"--clips {n}: there are {len(images)} digit scans, one per clip")
    images = images[rng.permutation(len(images))[:n]]
    return images.repeat(scale, axis=1).repeat(scale, axis=2)


def place(frame: np.ndarray, sprite: np.ndarray, row: int, col: int) -> None:
    s = sprite.shape[0]
    frame[row : row + s, col : col + s] = np.maximum(frame[row : row + s, col : col + s], sprite)


def bounce(pos: int, vel: int, high: int):
    """One step of a coordinate in [0, high] that reflects off the walls."""
    pos += vel
    if pos < 0:
        pos, vel = -pos, -vel
    if pos > high:
        pos, vel = 2 * high - pos, -vel
    return pos, vel


def deterministic_clips(sprites, n: int, frames: int, size: int, rng) -> np.ndarray:
    """(T, N, H, W) uint8: digit i at a constant velocity (1 to 3 pixels a frame on each axis), bouncing."""
    out = np.zeros((frames, n, size, size), np.float32)
    for i in range(n):
        sprite = sprites[i]
        high = size - sprite.shape[0]
        r, c = int(rng.integers(0, high + 1)), int(rng.integers(0, high + 1))
        vr, vc = (int(rng.integers(1, 4)) * int(rng.choice([-1, 1])) for _ in range(2))
        for t in range(frames):
            place(out[t, i], sprite, r, c)
            r, vr = bounce(r, vr, high)
            c, vc = bounce(c, vc, high)
    return (out * 255).round().astype(np.uint8)


def branching_clips(sprites, n: int, context: int, moves: int, size: int, speed: int, rng):
    """context (N, C, H, W), futures (N, K, H, W): a digit moving sideways over the context, then one
    of K vertical moves `speed` rows apart, redrawn until every path stays inside the frame."""
    ctx = np.zeros((n, context, size, size), np.float32)
    fut = np.zeros((n, moves, size, size), np.float32)
    offsets = [(j - (moves - 1) / 2) * speed for j in range(moves)]
    for i in range(n):
        sprite = sprites[i]
        high = size - sprite.shape[0]
        while True:
            vc = speed * int(rng.choice([-1, 1]))
            vr = int(rng.integers(-(speed // 2), speed // 2 + 1))
            r0, c = int(rng.integers(0, high + 1)), int(rng.integers(0, high + 1))
            rows = [r0 + t * vr for t in range(context)]
            nexts = [int(rows[-1] + vr + o) for o in offsets]
            if min(rows + nexts) >= 0 and max(rows + nexts) <= high:
                break
        for t in range(context):
            place(ctx[i, t], sprite, rows[t], c)
            c, vc = bounce(c, vc, high)  # after the loop: the column at frame C
        for j, row in enumerate(nexts):
            place(fut[i, j], sprite, row, c)
    return ctx, fut


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", help="a .npy (one future) or .npz (--moves futures) file to write")
    parser.add_argument("--clips", type=int, default=600)
    parser.add_argument("--frames", type=int, default=20, help=".npy: frames per clip (20, as in Moving MNIST)")
    parser.add_argument("--size", type=int, default=24)
    parser.add_argument("--scale", type=int, default=1, help="digit pixels per scan pixel (8x8 scans)")
    parser.add_argument("--context", type=int, default=3)
    parser.add_argument("--moves", type=int, default=3)
    parser.add_argument("--speed", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    a = parser.parse_args()
    rng = np.random.default_rng(a.seed)
    sprites = digit_sprites(a.clips, a.scale, rng)
    if a.path.endswith(".npy"):
        clips = deterministic_clips(sprites, a.clips, a.frames, a.size, rng)
        np.save(a.path, clips)
        print(f"wrote {a.path}: {clips.shape} (T, N, H, W) uint8")
    else:
        context, futures = branching_clips(sprites, a.clips, a.context, a.moves, a.size, a.speed, rng)
        np.savez_compressed(a.path, context=context, futures=futures,
                            num_futures=np.full(len(context), a.moves, np.int64))
        print(f"wrote {a.path}: context {context.shape}, futures {futures.shape}")


if __name__ == "__main__":
    main()
