"""The learning curve written beside a run's report."""

from __future__ import annotations

import json
import math
from pathlib import Path

from allocator.training.rl.learning_curve import CURVES, curve_rows, write_learning_curve

PNG = b"\x89PNG\r\n\x1a\n"


def test_rows_keep_the_episode_metrics_in_order_and_drop_the_rest() -> None:
    history = [
        (0, {"train/warm_start_accuracy": 0.9}),  # no episode metric: no row
        (1024, {"train/mean_return": 0.5, "train/mean_cost": 3.0, "train/approx_kl": 0.1}),
        (2048, {"train/entropy_loss": -1.0}),
        (2048, {"train/mean_return": math.nan, "train/mean_correct": 0.75}),
    ]
    assert curve_rows(history) == [
        {"timesteps": 1024, "train/mean_return": 0.5, "train/mean_cost": 3.0},
        {"timesteps": 2048, "train/mean_correct": 0.75},
    ]


def test_write_learning_curve_writes_json_and_a_png(tmp_path: Path) -> None:
    history = [(steps, {"train/mean_return": steps / 4096, "train/mean_correct": 0.5,
                        "train/mean_cost": 2.0, "train/mean_samples": 1.5})
               for steps in (1024, 2048, 3072, 4096)]
    paths = write_learning_curve(history, tmp_path, simulated=True, warm_start_steps=512)
    assert [p.name for p in paths] == ["learning_curve.json", "learning_curve.png"]
    data = json.loads(paths[0].read_text())
    assert data["simulated"] is True and data["warm_start_steps"] == 512
    assert data["metrics"] == CURVES
    assert [row["train/mean_return"] for row in data["rows"]] == [0.25, 0.5, 0.75, 1.0]
    assert paths[1].read_bytes()[:8] == PNG
