"""TrainConfig's latency settings: mu and widths, validated, round-tripped, checked on
resume, and the training env built with them."""

from __future__ import annotations

import numpy as np
import pytest

from allocator.errors import ParameterError
from allocator.logs.synthetic import SyntheticConfig, generate
from allocator.training.rl.config import TrainConfig
from allocator.training.rl.train import make_env
from tests.timed_logs import with_timing


def test_defaults_do_not_price_latency_nor_widen_the_layout() -> None:
    config = TrainConfig()
    assert config.mu == 0.0 and config.widths == (1,)


@pytest.mark.parametrize(("field", "value"), [
    ("mu", -0.1), ("mu", float("nan")), ("mu", "fast"), ("widths", (2, 4)),
    ("widths", (1, 4, 2)), ("widths", (1, 1)), ("widths", ()), ("widths", (1, 2.5)),
])
def test_bad_latency_settings_name_the_field(field: str, value: object) -> None:
    with pytest.raises(ParameterError, match=field):
        TrainConfig(**{field: value})


def test_toml_round_trip_keeps_mu_and_widths(tmp_path) -> None:
    config = TrainConfig(mu=0.05, widths=[1, 2, 4])
    assert config.widths == (1, 2, 4)
    path = tmp_path / "config.toml"
    path.write_text(config.to_toml())
    assert TrainConfig.from_toml(path) == config
    assert config.to_dict()["widths"] == [1, 2, 4]


def test_the_training_env_has_the_widths_and_the_price() -> None:
    log = with_timing(generate(SyntheticConfig(n_queries=12), seed=0))
    config = TrainConfig(n_envs=4, mu=0.5, widths=(1, 3), normalize_observations=False)
    env = make_env(log, queries=np.arange(12), prior=None, config=config)
    assert env.settings.mu == 0.5 and env.settings.widths == (1, 3)
    assert env.action_space.n == 2 + 3 + 2  # two arms, one extra width
    untimed = generate(SyntheticConfig(n_queries=12), seed=0)
    with pytest.raises(ParameterError, match="mu"):
        make_env(untimed, queries=np.arange(12), prior=None, config=config)
