"""How the energy runs on its device: compiled or eager, and at which float precision.

trainer.compile=auto|true|false compiles the energy's forward with torch.compile (in place, so the
energy keeps its class and what it declares). A compiled call that fails (an operation the
compiler cannot trace, a backend missing on this machine) falls back to the eager module for the
rest of the run, with one log line: a run never fails because of compilation. `auto` compiles only
where it pays: on a GPU, for a run of at least AUTO_MIN_STEPS steps. On the CPU, compiling the
small energies of the presets gave no gain per step and cost about 20 s up front.

trainer.precision=fp32|tf32|bf16: TF32 matrix products (on GPUs that have them), or bfloat16
autocast of the training step's forward passes (losses and statistics stay float32).
"""

import contextlib
import logging
from typing import Callable, ContextManager

import torch
from torch import nn

from ebm_cli.errors import one_line

log = logging.getLogger("ebm_cli")

AUTO_MIN_STEPS = 5000
COMPILE_CHOICES = ("auto", "true", "false")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
PRECISIONS = ("fp32", "tf32", "bf16")


def wants_compile(setting, device: torch.device, steps: int) -> bool:
    """trainer.compile (auto | true | false; YAML may hand over a bool) for this device and run length."""
    setting = str(setting).lower()
    if setting == "auto":
        return device.type == "cuda" and steps >= AUTO_MIN_STEPS
    return setting == "true"


class EagerFallback:
    """The energy's compiled call, which hands every call to the eager module once one has failed."""

    def __init__(self, module: nn.Module, compiled: Callable):
        self.module, self.compiled = module, compiled

    def __call__(self, *args, **kwargs):
        if self.compiled is not None:
            try:
                return self.compiled(*args, **kwargs)
            except Exception as exc:  # the compiler's failure, not the model's: eager re-raises a real error
                log.warning("trainer.compile: compiling %s failed (%s); running eager",
                            type(self.module).__name__, one_line(exc))
                self.compiled = None
        return self.module._call_impl(*args, **kwargs)


def compile_energy(energy: nn.Module, device: torch.device, mode: str = "default") -> nn.Module:
    """Compile energy's forward in place (its class, attributes and capabilities unchanged).

    mode: torch.compile's mode; on a GPU `reduce-overhead` also captures CUDA graphs.
    """
    try:
        compiled = torch.compile(energy._call_impl, mode=None if mode == "default" else mode, dynamic=None)
    except Exception as exc:  # e.g. no compiler backend for this Python
        log.warning("trainer.compile: torch.compile is not available here (%s); running eager", one_line(exc))
        return energy
    energy._compiled_call_impl = EagerFallback(energy, compiled)  # what nn.Module.__call__ calls when set
    log.info("trainer.compile: %s compiled (mode %s) on %s", type(energy).__name__, mode, device)
    return energy


def set_precision(precision: str, device: torch.device) -> None:
    """TF32 matrix products for tf32 and bf16 (on CUDA: cuBLAS and cuDNN), exact fp32 otherwise."""
    fast = precision in ("tf32", "bf16")
    torch.set_float32_matmul_precision("high" if fast else "highest")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = fast
        torch.backends.cudnn.allow_tf32 = fast


def autocast(precision: str, device: torch.device) -> ContextManager:
    """The context of the training step's forward passes: bfloat16 autocast for bf16, else nothing."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
