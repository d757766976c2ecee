"""Errors a user can fix: they are reported as one line and a non-zero exit, never a traceback."""


class UserError(Exception):
    """A problem with the user's input (config value, data file, run folder, device).

    The message is the one line the user sees; ``exit_code`` is the process exit status.
    """

    exit_code = 1

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code


class Rejected(BaseException):
    """Carries a UserError out of a Hydra callback.

    Hydra turns an Exception raised in a callback into a warning and carries on (creating the
    run folder); a BaseException passes through, so a bad config stops before anything is written.
    """

    def __init__(self, error: UserError):
        super().__init__(str(error))
        self.error = error


def one_line(exc: BaseException) -> str:
    """A single readable line for any error, Hydra's composition errors included."""
    if isinstance(exc, UserError):
        return str(exc)
    import torch  # imported late: `ebm-run --help` need not load it

    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return f"GPU out of memory: {str(exc).splitlines()[0]} (reduce trainer.batch_size or the grid sizes)"
    text = str(exc).strip()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    msg = lines[0] if lines else type(exc).__name__
    if msg.endswith(":") and len(lines) > 1:  # "... raised while composing config:" + the reason below it
        msg = f"{msg} {lines[1]}"
        where = [ln.split(":", 1)[1].strip() for ln in lines[2:] if ln.startswith("full_key:")]
        if where and where[0]:
            msg += f" (at {where[0]})"
    if "Available options" in text:
        listing = text.split("Available options", 1)[1].split("Config search path", 1)[0]
        options = [ln for ln in listing.splitlines() if ln.startswith("\t")]
        msg += f" (available: {', '.join(o.strip() for o in options)})"
    cause = exc.__cause__
    if cause is not None and cause is not exc:
        first = [ln.strip() for ln in str(cause).splitlines() if ln.strip()]
        if first:
            msg = f"{msg.rstrip('.:')}: {first[0]}"
        keys = _valid_keys(cause)
        if keys:
            msg += f" (valid keys: {', '.join(keys)})"
    if not is_config_error(exc):
        msg = f"{type(exc).__name__}: {msg}"
    return msg


def _valid_keys(cause: BaseException):
    """For an unknown key, the keys its parent node does have."""
    if "not in" not in str(cause):
        return None
    parent = getattr(cause, "parent_node", None)
    try:
        return [str(k) for k in parent.keys()] if parent is not None else None
    except Exception:
        return None


def is_config_error(exc: BaseException) -> bool:
    return type(exc).__module__.split(".")[0] in ("hydra", "omegaconf")
