"""TensorBoard writing: scalars, figures, text and hparams into the run's own tb/ folder (and the
validation curves into tb/validation/, a run of its own: TensorBoard colours by run, so a chart of
training and validation loss draws them in two colours)."""

from pathlib import Path
from typing import Dict, Optional, Sequence

from torch.utils.tensorboard import SummaryWriter
from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData
from torch.utils.tensorboard.summary import hparams

from ebm_cli.plots.figures import render
from ebm_cli.runtime.disk import cannot_write, quiet_writer_threads


class TBLogger:
    """A thin wrapper over SummaryWriter; every method is a no-op when disabled.

    A write the disk refuses (full, read-only, tb/ removed), here or in SummaryWriter's background
    thread, is one UserError naming the folder; the writer is then dropped (later calls do nothing,
    so that the run's failure path is not interrupted by a second report of the same disk).
    """

    def __init__(self, folder: Optional[Path], purge_step: Optional[int] = None):
        self.folder, self.writer, self.purge_step = folder, None, purge_step
        self.subruns: Dict[str, SummaryWriter] = {}  # name -> the writer of folder/<name>, made at its first scalar
        if folder is not None:
            quiet_writer_threads()
            self.writer = self._write(SummaryWriter, log_dir=str(folder), purge_step=purge_step)

    def _write(self, method, *args, **kwargs):
        try:
            return method(*args, **kwargs)
        except OSError as exc:
            self.writer, self.subruns = None, {}
            raise cannot_write(f"TensorBoard events in {self.folder}", exc) from None

    def scalars(self, values: Dict[str, float], step: int, prefix: str = "", run: Optional[str] = None) -> None:
        """prefix + name for each value; run: into the sub-run folder/<run> instead (same tags, another colour)."""
        if not self.writer:
            return
        writer = self.writer
        if run is not None:
            if run not in self.subruns:
                self.subruns[run] = self._write(SummaryWriter, log_dir=str(self.folder / run), purge_step=self.purge_step)
            writer = self.subruns[run]
        for name, value in values.items():
            self._write(writer.add_scalar, prefix + name, float(value), step)

    def figure(self, tag: str, fig, step: int) -> None:
        """A matplotlib figure (closed here) or its rendered pixels (H, W, 3), as an image."""
        image = render(fig)
        if self.writer:
            self._write(self.writer.add_image, tag, image, step, dataformats="HWC")

    def layout(self, charts: Dict[str, Dict[str, list]]) -> None:
        """Custom-scalars charts: {category: {title: ["Multiline", [tag, ...]]}} (TensorBoard's
        CUSTOM SCALARS tab draws the tags of one chart together)."""
        if self.writer:
            self._write(self.writer.add_custom_scalars, charts)

    def text(self, tag: str, text: str, step: int = 0) -> None:
        if self.writer:
            self._write(self.writer.add_text, tag, text, step)

    def hparams(self, params: Dict[str, object], metrics: Dict[str, float], step: int, first: Sequence[str] = ()) -> None:
        """HParams tab entry written into this run's folder; `first`: the names of the params the
        command line changed, which the tab lists (and shows) before the others.

        SummaryWriter.add_hparams would create a new sub-folder per call; writing the three
        hparams summaries through our own file writer keeps them with the run (as Lightning does).
        The metric values themselves are the scalars logged under the same tags. The tab orders
        its columns by whether a param `differs` between the runs, then by name, and shows the
        first few: marking the changed ones puts the user's settings there.
        """
        if not self.writer:
            return
        exp, ssi, sei = hparams(params, metrics)
        if first:
            content = HParamsPluginData.FromString(exp.value[0].metadata.plugin_data.content)
            for info in content.experiment.hparam_infos:
                info.differs = info.name in first
            exp.value[0].metadata.plugin_data.content = content.SerializeToString()
        file_writer = self._write(self.writer._get_file_writer)
        for summary in (exp, ssi, sei):
            self._write(file_writer.add_summary, summary)
        self.scalars(metrics, step)

    def close(self) -> None:
        """Flush (raising what the background thread met) and close, sub-runs too; a second call does nothing."""
        if self.writer:
            for writer in [*self.subruns.values(), self.writer]:
                self._write(writer.flush)
            writers, self.writer, self.subruns = [*self.subruns.values(), self.writer], None, {}
            for writer in writers:
                self._write(writer.close)
