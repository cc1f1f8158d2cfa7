"""The settings of ``allocator sweep``: a TOML file read into a :class:`SweepSpec`.

:func:`read_sweep_spec` reads the file (its docstring shows the three tables ``[sweep]``,
``[base]`` and ``[search]``, and the distributions a setting may be searched over);
:func:`spec_from_dict` builds a spec from the tables as a mapping.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from allocator.errors import ParameterError
from allocator.training.rl.config import TrainConfig

__all__ = ["DISTRIBUTIONS", "FIXED_SPLIT_FIELDS", "SweepSpec", "read_sweep_spec"]

#: The search distributions a ``[search]`` entry may use.
DISTRIBUTIONS = ("choice", "grid", "uniform", "loguniform", "randint")
#: TrainConfig fields that set the split between training, validation and test queries:
#: one split for the whole sweep, so they cannot be searched.
FIXED_SPLIT_FIELDS = ("test_fraction", "validation_fraction")
_TABLES = ("sweep", "base", "search")


@dataclass(frozen=True)
class SweepSpec:
    """A sweep: fixed settings, searched settings, and how the search runs.

    Attributes:
        base: the settings every trial shares (its ``seed`` seeds the split).
        search: TrainConfig field -> ``(distribution, values)``.
        trials: trials sampled (Tune's ``num_samples``).
        cpus_per_trial: CPUs each trial holds while it runs.
        reports: validation scores each trial reports while it trains (ASHA's rungs);
            one more, the exported bundle's, when it ends.
        grace_period: reports before ASHA may stop a trial.
        reduction_factor: ASHA's reduction factor.
        search_seed: seed of the search's sampling.
        max_concurrent: trials running at once (0: as many as the CPUs allow; 1 runs
            them in trial order, so ASHA's decisions do not depend on timing).
        early_stopping: stop bad trials early with ASHA (True).
        source: where the spec was read from (for error messages).
    """

    base: TrainConfig = field(default_factory=TrainConfig)
    search: Mapping[str, tuple[str, tuple[Any, ...]]] = field(default_factory=dict)
    trials: int = 4
    cpus_per_trial: float = 1.0
    reports: int = 4
    grace_period: int = 1
    reduction_factor: float = 2.0
    search_seed: int = 0
    max_concurrent: int = 0
    early_stopping: bool = True
    source: str = "sweep spec"

    def __post_init__(self) -> None:
        owner = f"SweepSpec ({self.source})"
        if not isinstance(self.early_stopping, bool):
            raise ParameterError(owner, "sweep.early_stopping", "true or false",
                                 self.early_stopping)
        for name, low in (("trials", 1), ("reports", 1), ("grace_period", 1),
                          ("search_seed", 0), ("max_concurrent", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ParameterError(owner, f"sweep.{name}", f"an integer >= {low}", value)
        for name, low in (("cpus_per_trial", 0.0), ("reduction_factor", 1.0)):
            value = getattr(self, name)
            if (isinstance(value, bool) or not isinstance(value, int | float)
                    or not math.isfinite(value) or value <= low):
                raise ParameterError(owner, f"sweep.{name}", f"a number > {low:g}", value)
        if self.grace_period > self.reports:
            raise ParameterError(owner, "sweep.grace_period",
                                 f"at most sweep.reports ({self.reports})", self.grace_period)
        for name, (kind, values) in self.search.items():
            _check_distribution(self.base, name, kind, values, owner)

    def trial_config(self, params: Mapping[str, Any]) -> TrainConfig:
        """The TrainConfig of one trial: :attr:`base` with the sampled ``params``.

        Raises:
            ParameterError: a value TrainConfig refuses (the message names the spec's
                file and the key ``search.NAME``).
        """
        return _trial_config(self.base, params, f"SweepSpec ({self.source})",
                             table="search")

    def describe(self) -> dict[str, Any]:
        """The spec as plain JSON types (for ``sweep.json``)."""
        return {"base": self.base.to_dict(),
                "search": {name: {kind: list(values)}
                           for name, (kind, values) in self.search.items()},
                **{f.name: getattr(self, f.name) for f in fields(self)
                   if f.name not in ("base", "search", "source")}}


def _check_distribution(base: TrainConfig, name: str, kind: str, values: tuple[Any, ...],
                        owner: str) -> None:
    """ParameterError unless ``name`` is searchable and every value it may take is valid.

    The distribution's shape is checked here; the setting itself (a known TrainConfig
    field, values it accepts) by building the TrainConfig of a trial at each end of the
    distribution (:func:`_trial_config`): TrainConfig owns those rules.
    """
    if name in FIXED_SPLIT_FIELDS:
        raise ParameterError(owner, f"search.{name}", "set in [base], not searched: one "
                             "split of training, validation and test queries serves every "
                             "trial", {kind: list(values)})
    if kind not in DISTRIBUTIONS:
        raise ParameterError(owner, f"search.{name}", f"one of {DISTRIBUTIONS}", kind)
    ranged = kind in ("uniform", "loguniform", "randint")
    if not values or (ranged and (len(values) != 2 or not _ordered(values))):
        expected = ("[low, high] with low < high" if ranged
                    else "a non-empty list of values")
        raise ParameterError(owner, f"search.{name}", f"{{ {kind} = {expected} }}",
                             list(values))
    if kind == "loguniform" and values[0] <= 0:
        raise ParameterError(owner, f"search.{name}", "loguniform bounds > 0", list(values))
    if kind == "randint" and not all(isinstance(v, int) for v in values):
        raise ParameterError(owner, f"search.{name}", "randint bounds that are integers",
                             list(values))
    probes = values if not ranged else (values[0], values[1] - 1 if kind == "randint"
                                        else values[1])
    for value in probes:
        _trial_config(base, {name: value}, owner, table="search")


def _trial_config(base: TrainConfig, params: Mapping[str, Any], owner: str, *,
                  table: str) -> TrainConfig:
    """``base`` with ``params``, checked by TrainConfig itself; its error is re-raised
    naming the spec (``owner``: the file) and the key as ``table.key``."""
    try:
        return TrainConfig.from_dict({**base.to_dict(), **params}, source="a trial")
    except ParameterError as error:
        name, value = next(((k, v) for k, v in params.items()
                            if k == error.parameter),
                           next(iter(params.items())))
        raise ParameterError(owner, f"{table}.{name}", f"values TrainConfig accepts "
                             f"({error})", value) from None


def _ordered(values: tuple[Any, ...]) -> bool:
    low, high = values
    return (all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
            and low < high)


def _parse_search(table: Mapping[str, Any], source: str) -> dict[str, tuple[str, tuple]]:
    search = {}
    for name, entry in table.items():
        if not (isinstance(entry, Mapping) and len(entry) == 1):
            raise ParameterError(f"SweepSpec ({source})", f"search.{name}",
                                 "one distribution, e.g. { choice = [1, 2] } or "
                                 f"{{ loguniform = [1e-4, 1e-2] }}; one of {DISTRIBUTIONS}",
                                 entry)
        ((kind, values),) = entry.items()
        values = values if isinstance(values, list) else [values]
        search[name] = (kind, tuple(values))
    return search


def read_sweep_spec(path: str | Path) -> SweepSpec:
    """Read a sweep's TOML file.

    Three tables, each optional::

        # sweep.toml
        [sweep]                      # how the search runs
        trials = 8                   # trials sampled from [search] (Tune's num_samples)
        cpus_per_trial = 1           # each trial's CPU allotment (tune.with_resources)
        reports = 4                  # validation scores reported per trial (ASHA's rungs)
        grace_period = 1             # reports every trial gets before ASHA may stop it
        reduction_factor = 2         # ASHA keeps the best 1/reduction_factor at each rung
        search_seed = 0              # seed of the search's sampling (the same trials each run)
        max_concurrent = 0           # trials running at once (0: as many as the CPUs allow)
        early_stopping = true        # ASHA; false runs every trial to its end

        [base]                       # TrainConfig settings every trial shares
        total_timesteps = 200_000

        [search]                     # TrainConfig settings searched, one distribution each
        learning_rate = { loguniform = [1e-4, 3e-3] }
        net_arch = { choice = [[32], [64, 64]] }
        seed = { choice = [0, 1, 2] }
        lambda_range = { choice = [[0.001, 0.3], [0.01, 0.3]] }

    A distribution is one of ``choice`` (a list of values), ``grid`` (every value, each
    combined with the other grids and repeated ``trials`` times: Tune's ``grid_search``),
    ``uniform``, ``loguniform`` (``[low, high]`` floats) or ``randint`` (``[low, high)``
    integers). Any field of :class:`allocator.training.rl.config.TrainConfig` may be set in
    ``[base]``
    or searched, except those that would move the split between training and test queries
    (``test_fraction``, ``validation_fraction``): every trial is scored on the same
    validation queries and the best one is evaluated on the same test queries. ``seed`` in
    ``[base]`` seeds that split, the difficulty predictor and the validation and test
    orders; searched, ``seed`` seeds each trial's training (environment, network, warm
    start) only.

    Raises:
        ParameterError: invalid TOML, an unknown table or key (the message names it and
            lists the valid ones), or an invalid value.
    """
    import tomllib

    path = Path(path)
    source = str(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ParameterError("allocator sweep", "--config", "a readable TOML file",
                             f"{path}: {error.strerror}") from None
    except tomllib.TOMLDecodeError as error:
        raise ParameterError("allocator sweep", "--config", "a valid TOML file",
                             f"{path}: {error}") from None
    return spec_from_dict(data, source=source)


def spec_from_dict(data: Mapping[str, Any], *, source: str = "sweep spec") -> SweepSpec:
    """A :class:`SweepSpec` from the TOML's tables as a mapping (see
    :func:`read_sweep_spec`)."""
    owner = f"SweepSpec ({source})"
    for table, value in data.items():
        if table not in _TABLES or not isinstance(value, Mapping):
            raise ParameterError(owner, str(table), f"one of the tables [{'], ['.join(_TABLES)}]"
                                 " (top-level keys belong in one of them)", value)
    options = dict(data.get("sweep", {}))
    known = [f.name for f in fields(SweepSpec) if f.name not in ("base", "search", "source")]
    for key in options:
        if key not in known:
            raise ParameterError(owner, f"sweep.{key}", f"one of the keys {', '.join(known)}",
                                 options[key])
    base = TrainConfig.from_dict(dict(data.get("base", {})), source=f"{source} [base]")
    return SweepSpec(base=base, search=_parse_search(data.get("search", {}), source),
                     source=source, **options)
