"""Helpers of the service tests: hand-made bundles, random histories replayed in process,
and the check that an answer is a valid action."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from allocator.actions import n_actions
from allocator.bundle import write_bundle
from allocator.featurizer import n_features
from allocator.oracle import AttemptResult, BudgetOracle, Session

#: The bearer token of the test servers.
TOKEN = "test-token-7f3a"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ANSWERS = ("7", "12", "42", None, 42)


def write_scripted(path: Path, arms: tuple[str, ...] = ("a", "b"), *,
                   preference: list[float] | None = None, **extra: Any) -> Path:
    """A real bundle whose one dense layer always prefers the same allowed action.

    The default preference is the action index (VERIFY > REFINE > the last arm > ... >
    STOP), so without refine and verify it samples the last arm. ``widths=[1, 2]`` (in
    ``extra``, the manifest's field) widens the layout: then the default preference puts
    SAMPLE(last arm)x2 first of all.
    """
    widths = tuple(extra.get("widths", (1,)))
    width, actions = n_features(len(arms)), n_actions(len(arms), widths)
    bias = np.arange(actions, dtype=np.float32) if preference is None else np.asarray(
        preference, dtype=np.float32)
    weights = {"action_net.weight": np.zeros((actions, width), np.float32),
               "action_net.bias": bias}
    network = {"kind": "mlp", "layers": [{"weight": "action_net.weight",
                                          "bias": "action_net.bias",
                                          "shape": [actions, width], "activation": None}]}
    manifest = {"arms": list(arms), "lambda_range": [0.0, 0.4], "cost_unit": 2.0,
                "network": network, "normalization": None, "run_id": None,
                "log_fingerprint": "scripted", **extra}
    return write_bundle(path, weights=weights, manifest=manifest)


def check_action(body: dict[str, Any], arms: list[str] | tuple[str, ...]) -> str | None:
    """Why ``body`` is not a valid decide answer over ``arms``; None if it is."""
    action = body.get("action") or {}
    kind, arm, index = action.get("kind"), action.get("arm"), action.get("index")
    layout = ["stop", *(f"sample:{a}" for a in arms), "refine", "verify"]
    name = f"{kind}:{arm}" if kind == "sample" else kind
    if not isinstance(index, int) or not 0 <= index < len(layout) or layout[index] != name:
        return f"invalid action {action!r} for arms {list(arms)}"
    if "final_answer" not in body or "model" not in body:
        return f"missing final_answer or model in {body!r}"
    return None


# ------------------------------------------------------------------ random histories
def random_request(rng: np.random.Generator, oracle: BudgetOracle,
                   texts: list[str]) -> dict[str, Any]:
    """The fixed part of a random decide request (everything but the history)."""
    arms = list(oracle.arms)
    low, high = oracle.lambda_range
    request: dict[str, Any] = {}
    if rng.random() < 0.8:
        request["lambda"] = float(rng.uniform(low, high))
    source = rng.integers(3)
    if source == 0:
        request["prior"] = {arm: float(rng.uniform(0.02, 0.98)) for arm in arms}
    elif source == 1 and texts:
        request["query"] = texts[int(rng.integers(len(texts)))]
    if rng.random() < 0.25:
        request["arms"] = [arms[int(rng.integers(len(arms)))]]
    request["supports_refine"] = bool(rng.random() < 0.3)
    request["supports_verify"] = bool(rng.random() < 0.3)
    if rng.random() < 0.3:
        request["max_samples"] = int(rng.integers(0, 6))
    if rng.random() < 0.2:
        request["max_samples_per_arm"] = {arms[int(rng.integers(len(arms)))]:
                                          int(rng.integers(0, 3))}
    if "query" in request and rng.random() < 0.5:
        request["metadata"] = {"task": str(rng.choice(["arithmetic", "geometry"]))}
    return request


def in_process_session(oracle: BudgetOracle, request: dict[str, Any]) -> Session:
    """The session an in-process executor opens for the same request."""
    prior = request.get("prior")
    return oracle.session(
        request.get("query"), lambda_=request.get("lambda"),
        target_cost=request.get("target_cost"),
        prior=None if prior is None else [prior[arm] for arm in oracle.arms],
        arms=request.get("arms"), supports_refine=request.get("supports_refine", False),
        supports_verify=request.get("supports_verify", False),
        max_samples=request.get("max_samples"),
        max_samples_per_arm=request.get("max_samples_per_arm"),
        metadata=request.get("metadata"))


def next_event(rng: np.random.Generator, session: Session, asked: Any,
               arms: tuple[str, ...]) -> dict[str, Any]:
    """An event to report: mostly what was asked, sometimes something else (allowed)."""
    kind = asked.kind
    if rng.random() < 0.3:
        unverified = session.state.unverified()
        kind = str(rng.choice(["sample", "refine"] + (["verify"] * bool(unverified))))
    if kind == "verify":
        unverified = session.state.unverified()
        if rng.random() < 0.4:
            return {"kind": "verify", "cost": float(rng.uniform(0, 3))}  # reveal held scores
        chosen = [i for i in unverified if rng.random() < 0.7]
        return {"kind": "verify", "cost": float(rng.uniform(0, 3)),
                "scores": {str(i): None if rng.random() < 0.1 else float(rng.random())
                           for i in chosen}}
    event: dict[str, Any] = {"kind": kind, "cost": float(rng.uniform(0.5, 9)),
                             "answer": ANSWERS[int(rng.integers(len(ANSWERS)))]}
    if kind == "sample":
        event["arm"] = asked.arm if asked.kind == "sample" else str(rng.choice(arms))
    if rng.random() < 0.5:
        event["score"] = float(rng.random())
    return event


def report(session: Session, event: dict[str, Any]) -> None:
    """Report an event to an in-process session, as an executor does."""
    if event["kind"] == "verify":
        scores = event.get("scores")
        session.verify(None if scores is None else {
            int(i): float("nan") if s is None else s for i, s in scores.items()},
            cost=event["cost"])
    else:
        session.observe(AttemptResult(event["kind"], event.get("arm"), event.get("answer"),
                                      event["cost"], event.get("score")))


def action_of(session_action: Any) -> dict[str, Any]:
    return {"kind": session_action.kind, "arm": session_action.arm,
            "index": session_action.index, "width": session_action.width}
