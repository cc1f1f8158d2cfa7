"""Simulated attempt logs: the demo's built-in data and the property tests' fuel.

Everything here is **simulated, not real LLM runs**: logs carry ``simulated=True`` (kept
in the Parquet metadata) and say so in their ``source``. :func:`generate` simulates a log
from a :class:`SyntheticConfig`; its docstring gives the model, small and explicit so
that tests can compare statistics with their analytic values.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from allocator.errors import ParameterError
from allocator.logs.schema import KIND_REFINE, KIND_SAMPLE, KINDS, QUERY_PREFIX
from allocator.logs.table import AttemptLog

__all__ = [
    "SIMULATED_SOURCE",
    "DifficultyComponent",
    "SyntheticArm",
    "SyntheticConfig",
    "generate",
    "p_correct",
]

#: The ``source`` of every generated log.
SIMULATED_SOURCE = "synthetic (simulated, not real LLM runs)"


@dataclass(frozen=True)
class SyntheticArm:
    """One simulated generator.

    Attributes:
        name: the arm's name in the log.
        skill: ability on the difficulty scale: a query of difficulty equal to the skill
            is answered correctly half the time.
        cost_per_attempt: mean cost of one attempt (e.g. thousands of tokens).
        pool_size: sample attempts logged per query.
        scored: whether the verifier scores this arm's attempts (with
            ``SyntheticConfig.with_scores``).
    """

    name: str
    skill: float
    cost_per_attempt: float = 1.0
    pool_size: int = 16
    scored: bool = True

    def __post_init__(self) -> None:
        owner = f"SyntheticArm({self.name!r})"
        if not isinstance(self.name, str) or not self.name:
            raise ParameterError("SyntheticArm", "name", "a non-empty string", self.name)
        if not np.isfinite(self.skill):
            raise ParameterError(owner, "skill", "a finite number", self.skill)
        if not (np.isfinite(self.cost_per_attempt) and self.cost_per_attempt >= 0):
            raise ParameterError(owner, "cost_per_attempt", "a finite number >= 0",
                                 self.cost_per_attempt)
        if not (isinstance(self.pool_size, int) and self.pool_size >= 1):
            raise ParameterError(owner, "pool_size", "an integer >= 1", self.pool_size)
        if not isinstance(self.scored, bool):
            raise ParameterError(owner, "scored", "True or False", self.scored)


@dataclass(frozen=True)
class DifficultyComponent:
    """One Beta component of the difficulty mixture.

    Attributes:
        name: label stored as query metadata ``component``.
        weight: relative weight (normalised over the components).
        alpha: Beta shape parameter a > 0.
        beta: Beta shape parameter b > 0 (mean difficulty is a / (a + b)).
    """

    name: str
    weight: float
    alpha: float
    beta: float

    def __post_init__(self) -> None:
        owner = f"DifficultyComponent({self.name!r})"
        for parameter in ("weight", "alpha", "beta"):
            value = getattr(self, parameter)
            if not (np.isfinite(value) and value > 0):
                raise ParameterError(owner, parameter, "a finite number > 0", value)


def _default_arms() -> tuple[SyntheticArm, ...]:
    return (
        SyntheticArm("small", skill=0.45, cost_per_attempt=1.0, pool_size=16),
        SyntheticArm("large", skill=0.70, cost_per_attempt=8.0, pool_size=8),
    )


def _default_mixture() -> tuple[DifficultyComponent, ...]:
    return (
        DifficultyComponent("easy", 0.35, 2.0, 8.0),
        DifficultyComponent("medium", 0.30, 5.0, 5.0),
        DifficultyComponent("hard", 0.25, 8.0, 3.0),
        DifficultyComponent("hopeless", 0.10, 30.0, 1.0),
    )


@dataclass(frozen=True)
class SyntheticConfig:
    """What to simulate. Defaults give a two-arm cascade (a cheap weak arm and an
    expensive strong one) on 400 queries of mixed difficulty.

    Attributes:
        n_queries: number of queries (400).
        arms: the simulated generators (``small``: skill 0.45, cost 1, 16 samples;
            ``large``: skill 0.70, cost 8, 8 samples).
        mixture: difficulty mixture (easy Beta(2, 8) 35%, medium Beta(5, 5) 30%, hard
            Beta(8, 3) 25%, hopeless Beta(30, 1) 10%).
        sharpness: slope of :func:`p_correct` (10).
        n_distractors: distinct wrong answers per query (4).
        distractor_concentration: Dirichlet concentration of the distractor weights
            (0.5; smaller = one dominant wrong answer = more wrong majorities).
        no_answer_rate: share of wrong attempts without an extractable answer (0.05).
        cost_noise: sigma of the lognormal cost noise (0.3).
        with_scores: add verifier scores to sample and refine attempts (False).
        score_separation: distance between the score logits of correct and wrong
            attempts, in standard deviations (1.5, AUROC about 0.86).
        refine_rounds: refinement rounds per query and arm (0 = none).
        refine_per_round: refine attempts per round (4).
        refine_gain: skill added per round (0.06).
        refine_cost_factor: cost of a refine attempt relative to a sample (1.5).
        tasks: simulated task names, assigned uniformly at random.
        length_signal: slope of the log prompt length on difficulty (0: no ``length``
            column).
        length_noise: sigma of the log prompt length's noise (0.5).
    """

    n_queries: int = 400
    arms: tuple[SyntheticArm, ...] = field(default_factory=_default_arms)
    mixture: tuple[DifficultyComponent, ...] = field(default_factory=_default_mixture)
    sharpness: float = 10.0
    n_distractors: int = 4
    distractor_concentration: float = 0.5
    no_answer_rate: float = 0.05
    cost_noise: float = 0.3
    with_scores: bool = False
    score_separation: float = 1.5
    refine_rounds: int = 0
    refine_per_round: int = 4
    refine_gain: float = 0.06
    refine_cost_factor: float = 1.5
    tasks: tuple[str, ...] = ("arithmetic", "algebra", "geometry", "word-problems")
    length_signal: float = 0.0
    length_noise: float = 0.5

    def __post_init__(self) -> None:
        object.__setattr__(self, "arms", tuple(self.arms))
        object.__setattr__(self, "mixture", tuple(self.mixture))
        object.__setattr__(self, "tasks", tuple(self.tasks))
        self._check_counts()
        self._check_rates()

    def _check_counts(self) -> None:
        owner = "SyntheticConfig"
        names = [arm.name for arm in self.arms]
        if not names or len(set(names)) != len(names):
            raise ParameterError(owner, "arms", "a non-empty list of uniquely named arms",
                                 names)
        if not self.mixture:
            raise ParameterError(owner, "mixture", "at least one component", self.mixture)
        if not self.tasks:
            raise ParameterError(owner, "tasks", "at least one task name", self.tasks)
        for parameter, low in (("n_queries", 1), ("n_distractors", 1), ("refine_rounds", 0),
                               ("refine_per_round", 1)):
            value = getattr(self, parameter)
            if not (isinstance(value, int) and value >= low):
                raise ParameterError(owner, parameter, f"an integer >= {low}", value)

    def _check_rates(self) -> None:
        owner = "SyntheticConfig"
        checks = {
            "sharpness": (self.sharpness > 0, "a number > 0"),
            "distractor_concentration": (self.distractor_concentration > 0, "a number > 0"),
            "no_answer_rate": (0 <= self.no_answer_rate < 1, "in [0, 1)"),
            "cost_noise": (self.cost_noise >= 0, "a number >= 0"),
            "score_separation": (self.score_separation >= 0, "a number >= 0"),
            "refine_cost_factor": (self.refine_cost_factor >= 0, "a number >= 0"),
            "refine_gain": (np.isfinite(self.refine_gain), "a finite number"),
            "length_signal": (np.isfinite(self.length_signal) and self.length_signal >= 0,
                              "a finite number >= 0"),
            "length_noise": (np.isfinite(self.length_noise) and self.length_noise >= 0,
                             "a finite number >= 0"),
        }
        for parameter, (ok, expected) in checks.items():
            if not ok:
                raise ParameterError(owner, parameter, expected, getattr(self, parameter))

    @property
    def n_attempts(self) -> int:
        """Attempts the log will hold."""
        per_query = sum(a.pool_size + self.refine_rounds * self.refine_per_round
                        for a in self.arms)
        return self.n_queries * per_query


def p_correct(
    skill: float | np.ndarray, difficulty: float | np.ndarray, sharpness: float
) -> np.ndarray:
    """Probability that one attempt of an arm of ``skill`` is correct on a query.

    ``sigmoid(sharpness * (skill - difficulty))``.
    """
    return 1.0 / (1.0 + np.exp(-sharpness * (np.asarray(skill) - np.asarray(difficulty))))


def generate(config: SyntheticConfig | None = None, *, seed: int = 0) -> AttemptLog:
    """Simulate a graded attempt log.

    The model:

    - Each query has a true difficulty ``d`` in (0, 1), drawn from a mixture of Beta
      distributions (easy / medium / hard / hopeless by default).
    - An arm of skill ``s`` answers correctly with probability
      ``p = sigmoid(sharpness * (s - d))`` (:func:`p_correct`), independently per
      attempt.
    - A wrong attempt gives one of the query's distractor answers, drawn from per-query
      weights ~ Dirichlet(``distractor_concentration``); with a small concentration one
      distractor dominates, so hard queries can have a *wrong* majority. A share
      ``no_answer_rate`` of wrong attempts gives no extractable answer at all.
    - Cost is lognormal around the arm's ``cost_per_attempt`` (mean preserved), standing
      in for tokens.
    - Optional verifier scores: ``sigmoid(N(±score_separation / 2, 1))``, higher for
      correct attempts (the AUROC is ``Phi(score_separation / sqrt(2))``), on the arms
      marked ``scored`` (the others' scores are missing: a verifier that only checks
      some arms).
    - Optional refinement: rounds ``1..refine_rounds`` of ``refine_per_round`` attempts
      (kind ``refine``) whose skill grows by ``refine_gain`` per round.

    Query metadata: ``task`` (a simulated task name, independent of difficulty),
    ``difficulty`` (the true value, so predictor quality can be checked) and
    ``component`` (the mixture component the query came from). With
    ``length_signal > 0`` also ``length``, a prompt length in tokens that predicts
    difficulty as real prompts' lengths do, noisily:
    ``log(length) = log(80) + length_signal * (d - 0.5) + N(0, length_noise)`` (drawn
    from its own stream, so the rest of the log is the same as without it). Query text
    reads ``"Simulated query 17 (difficulty 0.42)"``.

    Vectorised: a million attempts take well under a few seconds. The same ``seed``
    gives the same log (same fingerprint).

    Args:
        config: what to simulate (defaults: :class:`SyntheticConfig`).
        seed: seed of ``numpy.random.default_rng``.

    Returns:
        A log labelled ``simulated`` with source :data:`SIMULATED_SOURCE`.
    """
    config = config or SyntheticConfig()
    rng = np.random.default_rng(seed)
    queries = _simulate_queries(config, rng)
    if config.length_signal > 0:  # its own stream: the rest of the log stays the same
        noise = np.random.default_rng([seed, 1]).normal(0.0, config.length_noise,
                                                        config.n_queries)
        queries["length"] = np.round(np.exp(
            np.log(80.0) + config.length_signal * (queries["difficulty"] - 0.5) + noise))
    blocks = [_simulate_block(config, rng, queries, arm, round_)
              for arm in config.arms for round_ in range(config.refine_rounds + 1)]
    attempts = {name: np.concatenate([b[name] for b in blocks]) for name in blocks[0]}
    order = np.argsort(attempts["query"], kind="stable")
    table = _to_arrow(config, queries, {name: v[order] for name, v in attempts.items()})
    log, _ = AttemptLog.from_arrow(table, source=SIMULATED_SOURCE, simulated=True)
    return log


def _simulate_queries(config: SyntheticConfig, rng: np.random.Generator) -> dict[str, np.ndarray]:
    n = config.n_queries
    weights = np.array([c.weight for c in config.mixture], dtype=np.float64)
    component = rng.choice(len(config.mixture), size=n, p=weights / weights.sum())
    alpha = np.array([c.alpha for c in config.mixture])[component]
    beta = np.array([c.beta for c in config.mixture])[component]
    difficulty = rng.beta(alpha, beta)
    distractor_weights = rng.dirichlet(
        np.full(config.n_distractors, config.distractor_concentration), size=n
    )
    # Answers are integers written as text: the correct one and distinct wrong ones near it.
    correct_answer = rng.integers(100, 1000, size=n)
    span = 4 * config.n_distractors
    candidates = np.concatenate([np.arange(-span, 0), np.arange(1, span + 1)])
    chosen = rng.random((n, len(candidates))).argsort(axis=1)[:, : config.n_distractors]
    wrong_answers = correct_answer[:, None] + candidates[chosen]
    return {
        "component": component,
        "difficulty": difficulty,
        "distractor_cdf": np.cumsum(distractor_weights, axis=1),
        "correct_answer": correct_answer,
        "wrong_answers": wrong_answers,
        "task": rng.integers(0, len(config.tasks), size=n),
    }


def _simulate_block(
    config: SyntheticConfig,
    rng: np.random.Generator,
    queries: dict[str, np.ndarray],
    arm: SyntheticArm,
    round_: int,
) -> dict[str, np.ndarray]:
    """Attempts of one arm at one round (0 = samples, >= 1 = refinements) for all queries."""
    per_query = arm.pool_size if round_ == 0 else config.refine_per_round
    query = np.repeat(np.arange(config.n_queries), per_query)
    skill = arm.skill + config.refine_gain * round_
    hit = rng.random(len(query)) < p_correct(skill, queries["difficulty"][query],
                                             config.sharpness)
    pick = (rng.random(len(query))[:, None] > queries["distractor_cdf"][query]).sum(axis=1)
    pick = np.minimum(pick, config.n_distractors - 1)
    answer = np.where(hit, queries["correct_answer"][query],
                      queries["wrong_answers"][query, pick])
    missing = ~hit & (rng.random(len(query)) < config.no_answer_rate)
    sigma = config.cost_noise
    factor = 1.0 if round_ == 0 else config.refine_cost_factor
    cost = arm.cost_per_attempt * factor * rng.lognormal(-sigma**2 / 2, sigma, len(query))
    logit = rng.normal(np.where(hit, 0.5, -0.5) * config.score_separation, 1.0)
    return {
        "query": query,
        "arm": np.full(len(query), [a.name for a in config.arms].index(arm.name), np.int32),
        "kind": np.full(len(query), KIND_SAMPLE if round_ == 0 else KIND_REFINE, np.int8),
        "round": np.full(len(query), round_, np.int32),
        "answer": np.where(missing, -1, answer),
        "correct": hit.astype(np.float32),
        "cost": cost,
        "score": (1.0 / (1.0 + np.exp(-logit))).astype(np.float32) if arm.scored
        else np.full(len(query), np.nan, np.float32),
    }


def _to_arrow(
    config: SyntheticConfig, queries: dict[str, np.ndarray], attempts: dict[str, np.ndarray]
) -> pa.Table:
    query = attempts["query"]
    n_queries = config.n_queries
    ids = np.array([f"sim-{i:06d}" for i in range(n_queries)], dtype=object)
    answer = attempts["answer"]
    vocabulary, codes = np.unique(answer[answer >= 0], return_inverse=True)
    answer_codes = np.full(len(answer), -1, dtype=np.int32)
    answer_codes[answer >= 0] = codes
    difficulty = queries["difficulty"]
    text = np.array([f"Simulated query {i} (difficulty {d:.2f})"
                     for i, d in enumerate(difficulty)], dtype=object)
    names = [c.name for c in config.mixture]
    columns = {
        "query_id": _dictionary(query, ids),
        "arm": _dictionary(attempts["arm"], np.array([a.name for a in config.arms], object)),
        "kind": _dictionary(attempts["kind"], np.array(KINDS, dtype=object)),
        "round": pa.array(attempts["round"], pa.int32()),
        "answer": _dictionary(answer_codes, vocabulary.astype(str).astype(object)),
        "correct": pa.array(attempts["correct"], pa.float32()),
        "cost": pa.array(attempts["cost"], pa.float64()),
        "score": pa.array(attempts["score"] if config.with_scores
                          else np.full(len(query), np.nan, np.float32), pa.float32()),
        QUERY_PREFIX + "text": _dictionary(query, text),
        QUERY_PREFIX + "task": _dictionary(
            queries["task"][query], np.array(config.tasks, dtype=object)),
        QUERY_PREFIX + "difficulty": pa.array(difficulty[query], pa.float64()),
        QUERY_PREFIX + "component": _dictionary(
            queries["component"][query], np.array(names, dtype=object)),
    }
    if "length" in queries:
        columns[QUERY_PREFIX + "length"] = pa.array(queries["length"][query], pa.float64())
    return pa.table(columns)


def _dictionary(codes: np.ndarray, vocabulary: np.ndarray) -> pa.Array:
    """Strings from codes (-1 = null) via a dictionary: no per-row Python strings."""
    indices = pa.array(codes.astype(np.int32), pa.int32(), mask=codes < 0)
    return pa.DictionaryArray.from_arrays(
        indices, pa.array(vocabulary.tolist(), pa.string())).cast(pa.string())
