"""The feed-forward MSE baseline trained next to the energy (trainer.baseline=true).

Every data kind with a `baseline` class reports what an explicit regressor trained with MSE gets
(the average of the valid outputs). Training it in the same run, on the same batches, puts its
metrics (baseline_*) and its prediction (in the video image grid) beside the energy's.
"""

from typing import Any, Dict

import torch

from ebm_cli.training.ema import WeightAverage


class Baseline:
    """A predictor (regressor on curves, conv_regressor on frames) with the run energy's sizes, its
    own optimizer (the run's optimizer=, at the energy's learning rate of each step), and the same
    moving average of its weights as the energy's (trainer.ema): both models are compared as they
    are evaluated."""

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, ema: float = 0.0):
        self.trained = model
        self.opt = optimizer
        self.average = WeightAverage(model, ema)

    @property
    def model(self) -> torch.nn.Module:
        """The evaluated model: the moving average of the trained one's weights (or itself)."""
        return self.average.evaluated

    def step(self, x: torch.Tensor, y: torch.Tensor, lr: float, sync=None) -> torch.Tensor:
        """One MSE step on a batch x: (B, *x_shape), y: (B, *y_shape); the loss (not read back).
        sync: a data-parallel run's Group (training/distributed.py): the gradients averaged over the ranks."""
        self.trained.train()
        loss = (self.trained.predict(x) - y).pow(2).mean()  # per coordinate (per pixel)
        for group in self.opt.param_groups:
            group["lr"] = lr
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if sync is not None:
            sync.average_gradients([p for group in self.opt.param_groups for p in group["params"]])
        self.opt.step()
        self.average.update()
        return loss.detach()

    def state_dict(self) -> Dict[str, Any]:
        """"model" is the evaluated model's weights (what task=landscape draws), as for the energy."""
        state = {"model": self.model.state_dict(), "optimizer": self.opt.state_dict()}
        if self.model is not self.trained:
            state.update(trained=self.trained.state_dict(), average=self.average.state_dict())
        return state

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.trained.load_state_dict(state.get("trained", state["model"]))
        self.model.load_state_dict(state["model"])
        self.average.load_state_dict(state.get("average", {}))
        self.opt.load_state_dict(state["optimizer"])
