"""A run folder: what a command writes there (atomically), and the guard that keeps a command from
writing over another run's results."""

import json
import os
from pathlib import Path
from typing import Any, Dict

from ebm_cli.errors import UserError


def write_json(path: Path, payload: Dict[str, Any]) -> None:
    """Atomic: a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True))
    os.replace(tmp, path)


def check_run_folder(run_dir: Path, mode: str) -> None:
    """Refuse a run folder whose contents a training run would overwrite."""
    metrics = run_dir / "metrics.json"
    if metrics.is_file():
        try:
            status = json.loads(metrics.read_text()).get("status")
        except (ValueError, AttributeError):
            status = None
        if status == "completed":
            raise UserError(f"{run_dir} already holds a finished run; choose another hydra.run.dir")
    folder = run_dir / "checkpoints"
    if mode == "never" and folder.is_dir() and any(folder.glob("*.pt")):
        raise UserError(f"{run_dir} already holds checkpoints of an unfinished run: add trainer.resume=auto "
                        "to continue it, or choose another hydra.run.dir")
