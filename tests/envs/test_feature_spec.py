"""The feature spec is the one place a feature is defined.

Names, widths and generic bounds of the featurizer, both featurizer paths and both replay
environments' observation spaces all derive from :mod:`allocator.feature_spec`; every
feature of the spec is written by both featurizer paths by its name. Adding a feature is
then a spec entry, its formulas in the featurizer and its test: a feature missing a
formula fails here, by name.
"""

from __future__ import annotations

import inspect
import math

import numpy as np
import pytest
import replay_fixtures

import allocator.feature_spec as spec
from allocator.envs import BatchedReplayVecEnv, ReplayEnv, ReplayPools
from allocator.feature_spec import PER_ARM_FEATURES, QUERY_FEATURES, Feature, FeatureLayout
from allocator.featurizer import (
    QueryState,
    feature_bounds,
    feature_layout,
    feature_names,
    featurize,
    n_features,
)


@pytest.mark.parametrize("arms", [("a",), ("a", "b"), ("a", "b", "c")])
def test_names_widths_and_bounds_derive_from_the_spec(arms: tuple[str, ...]) -> None:
    layout = feature_layout(len(arms))
    width = len(PER_ARM_FEATURES) * len(arms) + len(QUERY_FEATURES)
    expected_names = [f"{feature.name}[{arm}]" for feature in PER_ARM_FEATURES
                      for arm in arms] + [feature.name for feature in QUERY_FEATURES]
    assert layout.width == n_features(len(arms)) == width
    assert feature_names(arms) == expected_names
    low, high = feature_bounds(len(arms))
    features = [f for f in PER_ARM_FEATURES for _ in arms] + list(QUERY_FEATURES)
    assert low.tolist() == [np.float32(f.low) for f in features]
    assert high.tolist() == [np.float32(f.high) for f in features]
    # Every name is at its named position.
    for feature in PER_ARM_FEATURES:
        block = getattr(layout, feature.attribute)
        assert feature_names(arms)[block] == [f"{feature.name}[{arm}]" for arm in arms]
    for feature in QUERY_FEATURES:
        assert feature_names(arms)[layout.position(feature.name)] == feature.name


def test_both_featurizer_paths_and_both_envs_have_the_spec_width() -> None:
    log = replay_fixtures.rich_log()
    pools = ReplayPools.from_log(log)
    width = feature_layout(pools.n_arms).width
    env = ReplayEnv(pools)
    venv = BatchedReplayVecEnv(pools, 3)
    assert env.observation_space.shape == venv.observation_space.shape == (width,)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (width,) and venv.reset().shape == (3, width)
    state = env.query_state
    assert len(state.feature_values()) == featurize(state.to_batch()).shape[1] == width
    # The envs' bounds are the spec's, tightened: never looser.
    low, high = feature_bounds(pools.n_arms)
    assert (env.observation_space.low >= low).all()
    assert (env.observation_space.high <= high).all()


def test_every_feature_of_the_spec_has_a_formula_on_both_paths() -> None:
    import allocator.featurizer as featurizer

    features = (*PER_ARM_FEATURES, *QUERY_FEATURES)
    # The batch path writes each column by name...
    source = inspect.getsource(featurizer.featurize)
    missing = [f.name for f in features if f"f.{f.attribute}] =" not in source]
    assert not missing, f"features of the spec that featurize never writes: {missing}"
    # ... and the scalar path passes each by name to pack, which requires every feature.
    source = inspect.getsource(featurizer.QueryState.feature_values)
    missing = [f.name for f in features if f"{f.attribute}=" not in source]
    assert not missing, f"features of the spec that feature_values never gives: {missing}"
    parameters = inspect.signature(feature_layout(2).pack).parameters
    assert list(parameters) == [f.attribute for f in features]
    with pytest.raises(TypeError, match="leader_posterior"):
        feature_layout(1).pack(**{f.attribute: [0.5] if f in PER_ARM_FEATURES else 0.0
                                  for f in features[:-1]})


def test_a_new_spec_entry_moves_the_positions_after_it(monkeypatch: pytest.MonkeyPatch
                                                       ) -> None:
    before = FeatureLayout(2)
    extra = Feature("votes_per_cost", high=math.inf)
    at = [f.name for f in QUERY_FEATURES].index("leader_posterior")
    monkeypatch.setattr(spec, "QUERY_FEATURES",
                        (*QUERY_FEATURES[:at], extra, *QUERY_FEATURES[at:]))
    after = FeatureLayout(2)
    assert after.width == before.width + 1
    assert after.votes_per_cost == before.leader_posterior
    assert after.leader_posterior == before.leader_posterior + 1
    assert after.names[after.votes_per_cost] == "votes_per_cost"
    assert after.high[after.votes_per_cost] == math.inf
    assert after.prior == before.prior and after.lambda_ == before.lambda_
    values = {f.attribute: 1.0 for f in QUERY_FEATURES}
    packed = after.pack(prior=[0.1, 0.2], log1p_samples=[0.3, 0.4], **values,
                        votes_per_cost=7.0)
    assert packed[after.votes_per_cost] == 7.0 and packed[after.prior] == [0.1, 0.2]


def test_unknown_names_are_refused() -> None:
    with pytest.raises(AttributeError, match="no feature 'leader_shares'"):
        feature_layout(2).leader_shares  # noqa: B018


def test_the_scalar_path_writes_by_name() -> None:
    # A state whose features are all distinct reads back by name on both paths.
    state = QueryState(2, prior=np.array([0.25, 0.75]), lam=0.3)
    for arm, answer in ((0, "x"), (0, "x"), (1, "y"), (1, None)):
        state.add_sample(arm, answer, cost=1.5)
    state.add_refine("x", cost=0.5)
    state.verify({0: 0.9}, cost=0.25)
    values = state.feature_values()
    layout = feature_layout(2)
    assert values[layout.prior] == [0.25, 0.75]
    assert values[layout.log1p_samples] == [math.log1p(2), math.log1p(2)]
    assert values[layout.log1p_refines] == math.log1p(1)
    assert values[layout.lambda_] == 0.3
    assert values[layout.best_verified_score] == 0.9
    assert values[layout.cost_spent] == pytest.approx(6.75)
    assert values[layout.leader_share] == 3 / 4
    np.testing.assert_array_equal(np.float32(values), featurize(state.to_batch())[0])
