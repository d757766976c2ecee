"""Write a multi-branch curves CSV in the ebm-run format (header x,y; one row per x and branch).

    python experiments/curves/make_csv.py four_branches.csv --branches "1.0+0.2*x" "0.3*x" "-0.6+0*x" "-1.2+0.3*x*x"

Every x appears once per branch, so its valid set (rows sharing that x) has one y per branch.
"""

import argparse
import math
import random


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path")
    parser.add_argument("--branches", nargs="+", default=["1.0 + 0.2 * x", "0.3 * x", "-0.6 + 0 * x", "-1.2 + 0.3 * x * x"])
    parser.add_argument("--points", type=int, default=1001, help="distinct x values on [-1, 1]")
    parser.add_argument("--noise", type=float, default=0.02)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    names = {"sin": math.sin, "cos": math.cos, "exp": math.exp, "pi": math.pi, "abs": abs}
    with open(args.path, "w", encoding="utf-8") as fh:
        fh.write("x,y\n")
        for i in range(args.points):
            x = -1 + 2 * i / (args.points - 1)
            for expr in args.branches:
                y = eval(expr, {"__builtins__": {}}, {**names, "x": x})  # noqa: S307 (your own expressions)
                fh.write(f"{x:.6f},{y + rng.gauss(0, args.noise):.6f}\n")


if __name__ == "__main__":
    main()
