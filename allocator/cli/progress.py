"""The command line's progress: :class:`RichProgress`, rich output on stderr.

What ``allocator train``, ``allocator sweep`` and ``allocator demo`` pass to the training
code (which reports through the :class:`training.progress.Progress` protocol and never
prints): each message a bulleted line, each task (training steps, sweep trials) a
progress bar with its count, elapsed and remaining time. Nothing is created before the
first report, and a pickled copy (a Ray callback saved with a sweep) starts afresh.
"""

from __future__ import annotations

from typing import Any

__all__ = ["RichProgress"]

_STYLES = {"info": "", "warning": "yellow", "error": "red"}


class RichProgress:
    """A :class:`training.progress.Progress` drawn with rich on stderr.

    Args:
        console: the rich console (default: :func:`allocator.console.stderr_console`,
            so that ``--json`` output on stdout stays machine-readable).
    """

    def __init__(self, console: Any = None) -> None:
        self._console = console
        self._bar: Any = None
        self._task: Any = None

    @property
    def console(self) -> Any:
        """The console everything is printed on (created on first use)."""
        if self._console is None:
            from allocator.console import stderr_console

            self._console = stderr_console()
        return self._console

    def message(self, text: str, level: str = "info") -> None:
        """Print ``text`` (plain: brackets are not markup) as a bulleted line, yellow
        for a warning and red for an error; above the bar while one is shown."""
        from rich.text import Text

        line = Text("· ", style="bold")
        line.append(str(text), style=_STYLES.get(level, ""))
        self.console.print(line, highlight=False)

    def start(self, description: str, total: int, completed: int = 0) -> None:
        """Show a bar of ``total`` units (a bar already shown is closed first)."""
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.finish()
        self._bar = Progress(TextColumn("{task.description}"), BarColumn(),
                             MofNCompleteColumn(), TimeElapsedColumn(),
                             TimeRemainingColumn(), console=self.console, transient=False)
        self._task = self._bar.add_task(description, total=total, completed=completed)
        self._bar.start()

    def advance(self, units: int = 1, description: str | None = None) -> None:
        """Move the bar ``units`` forward; ``description`` replaces its text."""
        if self._bar is None:
            return
        if description is None:
            self._bar.advance(self._task, units)
        else:
            self._bar.update(self._task, advance=units, description=description)

    def finish(self) -> None:
        """Close the bar (it stays on screen at its last count)."""
        if self._bar is not None:
            self._bar.stop()
            self._bar = self._task = None

    def __getstate__(self) -> dict[str, Any]:
        """A copy starts with nothing shown (consoles and live bars do not travel)."""
        return {"_console": None, "_bar": None, "_task": None}
