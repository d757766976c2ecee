"""Errors a user can fix: they are reported as one line and a non-zero exit, never a traceback."""


class UserError(Exception):
    """A problem with the user's input (config value, data file, run folder, device).

    The message is the one line the user sees; ``exit_code`` is the process exit status.
    """

    exit_code = 1

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code


class NotResumable(UserError):
    """A run folder whose checkpoints this command cannot continue from (unreadable, of another
    energy or optimiser, without RNG state). The run itself is left as it was, still resumable once
    a good checkpoint is back: no `failed` status is written into it."""


class BadArgument(UserError):
    """An impossible value for one keyword argument of a component (`k=0`, `sigma=-1`).

    Components raise it from their constructors with the argument's own name; the builder, which
    knows where the component sits in the config, reports it as `inference.k=0: must be > 0`.
    """

    def __init__(self, name: str, value, rule: str):
        super().__init__(f"{name}={value}: {rule}")
        self.name, self.value, self.rule = name, value, rule


def require(ok: bool, name: str, value, rule: str) -> None:
    """Raise BadArgument(name, value, rule) unless ok: a constructor's one-line argument check."""
    if not ok:
        raise BadArgument(name, value, rule)


def require_positive(**values) -> None:
    """Every given argument > 0 (and finite)."""
    for name, value in values.items():
        require(value > 0 and value != float("inf"), name, value, "must be > 0" if value <= 0 else "must be finite")


def require_non_negative(**values) -> None:
    """Every given argument >= 0 (and finite)."""
    for name, value in values.items():
        require(value >= 0 and value != float("inf"), name, value, "must be >= 0" if value < 0 else "must be finite")


def require_positive_or_none(**values) -> None:
    """Every given argument None (off) or > 0 and finite."""
    for name, value in values.items():
        if value is not None:
            require_positive(**{name: value})


def require_choice(name: str, value, choices) -> None:
    require(value in choices, name, value, f"must be one of {', '.join(map(str, choices))}")


class Rejected(BaseException):
    """Carries a UserError out of a Hydra callback.

    Hydra turns an Exception raised in a callback into a warning and carries on (creating the
    run folder); a BaseException passes through, so a bad config stops before anything is written.
    """

    def __init__(self, error: UserError):
        super().__init__(str(error))
        self.error = error


def out_of_memory(exc: BaseException) -> bool:
    """An allocation that failed: host memory (MemoryError, torch's CPU allocator) or the GPU's."""
    text = str(exc)
    return isinstance(exc, MemoryError) or "can't allocate memory" in text or "out of memory" in text.lower()


def memory_detail(exc: BaseException) -> str:
    """How much an allocation that failed asked for, in words ("800 GB asked for"), or its first line."""
    import re

    found = re.search(r"allocate (\d+) bytes", str(exc)) or re.search(r"Tried to allocate ([\d.]+ [KMGT]iB)", str(exc))
    if found and found.group(1).isdigit():
        return f"{int(found.group(1)) / 1e9:.3g} GB asked for"
    if found:
        return f"{found.group(1)} asked for"
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:120]


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
    for plugin, extra in PLUGIN_EXTRAS.items():  # a launcher or sweeper whose package is not installed
        if f"Could not find 'hydra/{plugin}'" in text:
            msg = (f"{plugin.split('/')[-1]} is a Hydra plugin of the [{extra}] extra, which is not installed: "
                   f'pip install ".[{extra}]" (in the ebm-cli folder)')
    if any(t in text for t in ("LexerNoViableAlt", "mismatched input", "token recognition error", "Error parsing override")):
        msg += " (quote a value with spaces or special characters: 'dataset.path=\"my file.csv\"')"
    if not is_config_error(exc):
        msg = f"{type(exc).__name__}: {msg}"
    return msg


# Hydra plugins that come with an extra of ebm-cli (setup.cfg), by their config group path
PLUGIN_EXTRAS = {"launcher/joblib": "sweep", "sweeper/optuna": "sweep", "launcher/submitit_local": "cluster",
                 "launcher/submitit_slurm": "cluster"}


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
