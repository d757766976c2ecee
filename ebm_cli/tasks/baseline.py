"""The feed-forward MSE baseline trained next to the energy (trainer.baseline=true).

Every data kind with a `baseline` class reports what an explicit regressor trained with MSE gets
(the average of the valid outputs). Training it in the same run, on the same batches, puts its
metrics (baseline_*) and its prediction (in the video image grid) beside the energy's.
"""

from typing import Any, Dict

import torch


class Baseline:
    """A predictor (regressor on curves, conv_regressor on frames) with the run energy's sizes, and
    its own Adam."""

    def __init__(self, model: torch.nn.Module, lr: float):
        self.model = model
        self.opt = torch.optim.Adam(self.model.parameters(), lr=lr)

    def step(self, x: torch.Tensor, y: torch.Tensor, lr: float) -> torch.Tensor:
        """One MSE step on a batch x: (B, *x_shape), y: (B, *y_shape); the loss (not read back)."""
        self.model.train()
        loss = (self.model.predict(x) - y).pow(2).mean()  # per coordinate (per pixel)
        for group in self.opt.param_groups:
            group["lr"] = lr
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return loss.detach()

    def state_dict(self) -> Dict[str, Any]:
        return {"model": self.model.state_dict(), "optimizer": self.opt.state_dict()}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
