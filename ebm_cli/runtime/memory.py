"""Memory that a check may use: an allocation beyond what the machine has free fails as an error the
check can report in one line, instead of waking the kernel's out-of-memory killer."""

import resource
from contextlib import contextmanager
from typing import Optional


def _proc_kib(path: str, field: str) -> Optional[int]:
    try:
        with open(path) as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def available_bytes() -> Optional[int]:
    """Memory the machine has available now (Linux), or None where it cannot be read."""
    kib = _proc_kib("/proc/meminfo", "MemAvailable")
    return None if kib is None else kib * 1024


@contextmanager
def bounded_memory(share: float = 0.9):
    """Within this block the process may grow by at most `share` of the memory now available
    (Linux: an address-space limit; elsewhere, or where it cannot be read, no limit). Use it around
    a trial step on the CPU: a CUDA context reserves far more address space than it uses."""
    available, size = _proc_kib("/proc/meminfo", "MemAvailable"), _proc_kib("/proc/self/status", "VmSize")
    if available is None or size is None:
        yield
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = (size + int(available * share)) * 1024
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
