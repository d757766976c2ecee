"""Multi-branch curves: a y that is a multi-valued function of x.

Generated data and CSV data end up as the same `CurvesData`: training rows (x, y) and, for every
held-out x, its set of valid y (padded to the largest set, with a mask).
"""

import csv
import math
import os
from dataclasses import dataclass
from typing import List, Optional, Sequence

import torch

from ebm_cli.errors import UserError

# Names a branch expression may use, besides x. Everything is a torch function of a tensor x.
_EXPR_NAMESPACE = {
    "pi": math.pi,
    "e": math.e,
    "sin": torch.sin,
    "cos": torch.cos,
    "tan": torch.tan,
    "exp": torch.exp,
    "log": torch.log,
    "sqrt": torch.sqrt,
    "abs": torch.abs,
    "tanh": torch.tanh,
    "sign": torch.sign,
}

X_DECIMALS = 6  # rows whose x agree to this many decimals share a valid set


@dataclass
class CurvesData:
    """Training rows and a held-out test set with every test x's valid set.

    x_train: (N, 1), y_train: (N, 1); x_test: (M, 1); valid: (M, V, 1) padded; valid_mask: (M, V).
    y_low / y_high: the y-domain box used by inference, landscapes and the NLL's y-grid.
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    valid: torch.Tensor
    valid_mask: torch.Tensor
    y_low: float
    y_high: float
    x_low: float
    x_high: float
    source: str


def branch_functions(expressions: Sequence[str]):
    """Compile branch expressions such as ``0.4 * x`` into functions of a tensor x."""
    if len(expressions) == 0:
        raise UserError("dataset.branches is empty: give at least one branch expression of x")
    functions = []
    probe = torch.linspace(-1.0, 1.0, 5)
    for expr in expressions:
        try:
            code = compile(str(expr), "<branch>", "eval")
        except SyntaxError as exc:
            raise UserError(f"dataset.branches: cannot parse {expr!r}: {exc.msg}") from None
        bad = [n for n in code.co_names if n not in _EXPR_NAMESPACE and n != "x"]
        if bad:
            allowed = ", ".join(sorted(_EXPR_NAMESPACE))
            raise UserError(f"dataset.branches: {expr!r} uses unknown name(s) {bad}; allowed: x, {allowed}")

        def fn(x, code=code):
            out = eval(code, {"__builtins__": {}}, {**_EXPR_NAMESPACE, "x": x})  # noqa: S307
            return torch.as_tensor(out, dtype=x.dtype).expand_as(x).clone()

        try:
            fn(probe)
        except Exception as exc:  # a typo such as sin(x, 2) shows up here, not mid-run
            raise UserError(f"dataset.branches: evaluating {expr!r} failed: {exc}") from None
        functions.append(fn)
    return functions


def generate_curves(cfg, seed: int) -> CurvesData:
    """Random training x, each with a random branch and Gaussian noise; a noise-free test x-grid."""
    functions = branch_functions(cfg.branches)
    gen = torch.Generator().manual_seed(seed)
    n, k = cfg.train_size, len(functions)
    x = cfg.x_min + (cfg.x_max - cfg.x_min) * torch.rand(n, generator=gen)
    branch = torch.randint(0, k, (n,), generator=gen)
    y_all = torch.stack([f(x) for f in functions], dim=1)  # (N, K)
    y = y_all.gather(1, branch[:, None])[:, 0] + cfg.noise * torch.randn(n, generator=gen)
    x_test = torch.linspace(cfg.x_min, cfg.x_max, cfg.test_size)
    valid = torch.stack([f(x_test) for f in functions], dim=1)  # (M, K)
    return _finish(cfg, x, y, x_test, valid, torch.ones_like(valid, dtype=torch.bool), "generated")


def read_curves_csv(path: str) -> torch.Tensor:
    """Read a CSV with header ``x,y`` into a (R, 2) float tensor; one clear error per problem."""
    if not os.path.isfile(path):
        raise UserError(f"dataset.path: no such file: {path}")
    rows: List[List[float]] = []
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            if header is None:
                raise UserError(f"{path}: the file is empty (expected a header line 'x,y')")
            if [h.strip().lower() for h in header] != ["x", "y"]:
                raise UserError(f"{path}: line 1: expected the header 'x,y', found {','.join(header)!r}")
            for line_no, row in enumerate(reader, start=2):
                if not row or all(not c.strip() for c in row):
                    continue
                if len(row) != 2:
                    raise UserError(f"{path}: line {line_no}: expected 2 columns (x,y), found {len(row)}")
                try:
                    xv, yv = float(row[0]), float(row[1])
                except ValueError:
                    raise UserError(f"{path}: line {line_no}: not a number: {','.join(row)!r}") from None
                if not (math.isfinite(xv) and math.isfinite(yv)):
                    raise UserError(f"{path}: line {line_no}: non-finite value: {','.join(row)!r}")
                rows.append([xv, yv])
    except UnicodeDecodeError:
        raise UserError(f"{path}: not a UTF-8 text file") from None
    if not rows:
        raise UserError(f"{path}: no data rows after the header")
    return torch.tensor(rows, dtype=torch.float32)


def group_by_x(x: torch.Tensor, y: torch.Tensor):
    """Group rows by x rounded to X_DECIMALS: returns unique x (M,), padded y (M, V), mask (M, V)."""
    keys = torch.round(x.double() * 10**X_DECIMALS).long()
    unique, inverse = torch.unique(keys, return_inverse=True)
    counts = torch.bincount(inverse, minlength=len(unique))
    order = torch.argsort(inverse, stable=True)
    starts = torch.cumsum(counts, 0) - counts
    slot = torch.arange(len(x)) - starts[inverse[order]]  # position of each row within its group
    v = int(counts.max())
    valid = torch.zeros(len(unique), v, dtype=y.dtype)
    mask = torch.zeros(len(unique), v, dtype=torch.bool)
    valid[inverse[order], slot] = y[order]
    mask[inverse[order], slot] = True
    return unique.double().div(10**X_DECIMALS).to(x.dtype), valid, mask


def load_curves_csv(cfg, seed: int) -> CurvesData:
    """Split a CSV's distinct x values into train and test; a test x's valid set is all its rows."""
    table = read_curves_csv(cfg.path)
    x_unique, valid, mask = group_by_x(table[:, 0], table[:, 1])
    m = len(x_unique)
    n_test = int(round(cfg.test_fraction * m))
    if m < 2 or n_test < 1 or n_test >= m:
        raise UserError(
            f"{cfg.path}: {m} distinct x value(s) cannot be split with dataset.test_fraction="
            f"{cfg.test_fraction} (need at least one x for training and one for testing)"
        )
    perm = torch.randperm(m, generator=torch.Generator().manual_seed(seed))
    test_idx, train_idx = perm[:n_test].sort().values, perm[n_test:]
    train_mask = mask[train_idx]
    x_train = x_unique[train_idx, None].expand_as(train_mask)[train_mask]
    y_train = valid[train_idx][train_mask]
    test_mask = mask[test_idx]
    width = int(test_mask.sum(1).max())
    return _finish(
        cfg, x_train, y_train, x_unique[test_idx], valid[test_idx, :width], test_mask[:, :width], cfg.path
    )


def _finish(cfg, x, y, x_test, valid, mask, source) -> CurvesData:
    """Common tail: the y-domain (configured, or the data range plus a 15% margin) and shapes."""
    observed = torch.cat([y, valid[mask]])
    lo, hi = float(observed.min()), float(observed.max())
    margin = 0.15 * max(hi - lo, 1e-3)
    y_low = cfg.y_min if cfg.y_min is not None else lo - margin
    y_high = cfg.y_max if cfg.y_max is not None else hi + margin
    if not y_low < y_high:
        raise UserError(f"dataset.y_min={y_low} must be below dataset.y_max={y_high}")
    return CurvesData(
        x_train=x[:, None].float(),
        y_train=y[:, None].float(),
        x_test=x_test[:, None].float(),
        valid=valid[..., None].float(),
        valid_mask=mask,
        y_low=float(y_low),
        y_high=float(y_high),
        x_low=float(min(x.min(), x_test.min())),
        x_high=float(max(x.max(), x_test.max())),
        source=source,
    )


def load_curves(cfg, seed: Optional[int]) -> CurvesData:
    seed = cfg.seed if cfg.seed is not None else (seed or 0)
    return load_curves_csv(cfg, seed) if cfg.path else generate_curves(cfg, seed)
