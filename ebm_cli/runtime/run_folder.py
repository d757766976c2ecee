"""A run folder: what a command writes there (atomically), and the guards that keep a command from
writing into a folder that holds another run's files."""

import json
import os
from pathlib import Path
from typing import Any, Dict, Optional

import yaml

from ebm_cli.errors import UserError
from ebm_cli.runtime.compat import fill_added_settings
from ebm_cli.runtime.disk import cannot_write, remove_quietly
from ebm_cli.runtime.folder_lock import LOCK_NAME

# Settings a resumed run may change: where it runs and how it reports, not what it computes.
MAY_CHANGE_ON_RESUME = ("trainer.resume", "trainer.device", "logger.progress")
OWN_FILES = (".hydra", "ebm_run.log")  # what Hydra writes for this command before the task starts


def write_json(path: Path, payload: Dict[str, Any]) -> None:
    """Atomic: a reader never sees half a file. A disk that refuses it: one line, no temporary left."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=True))
        os.replace(tmp, path)
    except OSError as exc:
        remove_quietly(tmp)
        raise cannot_write(path, exc) from None


def run_status(run_dir: Path) -> Optional[str]:
    """The status in run_dir/metrics.json (completed, diverged, failed, preempted), or None."""
    path = run_dir / "metrics.json"
    if not path.is_file():
        return None
    try:
        return str(json.loads(path.read_text()).get("status", "unreadable"))
    except (OSError, ValueError, AttributeError):
        return "unreadable"


NAME_MAX = 255  # bytes in one file or folder name: ext4, xfs, btrfs, tmpfs, NFS


def too_long_name(folder: Path) -> Optional[str]:
    """What of folder's path the file system cannot name (a part over NAME_MAX bytes), or None."""
    for part in Path(os.path.abspath(folder)).parts:
        if len(os.fsencode(part)) > NAME_MAX:
            return f"a folder name of {len(os.fsencode(part))} bytes, longer than file systems allow ({NAME_MAX}): {part[:40]}..."
    return None


def check_writable(folder: Path, key: str) -> None:
    """The folder can be created (or is) a writable folder; else one line naming `key`."""
    too_long = too_long_name(folder)
    if too_long:  # before any stat: the file system itself would answer ENAMETOOLONG
        raise UserError(f"{key}: {too_long}")
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{key}={folder}: is a file, not a folder")
    existing = folder
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"{key}={folder}: cannot create it ({existing} is a file)")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"{key}={folder}: cannot create or write it (Permission denied on {existing})")


def _flat(node: Any, prefix: str = "") -> Dict[str, Any]:
    if isinstance(node, dict):
        out: Dict[str, Any] = {}
        for k, v in node.items():
            out.update(_flat(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: node}


def config_difference(saved_yaml: str, current_yaml: str) -> Optional[str]:
    """The first setting that differs between a run's saved config and this command's, ignoring the
    ones a resumed run may change; None when they agree."""
    trees = [yaml.safe_load(saved_yaml) or {}, yaml.safe_load(current_yaml) or {}]
    for tree in trees:  # a setting added later: what a run without it ran as, on both sides alike
        fill_added_settings(tree)
    saved, current = map(_flat, trees)
    for key in sorted(set(saved) | set(current)):
        if key in MAY_CHANGE_ON_RESUME or key.startswith("hydra."):
            continue
        if key.startswith("task.") and key != "task.name" and saved.get("task.name", "train") == "train":
            continue  # runs saved before a training run's task node was its name alone carried the bench's keys
        if saved.get(key, "<unset>") != current.get(key, "<unset>"):
            return f"{key}: {saved.get(key, '<unset>')} there, {current.get(key, '<unset>')} here"
    return None


def saved_config(run_dir: Path) -> Optional[str]:
    """The config a run in run_dir was started with: its checkpoint's, else Hydra's copy."""
    from ebm_cli.runtime.checkpoint import LAST, PREVIOUS, load_checkpoint  # torch, only when there is a run

    for name in (LAST, PREVIOUS):
        try:
            return str(load_checkpoint(run_dir / "checkpoints" / name)["config"])
        except UserError:
            continue
    hydra_copy = run_dir / ".hydra" / "config.yaml"
    if not hydra_copy.is_file():
        return None
    from omegaconf import OmegaConf

    try:  # Hydra saves it unresolved; the checkpoint's copy is resolved
        return OmegaConf.to_yaml(OmegaConf.load(hydra_copy), resolve=True)
    except Exception:
        return hydra_copy.read_text()


def check_run_folder(run_dir: Path, task: str, resume: str = "never", config_yaml: Optional[str] = None,
                     started: bool = False) -> None:
    """Refuse a run folder this command would write into that holds another run's files.

    started=False: before Hydra writes anything (the pre-run callback): the folder must be absent
    or empty, except for a training run's own trainer.resume=auto continuation with the same
    config. started=True: from inside a task, where Hydra has already written this command's own
    `.hydra/` and log: only another run's results and checkpoints count.
    """
    check_writable(run_dir, "hydra.run.dir")
    if not run_dir.is_dir():
        return
    entries = [p for p in run_dir.iterdir() if not (started and p.name in OWN_FILES) and p.name != LOCK_NAME]
    if not entries:
        return
    if task != "train":
        if started:
            return
        raise UserError(f"hydra.run.dir={run_dir}: holds another run's files; task={task} writes only into a "
                        "folder of its own (leave hydra.run.dir out, or name a new folder)")
    status = run_status(run_dir)
    if status == "completed":
        raise UserError(f"{run_dir} already holds a finished run; choose another hydra.run.dir")
    if status in ("diverged", "failed", "unreadable"):
        raise UserError(f"{run_dir} holds a run that {'' if status == 'unreadable' else 'has '}{status} (see its "
                        "metrics.json); choose another hydra.run.dir")
    checkpoints = run_dir / "checkpoints"
    has_checkpoint = checkpoints.is_dir() and any(checkpoints.glob("*.pt"))
    if resume == "never":
        if has_checkpoint:
            raise UserError(f"{run_dir} already holds checkpoints of an unfinished run: add trainer.resume=auto "
                            "to continue it, or choose another hydra.run.dir")
        if not started:
            raise UserError(f"hydra.run.dir={run_dir}: is not empty ({', '.join(sorted(p.name for p in entries)[:4])}); "
                            "choose another hydra.run.dir")
        return
    saved = saved_config(run_dir)
    if saved is None and not started:
        raise UserError(f"trainer.resume=auto: {run_dir} holds no ebm-run run to continue (no checkpoint, no "
                        ".hydra/config.yaml); choose another hydra.run.dir")
    if saved is not None and config_yaml is not None:
        difference = config_difference(saved, config_yaml)
        if difference:
            raise UserError(f"trainer.resume=auto: {run_dir} holds a run with another config ({difference}); "
                            "continue it with its own overrides (its .hydra/overrides.yaml), or choose another "
                            "hydra.run.dir")


def check_sweep_folder(sweep_dir: Path) -> None:
    """A sweep writes into a folder of its own: refuse one that holds anything (an earlier sweep's
    jobs and summary would be overwritten)."""
    check_writable(sweep_dir, "hydra.sweep.dir")
    if sweep_dir.is_dir() and any(p.name != LOCK_NAME for p in sweep_dir.iterdir()):
        raise UserError(f"hydra.sweep.dir={sweep_dir}: holds an earlier sweep's files; a sweep writes into a folder "
                        "of its own (leave hydra.sweep.dir out, or name a new folder)")
