"""TensorBoard: event files in the run's folder (``tensorboard --logdir`` on a sweep shows
every run, named by its folder). Needs the ``tensorboard`` package (``[tensorboard]`` extra).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import stores
from .base import Scalar, TrackedRun, Tracker


class TensorBoardTracker(Tracker):
    """A ``SummaryWriter`` on ``run.run_dir``. On a resume it is opened with ``purge_step``:
    TensorBoard hides whatever the interrupted process logged after its last checkpoint, so
    each step shows once, with the values of the run that went on."""

    name = "tensorboard"
    packages = ("tensorboard",)
    replays = False  # flushed at every epoch's end, before the checkpoint; later steps purged

    def __init__(
        self, run: TrackedRun, done: int = 0, continuing: bool = False, run_id: str | None = None
    ) -> None:
        super().__init__(run, done, continuing, str(run.run_dir))
        self.check_files(run.root, run.run_dir)
        from torch.utils.tensorboard import SummaryWriter

        run.run_dir.mkdir(parents=True, exist_ok=True)
        # purge_step: events at steps >= done + 1 from earlier files are dropped on reading
        purge = done + 1 if continuing else None
        self.writer = SummaryWriter(str(run.run_dir), purge_step=purge)

    @classmethod
    def check_files(cls, root: Path, run_dir: Path) -> None:
        # new event files go beside the old ones: none may be a symlink leading elsewhere
        run_dir = Path(run_dir)
        events = [p.name for p in run_dir.glob("events.out.tfevents.*")]
        stores.check_links(run_dir, events, within=root)

    def params(self, params: Mapping[str, Scalar], metrics: Sequence[str]) -> None:
        if self.continuing:  # written at the start; a second copy would show the run twice
            return
        from torch.utils.tensorboard.summary import hparams

        # the HParams view reads the metrics from this run's scalars of the same names
        for summary in hparams(dict(params), {m: 0.0 for m in metrics}):
            self.writer.file_writer.add_summary(summary)

    def _scalars(self, values: dict[str, float], step: int) -> None:
        for k, v in values.items():
            self.writer.add_scalar(k, v, step)

    def _histogram(self, tag: str, values: list[float], step: int) -> None:
        self.writer.add_histogram(tag, np.asarray(values, dtype=np.float64), step)

    def _table(self, tag: str, columns: list[str], rows: list[list], step: int) -> None:
        self.writer.add_text(tag, markdown_table(columns, rows), step)

    def _figure(self, tag: str, fig: Any, step: int) -> None:
        self.writer.add_figure(tag, fig, step, close=False)

    def _image_file(self, tag: str, path: Path, step: int) -> None:
        from PIL import Image

        with Image.open(path) as im:
            pixels = np.asarray(im.convert("RGB"))
        self.writer.add_image(tag, pixels, step, dataformats="HWC")

    def _text(self, tag: str, markdown: str, step: int) -> None:
        self.writer.add_text(tag, markdown, step)

    def flush(self) -> None:
        self.writer.flush()

    def close(self, status: str = "FINISHED") -> None:
        self.writer.close()  # an event file has no run status


def markdown_table(columns: Sequence[str], rows: Sequence[Sequence]) -> str:
    """A Markdown table (TensorBoard's text view renders it)."""
    head = "| " + " | ".join(map(str, columns)) + " |"
    rule = "|" + "---|" * len(columns)
    body = ["| " + " | ".join(_cell(v) for v in r) + " |" for r in rows]
    return "\n".join([head, rule, *body])


def _cell(v: Any) -> str:
    return f"{v:.6g}" if isinstance(v, float) else str(v)
