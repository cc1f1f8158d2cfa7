"""Replay sharded by query, on exactly the single process's orders.

A :class:`ShardEvaluator` replays a contiguous range of a larger evaluation's queries,
seeded so that the shards' episodes, concatenated in order, equal the single process's
array for array (its docstring says why). :func:`shard_bounds` splits the queries.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from allocator.errors import ParameterError
from allocator.training.evaluation.replay import SEED_STRIDE, ReplayEvaluator

__all__ = ["ShardEvaluator", "shard_bounds"]


class ShardEvaluator(ReplayEvaluator):
    """A :class:`ReplayEvaluator` over the positions ``[offset, offset + len(queries))``
    of a larger evaluation, seeded as the larger evaluation seeds them.

    :class:`~allocator.training.evaluation.replay.ReplayEvaluator` seeds the episode of the i-th
    evaluation query in order ``r`` with ``seed * 1_000_003 + i * R + r`` (its batched env's
    sub-environment ``k`` gets ``base + k``), and each sub-environment draws from its own
    generator. A shard holding the evaluation positions ``[a, b)`` therefore replays exactly
    the single process's episodes when its env is seeded from ``base + a * R``;
    concatenating the shards' episodes in position order gives the single process's
    :class:`~allocator.training.evaluation.results.EpisodeResults`, equal array for array.
    :class:`allocator.training.evaluation.shard_log.ShardedLog` runs one per Ray worker, each
    reading
    its own test queries from Parquet shards (``allocator evaluate --ray``; the tests check
    the episodes on every baseline).

    Args:
        log: the pool log (or its pools).
        queries: the shard's evaluation queries, in the larger evaluation's order.
        offset: the position of the shard's first query in the larger evaluation.
        **settings: ``n_orders``, ``seed``, ``lambda_``, ``prior``, ``verify_cost`` as in
            :class:`ReplayEvaluator`.
    """

    def __init__(self, log: Any, queries: np.ndarray, *, offset: int, **settings: Any
                 ) -> None:
        super().__init__(log, queries, **settings)
        if isinstance(offset, bool) or not isinstance(offset, int | np.integer) or offset < 0:
            raise ParameterError("ShardEvaluator", "offset", "an integer >= 0", offset)
        self.offset = int(offset)

    def _episode_seed(self) -> int:
        """The larger evaluation's seed of the shard's first episode."""
        return self.seed * SEED_STRIDE + self.offset * self.n_orders


def shard_bounds(n_queries: int, n_shards: int) -> list[tuple[int, int]]:
    """Contiguous position ranges ``[a, b)`` covering ``n_queries``, as even as possible
    (no empty shard: at most ``n_queries`` shards)."""
    if isinstance(n_shards, bool) or not isinstance(n_shards, int) or n_shards < 1:
        raise ParameterError("shard_bounds", "n_shards", "an integer >= 1", n_shards)
    edges = np.linspace(0, n_queries, min(n_shards, max(n_queries, 1)) + 1).round()
    return [(int(a), int(b)) for a, b in itertools.pairwise(edges) if b > a]
