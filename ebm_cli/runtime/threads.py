"""The threads of kernels made of many small steps (the chain dynamic programme's T steps).

torch runs each operation on all of its intra-op threads, and every operation ends at a barrier that
waits for the slowest thread. When another process holds a core (a sweep's second job, a second run,
TensorBoard), one of those threads is descheduled for a time slice (milliseconds) at every barrier:
a loop of T small operations then waits T time slices, and falls 10-100x, while its work on one
thread would have taken microseconds. Such loops run on one thread: on an idle machine they lose
little (their operations are too small to split well), on a busy one they keep their speed
(measured by `ebm-run task=bench task.contention=true`; README, Speed).
"""

import contextlib
from typing import Iterator

import torch


@contextlib.contextmanager
def one_thread(device: torch.device) -> Iterator[None]:
    """Inside: torch's intra-op threads are 1 where the tensors are on the CPU (a GPU's kernels are not
    affected); restored on exit. Nested calls are free."""
    before = torch.get_num_threads()
    if device.type != "cpu" or before == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
