"""runtime/threads.py: one thread for small-step loops, independent jobs shared over the cores."""

import threading
import time

import pytest
import torch

from ebm_cli.runtime.threads import one_thread, share_cores


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def test_jobs_run_on_one_thread_each_and_return_in_order(two_threads):
    seen = []

    def job(i):
        def run(stop):
            seen.append((threading.current_thread().name, torch.get_num_threads()))
            return i * i
        return run

    assert share_cores([job(i) for i in range(7)]) == [i * i for i in range(7)]
    assert all(n == 1 for _, n in seen)  # each job on one intra-op thread ...
    assert torch.get_num_threads() == 2  # ... and the caller's threads as they were
    with one_thread(torch.device("cpu")):
        assert share_cores([job(2)]) == [4] and torch.get_num_threads() == 1


def test_an_error_in_one_job_stops_the_others_before_the_call_raises(two_threads):
    """The caller re-raises only once every job has returned: nothing computes on after an error
    (or an interrupt) reaches the caller."""
    finished = []

    def failing(stop):
        raise ValueError("bad block")

    def looping(stop):
        deadline = time.monotonic() + 30
        while not stop.is_set() and time.monotonic() < deadline:
            time.sleep(0.001)
        finished.append(stop.is_set())

    started = time.monotonic()
    with pytest.raises(ValueError, match="bad block"):  # the failing job second: the first keeps looping
        share_cores([looping, failing, looping, looping])
    assert time.monotonic() - started < 10
    assert finished and all(finished)  # every job that ran saw the stop and returned before the raise
