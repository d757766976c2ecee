"""One writer per folder: an OS lock on a run (or sweep) folder, held from before its first write to the
end of the command.

The checks that a folder is new (or resumable) run before it exists; two commands started at the same
instant both pass them. The lock closes that gap: the second command to reach the folder finds it
held and stops in one line, having written nothing. The lock is `flock` on `<folder>/.lock`, which
the kernel releases when the process ends, however it ends (a SIGKILL included): no stale lock to
clean up. Where the platform has no flock (Windows), folders are not locked.
"""

import os
from pathlib import Path
from typing import Dict, Optional

from ebm_cli.errors import UserError

try:
    import fcntl
except ImportError:  # pragma: no cover - not on Linux or macOS
    fcntl = None

LOCK_NAME = ".lock"
_held: Dict[str, int] = {}  # folder -> the open descriptor holding its lock (this process)


def hold(folder: Path, what: str = "run") -> None:
    """Create `folder` if needed and take its lock for the rest of this command; UserError if another
    process holds it (one this process holds already is kept as it is)."""
    folder = Path(folder).absolute()
    if str(folder) in _held or fcntl is None:
        return
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise UserError(f"cannot create the {what} folder {folder}: {exc.strerror or exc}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        owner = os.read(fd, 32).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise UserError(f"{folder}: another ebm-run (pid {owner}) is writing to this {what} folder; wait for it to "
                        f"end, or give this command another folder (hydra.run.dir=... / hydra.sweep.dir=...)") from None
    try:  # the pid is for the message a second command gets; the lock holds without it (a full disk)
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
    except OSError:
        pass
    _held[str(folder)] = fd


def held_folder() -> Optional[str]:
    """The folder this command took last (its run or sweep folder), None before the checks."""
    return next(reversed(_held), None)


def release_all() -> None:
    """Let go of every folder this process holds (the end of a command; the kernel does it at exit)."""
    while _held:
        _, fd = _held.popitem()
        try:
            os.close(fd)
        except OSError:
            pass
