"""A user's own data kind, outside the ebm_cli package: the two roots of a quadratic.

x = (s, p), the sum and the product of two numbers r1, r2 in [-1, 1]; y is either number: the
roots of y^2 - s y + p = 0. Two valid outputs for every input, whose x is 2-D.
"""

from typing import Optional

import torch

from ebm_cli.core.dataset import Dataset


class QuadraticRoots(Dataset):
    """x_train (N, 2) = (s, p), y_train (N, 1) one root per row (both roots of each pair appear);
    x_test (M, 2) with valid (M, 2, 1) = both roots.

    Args:
        train_size: pairs of roots to train on (two rows each).
        test_size: held-out pairs.
        eps: distance tolerance of coverage@eps and precision@eps.
        seed: the data's own seed; None = the run's.
        run_seed: the run's seed (from the runner).
    """

    def __init__(self, train_size: int = 2048, test_size: int = 200, eps: float = 0.05, seed: Optional[int] = None,
                 run_seed: int = 0):
        gen = torch.Generator().manual_seed(seed if seed is not None else run_seed)
        roots = 2 * torch.rand(train_size + test_size, 2, generator=gen) - 1  # (N, 2)
        x = torch.stack([roots.sum(1), roots.prod(1)], dim=1)  # (s, p)
        train, test = slice(0, train_size), slice(train_size, None)
        self.x_train = x[train].repeat_interleave(2, dim=0)  # one row per root
        self.y_train = roots[train].reshape(-1, 1)
        self.x_test, self.valid = x[test], roots[test].unsqueeze(-1)  # (M, 2), (M, 2, 1)
        self.valid_mask = torch.ones(len(self.x_test), 2, dtype=torch.bool)
        self.eps = eps
