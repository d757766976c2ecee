"""MLP energy F(x, y) and the explicit regressor baseline E(x, y) = ||y - f(x)||^2, on flat x and y."""

from typing import Callable, Optional

import torch
from torch import nn

from ebm_cli.core.energy import ClosedFormGradient, Energy, PredictorEnergy
from ebm_cli.core.spaces import BoxSpace
from ebm_cli.energies.nets import Normalizer, check_sizes, mlp
from ebm_cli.errors import require_choice

OUTPUTS = ("auto", "square_plus_linear", "square", "linear", "softplus")
# F from the last layer's outputs u (N, width): (N,)
OUTPUT_FUNCTIONS = {
    "square_plus_linear": lambda u: u[:, 0].square() + u[:, 1],
    "square": lambda u: u[:, 0].square(),
    "linear": lambda u: u[:, 0],
    "softplus": lambda u: torch.nn.functional.softplus(u[:, 0]),
}
OUTPUT_WIDTHS = {"square_plus_linear": 2}  # the others read one output
# dF/du of each nonlinear output function, from u (N, width) -> (N, width)
OUTPUT_DERIVATIVES = {
    "square_plus_linear": lambda u: torch.stack([2 * u[:, 0], torch.ones_like(u[:, 1])], dim=1),
    "square": lambda u: 2 * u,
    "softplus": torch.sigmoid,
}


# The derivative of each activation from its input, as grad * act'(h) in one kernel (aten's own
# backward functions); an activation missing here makes y_gradient fall back to autograd.
ACTIVATION_BACKWARD = {
    nn.SiLU: torch.ops.aten.silu_backward,
    nn.ReLU: lambda grad, h: torch.ops.aten.threshold_backward(grad, h, 0),
    nn.GELU: lambda grad, h: torch.ops.aten.gelu_backward(grad, h),
    nn.Tanh: lambda grad, h: torch.ops.aten.tanh_backward(grad, torch.tanh(h)),
}


class MLPEnergy(Energy, ClosedFormGradient):
    """F(x, y) from one MLP on [x, y], for x (B, *x_shape) and y (B, *y_shape), both flattened;
    returns (B,). `output` picks F from the MLP's outputs: a^2 + b (two outputs), a^2, a or
    softplus(a); by default (auto) a^2 + b under the NLL and a^2 under any other loss.

    grad_y F has a closed form (`y_gradient`): a forward pass that stops before the last layer, and
    a backward pass by hand. x's share of the first layer is computed once for all the steps of a
    sampler; the last layer's output is needed only for a nonlinear output (its derivative).

    Args:
        hidden: units per hidden layer.
        depth: hidden layers.
        activation: relu | silu | gelu | tanh | softplus | elu.
        output: auto (square_plus_linear under a loss that normalises over the y box, loss=nll;
            square otherwise: under loss=cd the linear term doubled the steps to the same
            coverage) | square_plus_linear (F = a^2 + b) | square (F = a^2 >= 0) | linear
            (F = a, any real number) | softplus (F = softplus(a) >= 0). The square's minima are the
            zero set of a, where it changes sign: curves, for a 1-D x and y, which is what
            multi-valued curves are made of, reached in half the steps of linear on the default
            curves (coverage 0.95 at step 400 against 800). But a zero set of a has a parity: along
            y, between the box's ends where a is large, a crosses zero an odd number of times if its
            signs there differ, an even number if not; a square that starts with the wrong parity
            for the data's branch count can add a crossing only by flipping the sign of a over
            everything beyond it, so two neighbouring branches stay merged in one valley (five
            branches, run seeds 1 to 3: coverage 0.62 to 0.72). The linear term b digs a valley
            where a cannot reach zero, and a then follows: 0.99 on every seed
            (experiments/quality). square and softplus are what the tutorial's square-square,
            square-exponential and LVQ2 losses assume (F >= 0: those losses refuse the others), and
            the energy loss's collapse on them is a flat landscape at F = 0.
        loss_normalises_over_y: whether the run's loss normalises over the y box (from the runner).
        x_dim, x_low, x_high: the size of x and the range its values span (from the data).
        y_space: the y box (from the data).
    """

    def __init__(self, hidden: int = 64, depth: int = 2, activation: str = "silu", output: str = "auto", *,
                 x_dim: int, x_low: float, x_high: float, y_space: BoxSpace, loss_normalises_over_y: bool = False):
        super().__init__()
        check_sizes(hidden, depth, activation)
        require_choice("output", output, OUTPUTS)
        if output == "auto":
            output = "square_plus_linear" if loss_normalises_over_y else "square"
            self.chosen_because = (f"energy: MLPEnergy with output {output} (energy.output=auto: " + (
                "the loss normalises over the y box, where a square's zero set cannot add a missing branch"
                if loss_normalises_over_y else "F = a^2 >= 0, the loss does not normalise over the y box")
                + "; energy.output=square|square_plus_linear|linear|softplus overrides it)")
        self.output = output
        self.y_space = y_space
        self.x_norm = Normalizer(x_low, x_high)
        self.y_norm = Normalizer(y_space.low, y_space.high)
        self.net = mlp(x_dim + y_space.size, hidden, depth, OUTPUT_WIDTHS.get(output, 1), activation)
        if output == "square_plus_linear":
            # b's constant term moves F by a constant, which the NLL does not see (its log Z moves with
            # it), nor any loss of energy differences: its gradient is roundoff, which Adam would scale
            # into full-size steps (a random walk, different on every thread count). It stays 0.
            bias = self.net[-1].bias
            with torch.no_grad():
                bias[1] = 0.0
            bias.register_hook(lambda grad: torch.stack([grad[0], torch.zeros_like(grad[1])]))
        self.hidden = hidden

    @property
    def gradient_width(self) -> int:
        return max(self.hidden, self.y_space.size)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = torch.cat([self.x_norm(x.flatten(1)), self.y_norm(y.flatten(1))], dim=1)  # (B, Dx + Dy)
        return OUTPUT_FUNCTIONS[self.output](self.net(h))

    @property
    def non_negative(self) -> bool:
        """Whether F >= 0 everywhere (what the square-square, square-exponential and LVQ2 losses assume)."""
        return self.output in ("square", "softplus")

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
            if not acts:  # depth 0: the last layer's outputs u are linear in y, du/dy = w_y (width, Dy)
                if self.output == "linear":
                    return w_y[0].expand(b * c, -1).reshape(y.shape).clone()
                u = torch.addmm(x_part.repeat_interleave(c, dim=0), y.reshape(b * c, -1), w_y.t())  # (BC, width)
                return (OUTPUT_DERIVATIVES[self.output](u) @ w_y).view(y.shape)
            bias = x_part.repeat_interleave(c, dim=0) if c > 1 else x_part  # (BC, H)
            pre = [torch.addmm(bias, y.reshape(b * c, -1), w_y.t())]  # pre-activations of the hidden layers
            for lin in linears[1:-1]:
                pre.append(torch.nn.functional.linear(acts[len(pre) - 1](pre[-1]), lin.weight, lin.bias))
            last = linears[-1].weight  # (width, H)
            if self.output == "linear":  # dF / d(last hidden activation): (BC, H)
                g = last.expand(b * c, -1)
            else:  # F = out(u), u the last layer's outputs (BC, width): dF/du @ du/dh
                u = torch.nn.functional.linear(acts[-1](pre[-1]), last, linears[-1].bias)
                du = OUTPUT_DERIVATIVES[self.output](u)
                g = du * last if last.shape[0] == 1 else du @ last  # one output: a broadcast, not a product
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
