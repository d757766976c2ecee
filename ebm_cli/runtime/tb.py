"""TensorBoard writing: scalars, figures, text and hparams into the run's own tb/ folder."""

from pathlib import Path
from typing import Dict, Optional

from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams

from ebm_cli.plots.figures import render


class TBLogger:
    """A thin wrapper over SummaryWriter; every method is a no-op when disabled."""

    def __init__(self, folder: Optional[Path], purge_step: Optional[int] = None):
        self.writer = SummaryWriter(log_dir=str(folder), purge_step=purge_step) if folder is not None else None

    def scalars(self, values: Dict[str, float], step: int, prefix: str = "") -> None:
        if self.writer:
            for name, value in values.items():
                self.writer.add_scalar(prefix + name, float(value), step)

    def figure(self, tag: str, fig, step: int) -> None:
        """A matplotlib figure (closed here) or its rendered pixels (H, W, 3), as an image."""
        image = render(fig)
        if self.writer:
            self.writer.add_image(tag, image, step, dataformats="HWC")

    def layout(self, charts: Dict[str, Dict[str, list]]) -> None:
        """Custom-scalars charts: {category: {title: ["Multiline", [tag, ...]]}} (TensorBoard's
        CUSTOM SCALARS tab draws the tags of one chart together)."""
        if self.writer:
            self.writer.add_custom_scalars(charts)

    def text(self, tag: str, text: str, step: int = 0) -> None:
        if self.writer:
            self.writer.add_text(tag, text, step)

    def hparams(self, params: Dict[str, object], metrics: Dict[str, float], step: int) -> None:
        """HParams tab entry written into this run's folder.

        SummaryWriter.add_hparams would create a new sub-folder per call; writing the three
        hparams summaries through our own file writer keeps them with the run (as Lightning does).
        The metric values themselves are the scalars logged under the same tags.
        """
        if not self.writer:
            return
        exp, ssi, sei = hparams(params, metrics)
        file_writer = self.writer._get_file_writer()
        for summary in (exp, ssi, sei):
            file_writer.add_summary(summary)
        for name, value in metrics.items():
            self.writer.add_scalar(name, value, step)

    def close(self) -> None:
        if self.writer:
            self.writer.flush()
            self.writer.close()
