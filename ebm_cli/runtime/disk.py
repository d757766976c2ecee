"""Writes that the disk refuses (full, read-only, a folder removed under the run): one line naming the
path, never a traceback, never a half-written file left behind."""

import contextlib
import errno
import threading
from pathlib import Path
from typing import Iterator, Optional, Union

from ebm_cli.errors import UserError

# What the file system, not the program, is at fault for: the run cannot go on writing.
DISK_ERRNOS = frozenset(getattr(errno, name) for name in (
    "ENOSPC", "EDQUOT", "EROFS", "EACCES", "EPERM", "ENOENT", "ENOTDIR", "EIO", "EFBIG", "ESTALE") if hasattr(errno, name))


def os_error_in(exc: Optional[BaseException]) -> Optional[OSError]:
    """The OSError that exc is or was raised while handling (torch.save reports a full disk as a
    RuntimeError of its zip writer, with the OSError as its context)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, OSError):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def is_disk_error(exc: BaseException) -> bool:
    found = os_error_in(exc)
    return found is not None and found.errno in DISK_ERRNOS


def cannot_write(path: Union[str, Path], exc: BaseException) -> UserError:
    """`cannot write <path>: No space left on device` (the OS's words for the reason)."""
    found = os_error_in(exc)
    reason = (found.strerror or str(found)) if found is not None else str(exc)
    return UserError(f"cannot write {path}: {reason}")


@contextlib.contextmanager
def writing(path: Union[str, Path]) -> Iterator[None]:
    """Inside, an OSError (a full or read-only disk, a removed folder) becomes cannot_write(path)."""
    try:
        yield
    except OSError as exc:
        raise cannot_write(path, exc) from None


def remove_quietly(path: Path) -> None:
    """Remove a temporary file if it can be (on a read-only or removed folder it cannot, and need not)."""
    with contextlib.suppress(OSError):
        path.unlink(missing_ok=True)


_hook_installed = []


def quiet_writer_threads() -> None:
    """TensorBoard writes from a background thread; when the disk refuses a write there, the thread
    prints its traceback and keeps the error, which the next write on the main thread raises (and
    runtime/tb.py turns into one line). The traceback is noise: leave it out."""
    if _hook_installed:
        return
    previous = threading.excepthook

    def hook(args):
        if isinstance(args.exc_value, OSError) and type(args.thread).__name__ == "_AsyncWriterThread":
            return
        previous(args)

    threading.excepthook = hook
    _hook_installed.append(hook)
