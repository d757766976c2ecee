"""Graceful stops: SIGTERM, SIGINT, SIGHUP (a closed terminal or SSH session) and SIGUSR1 (a
cluster's preemption warning) ask the training loop to save a checkpoint and exit, instead of
killing it between two checkpoints."""

import signal
import threading
from typing import Optional

from ebm_cli.errors import UserError

PREEMPTED_EXIT_CODE = 75  # EX_TEMPFAIL: the run stopped cleanly and can be resumed
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGINT", "SIGHUP", "SIGUSR1") if hasattr(signal, name))


class Preempted(UserError):
    def __init__(self, message: str):
        super().__init__(message, PREEMPTED_EXIT_CODE)


class OutsideTheLoop:
    """Context manager for a whole command: SIGTERM or SIGHUP outside the training loop (during the
    start-up checks, before the first step, during the final evaluation and figures) raises
    Preempted where the command is, so that it ends in one line with a consistent metrics.json
    instead of dying silently; inside the loop StopSignals takes over (it saves at the step).
    Outside the main thread it does nothing."""

    SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))

    def __init__(self):
        self._previous = {}

    @staticmethod
    def _raise(signum, frame):
        raise Preempted(f"stopped by {signal.Signals(signum).name} outside the training steps; what was saved is "
                        "kept (a run continues from its last checkpoint with trainer.resume=auto)")

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

    A second signal of the same kind raises KeyboardInterrupt at once, for a user who means it.
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
            raise KeyboardInterrupt
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
