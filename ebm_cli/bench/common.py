"""What every bench case shares: timing, rows, the peers (optional packages), seeded weights and inputs
on the run's device.

Every tensor is made with an explicit device: inputs are drawn on the CPU from a seeded generator (the
same numbers on every device) and moved to the run's device; modules are built on the CPU from a seeded
RNG and moved. Nothing relies on the default device.
"""

import contextlib
import importlib
import statistics
import time
from typing import Any, Callable, Dict, Optional, Sequence

import torch

PASSED, FAILED, SKIPPED = "passed", "failed", "skipped"
INSTALL_HINT = 'pip install ".[bench]" (in the ebm-cli folder)'

# peer name -> (module to import, distribution name for its version)
PEERS = {"torchebm": ("torchebm", "torchebm"), "torch-struct": ("torch_struct", "torch-struct"),
         "pytorch-crf": ("torchcrf", "pytorch-crf")}


def sync(device: torch.device) -> None:
    """Wait for the device's queued work, so that a clock reading covers it (CUDA runs asynchronously)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def compare(fns: Dict[str, Callable[[], Any]], device: torch.device, repeats: int, max_seconds: float,
            warmups: Optional[Dict[str, Callable[[], Any]]] = None, warm: bool = True) -> Dict[str, float]:
    """The median wall time in seconds of each of fns (name -> fn()), timed in turns (a, b, c, a, b, c, ...)
    so that a change in the machine's load (a shared machine) falls on every implementation alike.

    Each is first called once untimed (its entry of `warmups`, else itself: allocator, caches, lazy
    initialisation), unless warm=False (the caller has just run them, e.g. for its check). Up to `repeats`
    rounds; they stop early once the timed runs took max_seconds per implementation (at least one round):
    the largest sizes take seconds per run."""
    warmups = warmups or {}
    if warm:
        for name, fn in fns.items():
            warmups.get(name, fn)()
    sync(device)
    times: Dict[str, list] = {name: [] for name in fns}
    spent = 0.0
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            sync(device)
            times[name].append(time.perf_counter() - start)
            spent += times[name][-1]
        if spent >= max_seconds * len(fns):
            break
    return {name: statistics.median(values) for name, values in times.items()}


def row(case: str, size: str, ours: str, peer: str, ours_s: Optional[float], peer_s: Optional[float], check: str,
        note: Optional[str] = None, **detail) -> Dict[str, Any]:
    """One line of bench.json: ratio = peer_s / ours_s (> 1: ours is faster)."""
    ratio = peer_s / ours_s if ours_s and peer_s is not None else None
    out = {"case": case, "size": size, "ours": ours, "peer": peer, "ours_s": ours_s, "peer_s": peer_s,
           "ratio": ratio, "check": check, "note": note}
    if detail:
        out["detail"] = detail
    return out


def skipped_row(case: str, size: str, ours: str, peer: str, ours_s: Optional[float] = None,
                why: Optional[str] = None) -> Dict[str, Any]:
    """A row whose peer is not installed: no peer time, check skipped."""
    return row(case, size, ours, peer, ours_s, None, SKIPPED, why or f"{peer} is not installed: {INSTALL_HINT}")


def import_peer(name: str):
    """The peer's module, or None when it is not installed (the bench runs without its peers)."""
    try:
        return importlib.import_module(PEERS[name][0])
    except ImportError:
        return None


def peer_version(name: str) -> Optional[str]:
    """The installed version of a peer, None when it is not installed."""
    if import_peer(name) is None:
        return None
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(PEERS[name][1])
    except PackageNotFoundError:
        return "unknown"


def peer_label(name: str, what: str = "") -> str:
    """'torchebm 0.8.9 LangevinDynamics' (the version when installed)."""
    v = peer_version(name)
    return " ".join(p for p in (name, v, what) if p)


def seeded_module(factory: Callable[[], torch.nn.Module], device: torch.device, seed: int) -> torch.nn.Module:
    """factory() built on the CPU with a fixed seed (the same weights on every device), moved to device;
    the caller's RNG state is left as it was."""
    with torch.random.fork_rng(devices=[]), torch.device("cpu"):
        torch.manual_seed(seed)
        module = factory()
    return module.to(device)


def randn(shape: Sequence[int], seed: int, device: torch.device, scale: float = 1.0) -> torch.Tensor:
    """Seeded N(0, scale^2) numbers of this shape on device (drawn on the CPU: the same on every device)."""
    gen = torch.Generator(device="cpu").manual_seed(seed)
    return (scale * torch.randn(tuple(shape), generator=gen, device="cpu")).to(device)


def uniform(shape: Sequence[int], low: float, high: float, seed: int, device: torch.device) -> torch.Tensor:
    """Seeded uniform numbers in [low, high) of this shape on device."""
    gen = torch.Generator(device="cpu").manual_seed(seed)
    return (low + (high - low) * torch.rand(tuple(shape), generator=gen, device="cpu")).to(device)


def host_default():
    """A context in which the default device is the CPU, as it is under ebm-run: for code that makes its
    tensors on the default device and then moves them (torch-struct; ebm-run's own data loading in the
    time-to-quality case). A no-op when the CPU already is the default, so that no device mode adds its
    per-call overhead to what is timed."""
    probe = torch.get_default_device() if hasattr(torch, "get_default_device") else torch.empty(0).device
    if probe.type == "cpu":
        return contextlib.nullcontext()
    return torch.device("cpu")


def max_abs_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.detach().double() - b.detach().double()).abs().max()) if a.numel() else 0.0
