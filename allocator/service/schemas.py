"""The HTTP service's request and response bodies (pydantic models), with their limits.

Requests are strict: unknown fields are refused (``extra="forbid"``), types are not
coerced (``"0.1"`` is not a number), numbers must be finite, and every list, mapping and
string has a cap (the constants below) so that one request cannot make the server work
without bound. Checks that need the served bundle (arm names, lambda range, candidate
indices) happen in :mod:`allocator.service.operations`.

The field ``lambda`` is spelled ``lambda`` on the wire (``lambda_`` in Python).
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainValidator, StringConstraints
from pydantic_core import PydanticCustomError

__all__ = [
    "EVENT_TAGS",
    "MAX_ANSWER_CHARS",
    "MAX_ARMS",
    "MAX_BATCH",
    "MAX_HISTORY",
    "MAX_METADATA_KEYS",
    "MAX_NAME_CHARS",
    "MAX_QUERY_CHARS",
    "MAX_SAMPLES_LIMIT",
    "ActionOut",
    "AllocateRequest",
    "AllocateResponse",
    "AttemptEvent",
    "BudgetRequest",
    "BudgetResponse",
    "DecideRequest",
    "DecideResponse",
    "ErrorBody",
    "FieldProblem",
    "HealthResponse",
    "ModelInfo",
    "ModelRef",
    "ReloadRequest",
    "ReloadResponse",
    "ReloadStatus",
    "VerifyEvent",
]

#: Most events in one decide request's history.
MAX_HISTORY = 1000
#: Longest query text (characters).
MAX_QUERY_CHARS = 16_384
#: Longest answer string (characters).
MAX_ANSWER_CHARS = 4_096
#: Longest arm name, metadata key or metadata string value (characters).
MAX_NAME_CHARS = 256
#: Most arms named in one list or mapping.
MAX_ARMS = 64
#: Most metadata entries per query.
MAX_METADATA_KEYS = 64
#: Most queries in one allocate request.
MAX_BATCH = 1000
#: Largest ``max_samples`` (and per-arm limit) accepted.
MAX_SAMPLES_LIMIT = 10_000
#: The history event kinds (the discriminator ``kind``).
EVENT_TAGS = ("sample", "refine", "verify")


class _Request(BaseModel):
    """Strict request bodies: no unknown fields, no coercion, finite numbers."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class _Response(BaseModel):
    model_config = ConfigDict(populate_by_name=True)


# ------------------------------------------------------------------ field types
def _answer(value: Any) -> str | int | None:
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    if isinstance(value, str):
        if len(value) > MAX_ANSWER_CHARS:
            raise PydanticCustomError(
                "answer_too_long", "Answer should have at most {max} characters",
                {"max": MAX_ANSWER_CHARS})
        return value
    raise PydanticCustomError("answer_type", "Input should be a string, an integer or null")


def _metadata_value(value: Any) -> str | int | float | bool | None:
    if value is None or isinstance(value, bool | int) or (
            isinstance(value, float) and math.isfinite(value)):  # no NaN/Infinity either
        return value
    if isinstance(value, str) and len(value) <= MAX_NAME_CHARS:
        return value
    raise PydanticCustomError(
        "metadata_type", "Input should be a string of at most {max} characters, a finite "
        "number, a boolean or null", {"max": MAX_NAME_CHARS})


#: An extracted answer: a string, an integer, or null (no answer; it does not vote).
Answer = Annotated[str | int | None,
                   PlainValidator(_answer, json_schema_input_type=str | int | None)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=MAX_NAME_CHARS)]
Text = Annotated[str, StringConstraints(max_length=MAX_QUERY_CHARS)]
Cost = Annotated[float, Field(ge=0, description="finite, >= 0, in the log's units")]
Probability = Annotated[float, Field(ge=0, le=1)]
Prior = Annotated[dict[Name, Probability], Field(
    max_length=MAX_ARMS, description="per-attempt accuracy of every arm: {arm: p}")]
Metadata = Annotated[
    dict[Name, Annotated[str | int | float | bool | None, PlainValidator(
        _metadata_value, json_schema_input_type=str | int | float | bool | None)]],
    Field(max_length=MAX_METADATA_KEYS, description="the query's metadata columns for the "
                                                    "bundle's difficulty predictor")]
Lambda = Annotated[float | None, Field(
    alias="lambda", ge=0, description="the price of one cost unit; default: the bundle's "
                                      "calibrated (or middle) lambda")]
CandidateIndex = Annotated[int, Field(ge=0, strict=False)]  # JSON object keys are strings


# ------------------------------------------------------------------ decide
class AttemptEvent(_Request):
    """A sample of an arm, or a refinement, that the executor performed."""

    kind: Literal["sample", "refine"] = Field(description="sample: a new independent "
                                              "attempt of an arm; refine: an attempt "
                                              "conditioned on the earlier ones")
    arm: Name | None = Field(None, description="the arm sampled; required for a sample "
                                               "when the bundle has several arms")
    answer: Answer = Field(None, description="the attempt's extracted answer (text or "
                                             "integer); null: no answer (it does not vote)")
    cost: Cost = Field(description="what the attempt cost, finite, >= 0, in the log's units")
    score: float | None = Field(None, description="a verifier score already held for this "
                                                  "attempt; hidden until a verify event "
                                                  "without scores reveals it")


class VerifyEvent(_Request):
    """A verifier call on drawn, unverified candidates (numbered 0, 1, ... in the order
    the attempts appear in the history)."""

    kind: Literal["verify"] = Field(description="a verifier call")
    scores: dict[CandidateIndex, float | None] | None = Field(
        None, max_length=MAX_HISTORY,
        description="candidate index -> score (null: verified without a usable score); "
                    "omitted: reveal the scores reported with the attempts")
    cost: Cost = Field(description="what the verifier call cost, in the log's units")
    rescore: bool = Field(False, description="also re-score candidates verified before "
                                             "(a tournament re-judging its champion)")


HistoryEvent = Annotated[AttemptEvent | VerifyEvent, Field(discriminator="kind")]


class DecideRequest(_Request):
    """What happened so far on one query; the answer is the policy's next action."""

    query: Text | None = Field(None, description="the query text (the bundle's difficulty "
                                                 "predictor reads it when no prior is given)")
    metadata: Metadata | None = Field(None, description="the query's metadata columns for "
                                      "the bundle's difficulty predictor")
    prior: Prior | None = Field(None, description="per-attempt accuracy of every arm, "
                                "{arm: p}; default: predicted from query and metadata, else "
                                "the bundle's uninformed prior")
    lambda_: Lambda = None
    target_cost: Cost | None = Field(None, description="instead of lambda: the mean cost per "
                                                       "query to aim at (calibrated bundles)")
    arms: list[Name] | None = Field(None, min_length=1, max_length=MAX_ARMS,
                                    description="the arms the executor serves (default all)")
    supports_refine: bool = Field(False, description="whether the executor can refine "
                                  "(else REFINE is never asked)")
    supports_verify: bool = Field(False, description="whether the executor can verify "
                                  "(else VERIFY is never asked)")
    max_samples: int | None = Field(
        None, ge=0, le=MAX_SAMPLES_LIMIT,
        description="most attempts in all; given, it replaces the default caps per arm")
    max_samples_per_arm: Annotated[
        dict[Name, Annotated[int, Field(ge=0, le=MAX_SAMPLES_LIMIT)]],
        Field(max_length=MAX_ARMS)] | None = Field(
            None, description="most samples of the arms named (default: the largest pool "
                              "each arm had in training, see /v1/health)")
    history: list[HistoryEvent] = Field(
        default_factory=list, max_length=MAX_HISTORY,
        description="every attempt and verifier call on this query so far, in order "
                    "(the service keeps no state: send the whole history each time)")


class ActionOut(_Response):
    """The next action: ``stop``, ``sample`` (of ``arm``, ``width`` attempts at once),
    ``refine`` or ``verify``."""

    kind: Literal["stop", "sample", "refine", "verify"]
    arm: str | None
    index: int = Field(description="the action's index in the bundle's layout")
    width: int = Field(1, ge=1, description="for a sample, how many attempts to launch at "
                       "once as one wave (greater than 1 only for bundles with parallel "
                       "widths); 1 for the other kinds. Send all of a wave's attempts in "
                       "the history before asking again")


class ModelRef(_Response):
    """Which bundle answered."""

    bundle_id: str = Field(description="the first 16 hex digits of the sha256 of the "
                                       "bundle's manifest.json")
    version: str | None = Field(description="the MLflow model version, if served from the "
                                            "registry")


class DecideResponse(_Response):
    action: ActionOut
    final_answer: str | int | None = Field(description="the answer to return (set when the "
                                                       "action is stop)")
    lambda_: float = Field(alias="lambda", description="the lambda the policy used")
    prior: dict[str, float] = Field(description="the prior the policy used (send it back "
                                                "to skip the prediction next time)")
    drawn: int = Field(description="attempts in the history (samples and refinements)")
    cost_spent: float
    model: ModelRef


# ------------------------------------------------------------------ budget, allocate
class BudgetRequest(_Request):
    """One query's up-front number of samples (``BudgetOracle.budget``)."""

    query: Text | None = Field(None, description="the query text (for the predicted prior)")
    metadata: Metadata | None = Field(None, description="the query's metadata columns for "
                                      "the bundle's difficulty predictor")
    prior: Prior | None = Field(None, description="per-attempt accuracy of every arm, "
                                "{arm: p}; default: predicted, else the uninformed prior")
    lambda_: Lambda = None
    max_samples: int | None = Field(
        None, ge=1, le=MAX_SAMPLES_LIMIT,
        description="the largest n considered for every arm (default: each arm's sample "
                    "cap, as sessions have; GET /v1/health lists them)")
    arms: list[Name] | None = Field(None, min_length=1, max_length=MAX_ARMS,
                                    description="the arms the executor serves (default all)")


class BudgetResponse(_Response):
    budget: dict[str, int] = Field(description="{arm: n} for every arm, one arm nonzero")
    arm: str
    samples: int
    lambda_: float = Field(alias="lambda")
    model: ModelRef


class AllocateRequest(_Request):
    """A batch's samples per query under a total budget (``BudgetOracle.allocate``).

    Give the query texts (``queries``) or their number (``n_queries``), not both.
    """

    queries: list[Text] | None = Field(None, min_length=1, max_length=MAX_BATCH,
                                       description="the query texts (for their priors)")
    n_queries: int | None = Field(None, ge=1, le=MAX_BATCH,
                                  description="instead of queries: their number (each "
                                              "gets the uninformed prior)")
    total_budget: Cost = Field(description="the batch's total cost, in the log's units")
    priors: list[Prior] | None = Field(None, min_length=1, max_length=MAX_BATCH,
                                       description="per query, {arm: p} (default: "
                                                   "predicted from the texts)")
    max_samples: int | None = Field(
        None, ge=1, le=MAX_SAMPLES_LIMIT,
        description="most samples per query (default: the arm's sample cap, as sessions "
                    "have; GET /v1/health lists them)")
    arm: Name | None = Field(None, description="the arm every query samples (default: the "
                                              "arm predicted to answer the most queries)")
    metadata: list[Metadata] | None = Field(None, max_length=MAX_BATCH,
                                            description="per query, its metadata columns")


class AllocateResponse(_Response):
    allocations: list[dict[str, int]] = Field(description="per query, {arm: n}")
    arm: str | None = Field(description="the arm sampled (None when nothing is spent)")
    samples: int
    cost: float = Field(description="samples times the arm's mean cost: at most "
                                    "total_budget")
    model: ModelRef


# ------------------------------------------------------------------ health, reload
class LambdaDefault(_Response):
    value: float = Field(description="the lambda a request without lambda or target_cost gets")
    source: str = Field(description="where it comes from (calibration, or the middle of the "
                                    "range of an uncalibrated bundle)")
    range: tuple[float, float] = Field(description="the lambda range the policy trained on")


class ArmDefaults(_Response):
    values: dict[str, float] = Field(description="per arm")
    source: str = Field(description="where the values come from")


class CapDefaults(_Response):
    values: dict[str, int] = Field(description="most samples per arm a request without "
                                               "max_samples or max_samples_per_arm gets")
    source: str = Field(description="where the caps come from")


class OracleDefaults(_Response):
    """Every default the oracle applies to a request that leaves it out, and its source
    (what ``allocator inspect BUNDLE`` prints)."""

    lambda_: LambdaDefault = Field(alias="lambda")
    prior: ArmDefaults = Field(description="the prior of a query without text or metadata")
    max_samples_per_arm: CapDefaults
    target_cost_range: tuple[float, float] | None = Field(
        description="the mean costs per query target_cost may ask for (None: uncalibrated)")
    arm_mean_cost: dict[str, float] = Field(description="mean cost of one sample per arm, "
                                                        "in the log's units")


class ModelInfo(_Response):
    """The served bundle."""

    bundle_id: str
    version: str | None
    name: str | None = Field(description="the registered MLflow model, if any")
    source: str = Field(description="what the server was asked to serve")
    run_id: str | None
    arms: list[str]
    widths: list[int] = Field(description="the parallel widths of the policy's action "
                              "layout: a sample action's width is one of them ([1]: one "
                              "attempt per sample)")
    lambda_range: tuple[float, float]
    default_lambda: float
    cost_unit: float
    calibrated: bool
    defaults: OracleDefaults = Field(description="every default the oracle applies, and "
                                                 "where it comes from")
    decision_backend: Literal["compiled", "numpy", "baseline"] = Field(
        description="what runs each decision: the compiled kernel, or numpy where the "
                    "package was installed without a C compiler (same decisions, slower); "
                    "'baseline' for a baseline bundle (a registered baseline policy)")
    loaded_at: str


class ReloadStatus(_Response):
    interval: float | None = Field(description="seconds between polls of the source "
                                               "(None: reload on request only)")
    reloads: int = Field(description="successful swaps since start")
    last_error: str | None
    last_error_at: str | None


class HealthResponse(_Response):
    status: Literal["ok"]
    model: ModelInfo | None = Field(None, description="the served bundle: only with the "
                                    "token (or on a server started without one)")
    reload: ReloadStatus | None = Field(None, description="the reloads: only with the "
                                        "token (or on a server started without one)")


class ReloadRequest(_Request):
    force: bool = Field(False, description="load again even if the source did not change")


class ReloadResponse(_Response):
    reloaded: bool
    previous: ModelInfo
    current: ModelInfo


# ------------------------------------------------------------------ errors
class FieldProblem(_Response):
    field: str = Field(description="dotted path of the field, e.g. history.3.arm")
    problem: str
    fix: str
    given: str | None = None


class ErrorBody(_Response):
    """Every 4xx/5xx answer of the service."""

    error: str = Field(description="a stable code: invalid_request (422: an invalid "
                                   "value), unauthorized, payload_too_large, "
                                   "reload_failed, ...")
    message: str
    fields: list[FieldProblem] = Field(default_factory=list)
    serving: ModelInfo | None = None
