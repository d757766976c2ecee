"""A CPU-bound neighbour process for `task.contention=true`: what a user's machine runs beside an
ebm-run (a sweep's other jobs, a second run, TensorBoard), made reproducible. It multiplies
matrices on `threads` threads until it is stopped, so that `threads` cores are busy while a case
runs again beside it."""

import subprocess
import sys
import time

# torch's matrix products on `threads` threads, forever: a compute-bound neighbour (no memory growth)
# (it stops by itself once its parent is gone: a killed ebm-run leaves no busy process behind)
LOOP = ("import os, torch; torch.set_num_threads({threads}); a = torch.randn(256, 256); parent = os.getppid()\n"
        "while os.getppid() == parent:\n    a = torch.tanh(a @ a)")


class Neighbour:
    """Context manager: the neighbour runs inside, and is stopped (and waited for) on exit."""

    def __init__(self, threads: int = 1):
        self.threads = threads
        self.process = None

    def __enter__(self) -> "Neighbour":
        self.process = subprocess.Popen([sys.executable, "-c", LOOP.format(threads=self.threads)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.0)  # past its import of torch: busy when the case starts
        return self

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def __exit__(self, *exc) -> bool:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
        return False
