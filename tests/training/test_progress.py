"""Training reports progress through a callback object (:mod:`training.progress`), not
the CLI's console: a tiny real training run reports the events it should, and the CLI's
rich implementation draws them."""

from __future__ import annotations

import io
import pickle
from typing import Any

import numpy as np
import pytest
from rich.console import Console

from allocator.cli.progress import RichProgress
from allocator.errors import ParameterError
from allocator.logs.synthetic import SyntheticConfig, generate
from allocator.training.progress import SILENT, Progress, progress_or_silent
from allocator.training.rl.config import TrainConfig
from allocator.training.rl.train import TrainingMonitor, train_policy

#: Four rollouts of 16 x 32 = 512 steps; no warm start.
TINY = TrainConfig(total_timesteps=2_048, n_envs=16, n_steps=32, batch_size=256, n_epochs=1,
                   seed=0, warm_start_steps=0, select_every=0)


class Recorder:
    """A :class:`~training.progress.Progress` that keeps every call."""

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []

    def message(self, text: str, level: str = "info") -> None:
        self.events.append(("message", text, level))

    def start(self, description: str, total: int, completed: int = 0) -> None:
        self.events.append(("start", description, total, completed))

    def advance(self, units: int = 1, description: str | None = None) -> None:
        self.events.append(("advance", units, description))

    def finish(self) -> None:
        self.events.append(("finish",))


def test_a_tiny_training_run_reports_its_steps() -> None:
    """One task: started with the total, advanced by exactly the steps taken (one
    vectorised step of ``n_envs`` at a time), described with the mean return after each
    rollout, finished once."""
    log = generate(SyntheticConfig(n_queries=30), seed=2)
    recorder = Recorder()
    assert isinstance(recorder, Progress)
    model = train_policy(log, queries=np.arange(30), prior=None, config=TINY,
                         callback=TrainingMonitor(), progress=recorder)
    events = recorder.events
    assert events[0] == ("start", "training", TINY.total_timesteps, 0)
    assert events[-1] == ("finish",)
    assert [e for e in events[1:-1] if e[0] not in ("advance",)] == []
    steps = [e[1] for e in events if e[0] == "advance" and e[1] > 0]
    assert sum(steps) == model.num_timesteps == TINY.total_timesteps
    assert set(steps) == {TINY.n_envs}
    rollouts = TINY.total_timesteps // (TINY.n_envs * TINY.n_steps)
    described = [e[2] for e in events if e[0] == "advance" and e[2] is not None]
    assert len(described) == rollouts
    assert all(d.startswith("training (mean return ") for d in described)


def test_training_without_a_progress_is_silent_and_a_bool_is_refused() -> None:
    assert progress_or_silent(None, "x") is SILENT
    for wrong in (True, False, print):
        with pytest.raises(ParameterError, match="progress"):
            progress_or_silent(wrong, "train_policy")  # type: ignore[arg-type]
    log = generate(SyntheticConfig(n_queries=10), seed=2)
    with pytest.raises(ParameterError, match="RichProgress"):
        train_policy(log, queries=np.arange(10), prior=None, config=TINY,
                     progress=True)  # type: ignore[arg-type]


def test_rich_progress_draws_messages_and_a_bar() -> None:
    """Messages are plain text (brackets stay brackets), levels have colours, the bar
    counts what was advanced; a pickled copy starts with nothing shown."""
    out = io.StringIO()
    progress = RichProgress(Console(file=out, width=120, force_terminal=False))
    assert isinstance(progress, Progress)
    progress.message("arms ['a', 'b'] [red]not markup[/red]")
    progress.start("training", 100)
    progress.advance(40)
    progress.advance(0, description="training (mean return +0.500)")
    progress.message("careful", "warning")
    copy = pickle.loads(pickle.dumps(progress))
    progress.finish()
    text = out.getvalue()
    assert "· arms ['a', 'b'] [red]not markup[/red]" in text
    assert "· careful" in text
    assert "training (mean return +0.500)" in text and "40/100" in text
    assert copy._bar is None and copy._console is None
