"""dataset=curves: a y that is a multi-valued function of x (the lecture's figure)."""

import math
from typing import Optional, Sequence

import torch

from ebm_cli.core.dataset import Dataset, check_data_file
from ebm_cli.core.spaces import BoxSpace
from ebm_cli.datasets.curves.data import branch_functions, generate_curves, split_csv
from ebm_cli.errors import require, require_non_negative, require_positive

DEFAULT_BRANCHES = ("0.6 + 0.3 * sin(pi * x)", "0.4 * x", "-0.6 + 0.3 * cos(pi * x)")


class Curves(Dataset):
    """Multi-branch curves: each x has several valid y, one per branch. Generated from branch
    expressions, or read from a CSV with header `x,y` (rows sharing an x, as a float32, are that
    x's valid set). x_train, y_train: (N, 1); x_test: (M, 1); valid: (M, V, 1) with valid_mask (M, V).

    Args:
        path: a CSV file; None = generate from `branches`.
        branches: expressions of x (sin, cos, exp, log, sqrt, abs, tanh, sign, pi, e).
        x_min, x_max: the generated x range.
        noise: std of the Gaussian noise on generated training y.
        train_size: generated training rows.
        test_size: generated held-out x (an even grid).
        test_fraction: CSV: share of the distinct x values held out.
        y_min, y_max: the y box; None = the data's range plus a 15% margin.
        eps: the distance tolerance of coverage@eps and precision@eps.
        seed: the data's own seed; None = the run's.
        run_seed: the run's seed (from the runner).
    """

    def __init__(self, path: Optional[str] = None, branches: Sequence[str] = DEFAULT_BRANCHES, x_min: float = -1.0,
                 x_max: float = 1.0, noise: float = 0.02, train_size: int = 4096, test_size: int = 101,
                 test_fraction: float = 0.2, y_min: Optional[float] = None, y_max: Optional[float] = None,
                 eps: float = 0.05, seed: Optional[int] = None, run_seed: int = 0):
        require_positive(train_size=train_size, test_size=test_size, eps=eps)
        require_non_negative(noise=noise)
        require(0 < test_fraction < 1, "test_fraction", test_fraction, "must be between 0 and 1")
        for name, value in (("x_min", x_min), ("x_max", x_max), ("y_min", y_min), ("y_max", y_max)):
            require(value is None or math.isfinite(value), name, value, "must be finite")
        require(x_min < x_max, "x_min", x_min, f"must be below dataset.x_max={x_max}")
        seed = seed if seed is not None else run_seed
        self.eps = eps
        if path:
            check_data_file(path)
            x, y, x_test, valid, mask = split_csv(path, test_fraction, seed)
            self.source = path
        else:
            x, y, x_test, valid = generate_curves(branches, x_min, x_max, noise, train_size, test_size, seed)
            self.branches = branch_functions(branches)  # every valid y of any x, for a validation split
            mask = torch.ones_like(valid, dtype=torch.bool)  # every branch is valid everywhere
            self.source = "generated"
        self.x_train, self.y_train = x[:, None].float(), y[:, None].float()
        self.x_test, self.valid, self.valid_mask = x_test[:, None].float(), valid[..., None].float(), mask
        if y_min is not None or y_max is not None:
            low, high = self.y_space.low, self.y_space.high  # the data's range: the default of each side
            low, high = y_min if y_min is not None else low, y_max if y_max is not None else high
            require(low < high, "y_min", low, f"must be below dataset.y_max={high}")
            self.y_space = BoxSpace(float(low), float(high), (1,))


    branches = None  # read from a file: the valid sets are the rows

    @property
    def outputs_per_input(self) -> int:
        return len(self.branches) if self.branches is not None else super().outputs_per_input

    def validation_valid(self, x, valid, mask):
        """Generated curves know every branch's y at a validation x (training rows hold one each)."""
        if self.branches is None:
            return valid, mask
        every = torch.stack([f(x[:, 0]) for f in self.branches], dim=1)[..., None]  # (M, K, 1)
        return every, torch.ones(every.shape[:2], dtype=torch.bool, device=every.device)


class CurvesCSV(Curves):
    """Curves from a CSV file with header `x,y` (dataset=curves_csv): rows sharing an x (to 6
    decimals) are that x's valid set; a share of the distinct x values is held out.

    Args:
        path: the CSV file (required).
        test_fraction: share of the distinct x values held out.
        train_size, test_size: at most this many training rows and held-out x (a seeded subset,
            e.g. for debug=smoke); None = all.
        y_min, y_max: the y box; None = the data's range plus a 15% margin.
        eps: the distance tolerance of coverage@eps and precision@eps.
        seed: the split's own seed; None = the run's.
        run_seed: the run's seed (from the runner).
    """

    def __init__(self, path: str, test_fraction: float = 0.2, train_size: Optional[int] = None,
                 test_size: Optional[int] = None, y_min: Optional[float] = None, y_max: Optional[float] = None,
                 eps: float = 0.05, seed: Optional[int] = None, run_seed: int = 0):
        require(bool(path), "path", path, "names the CSV file (header x,y)")
        require(train_size is None or train_size > 0, "train_size", train_size, "must be > 0 or null")
        require(test_size is None or test_size > 0, "test_size", test_size, "must be > 0 or null")
        super().__init__(path=path, test_fraction=test_fraction, y_min=y_min, y_max=y_max, eps=eps, seed=seed,
                         run_seed=run_seed)
        gen = torch.Generator().manual_seed(seed if seed is not None else run_seed)
        if train_size is not None and train_size < len(self.x_train):
            keep = torch.randperm(len(self.x_train), generator=gen)[:train_size]
            self.x_train, self.y_train = self.x_train[keep], self.y_train[keep]
        if test_size is not None and test_size < len(self.x_test):
            keep = torch.randperm(len(self.x_test), generator=gen)[:test_size].sort().values
            self.x_test, self.valid, self.valid_mask = self.x_test[keep], self.valid[keep], self.valid_mask[keep]
