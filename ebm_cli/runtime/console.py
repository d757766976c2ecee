"""Terminal output with rich: a training progress bar and result tables.

On a terminal the progress bar shows ETA and the live loss; when stdout is not a terminal (CI,
a pipe, a cluster log) there is no bar, only a plain log line every `log_every` steps.
"""

import logging
from typing import Dict, Iterable, Optional, Sequence

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

log = logging.getLogger("ebm_cli")


def get_console() -> Console:
    # The same global console that rich's logging handler writes to, so the two don't garble.
    from rich import get_console as rich_console

    return rich_console()


class TrainingProgress:
    """Context manager: `update(step, loss)` after each step."""

    def __init__(self, total: int, start: int = 0, enabled: bool = True, log_every: int = 50):
        self.console = get_console()
        self.total, self.start, self.log_every = total, start, max(1, log_every)
        self.bar: Optional[Progress] = None
        if enabled and self.console.is_terminal:
            self.bar = Progress(
                TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(), TextColumn("loss {task.fields[loss]}"),
                TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=self.console,
            )

    def __enter__(self):
        if self.bar:
            self.bar.start()
            self.task = self.bar.add_task("train", total=self.total, completed=self.start, loss="-")
        return self

    def update(self, step: int, loss: Optional[float]) -> None:
        """step: 1-based count of finished steps; loss: None when not synced this step."""
        if self.bar:
            fields = {"loss": f"{loss:.4f}"} if loss is not None else {}
            self.bar.update(self.task, completed=step, **fields)
        elif loss is not None and (step % self.log_every == 0 or step == self.total):
            log.info("step %d/%d  loss %.4f", step, self.total, loss)

    def __exit__(self, *exc):
        if self.bar:
            self.bar.stop()
        return False


def metrics_table(title: str, columns: Dict[str, Dict[str, float]]) -> Table:
    """One row per metric, one column per model or method (stays narrow in an 80-column log)."""
    names = list(dict.fromkeys(k for col in columns.values() for k in col))
    table = Table(title=title)
    table.add_column("metric")
    for c in columns:
        table.add_column(c, justify="right")
    for name in names:
        table.add_row(name, *(_fmt(col.get(name)) for col in columns.values()))
    return table


def simple_table(title: str, header: Sequence[str], rows: Iterable[Sequence[object]]) -> Table:
    table = Table(title=title)
    for h in header:
        table.add_column(h, justify="right")
    for r in rows:
        table.add_row(*(_fmt(v) for v in r))
    return table


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def print_results(folder, files: Sequence[str], tensorboard=None) -> None:
    """The last lines of a command: where its results are (its folder and what it wrote there) and,
    where it logged to TensorBoard, the command that opens them. Plain text, never wrapped: a path to copy."""
    lines = [f"results: {folder} ({', '.join(files)})"]
    if tensorboard is not None:
        lines.append(f"TensorBoard: tensorboard --logdir {tensorboard}")
    get_console().print("\n".join(lines), markup=False, highlight=False, soft_wrap=True)
