"""The dataset contract: one object per data kind owns its rows, its held-out valid sets, the sizes
an energy needs, its distance and metrics, and its figures or texts."""

import copy
import math
import os
from functools import cached_property
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from ebm_cli.core.metrics import euclidean, multi_output_metrics
from ebm_cli.core.spaces import BoxSpace, is_continuous
from ebm_cli.errors import UserError

Y_MARGIN = 0.15  # the default y box: the data's range plus this share of it on each side


def check_data_file(path: str) -> None:
    """dataset.path names a readable, non-empty file: else one line saying which of these it is not."""
    if not os.path.exists(path):
        raise UserError(f"dataset.path={path}: no such file")
    if os.path.isdir(path):
        raise UserError(f"dataset.path={path}: is a folder, not a file")
    if not os.access(path, os.R_OK):
        raise UserError(f"dataset.path={path}: cannot be read (Permission denied)")
    if os.path.getsize(path) == 0:
        raise UserError(f"dataset.path={path}: the file is empty")


class Dataset:
    """A data kind. A subclass loads (or generates) its data in __init__ and sets:

        x_train (N, *x_shape), y_train (N, *y_shape)  one training row per (input, valid output)
        x_test (M, *x_shape)                           held-out inputs
        valid (M, V, *y_shape), valid_mask (M, V)      each held-out input's valid outputs, padded
        eps                                            the tolerance of coverage@eps / precision@eps
        source                                         where the data came from (a path, "generated")
        train_groups (N,), optional                    rows that a validation split keeps together
                                                       (e.g. the windows of one clip); default: rows
                                                       with the same x

    Everything else has a default that fits flat, continuous data: the y box (the data's range plus
    a margin), the sizes an energy may ask for (`energy_args`), Euclidean distance and the
    multi-output metrics, and the energy landscape figures when x and y are 1-D. Constructors take
    keyword arguments; the runner adds `run_seed` (the run's seed) if a constructor asks for it.

    The runner reads the training rows through `num_rows`, `batch(idx)` and `take_rows(keep)`; a
    data kind too large to hold its rows as tensors (every window of a big clip file) overrides
    those three and `x_shape` / `y_shape` instead of setting x_train and y_train.
    """

    source: str = "generated"
    # True on the validation part that split_validation carves out: scored every few hundred steps,
    # its metrics may leave out what only the final report needs (BLEU for sentences, say).
    validation_split: bool = False
    # `_target_` of the feed-forward MSE model that trainer.baseline=true trains beside an energy,
    # built with the run energy's sizes; None: no baseline for this data kind.
    baseline: Optional[str] = "ebm_cli.energies.mlp.RegressorEnergy"

    # -- the training rows -----------------------------------------------------------------------------
    @property
    def num_rows(self) -> int:
        """How many training rows there are."""
        return len(self.x_train)

    def batch(self, idx: torch.Tensor, device=None) -> Tuple[torch.Tensor, torch.Tensor]:
        """Training rows idx (B,) (on the host) -> x (B, *x_shape), y (B, *y_shape) on `device`."""
        x, y = self.x_train[idx], self.y_train[idx]
        return (x, y) if device is None else (x.to(device), y.to(device))

    def take_rows(self, keep: torch.Tensor) -> "Dataset":
        """A shallow copy with only the training rows where keep (num_rows,) is True (and their groups)."""
        part = copy.copy(self)
        part.x_train, part.y_train = self.x_train[keep], self.y_train[keep]
        if getattr(self, "train_groups", None) is not None:
            part.train_groups = self.train_groups[keep]
        return part

    def with_rows(self, x: torch.Tensor, y: torch.Tensor) -> "Dataset":
        """A shallow copy whose training rows are the tensors x (N, *x_shape), y (N, *y_shape)."""
        part = copy.copy(self)
        part.x_train, part.y_train, part.train_groups = x, y, None
        return part

    def batch_size_hint(self) -> int:
        """The batch size of trainer.batch_size=null: 128 rows (a data kind whose rows vary in cost,
        frames of any size, says otherwise)."""
        return 128

    @cached_property
    def outputs_per_input(self) -> int:
        """The most valid outputs one input has in the training data: the rows sharing an x. An
        inference method's k (inference.k=null) defaults to it: as many candidates as the data has
        answers. A generator that knows its count says so instead."""
        if self.num_rows == 0:
            return 1
        _, counts = torch.unique(self.x_train.flatten(1), dim=0, return_counts=True)
        return int(counts.max())

    @property
    def x_shape(self) -> Tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    @property
    def y_shape(self) -> Tuple[int, ...]:
        return tuple(self.y_train.shape[1:])

    # -- what the runner reads -----------------------------------------------------------------------
    @cached_property
    def y_space(self):
        """The y box: the range of the training and valid y, plus a margin (override for other spaces)."""
        observed = torch.cat([self.y_train.flatten(), self.valid[self.valid_mask].flatten()]).float()
        lo, hi = float(observed.min()), float(observed.max())
        margin = Y_MARGIN * max(hi - lo, 1e-3)
        return BoxSpace(lo - margin, hi + margin, tuple(self.y_train.shape[1:]))

    @cached_property
    def x_range(self):
        """(low, high) of every x value, training and held out."""
        both = torch.cat([self.x_train.flatten(), self.x_test.flatten()]).float()
        return float(both.min()), float(both.max())

    def energy_args(self) -> Dict[str, Any]:
        """The data-dependent arguments an energy's constructor may ask for by name. Plain values
        (and `_target_` nodes for objects), so that checkpoints keep them and a run's energy can be
        rebuilt without its data."""
        x_shape, y_shape = list(self.x_shape), list(self.y_shape)
        x_low, x_high = self.x_range
        return {"x_shape": x_shape, "x_dim": math.prod(x_shape), "y_shape": y_shape, "y_dim": math.prod(y_shape),
                "x_low": x_low, "x_high": x_high, "y_space": self.y_space.to_config(),
                "outputs_per_input": self.outputs_per_input}

    def distance(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """a: (M, P, *y_shape), b: (M, V, *y_shape) -> (M, P, V)."""
        return euclidean(a, b)

    def metrics(self, y: torch.Tensor, mask: torch.Tensor) -> Dict[str, float]:
        """The metrics of candidates y: (M, P, *y_shape) with mask (M, P) for the held-out inputs."""
        return multi_output_metrics(y.cpu(), mask.cpu(), self.valid, self.valid_mask, self.eps, self.distance)

    def figures(self, energy, logger, device, candidates=None, baseline=None) -> Dict[str, object]:
        """{name: matplotlib figure} for TensorBoard and figures/: the landscapes for a 1-D x and y."""
        if self.x_train.shape[1:] == (1,) and is_continuous(self.y_space) and self.y_space.size == 1:
            from ebm_cli.plots.figures import landscape_figures

            return landscape_figures(self, energy, logger, device, candidates)
        return {}

    def texts(self, energy, logger, device) -> Dict[str, str]:
        """{name: markdown} for TensorBoard text and figures/<name>.md."""
        return {}

    def augment(self, x: torch.Tensor, y: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """A training batch x (B, *x_shape), y (B, *y_shape) transformed at random the same way on
        both sides, for a data kind whose task is unchanged by some transformation (draws from
        torch's global generator, so a seeded run stays reproducible). Default: unchanged."""
        return x, y

    # -- a validation split, carved from the training rows (never the test inputs) --------------------
    def split_validation(self, fraction: float, seed: int, max_rows: int = 1024,
                         loss_rows: Optional[int] = None) -> Tuple["Dataset", "Dataset"]:
        """(training part, validation part) of this data: a seeded share `fraction` of the training
        groups (train_groups, else the rows that share an x) is held out whole. The validation part
        is a dataset whose held-out inputs are the distinct x of those rows, each with its rows' y as
        its valid set (`validation_valid` may give better ones), up to `max_rows` of them, and whose
        x_train / y_train are up to `loss_rows` (default max_rows) of those rows (for the validation
        loss, one batch with its gradients: a training batch's size is what fits). Both share this data's y box, x range
        and everything else, so the energy built from the whole data fits both."""
        _ = (self.y_space, self.x_range)  # cached properties, computed on the whole data: the copies share them
        groups = getattr(self, "train_groups", None)
        if groups is None:
            groups = torch.unique(self.x_train.flatten(1), dim=0, return_inverse=True)[1]
        names = torch.unique(groups)
        n_val = int(round(fraction * len(names)))
        if len(names) < 2 or n_val < 1 or n_val >= len(names):
            raise UserError(f"trainer.val_fraction={fraction}: {len(names)} training group(s) (distinct inputs or "
                            "clips) cannot be split into training and validation parts")
        rng = np.random.default_rng(seed)
        held = names[torch.from_numpy(rng.permutation(len(names))[:n_val])]
        is_val = torch.isin(groups, held)
        train = self.take_rows(~is_val)
        x_rows, y_rows = self.batch(self._validation_rows(groups, held, is_val, 4 * max_rows))
        keep = torch.from_numpy(rng.permutation(len(x_rows))[:loss_rows or max_rows])
        val = self.with_rows(x_rows[keep], y_rows[keep])  # rows for the validation loss
        inputs, which = torch.unique(x_rows.flatten(1), dim=0, return_inverse=True)
        counts = torch.bincount(which, minlength=len(inputs))
        order = torch.argsort(which, stable=True)
        slot = torch.arange(len(which), device=which.device) - torch.repeat_interleave(torch.cumsum(counts, 0) - counts,
                                                                                      counts)
        valid = torch.zeros(len(inputs), int(counts.max()), *y_rows.shape[1:], dtype=y_rows.dtype, device=y_rows.device)
        mask = torch.zeros(len(inputs), int(counts.max()), dtype=torch.bool, device=y_rows.device)
        valid[which[order], slot] = y_rows[order]
        mask[which[order], slot] = True
        if len(inputs) > max_rows:  # evaluated every few hundred steps: a seeded subset of the inputs is enough
            pick = torch.from_numpy(np.sort(rng.permutation(len(inputs))[:max_rows]))
            inputs, valid, mask = inputs[pick], valid[pick], mask[pick]
        val.x_test = inputs.view(len(inputs), *x_rows.shape[1:]).to(x_rows.dtype)
        val.valid, val.valid_mask = self.validation_valid(val.x_test, valid, mask)
        val.validation_split = True
        return train, val

    @staticmethod
    def _validation_rows(groups: torch.Tensor, held: torch.Tensor, is_val: torch.Tensor, limit: int) -> torch.Tensor:
        """The held-out rows to read (indices): all of them, or, past `limit`, those of the first held
        groups (in their random order) that fit in it, at least one group: a big clip file's
        validation part is read in whole clips, never all of it."""
        rows = torch.nonzero(is_val)[:, 0]
        if len(rows) <= limit:
            return rows
        names, counts = torch.unique(groups, return_counts=True)
        sizes = counts[torch.searchsorted(names, held)]  # rows of each held group
        fit = max(1, int((torch.cumsum(sizes, 0) <= limit).sum()))
        return torch.nonzero(torch.isin(groups, held[:fit]))[:, 0]

    def validation_valid(self, x: torch.Tensor, valid: torch.Tensor, mask: torch.Tensor):
        """The valid sets of validation inputs x (M, *x_shape): by default the y of their training
        rows, valid (M, V, *y_shape) with mask (M, V); a data kind that knows every valid output of
        an x (a generator) gives those instead."""
        return valid, mask

    # -- task=infer: inputs from the command line, outputs for a table -------------------------------
    @classmethod
    def parse_inputs(cls, values: Sequence[Any], meta: Dict[str, Any]) -> torch.Tensor:
        """x=[...] of task=infer as a batch (N, *x_shape): numbers for a 1-D x, lists for a flat x."""
        x_shape = list(meta.get("x_shape", [1]))
        if len(x_shape) != 1:
            raise UserError(f"task=infer takes flat inputs x, and this run's x has shape {tuple(x_shape)}: "
                            "its predictions are drawn in figures/ (task=landscape re-draws them)")
        rows = []
        for v in values:
            row = list(v) if isinstance(v, (list, tuple)) else [v]
            try:
                row = [float(c) for c in row]
            except (TypeError, ValueError):
                raise UserError(f"x={list(values)}: every input must be a number or a list of numbers") from None
            if len(row) != x_shape[0]:
                raise UserError(f"x={list(values)}: this run's x has {x_shape[0]} coordinate(s), "
                                f"an input has {len(row)}")
            rows.append(row)
        return torch.tensor(rows, dtype=torch.float32, device="cpu")  # on the host, as the data; the task moves it

    @classmethod
    def describe(cls, y: torch.Tensor, meta: Dict[str, Any]) -> str:
        """One candidate y (*y_shape) as table text."""
        return ", ".join(f"{float(v):.4g}" for v in y.flatten())

    # -- the contract, checked once after loading ------------------------------------------------------
    def check(self) -> None:
        """Raise UserError naming what a (user's) data kind lacks or gets wrong."""
        name = type(self).__name__
        lazy = type(self).num_rows is not Dataset.num_rows and not hasattr(self, "x_train")  # rows read by batch()
        row_keys = () if lazy else ("x_train", "y_train")
        for key in (*row_keys, "x_test", "valid", "valid_mask", "eps"):
            if not hasattr(self, key):
                raise UserError(f"dataset {name}: sets no {key} (a Dataset sets x_train, y_train, x_test, valid, "
                                "valid_mask and eps)")
        for key in (*row_keys, "x_test", "valid", "valid_mask"):
            if not isinstance(getattr(self, key), torch.Tensor):
                raise UserError(f"dataset {name}: {key} must be a torch.Tensor, not {type(getattr(self, key)).__name__}")
        n, m = self.num_rows, len(self.x_test)
        problems: List[str] = []
        if n == 0 or m == 0:
            problems.append(f"{n} training rows and {m} held-out inputs (needs at least one of each)")
        elif not lazy and len(self.y_train) != n:
            problems.append(f"x_train has {n} rows but y_train {len(self.y_train)}")
        elif self.valid.shape[:1] != (m,) or self.valid_mask.shape != self.valid.shape[:2]:
            problems.append(f"valid {tuple(self.valid.shape)} and valid_mask {tuple(self.valid_mask.shape)} must be "
                            f"(M, V, *y_shape) and (M, V) with M = {m} held-out inputs")
        elif tuple(self.valid.shape[2:]) != self.y_shape:
            problems.append(f"valid outputs have shape {tuple(self.valid.shape[2:])}, training y {self.y_shape}")
        elif self.valid_mask.dtype != torch.bool or not bool(self.valid_mask.any(dim=1).all()):
            problems.append("valid_mask must be boolean with at least one valid output per held-out input")
        elif tuple(self.x_test.shape[1:]) != self.x_shape:
            problems.append(f"x_test inputs have shape {tuple(self.x_test.shape[1:])}, x_train {self.x_shape}")
        if problems:
            raise UserError(f"dataset {name}: {problems[0]}")
        for key in (*row_keys, "x_test", "valid"):
            value = getattr(self, key)
            if value.is_floating_point() and not bool(torch.isfinite(value).all()):
                raise UserError(f"dataset {name}: {key} holds NaN or infinite values")
