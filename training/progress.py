"""How long training runs report progress: a small protocol, silent by default.

Training (:func:`allocator.training.rl.train.train_policy`), the pipeline
(:func:`allocator.training.rl.pipeline.run_training`) and the sweep
(:func:`allocator.training.sweep.run_sweep`)
never print: they call a :class:`Progress` they are given. The command line passes a
rich-based one (:class:`allocator.cli.progress.RichProgress`); without one nothing is
shown (:data:`SILENT`).
"""

from __future__ import annotations

from typing import Literal, Protocol, runtime_checkable

from allocator.errors import ParameterError

__all__ = ["SILENT", "Level", "Progress", "SilentProgress", "progress_or_silent"]

#: How much a message matters: a step, something to notice, something that failed.
Level = Literal["info", "warning", "error"]


@runtime_checkable
class Progress(Protocol):
    """What a training run reports.

    One task at a time has a known size (training steps, sweep trials): :meth:`start`
    opens it, :meth:`advance` moves it, :meth:`finish` closes it. :meth:`message` says
    what happens (the steps of the pipeline, a trial that ended) at any time.
    """

    def message(self, text: str, level: Level = "info") -> None:
        """A line of plain text (no markup) about the current step."""

    def start(self, description: str, total: int, completed: int = 0) -> None:
        """A task of ``total`` units begins, ``completed`` of them already done (a
        resumed run)."""

    def advance(self, units: int = 1, description: str | None = None) -> None:
        """The task moved ``units`` forward (0: only its ``description`` changes)."""

    def finish(self) -> None:
        """The task ended (whether or not it reached its total)."""


class SilentProgress:
    """A :class:`Progress` that shows nothing: the default."""

    def message(self, text: str, level: Level = "info") -> None:
        """Nothing."""

    def start(self, description: str, total: int, completed: int = 0) -> None:
        """Nothing."""

    def advance(self, units: int = 1, description: str | None = None) -> None:
        """Nothing."""

    def finish(self) -> None:
        """Nothing."""


#: The progress of a run given none.
SILENT = SilentProgress()


def progress_or_silent(progress: Progress | None, owner: str) -> Progress:
    """``progress``, or :data:`SILENT` for None.

    Raises:
        ParameterError: anything else, a bool included (the former ``progress=True``:
            pass ``allocator.cli.progress.RichProgress()`` to see progress on stderr).
    """
    if progress is None:
        return SILENT
    if isinstance(progress, bool) or not isinstance(progress, Progress):
        raise ParameterError(owner, "progress",
                             "None (silent) or a training.progress.Progress (message, "
                             "start, advance, finish), e.g. "
                             "allocator.cli.progress.RichProgress() for rich output on "
                             "stderr", progress)
    return progress
