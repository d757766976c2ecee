"""The threads of kernels made of many small steps (the chain dynamic programme's T steps, sampler chains).

torch runs each operation on all of its intra-op threads, and every operation ends at a barrier that
waits for the slowest thread. When another process holds a core (a sweep's second job, a second run,
TensorBoard), one of those threads is descheduled for a time slice (milliseconds) at every barrier:
a loop of T small operations then waits T time slices, and falls 10-100x, while its work on one
thread would have taken microseconds. Such loops run on one thread: on an idle machine they lose
little (their operations are too small to split well), on a busy one they keep their speed
(measured by `ebm-run task=bench task.contention=true`; README, Speed).

Work that splits into independent pieces (many sampler chains) goes further: `share_cores` runs the
pieces on all the threads, each piece on one, and a thread takes the next piece as soon as it is done.
"""

import contextlib
import os
import threading
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from typing import Callable, Iterator, List, Optional, Sequence, Tuple, TypeVar

import torch

T = TypeVar("T")


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


# -- independent pieces of work on all the cores, each on one thread --------------------------------
_local = threading.local()  # .worker: this thread is one of the pool's (no nested sharing)
_pool: Optional[ThreadPoolExecutor] = None
_pool_key: Tuple[int, int] = (0, 0)  # (process id, workers) the pool was made for
_pool_lock = threading.Lock()


def _executor(workers: int) -> ThreadPoolExecutor:
    """The process's pool of `workers` threads (started lazily by the executor; a forked child or a
    new thread count gets a new pool)."""
    global _pool, _pool_key
    key = (os.getpid(), workers)
    with _pool_lock:
        if _pool is None or _pool_key != key:
            if _pool is not None and _pool_key[0] == key[0]:
                _pool.shutdown(wait=False)
            _pool, _pool_key = ThreadPoolExecutor(workers, thread_name_prefix="ebm-share"), key
        return _pool


def share_cores(jobs: Sequence[Callable[[threading.Event], T]]) -> List[T]:
    """Run independent jobs on torch's CPU threads, one job per thread at a time; results in order.

    Each job runs on one intra-op thread, and a thread that finishes a job takes the next one: when
    another process holds a core, the thread on the free core takes more of the jobs instead of the
    whole computation waiting at every operation's barrier for the descheduled one. Every job gets an
    Event; a job that loops checks it and returns early once it is set (the first error in a job, or
    an interrupt in the caller, sets it, and the call waits for the jobs before re-raising, so nothing
    computes on after it). With one thread, or inside a job, the jobs run one after the other here.
    """
    stop = threading.Event()
    threads = torch.get_num_threads()
    if min(len(jobs), threads) <= 1 or getattr(_local, "worker", False):
        with one_thread(torch.device("cpu")):
            return [job(stop) for job in jobs]

    def run(job):
        _local.worker = True
        try:
            with one_thread(torch.device("cpu")):
                return job(stop)
        finally:
            _local.worker = False

    futures = []
    try:
        pool = _executor(threads)
        for job in jobs:
            futures.append(pool.submit(run, job))
        wait(futures, return_when=FIRST_EXCEPTION)  # all done, or the first error, whichever job it came from
        failed = next((f for f in futures if f.done() and f.exception() is not None), None)
        if failed is not None:
            failed.result()  # raises: the rest are stopped below
        return [f.result() for f in futures]
    except BaseException:
        stop.set()
        for f in futures:
            f.cancel()
        wait(futures)
        raise
