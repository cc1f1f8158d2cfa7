"""The sweep's TOML: every bad input is refused with the key, the table and the fix
(no Ray needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from allocator.errors import ParameterError
from allocator.training.rl.config import TrainConfig
from allocator.training.sweep_config import read_sweep_spec, spec_from_dict

BAD_SPECS = [  # (tables, words the message must hold)
    ({"search": {"learning_rat": {"choice": [1e-3]}}},
     ["search.learning_rat", "did you mean 'learning_rate'", "total_timesteps"]),
    ({"base": {"totl_timesteps": 10}}, ["totl_timesteps", "Known keys", "[base]"]),
    ({"sweep": {"trails": 2}}, ["sweep.trails", "trials, cpus_per_trial"]),
    ({"trials": 2}, ["trials", "[sweep], [base], [search]"]),
    ({"search": {"test_fraction": {"choice": [0.3, 0.5]}}},
     ["search.test_fraction", "one split"]),
    ({"search": {"seed": {"normal": [0, 1]}}}, ["search.seed", "choice", "loguniform"]),
    ({"search": {"learning_rate": {"loguniform": [0.0, 1e-2]}}}, ["bounds > 0"]),
    ({"search": {"learning_rate": {"uniform": [1e-2, 1e-3]}}}, ["low < high"]),
    ({"search": {"activation": {"choice": ["tanh", "sigmoid"]}}},
     ["activation", "sigmoid", "('tanh', 'relu')"]),
    ({"search": {"n_envs": {"randint": [0, 4]}}}, ["n_envs", ">= 1"]),
    ({"search": {"seed": [1, 2]}}, ["search.seed", "one distribution"]),
    ({"sweep": {"grace_period": 3, "reports": 2}}, ["sweep.grace_period", "at most"]),
    ({"sweep": {"cpus_per_trial": 0}}, ["sweep.cpus_per_trial", "> 0"]),
    ({"sweep": {"early_stopping": "yes"}}, ["sweep.early_stopping", "true or false"]),
]


@pytest.mark.parametrize(("tables", "words"), BAD_SPECS,
                         ids=[str(i) for i in range(len(BAD_SPECS))])
def test_a_bad_spec_is_refused_with_what_and_where(tables: dict, words: list[str]) -> None:
    with pytest.raises(ParameterError) as error:
        spec_from_dict(tables, source="sweep.toml")
    message = str(error.value)
    assert "sweep.toml" in message
    for word in words:
        assert word in message


def test_a_spec_file_gives_each_trial_base_plus_its_sample(tmp_path: Path) -> None:
    path = tmp_path / "sweep.toml"
    path.write_text('[sweep]\ntrials = 3\nmax_concurrent = 1\n[base]\ntotal_timesteps = 4096\n'
                    'seed = 5\n[search]\nnet_arch = { choice = [[8], [16, 16]] }\n'
                    'learning_rate = { loguniform = [1e-4, 1e-2] }\n', encoding="utf-8")
    spec = read_sweep_spec(path)
    assert (spec.trials, spec.max_concurrent, spec.early_stopping) == (3, 1, True)
    config = spec.trial_config({"net_arch": [16, 16], "learning_rate": 3e-4})
    assert config == TrainConfig(total_timesteps=4096, seed=5, net_arch=(16, 16),
                                 learning_rate=3e-4)
    assert spec.describe()["search"]["net_arch"] == {"choice": [[8], [16, 16]]}


def test_an_unreadable_or_invalid_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(ParameterError, match=r"missing\.toml"):
        read_sweep_spec(tmp_path / "missing.toml")
    (tmp_path / "bad.toml").write_text("[sweep\n", encoding="utf-8")
    with pytest.raises(ParameterError, match=r"bad\.toml.*valid TOML|valid TOML.*bad\.toml"):
        read_sweep_spec(tmp_path / "bad.toml")


def test_the_command_line_refuses_an_unknown_key_before_starting_ray(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from allocator.cli import app

    config = tmp_path / "sweep.toml"
    config.write_text("[search]\nlearning_rat = { choice = [0.001] }\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["sweep", str(tmp_path / "log.parquet"), "-o",
                                      str(tmp_path / "out"), "--config", str(config)])
    assert result.exit_code == 2
    assert "search.learning_rat" in result.output and "learning_rate" in result.output
    assert not (tmp_path / "out").exists()
