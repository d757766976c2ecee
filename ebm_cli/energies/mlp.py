"""MLP energy F(x, y) and the explicit regressor baseline E(x, y) = ||y - f(x)||^2, on flat x and y."""

from typing import Callable, Optional

import torch
from torch import nn

from ebm_cli.core.energy import ClosedFormGradient, Energy, PredictorEnergy
from ebm_cli.core.spaces import BoxSpace
from ebm_cli.energies.nets import Normalizer, check_sizes, mlp
from ebm_cli.errors import require_choice

OUTPUTS = ("linear", "softplus", "square")
OUTPUT_FUNCTIONS = {"softplus": torch.nn.functional.softplus, "square": torch.square}
# dF/du of each output function of the last layer's u, from u
OUTPUT_DERIVATIVES = {"softplus": torch.sigmoid, "square": lambda u: 2 * u}


# The derivative of each activation from its input, as grad * act'(h) in one kernel (aten's own
# backward functions); an activation missing here makes y_gradient fall back to autograd.
ACTIVATION_BACKWARD = {
    nn.SiLU: torch.ops.aten.silu_backward,
    nn.ReLU: lambda grad, h: torch.ops.aten.threshold_backward(grad, h, 0),
    nn.GELU: lambda grad, h: torch.ops.aten.gelu_backward(grad, h),
    nn.Tanh: lambda grad, h: torch.ops.aten.tanh_backward(grad, torch.tanh(h)),
}


class MLPEnergy(Energy, ClosedFormGradient):
    """F(x, y) = MLP([x, y])^2 for x (B, *x_shape) and y (B, *y_shape), both flattened; returns (B,)
    (`output` picks the square, the MLP itself or its softplus).

    grad_y F has a closed form (`y_gradient`): a forward pass that stops before the last layer, and
    a backward pass by hand. x's share of the first layer is computed once for all the steps of a
    sampler; the last layer's output is needed only for a square or softplus output (its derivative).

    Args:
        hidden: units per hidden layer.
        depth: hidden layers.
        activation: relu | silu | gelu | tanh | softplus | elu.
        output: square (F = MLP^2, the default) | linear (F = MLP, any real number) | softplus
            (F = softplus(MLP)). square's minima are the zero set of the MLP, where it changes
            sign: curves, for a 1-D x and y, which is what multi-valued curves are made of. On the
            default curves it reaches coverage 0.95 in half the steps of linear (400 against 800)
            and ends higher (0.99 against 0.96 after 1000). Non-negative energies are also what the
            tutorial's square-square, square-exponential and LVQ2 losses assume, and the energy
            loss's collapse on them is a flat landscape at F = 0.
        x_dim, x_low, x_high: the size of x and the range its values span (from the data).
        y_space: the y box (from the data).
    """

    def __init__(self, hidden: int = 64, depth: int = 2, activation: str = "silu", output: str = "square", *,
                 x_dim: int, x_low: float, x_high: float, y_space: BoxSpace):
        super().__init__()
        check_sizes(hidden, depth, activation)
        require_choice("output", output, OUTPUTS)
        self.output = output
        self.y_space = y_space
        self.x_norm = Normalizer(x_low, x_high)
        self.y_norm = Normalizer(y_space.low, y_space.high)
        self.net = mlp(x_dim + y_space.size, hidden, depth, 1, activation)
        self.hidden = hidden

    @property
    def gradient_width(self) -> int:
        return max(self.hidden, self.y_space.size)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = torch.cat([self.x_norm(x.flatten(1)), self.y_norm(y.flatten(1))], dim=1)  # (B, Dx + Dy)
        out = self.net(h)[:, 0]
        return OUTPUT_FUNCTIONS[self.output](out) if self.output != "linear" else out

    def y_gradient(self, x: torch.Tensor) -> Optional[Callable[[torch.Tensor], torch.Tensor]]:
        """grad_y F(x_b, y_bc) for y: (B, C, *y_shape), x: (B, *x_shape) (see ClosedFormGradient)."""
        layers = list(self.net)
        linears, acts = layers[0::2], layers[1::2]
        if any(type(a) not in ACTIVATION_BACKWARD for a in acts):
            return None
        first, dx = linears[0], x[0].numel()
        # The first layer on y folded with y's scaling, y_n = (y - c) / h: W_y y_n = (W_y / h) y - (W_y / h) c,
        # so that y goes in as it is and the gradient comes out in y's units. x's share of the layer,
        # its bias and the -(W_y / h) c term: (B, H), once per x. Float32 throughout, also inside a
        # bf16 training step.
        with torch.no_grad(), torch.autocast(x.device.type, enabled=False):
            w_y = first.weight[:, dx:] / self.y_norm.half_width  # (H, Dy)
            x_part = torch.nn.functional.linear(self.x_norm(x.flatten(1)), first.weight[:, :dx], first.bias)
            x_part = x_part - self.y_norm.center * w_y.sum(dim=1)
            w_y_rows = w_y.t().contiguous()  # (Dy, H): g @ w_y as a product with rows in memory (5x faster for a small Dy)

        def grad(y: torch.Tensor) -> torch.Tensor:
            # a sampler calls this hundreds of times: the plain float32 case without the context managers
            if y.dtype == torch.float32 and not torch.is_grad_enabled() and not torch.is_autocast_enabled(y.device.type):
                return by_hand(y)
            with torch.no_grad(), torch.autocast(y.device.type, enabled=False):
                return by_hand(y.float()).to(y.dtype)

        def by_hand(y: torch.Tensor) -> torch.Tensor:
            b, c = y.shape[:2]
            if not acts:  # depth 0: F is linear in y (before the output)
                g = w_y[0].expand(b * c, -1)
                if self.output != "linear":
                    u = torch.addmm(x_part.repeat_interleave(c, dim=0), y.reshape(b * c, -1), w_y.t())
                    g = g * OUTPUT_DERIVATIVES[self.output](u)
                return g.reshape(y.shape).clone()
            bias = x_part.repeat_interleave(c, dim=0) if c > 1 else x_part  # (BC, H)
            pre = [torch.addmm(bias, y.reshape(b * c, -1), w_y.t())]  # pre-activations of the hidden layers
            for lin in linears[1:-1]:
                pre.append(torch.nn.functional.linear(acts[len(pre) - 1](pre[-1]), lin.weight, lin.bias))
            g = linears[-1].weight.expand(b * c, -1)  # dF / d(last hidden activation): (BC, H)
            if self.output != "linear":  # F = out(u), u the last layer's output: times out'(u)
                u = torch.nn.functional.linear(acts[-1](pre[-1]), linears[-1].weight, linears[-1].bias)  # (BC, 1)
                g = g * OUTPUT_DERIVATIVES[self.output](u)
            for i in range(len(pre) - 1, -1, -1):
                g = ACTIVATION_BACKWARD[type(acts[i])](g, pre[i])
                g = g @ linears[i].weight if i > 0 else torch.nn.functional.linear(g, w_y_rows)
            return g.view(y.shape)

        return grad


class RegressorEnergy(PredictorEnergy):
    """The explicit regressor baseline: f(x) = MLP(x), E = ||y - f(x)||^2.

    Args:
        hidden, depth, activation: the MLP, as for energy=mlp.
        x_dim, x_low, x_high: the size of x and the range its values span (from the data).
        y_space: the y box (from the data).
    """

    def __init__(self, hidden: int = 64, depth: int = 2, activation: str = "silu", *, x_dim: int, x_low: float,
                 x_high: float, y_space: BoxSpace):
        super().__init__(y_space)
        check_sizes(hidden, depth, activation)
        self.x_norm = Normalizer(x_low, x_high)
        self.y_norm = Normalizer(y_space.low, y_space.high)
        self.net = mlp(x_dim, hidden, depth, y_space.size, activation)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(self.x_norm(x.flatten(1))) * self.y_norm.half_width + self.y_norm.center
        return out.view(x.shape[0], *self.y_space.shape)
