"""The replay server itself: replay semantics, errors in OpenAI's shape, fault schedules."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import httpx
import pytest
from replay_pools import DATE_MODEL, TINY_MODEL, TINY_POOL, user
from replay_server import (
    MAX_SUFFIX,
    Fault,
    Latency,
    ReplayServer,
    mot_sources,
    start_replay_server,
)


def chat(server: ReplayServer, prompt: str, n: int = 1, headers: dict[str, str] | None = None,
         **fields: Any) -> httpx.Response:
    """One raw chat request (no client logic in between)."""
    body = {"model": TINY_MODEL, "messages": user(prompt), "n": n, **fields}
    return httpx.post(f"{server.url}/chat/completions", json=body, headers=headers, timeout=10)


def texts_of(reply: dict[str, Any]) -> list[str]:
    return [choice["message"]["content"] for choice in reply["choices"]]


def texts(response: httpx.Response) -> list[str]:
    return texts_of(response.json())


def test_generations_are_served_in_logged_order_until_the_pool_runs_out(
        tiny_server: ReplayServer) -> None:
    question, generated = TINY_POOL[1]["question"], TINY_POOL[1]["generated"]
    assert texts(chat(tiny_server, question, n=2)) == generated
    exhausted = chat(tiny_server, question)
    assert exhausted.status_code == 400
    error = exhausted.json()["error"]
    assert (error["code"], error["type"]) == ("replay_exhausted", "invalid_request_error")
    assert "replay_wrap" in error["message"]
    assert texts(chat(tiny_server, question, n=3, replay_wrap=True)) == [
        generated[0], generated[1], generated[0]]
    tiny_server.reset()
    assert texts(chat(tiny_server, question)) == generated[:1]
    assert [r["generation_indices"] for r in tiny_server.requests_seen()] == [[0]]


def test_a_server_started_with_wrap_cycles() -> None:
    with start_replay_server({TINY_MODEL: TINY_POOL}, wrap=True) as server:
        question, generated = TINY_POOL[1]["question"], TINY_POOL[1]["generated"]
        assert texts(chat(server, question, n=5)) == (generated * 3)[:5]


def test_the_question_is_found_at_the_end_of_a_few_shot_prompt(
        tiny_server: ReplayServer) -> None:
    first, second = TINY_POOL[0]["question"], TINY_POOL[1]["question"]
    few_shot = f"Q: {first}\nA: 5\n\nQ: {second}\nA:"
    assert texts(chat(tiny_server, few_shot)) == TINY_POOL[1]["generated"][:1]
    too_far = f"Q: {second}\n" + "x" * (MAX_SUFFIX + 1)
    assert chat(tiny_server, too_far).json()["error"]["code"] == "question_not_found"


@pytest.mark.parametrize(("model", "prompt", "code"), [
    ("no-such-model", TINY_POOL[0]["question"], "model_not_found"),
    (TINY_MODEL, "What is the capital of France?", "question_not_found"),
])
def test_unknown_models_and_questions_get_404_in_openai_shape(
        tiny_server: ReplayServer, model: str, prompt: str, code: str) -> None:
    response = chat(tiny_server, prompt, model=model)
    assert response.status_code == 404
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}
    assert response.json()["error"]["code"] == code


def test_usage_is_estimated_from_characters_and_says_so(tiny_server: ReplayServer) -> None:
    prompt = TINY_POOL[0]["question"]
    reply = chat(tiny_server, prompt, n=2).json()
    generated = TINY_POOL[0]["generated"][:2]
    assert reply["usage"]["estimated"] is True
    assert reply["usage"]["prompt_tokens"] == math.ceil(len(prompt) / 4)
    assert reply["usage"]["completion_tokens"] == sum(math.ceil(len(g) / 4) for g in generated)
    assert reply["replay"] == {"source": "source-0.json", "question_index": 0,
                               "generation_indices": [0, 1]}
    models = httpx.get(f"{tiny_server.url}/models", timeout=10).json()
    assert [model["id"] for model in models["data"]] == [TINY_MODEL]


def test_an_api_key_is_required_when_configured() -> None:
    with start_replay_server({TINY_MODEL: TINY_POOL}, api_key="sk-test") as server:
        prompt = TINY_POOL[0]["question"]
        assert chat(server, prompt).status_code == 401
        assert chat(server, prompt, headers={"Authorization": "Bearer sk-test"}).is_success


def test_a_per_request_fault_does_not_consume_the_schedule(tiny_server: ReplayServer) -> None:
    tiny_server.set_faults([Fault.server_error(times=1), Fault.http_status(503, times=1)])
    prompt = TINY_POOL[0]["question"]
    header = {"X-Replay-Fault": Fault.rate_limit(retry_after=1.5).header()}
    limited = chat(tiny_server, prompt, headers=header)
    assert (limited.status_code, limited.headers["retry-after"]) == (429, "1.5")
    statuses = [chat(tiny_server, prompt).status_code for _ in range(3)]
    assert statuses == [500, 503, 200]
    assert chat(tiny_server, prompt, replay_fault="status;status=418").status_code == 418
    assert [r["fault"] for r in tiny_server.requests_seen()] == [
        "429", "500", "status", None, "status"]


def test_faults_that_break_the_reply(tiny_server: ReplayServer) -> None:
    tiny_server.set_faults([Fault.malformed(), Fault.no_choices(), Fault.drop()])
    prompt = TINY_POOL[0]["question"]
    malformed = chat(tiny_server, prompt)
    assert malformed.status_code == 200
    with pytest.raises(ValueError, match=r"Expecting|Unterminated"):
        malformed.json()
    assert "choices" not in chat(tiny_server, prompt).json()
    with pytest.raises(httpx.RemoteProtocolError):
        chat(tiny_server, prompt)
    assert chat(tiny_server, prompt).is_success


def test_fault_header_round_trip_and_validation() -> None:
    fault = Fault.rate_limit(retry_after=0.25, times=None)
    parsed = Fault.parse(fault.header())
    assert (parsed.kind, parsed.retry_after, parsed.times) == ("429", 0.25, None)
    assert Fault.parse("slow;delay=2").delay == 2.0
    with pytest.raises(ValueError, match="kind must be one of"):
        Fault("teapot")


@pytest.mark.public_logs
def test_mot_logs_are_served_by_model_name(public_logs: Path,
                                           date_log: list[dict[str, Any]]) -> None:
    sources = mot_sources(public_logs, DATE_MODEL, "GPT4_result/gsm_cot1")
    with start_replay_server(sources) as server:  # 369 x 40 + 1319 x 3 generations
        record = date_log[-1]
        body = {"model": DATE_MODEL, "messages": user(record["question"]), "n": 2}
        reply = httpx.post(f"{server.url}/chat/completions", json=body, timeout=10).json()
        assert reply["replay"]["source"] == "date_cot1_40.json.gz"
        assert texts_of(reply) == record["generated"][:2]
    with pytest.raises(FileNotFoundError, match="model prefixes"):
        mot_sources(public_logs, "gpt-5/date_cot1")


# ------------------------------------------------------------------ simulated timing
def test_timing_is_off_by_default(tiny_server: ReplayServer) -> None:
    chat(tiny_server, TINY_POOL[0]["question"])
    assert "simulated_delay" not in tiny_server.requests_seen()[0]


def test_a_completion_waits_base_plus_per_token_times_the_scale() -> None:
    latency = Latency(base=2.0, per_token=0.5, time_scale=0.02)
    with start_replay_server({TINY_MODEL: TINY_POOL}, latency=latency) as server:
        short = chat(server, TINY_POOL[1]["question"], n=1, replay_wrap=True).json()
        long = chat(server, TINY_POOL[0]["question"], n=3).json()
        seen = server.requests_seen()
    for reply, record in zip((short, long), seen, strict=True):
        tokens = reply["usage"]["completion_tokens"]
        assert record["simulated_delay"] == pytest.approx((2.0 + 0.5 * tokens) * 0.02)
        # the reply came no sooner than the simulated generation time
        assert record["finished"] - record["started"] >= record["simulated_delay"]
    assert seen[1]["simulated_delay"] > seen[0]["simulated_delay"]  # more tokens, longer


def test_concurrent_completions_overlap() -> None:
    import concurrent.futures

    latency = Latency(base=0.3, time_scale=1.0)
    with start_replay_server({TINY_MODEL: TINY_POOL}, latency=latency, wrap=True) as server:
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            replies = list(pool.map(lambda _: chat(server, TINY_POOL[0]["question"]),
                                    range(4)))
        seen, most = server.requests_seen(), server.max_in_flight()
    assert all(reply.status_code == 200 for reply in replies)
    # every request started before the first one finished: they were served at once
    assert max(r["started"] for r in seen) < min(r["finished"] for r in seen)
    assert most == 4


def test_bad_latency_settings_are_refused() -> None:
    for field in ("base", "per_token", "time_scale"):
        for bad in (-1.0, math.inf, "1", True):
            with pytest.raises(ValueError, match=field):
                Latency(**{field: bad})
