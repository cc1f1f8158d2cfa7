"""``allocator evaluate --ray --address`` against a real Ray cluster of two nodes (a head
and a worker joined to it, separate raylets on loopback: ``ray.cluster_utils.Cluster``,
the multi-node set-up Ray's testing tips document), as the README's `ray start --head`
recipe builds one: the report equals the single-process one byte for byte."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from allocator.logs.synthetic import SyntheticConfig, generate
from tests.conftest import require_ray

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster():
    """A head of 1 CPU and a worker node of 1 CPU; this process is not connected to it
    (the command under test connects through --address). Shut down afterwards."""
    ray = require_ray()
    from ray.cluster_utils import Cluster

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    if ray.is_initialized():  # another module's Ray: the command would reuse it
        ray.shutdown()
    nodes = Cluster(initialize_head=True, head_node_args={"num_cpus": 1,
                                                          "include_dashboard": False})
    try:
        nodes.add_node(num_cpus=1)
        nodes.wait_for_nodes()
        yield nodes
    finally:
        ray.shutdown()
        nodes.shutdown()


def test_evaluate_on_a_two_node_cluster_writes_the_single_process_report(
        cluster, tmp_path: Path) -> None:
    import ray
    from typer.testing import CliRunner

    from allocator.cli import app
    from allocator.logs import write_log

    log_path, log = tmp_path / "shards", generate(SyntheticConfig(n_queries=60), seed=4)
    log_path.mkdir()
    for k, queries in enumerate(np.array_split(np.arange(60), 3)):
        write_log(log.select_queries(queries), log_path / f"part-{k}.parquet")
    args = ["evaluate", str(log_path), "--orders", "2", "--seed", "3",
            "-p", "fixed-n", "-p", "adaptive-consistency", "-p", "esc"]
    runner = CliRunner()
    single = runner.invoke(app, [*args, "-o", str(tmp_path / "single")])
    assert single.exit_code == 0, single.output
    assert not ray.is_initialized()
    sharded = runner.invoke(app, [*args, "-o", str(tmp_path / "cluster"), "--ray", "4",
                                  "--address", cluster.address])
    assert sharded.exit_code == 0, sharded.output
    # The command ran as a driver of that cluster (both nodes alive), not a local Ray.
    assert ray.is_initialized()
    assert sum(node["Alive"] for node in ray.nodes()) == 2
    assert ray.cluster_resources()["CPU"] == 2
    text = (tmp_path / "single" / "report.json").read_text()
    assert (tmp_path / "cluster" / "report.json").read_text() == text
