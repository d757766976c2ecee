"""Graceful stops: SIGTERM, SIGINT, SIGHUP (a closed terminal or SSH session) and SIGUSR1 (a
cluster's preemption warning) ask the training loop to save a checkpoint and exit, instead of
killing it between two checkpoints.

A sweep's worker processes (launcher=joblib) stop with their parent: a parent that is signalled
passes the signal on to them and waits for them to save; a parent that is killed outright (SIGKILL)
is noticed by each worker within a second, which then stops as if signalled."""

import multiprocessing
import os
import signal
import threading
import time
from typing import Optional

from ebm_cli.errors import UserError

PREEMPTED_EXIT_CODE = 75  # EX_TEMPFAIL: the run stopped cleanly and can be resumed
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGINT", "SIGHUP", "SIGUSR1") if hasattr(signal, name))
SWEEP_PARENT = "EBM_CLI_SWEEP_PARENT"  # the pid of the ebm-run whose workers inherit it
WORKERS_SAVE_WITHIN_S = 60.0  # how long a signalled parent waits for its workers to save and end


class Preempted(UserError):
    """A stop asked for by a signal (`signal_name`): the run can continue from what was saved.

    `message` ends where the way to continue goes: "trainer.resume=auto", or, once the command line
    is known (`continued_by`), the whole command that continues the run."""

    def __init__(self, message: str, signal_name: Optional[str] = None, command: Optional[str] = None):
        # command: the whole command that continues the run; "" where there is none to give
        super().__init__(f"{message}: {command}" if command else message if command == "" else
                         f"{message} trainer.resume=auto", PREEMPTED_EXIT_CODE)
        self.stem, self.signal_name, self.command = message, signal_name, command

    def continued_by(self, command: str) -> "Preempted":
        """The same stop, saying the exact command that continues the run."""
        return Preempted(self.stem, self.signal_name, command)


def mark_as_sweep_parent() -> None:
    """Worker processes started from here (a joblib sweep's) know their parent by this variable."""
    os.environ[SWEEP_PARENT] = str(os.getpid())


def runs_in_the_command() -> bool:
    """True in the ebm-run process itself (its jobs, with Hydra's basic launcher), not in a process it
    or a launcher started (a joblib worker, a submitit job)."""
    return os.environ.get(SWEEP_PARENT) == str(os.getpid())


def is_sweep_worker() -> bool:
    """True in a process started by an ebm-run to run its jobs (launcher=joblib)."""
    return os.environ.get(SWEEP_PARENT) == str(os.getppid())


def stop_workers(signum: int, wait_s: float = WORKERS_SAVE_WITHIN_S) -> None:
    """Pass signal `signum` on to this process's worker processes and wait (up to wait_s) for them to
    save their runs and end (jobs still running after that are killed by the launcher's abort)."""
    children = multiprocessing.active_children()
    for child in children:
        try:
            os.kill(child.pid, signum)
        except (ProcessLookupError, TypeError):  # ended already (or not started: no pid)
            pass
    deadline = time.monotonic() + wait_s
    for child in children:
        child.join(max(0.0, deadline - time.monotonic()))


def end_as_signalled(signal_name: Optional[str]) -> None:
    """(Call only in a sweep worker: its parent may be gone, so is_sweep_worker() cannot tell now.)
    A sweep worker whose job was stopped by a signal ends the way the signal asked (its job's
    checkpoint and metrics.json are written), rather than waiting for the next job."""
    sig = getattr(signal, signal_name or "", None)
    if sig is not None:
        signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)


_watching = []


def watch_parent(poll_s: float = 1.0) -> None:
    """In a sweep worker: a SIGTERM to this process when its parent ebm-run goes away (a SIGKILL
    gives the parent no chance to pass a signal on), so that the job saves and stops."""
    if _watching or not is_sweep_worker():
        return
    parent = os.getppid()

    def watch():
        while os.getppid() == parent:
            time.sleep(poll_s)
        os.kill(os.getpid(), signal.SIGTERM)

    _watching.append(threading.Thread(target=watch, name="ebm-run parent watch", daemon=True))
    _watching[0].start()


class Stopped(BaseException):
    """A stop signal outside the training steps (OutsideTheLoop). Like KeyboardInterrupt it is not
    an Exception, so that no `except Exception` on its way (the compiler's eager fallback, a build
    check) takes it for a failure of its own; the command turns it into Preempted (as_preempted)."""

    def __init__(self, signal_name: str, again: bool = False, said: bool = False):
        super().__init__(signal_name)
        self.signal_name = signal_name
        self.again = again  # a second signal of the kind inside the steps: stopped at once, not at a step
        self.said = said  # the job's Preempted is reported already: this only ends a sweep


def as_preempted(exc: BaseException, began: bool = True, task: str = "train") -> BaseException:
    """Stopped (or a KeyboardInterrupt: SIGINT where our handlers were not installed) as the
    Preempted it reports, in one line: a run continues from its last checkpoint; `began` False: the
    command had not yet taken its folder (the checks), nothing was written; a task other than
    train has nothing to continue: it is run again. Anything else as it is."""
    if isinstance(exc, KeyboardInterrupt):
        exc = Stopped("SIGINT")
    if not isinstance(exc, Stopped):
        return exc
    if not began:
        return UserError(f"stopped by {exc.signal_name} before anything was written; run the same command again",
                         PREEMPTED_EXIT_CODE)
    if task != "train":
        return Preempted(f"stopped by {exc.signal_name} during task={task}, before it finished; run it again into a "
                         "new folder (this one is left incomplete)", exc.signal_name, command="")
    if exc.again:
        return Preempted(f"stopped at once by a second {exc.signal_name}; the last checkpoint is kept, and the run "
                         "continues from it with", exc.signal_name)
    return Preempted(f"stopped by {exc.signal_name} outside the training steps; what was saved is kept, and a run "
                     "continues from its last checkpoint with", exc.signal_name)


class OutsideTheLoop:
    """Context manager for a whole command: a stop signal (SIGTERM, SIGINT, SIGHUP, SIGUSR1) outside
    the training loop (during the start-up checks, before the first step, during the final evaluation
    and figures) raises Stopped where the command is, so that it ends in one line with a consistent
    metrics.json instead of dying silently (SIGUSR1's default) or with a traceback (SIGINT's);
    inside the loop StopSignals takes over (it saves at the step). Outside the main thread it does
    nothing."""

    SIGNALS = STOP_SIGNALS

    def __init__(self):
        self._previous = {}

    @staticmethod
    def _raise(signum, frame):
        stop_workers(signum)  # a joblib sweep's: each saves its job, then ends
        raise Stopped(signal.Signals(signum).name)

    def __enter__(self) -> "OutsideTheLoop":
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._raise)
        return self

    def __exit__(self, *exc) -> bool:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        return False


class StopSignals:
    """Context manager: while inside, a stop signal sets `received` (its name); the loop polls it.

    A second signal of the same kind raises Stopped at once, for a user who means it.
    After the checkpoint is saved, `pass_on()` lets a launcher's own handler (submitit's
    requeue-on-preemption) see the signal too.
    Outside the main thread (where Python allows no handlers) it does nothing.
    """

    def __init__(self):
        self.received: Optional[str] = None
        self._previous = {}

    def _handle(self, signum, frame):
        name = signal.Signals(signum).name
        if self.received == name:
            raise Stopped(name, again=True)
        self.received = name

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def pass_on(self) -> None:
        """Hand the received signal to the handler that was installed before ours, if it is a
        Python function: a cluster launcher's (submitit requeues the job from its handler)."""
        previous = self._previous.get(signal.Signals[self.received]) if self.received else None
        if callable(previous) and previous is not OutsideTheLoop._raise:  # not ours: the stop is already said
            previous(signal.Signals[self.received].value, None)

    def __exit__(self, *exc) -> bool:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        return False
