"""A checkpoint is data: the classes its stored config names are built only where this command trusts them.

A run folder can come from anyone (a colleague's share, a download). Its tensors load with
`weights_only=True`; its stored config names the classes that rebuild the energy, the data and the
inference method (`_target_`), and building a class runs its code. So a stored `_target_` is built
only if it is

- a class of this package (`ebm_cli.`),
- named by a yaml file of a `--config-dir` given to this command (the user's own components), or
- listed by this command in `trust=[module.Class, ...]`.

Anything else is refused in one line that names it and the override that allows it.
"""

from pathlib import Path
from typing import Any, Iterable, Iterator, Set

from omegaconf import DictConfig, ListConfig, OmegaConf

from hydra._internal.utils import _locate

from ebm_cli.errors import UserError

PACKAGE = "ebm_cli."


CLASS_KEYS = ("_target_", "target")  # Hydra's, and an EnergyChoice option's (energies/frames.py)


def targets_in(node: Any) -> Iterator[str]:
    """Every class named in a config (DictConfig, dict, list; nested), unresolved: `_target_` and an
    energy option's `target`."""
    if isinstance(node, (DictConfig, ListConfig)):
        node = OmegaConf.to_container(node, resolve=False)
    if isinstance(node, dict):
        for key, value in node.items():
            if key in CLASS_KEYS and isinstance(value, str):
                yield value
            else:
                yield from targets_in(value)
    elif isinstance(node, (list, tuple)):
        for value in node:
            yield from targets_in(value)


def targets_in_config_dirs(folders: Iterable[str]) -> Set[str]:
    """The `_target_`s named by the yaml files under the given config folders (unreadable files skipped:
    Hydra reports them when they are used)."""
    found: Set[str] = set()
    for folder in folders:
        for path in sorted(Path(folder).rglob("*.yaml")):
            if any(part.startswith(".") for part in path.relative_to(folder).parts):
                continue  # a run's own .hydra/ copy (a downloaded run under the folder) vouches for nothing
            try:
                found.update(targets_in(OmegaConf.load(path)))
            except Exception:  # noqa: BLE001 - not ours to judge here
                continue
    return found


def _is_ours(target: str) -> bool:
    """`target` names an object defined in ebm_cli. The text alone is not enough: Hydra follows
    attributes through modules, so `ebm_cli.tasks.infer.logging.FileHandler` is logging's class.
    Only ebm_cli's own modules are imported to find out."""
    if not target.startswith(PACKAGE):
        return False
    try:
        obj = _locate(target)
    except Exception:  # noqa: BLE001 - not found: the build will say so in its own words
        return True
    module = getattr(obj, "__module__", None) or ""
    return module == PACKAGE[:-1] or module.startswith(PACKAGE)


def check_trusted(stored: Any, trusted: Iterable[str], source: str) -> None:
    """Refuse (UserError) a stored config or meta that names a class this command does not trust, or
    that holds an interpolation (a stored config is saved resolved: `${...}` in one was put there)."""
    allowed = set(trusted)
    text = OmegaConf.to_yaml(stored) if isinstance(stored, (DictConfig, ListConfig)) else str(stored)
    if "${" in text:
        raise UserError(f"{source}: its stored config holds an interpolation (${{...}}); a run saves its config "
                        "resolved, so this one was changed by hand and is not read")
    for target in targets_in(stored):
        if target not in allowed and not _is_ours(target):
            raise UserError(f"{source}: its config names {target!r}, which is not ebm_cli's and not in this command's "
                            f"--config-dir; building it would run its code. If you trust it: trust=[{target}] "
                            f"(or --config-dir with the folder of its yaml)")
