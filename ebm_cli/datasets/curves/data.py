"""Multi-branch curves from branch expressions or a CSV file: the raw rows, before the split.

generate_curves -> training (x, y) and a test x-grid with every branch's y; read_curves_csv ->
the rows of a file; group_by_x -> each distinct x with its valid set (padded, with a mask).
"""

import csv
import math
import os
import warnings
from typing import Iterator, List, Optional, Sequence

import numpy as np
import torch

from ebm_cli.datasets.curves.expression import parse_branch
from ebm_cli.errors import UserError

FLOAT32_MAX = float(np.finfo(np.float32).max)  # the data is float32: a larger value would become inf


def branch_functions(expressions: Sequence[str]):
    """Compile branch expressions such as ``0.4 * x`` into functions of a tensor x."""
    if len(expressions) == 0:
        raise UserError("dataset.branches is empty: give at least one branch expression of x")
    functions = []
    probe = torch.linspace(-1.0, 1.0, 5)
    for expr in expressions:
        fn = parse_branch(expr)  # data, not code: a syntax tree checked against a small grammar
        try:
            fn(probe)
        except Exception as exc:  # a typo such as sin(x, 2) shows up here, not mid-run
            raise UserError(f"dataset.branches: evaluating {expr!r} failed: {exc}") from None
        functions.append(fn)
    return functions


def generate_curves(branches: Sequence[str], x_min: float, x_max: float, noise: float, train_size: int,
                    test_size: int, seed: int):
    """Random training x, each with a random branch and Gaussian noise; a noise-free test x-grid.
    Returns x (N,), y (N,), x_test (M,), valid (M, K): every branch's y at each test x."""
    functions = branch_functions(branches)
    gen = torch.Generator().manual_seed(seed)
    n, k = train_size, len(functions)
    x = x_min + (x_max - x_min) * torch.rand(n, generator=gen)
    branch = torch.randint(0, k, (n,), generator=gen)
    y_all = torch.stack([f(x) for f in functions], dim=1)  # (N, K)
    y = y_all.gather(1, branch[:, None])[:, 0] + noise * torch.randn(n, generator=gen)
    x_test = torch.linspace(x_min, x_max, test_size)
    valid = torch.stack([f(x_test) for f in functions], dim=1)  # (M, K)
    return x, y, x_test, valid


def read_curves_csv(path: str) -> torch.Tensor:
    """Read a CSV with header ``x,y`` into a (R, 2) float tensor; one clear error per problem.

    numpy's C reader takes a well-formed file (a 170 MB file: 3 s and the table's own memory); a file
    it refuses, or one with a value float32 cannot hold, is read again row by row to name the line at
    fault. Both readers take the same files: a UTF-8 byte-order mark (Excel's "CSV UTF-8"), `#`
    comments (whole lines, before the header too, or after a row), blank lines.
    """
    if not os.path.isfile(path):
        raise UserError(f"dataset.path: no such file: {path}")
    table = _read_well_formed(path)
    return table if table is not None else _read_row_by_row(path)


def _strip_comment(line: str) -> str:
    """The line up to its first `#` outside double quotes (numpy's reader ignores one inside quotes too)."""
    quoted = False
    for i, ch in enumerate(line):
        if ch == '"':
            quoted = not quoted
        elif ch == "#" and not quoted:
            return line[:i]
    return line


def _uncommented(fh) -> Iterator[str]:
    """The file's lines without their `#` comments (a comment line becomes blank: line numbers hold)."""
    for line in fh:
        yield _strip_comment(line)


def _header(reader) -> Optional[List[str]]:
    """The first row that is not blank (after comments), or None for a file without one."""
    for row in reader:
        if row and any(c.strip() for c in row):
            return row
    return None


def _is_xy(header: List[str]) -> bool:
    return [h.strip().lower() for h in header] == ["x", "y"]


def _read_well_formed(path: str) -> Optional[torch.Tensor]:
    """The (R, 2) table of a file with the header x,y and finite numbers in two columns; else None."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            while True:  # the header: the first line that is not blank or a comment
                line = fh.readline()
                if not line or _strip_comment(line).strip():
                    break
            header = next(csv.reader([_strip_comment(line)]), None) if line else None
            if header is None or not _is_xy(header):
                return None
            with warnings.catch_warnings():  # "input contained no data": the row-by-row reader says it in its words
                warnings.simplefilter("ignore")
                table = np.loadtxt(fh, delimiter=",", dtype=np.float64, ndmin=2, quotechar='"', comments="#")
    except (ValueError, UnicodeDecodeError, csv.Error, OSError):
        return None
    if table.shape[0] == 0 or table.shape[1] != 2 or not np.isfinite(table).all():
        return None
    if np.abs(table).max() > FLOAT32_MAX:
        return None
    return torch.from_numpy(table).float()  # as float32 from a double, like float() then float32 row by row


def _read_row_by_row(path: str) -> torch.Tensor:
    rows: List[List[float]] = []
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(_uncommented(fh))
            header = _header(reader)
            if header is None:
                raise UserError(f"{path}: the file is empty (expected a header line 'x,y')")
            if not _is_xy(header):
                raise UserError(f"{path}: line {reader.line_num}: expected the header 'x,y', found {','.join(header)!r}")
            for row in reader:
                line_no = reader.line_num
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
                if max(abs(xv), abs(yv)) > FLOAT32_MAX:
                    raise UserError(f"{path}: line {line_no}: {','.join(row)!r} is beyond float32's range "
                                    f"(|value| <= {FLOAT32_MAX:.3g}): rescale the column")
                rows.append([xv, yv])
    except UnicodeDecodeError:
        raise UserError(f"{path}: not a UTF-8 text file") from None
    except csv.Error as exc:  # a field beyond csv's size limit, a NUL byte, ...
        raise UserError(f"{path}: not a CSV file of x,y rows ({exc})") from None
    if not rows:
        raise UserError(f"{path}: no data rows after the header")
    return torch.tensor(rows, dtype=torch.float32)


def group_by_x(x: torch.Tensor, y: torch.Tensor):
    """Group rows by x as a float32, what the data holds (about 7 significant digits: 0.1 and
    0.1000000001 are one x, while x 1e-9 apart on a scale of 1e-7 stay apart): returns unique x
    (M,), padded y (M, V), mask (M, V)."""
    unique, inverse = torch.unique(x.float(), return_inverse=True)
    counts = torch.bincount(inverse, minlength=len(unique))
    order = torch.argsort(inverse, stable=True)
    starts = torch.cumsum(counts, 0) - counts
    slot = torch.arange(len(x)) - starts[inverse[order]]  # position of each row within its group
    v = int(counts.max())
    valid = torch.zeros(len(unique), v, dtype=y.dtype)
    mask = torch.zeros(len(unique), v, dtype=torch.bool)
    valid[inverse[order], slot] = y[order]
    mask[inverse[order], slot] = True
    return unique.to(x.dtype), valid, mask


def split_csv(path: str, test_fraction: float, seed: int):
    """Split a CSV's distinct x values into train and test; a test x's valid set is all its rows.
    Returns x (N,), y (N,), x_test (M,), valid (M, V) and its mask (M, V)."""
    table = read_curves_csv(path)
    x_unique, valid, mask = group_by_x(table[:, 0], table[:, 1])
    m = len(x_unique)
    n_test = int(round(test_fraction * m))
    if m < 2 or n_test < 1 or n_test >= m:
        raise UserError(
            f"{path}: {m} distinct x value(s) cannot be split with dataset.test_fraction="
            f"{test_fraction} (need at least one x for training and one for testing)"
        )
    perm = torch.randperm(m, generator=torch.Generator().manual_seed(seed))
    test_idx, train_idx = perm[:n_test].sort().values, perm[n_test:]
    train_mask = mask[train_idx]
    x_train = x_unique[train_idx, None].expand_as(train_mask)[train_mask]
    y_train = valid[train_idx][train_mask]
    test_mask = mask[test_idx]
    width = int(test_mask.sum(1).max())
    return x_train, y_train, x_unique[test_idx], valid[test_idx, :width], test_mask[:, :width]
