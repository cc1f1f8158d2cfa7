"""Replay sharded by query on real Ray workers (2 CPUs on loopback), each reading its own
test queries from Parquet shards, gives the single process's episodes exactly, for every
baseline the evaluation sweeps."""

from __future__ import annotations

import numpy as np
import pytest

from allocator.envs.pools import ReplayPools
from allocator.logs.synthetic import SyntheticConfig, generate
from allocator.training.evaluation.baselines import BaselineContext, build_sweeps
from allocator.training.evaluation.evaluate import DEFAULT_POLICIES, split_queries
from allocator.training.evaluation.replay import ReplayEvaluator
from allocator.training.evaluation.sharded import shard_bounds

pytestmark = pytest.mark.slow

SETTINGS = {"n_orders": 3, "seed": 7, "verify_cost": 0.5}
LAMBDA = 0.01


@pytest.fixture(scope="module")
def setup(local_ray, tmp_path_factory: pytest.TempPathFactory):
    from allocator.training.evaluation.shard_log import ShardedLog
    from allocator.training.evaluation.shards import read_log_shards
    from tests.training.evaluation.row_shards import write_row_shards

    log = generate(SyntheticConfig(n_queries=50, with_scores=True, refine_rounds=1), seed=2)
    folder = write_row_shards(log, tmp_path_factory.mktemp("sharded") / "shards", 3)
    pools = ReplayPools.from_log(read_log_shards(folder))
    train, test = split_queries(log.n_queries, 0.5, SETTINGS["seed"])
    prior = np.random.default_rng(0).uniform(0.2, 0.8, (log.n_queries, len(log.arms)))
    context = BaselineContext(pools, train, prior, n_orders=2, seed=SETTINGS["seed"],
                              verify_cost=SETTINGS["verify_cost"], sweeps={})
    sweeps, _ = build_sweeps(DEFAULT_POLICIES, context)
    workers = ShardedLog(folder, 3).test_replays(test, prior=prior, **SETTINGS)
    return pools, test, prior, {name: policies[-1] for name, policies in sweeps.items()}, \
        workers


def test_every_baseline_applies(setup) -> None:
    assert len(setup[3]) >= 10  # the table below is not silently empty


@pytest.mark.parametrize("name", DEFAULT_POLICIES)
def test_sharded_replay_equals_one_process_exactly(setup, name: str) -> None:
    pools, test, prior, policies, workers = setup
    if name not in policies:
        pytest.skip(f"{name} does not apply to this log")
    single = ReplayEvaluator(pools, test, prior=prior, lambda_=LAMBDA,
                             **SETTINGS).run(policies[name])
    sharded = workers.run(policies[name], LAMBDA)
    for field in ("correct", "cost", "samples", "exhausted"):
        assert np.array_equal(getattr(sharded, field), getattr(single, field)), field
    assert sharded.policy == single.policy


@pytest.mark.parametrize(("n", "shards", "expected"), [
    (10, 3, [(0, 3), (3, 7), (7, 10)]), (2, 5, [(0, 1), (1, 2)]), (0, 2, []),
    (4, 1, [(0, 4)])])
def test_shards_cover_every_position_once(n: int, shards: int, expected: list) -> None:
    assert shard_bounds(n, shards) == expected


def test_allocator_evaluate_ray_writes_the_single_process_report(local_ray,
                                                                 tmp_path) -> None:
    """The whole evaluation (every baseline, the learned policy at each lambda, the
    oracles, intervals) through the command line, of a log stored as a folder of
    Parquet shards: report.json byte for byte."""
    import json

    from typer.testing import CliRunner

    from allocator.cli import app
    from allocator.logs import write_log
    from tests.tiny_policy import export_tiny_bundle

    bundle, _ = export_tiny_bundle(tmp_path / "tiny", n_queries=100)
    log_path, log = tmp_path / "shards", generate(SyntheticConfig(n_queries=100))
    log_path.mkdir()
    for k, queries in enumerate(np.array_split(np.arange(100), 4)):  # the bundle's log
        write_log(log.select_queries(queries), log_path / f"part-{k}.parquet")
    args = ["evaluate", str(log_path), "--bundle", str(bundle), "--orders", "2",
            "--seed", "1"]
    runner = CliRunner()
    single = runner.invoke(app, [*args, "-o", str(tmp_path / "single")])
    sharded = runner.invoke(app, [*args, "-o", str(tmp_path / "sharded"), "--ray", "3"])
    assert single.exit_code == 0 and sharded.exit_code == 0, sharded.output
    text = (tmp_path / "single" / "report.json").read_text()
    assert (tmp_path / "sharded" / "report.json").read_text() == text
    assert "learned" in json.loads(text)["policies"]
