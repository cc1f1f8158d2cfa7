"""The settings of ``allocator train``: one frozen dataclass, loadable from TOML.

:class:`TrainConfig` documents every hyperparameter and its default (and what lambda
means); :meth:`TrainConfig.from_toml` reads any subset of its fields from a TOML file.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from allocator.errors import ParameterError

__all__ = ["ACTIVATIONS", "LAMBDA_SAMPLING", "TrainConfig"]

#: Hidden-layer activations the exported (numpy) policy supports.
ACTIVATIONS = ("tanh", "relu")
#: How lambda is drawn per episode from ``lambda_range``.
LAMBDA_SAMPLING = ("uniform", "log-uniform")

_OWNER = "TrainConfig"


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(
        value)


@dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters of a training run (MaskablePPO on the batched replay env).

    Every field has a default that suits a log of a few hundred queries (the demo's training
    time is in the README; ``benchmarks/oracle_latency.py`` measures MaskablePPO's
    environment steps per second).

    Lambda is the price of one *cost unit*, the log's mean sample cost (see
    :class:`allocator.envs.ReplayEnv`): ``lambda = 0.1`` means ten samples of average cost are worth
    one correct answer. An episode's reward is ``correct - lambda * cost`` summed over its
    steps, so the discount is 1 (episodic cost accounting, nothing to discount).

    Attributes:
        total_timesteps: environment steps to train for (all sub-environments together;
            rounded up to whole rollouts of ``n_steps * n_envs``). 2,000,000 takes about
            a minute on 2 cores.
        n_envs: sub-environments of the batched replay env stepped together (256).
        lambda_range: ``(lo, hi)``: lambda, the price of a cost unit (the log's mean
            sample cost), is drawn per episode from this range and observed by the policy,
            so one policy serves every trade-off in it ((0.0001, 0.3): from "a sample
            costs a ten-thousandth of a correct answer", where the last point of accuracy
            (the best baselines' top, a majority over most of the pool) is worth dozens
            of samples, to prices at which even one sample rarely pays; with 0.001 as
            the lower end the front stopped short of that top on single-arm logs).
        lambda_sampling: ``"log-uniform"`` (needs ``lo > 0``; as many episodes in
            [0.001, 0.01] as in [0.01, 0.1]) or ``"uniform"``. Log-uniform is the default:
            on logs where extra samples buy a few points of accuracy, the trade-offs worth
            learning sit at small lambdas, which uniform draws over (0, 0.3) almost never
            visit (measured on the simulated log: uniform training collapsed to one sample
            at every lambda).
        normalize_observations: standardise observations with running statistics
            (SB3's ``VecNormalize``; no reward normalisation). The statistics are frozen
            after training and exported in the bundle. True: the raw lambda and cost
            features span very different scales (measured: a higher return at the same
            budget).
        learning_rate: Adam step size (1e-3).
        n_steps: steps per sub-environment per rollout (32: a rollout of 8,192 steps with
            256 sub-environments).
        batch_size: minibatch size of the PPO update (2048).
        n_epochs: passes over each rollout (10).
        gamma: discount (1.0: episodes are short and the rewards already sum to
            ``correct - lambda * cost``).
        gae_lambda: GAE's bias/variance trade-off (0.95).
        clip_range: PPO's clipping of the probability ratio (0.2).
        ent_coef: entropy bonus (0.01: keeps sampling actions explored while their value
            is still noisy).
        vf_coef: weight of the value loss (0.5).
        max_grad_norm: gradient clipping (0.5).
        net_arch: hidden layer sizes, the same for the policy and value networks (64, 64).
        activation: hidden activation, ``"tanh"`` (SB3's default) or ``"relu"``.
        seed: seed of the split, the environment, the network and the evaluation (0).
        checkpoint_every: environment steps between checkpoints (500,000); a checkpoint is
            also written when training ends.
        test_fraction: share of queries held out for evaluation (0.5).
        n_orders: seeded random orders replayed per held-out query in the evaluation (20).
        eval_lambdas: the lambdas the learned policy is evaluated at (its Pareto sweep);
            None: sixteen log-spaced values over ``lambda_range`` (see
            :meth:`evaluation_lambdas`).
        arm: the arm the single-arm baselines sample in the evaluation (None: the arm
            with the most samples per query, as ``allocator evaluate`` does).
        n_bootstrap: bootstrap resamples per confidence interval of the evaluation (1000).
        warm_start_steps: environment steps of the best baseline's rollout that the
            network is behaviour-cloned on before PPO (:mod:`allocator.training.rl.warm_start`);
            None: an eighth of ``total_timesteps`` (the cloning costs about as much per
            step as PPO); 0: start PPO from a random network. Not counted in
            ``total_timesteps``.
        safety_net: after training, compare the learned policy with every deployable
            baseline on validation queries carved from the training queries, and export
            the best (a baseline bundle where the learned policy loses; see
            :mod:`allocator.training.rl.safety_net`). True; False trains on every training query
            and always exports the learned policy (``--no-safety-net``).
        validation_fraction: the share of the training queries held out as validation
            queries by the safety net (0.25; the policy trains on the rest).
        select_every: environment steps between scores of the policy on the validation
            queries (:mod:`allocator.training.rl.selection`): the exported policy is the
            best-scoring one PPO passed through, the warm-started one included. None: an
            eighth of ``total_timesteps``; 0: no selection (the last iterate is
            exported). Needs validation queries (the safety net or calibration on).
        verify_cost: the price of VERIFYing a candidate whose score has no logged verdict,
            in the log's cost units (verdicts, judge votes and summaries are charged their
            logged costs whatever this is); None (default): the log's, the mean cost of
            its verdicts (:func:`allocator.envs.pools.log_verify_cost`, the rule ``allocator
            evaluate --verify-cost`` defaults to). ``--verify-cost`` on the command line.
        mu: the price of one second of latency (the critical path of an episode's waves,
            :class:`allocator.envs.ReplayEnv`), in the reward's units beside lambda's cost:
            ``mu = 0.01`` makes ten seconds worth a tenth of a correct answer. 0 (default):
            latency is not priced. > 0 needs a log that times its rows (``started_at``,
            ``ended_at``). ``--mu`` on the command line.
        widths: the parallel widths the policy may launch SAMPLE at (distinct integers
            from 1, ascending; (1,) default: one attempt per SAMPLE; (1, 2, 4): also
            SAMPLE(arm)×2 and ×4 as one wave each). Recorded in the bundle's manifest.
            ``--widths 1,2,4`` on the command line.
    """

    total_timesteps: int = 2_000_000
    n_envs: int = 256
    lambda_range: tuple[float, float] = (0.0001, 0.3)
    lambda_sampling: str = "log-uniform"
    normalize_observations: bool = True
    learning_rate: float = 1e-3
    n_steps: int = 32
    batch_size: int = 2048
    n_epochs: int = 10
    gamma: float = 1.0
    gae_lambda: float = 0.95
    clip_range: float = 0.2
    ent_coef: float = 0.01
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    net_arch: tuple[int, ...] = (64, 64)
    activation: str = "tanh"
    seed: int = 0
    checkpoint_every: int = 500_000
    test_fraction: float = 0.5
    n_orders: int = 20
    eval_lambdas: tuple[float, ...] | None = None
    arm: str | None = None
    n_bootstrap: int = 1000
    warm_start_steps: int | None = None
    safety_net: bool = True
    validation_fraction: float = 0.25
    select_every: int | None = None
    verify_cost: float | None = None
    mu: float = 0.0
    widths: tuple[int, ...] = (1,)

    def __post_init__(self) -> None:
        for name in ("lambda_range", "net_arch", "eval_lambdas", "widths"):
            value = getattr(self, name)
            if isinstance(value, list):  # TOML arrays
                object.__setattr__(self, name, tuple(value))
        self._check_integers()
        self._check_numbers()
        self._check_choices()
        self._check_sequences()
        self._check_verify_cost()
        self._check_latency()

    # ------------------------------------------------------------- validation
    def _check_integers(self) -> None:
        for name, low in (("total_timesteps", 1), ("n_envs", 1), ("n_steps", 1),
                          ("batch_size", 2), ("n_epochs", 1), ("seed", 0),
                          ("checkpoint_every", 1), ("n_orders", 1), ("n_bootstrap", 1),
                          ("warm_start_steps", 0), ("select_every", 0)):
            value = getattr(self, name)
            if name in ("warm_start_steps", "select_every") and value is None:
                continue
            if not _is_int(value) or value < low:
                raise ParameterError(_OWNER, name, f"an integer >= {low}", value)

    def _check_numbers(self) -> None:
        bounds = {  # name: (low, high, low inclusive)
            "learning_rate": (0.0, math.inf, False), "gamma": (0.0, 1.0, True),
            "gae_lambda": (0.0, 1.0, True), "clip_range": (0.0, math.inf, False),
            "ent_coef": (0.0, math.inf, True), "vf_coef": (0.0, math.inf, True),
            "max_grad_norm": (0.0, math.inf, False),
            "test_fraction": (0.0, 1.0, False),
            "validation_fraction": (0.0, 1.0, False),
        }
        for name, (low, high, inclusive) in bounds.items():
            value = getattr(self, name)
            above = _is_number(value) and (value >= low if inclusive else value > low)
            half_open = name in ("test_fraction", "validation_fraction")
            if not (above and value <= high) or (half_open and value >= 1.0):
                interval = f"{'[' if inclusive else '('}{low}, {high}"
                closing = ")" if half_open or high == math.inf else "]"
                raise ParameterError(_OWNER, name, f"a number in {interval}{closing}", value)

    def _check_verify_cost(self) -> None:
        value = self.verify_cost
        if value is not None and not (_is_number(value) and value >= 0):
            raise ParameterError(_OWNER, "verify_cost", "None (the log's) or a finite "
                                 "number >= 0 (log cost units per verified candidate)", value)

    def _check_latency(self) -> None:
        from allocator.actions import check_widths

        if not (_is_number(self.mu) and self.mu >= 0):
            raise ParameterError(_OWNER, "mu", "a finite number >= 0 (the price of one "
                                 "second of latency; 0: not priced)", self.mu)
        object.__setattr__(self, "widths", check_widths(_OWNER, self.widths))

    def _check_choices(self) -> None:
        for name in ("normalize_observations", "safety_net"):
            if not isinstance(getattr(self, name), bool):
                raise ParameterError(_OWNER, name, "true or false", getattr(self, name))
        if self.activation not in ACTIVATIONS:
            raise ParameterError(_OWNER, "activation", f"one of {ACTIVATIONS}", self.activation)
        if self.arm is not None and not (isinstance(self.arm, str) and self.arm):
            raise ParameterError(_OWNER, "arm", "None or an arm's name", self.arm)
        if self.lambda_sampling not in LAMBDA_SAMPLING:
            raise ParameterError(_OWNER, "lambda_sampling", f"one of {LAMBDA_SAMPLING}",
                                 self.lambda_sampling)

    def _check_sequences(self) -> None:
        pair = self.lambda_range
        if not (isinstance(pair, tuple) and len(pair) == 2 and all(map(_is_number, pair))
                and 0.0 <= pair[0] <= pair[1]):
            raise ParameterError(_OWNER, "lambda_range", "a pair (lo, hi) with 0 <= lo <= hi",
                                 pair)
        if self.lambda_sampling == "log-uniform" and pair[0] <= 0:
            raise ParameterError(_OWNER, "lambda_range", "lo > 0 for log-uniform sampling",
                                 pair)
        if not (isinstance(self.net_arch, tuple) and self.net_arch
                and all(_is_int(size) and size >= 1 for size in self.net_arch)):
            raise ParameterError(_OWNER, "net_arch", "a non-empty list of layer sizes >= 1",
                                 self.net_arch)
        lambdas = self.eval_lambdas
        if lambdas is not None and not (isinstance(lambdas, tuple) and lambdas and all(
                _is_number(v) and v >= 0 for v in lambdas)):
            raise ParameterError(_OWNER, "eval_lambdas",
                                 "None or a non-empty list of numbers >= 0", lambdas)

    # --------------------------------------------------------------- derived
    def warm_start_budget(self) -> int:
        """The warm start's rollout steps: ``warm_start_steps``, or an eighth of
        ``total_timesteps`` when it is None."""
        if self.warm_start_steps is None:
            return self.total_timesteps // 8
        return int(self.warm_start_steps)

    def selection_interval(self) -> int:
        """Steps between validation scores: ``select_every``, or an eighth of
        ``total_timesteps`` (at least 1) when it is None; 0: no selection."""
        if self.select_every is None:
            return max(self.total_timesteps // 8, 1)
        return int(self.select_every)

    def evaluation_lambdas(self) -> tuple[float, ...]:
        """The lambdas the learned policy is evaluated at, increasing.

        ``eval_lambdas`` if set; else sixteen values log-spaced over ``lambda_range``
        (with ``lo == 0``: 0, then seven log-spaced from ``hi / 1000`` to ``hi``; a single
        value when ``lo == hi``).
        """
        from allocator.training.evaluation.prices import lambda_grid

        return lambda_grid(self.lambda_range, self.eval_lambdas)

    def policy_kwargs(self) -> dict[str, Any]:
        """The ``policy_kwargs`` of ``MaskablePPO("MlpPolicy", ...)`` (imports torch)."""
        from torch import nn

        layers = list(self.net_arch)
        activation = {"tanh": nn.Tanh, "relu": nn.ReLU}[self.activation]
        return {"net_arch": {"pi": layers, "vf": list(layers)}, "activation_fn": activation}

    def ppo_kwargs(self) -> dict[str, Any]:
        """The MaskablePPO hyperparameters (keyword arguments of its constructor)."""
        names = ("learning_rate", "n_steps", "batch_size", "n_epochs", "gamma", "gae_lambda",
                 "clip_range", "ent_coef", "vf_coef", "max_grad_norm")
        return {name: getattr(self, name) for name in names}

    # ----------------------------------------------------------------- I/O
    def to_dict(self) -> dict[str, Any]:
        """The fields as plain Python values (tuples become lists), e.g. for MLflow."""
        return {f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v
                for f in fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "config") -> TrainConfig:
        """A config from a mapping of field names; missing fields keep their defaults.

        Raises:
            ParameterError: for an unknown key (the message names it and the closest
                known one) or an invalid value.
        """
        known = [f.name for f in fields(cls)]
        for key in data:
            if key not in known:
                close = difflib.get_close_matches(str(key), known, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ParameterError(
                    f"TrainConfig ({source})", str(key),
                    f"a known setting{hint}; unknown key {key!r}. Known keys: "
                    f"{', '.join(known)}", data[key])
        return cls(**dict(data))

    @classmethod
    def from_toml(cls, path: str | Path) -> TrainConfig:
        """Read a TOML file of top-level ``field = value`` lines.

        A TOML file holds any subset of the fields as top-level keys; unknown keys are
        refused with an error that names them (a typo must not silently train with a default)::

            # config.toml
            total_timesteps = 1_000_000
            lambda_range = [0.0001, 0.3]
            lambda_sampling = "log-uniform"
            net_arch = [64, 64]
            seed = 3

        Raises:
            ParameterError: for an unknown key, an invalid value or invalid TOML.
        """
        import tomllib

        path = Path(path)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as error:
            raise ParameterError("TrainConfig", "path", "a valid TOML file",
                                 f"{path}: {error}") from None
        return cls.from_dict(data, source=str(path))

    def to_toml(self) -> str:
        """The config as TOML text that :meth:`from_toml` reads back equal.

        ``None`` (TOML has no null) is written as a comment: reading it back gives the
        field's default, which is None for every field that may be None.
        """
        lines = ["# ttc-allocator training config (allocator train --config FILE)"]
        for name, value in self.to_dict().items():
            if value is None:
                lines.append(f"# {name} = (default: none)")
            else:
                lines.append(f"{name} = {_toml_value(value)}")
        return "\n".join(lines) + "\n"

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with some fields changed (validated)."""
        return dataclasses.replace(self, **changes)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, float):
        return repr(value)  # round-trips exactly ("1e-05", "0.3")
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return str(value)
