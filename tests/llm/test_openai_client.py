"""OpenAIClient against a real OpenAI-compatible server on loopback (the replay server).

No HTTP mocks: every request goes over a socket to a subprocess that replays logged
generations and injects the faults real servers show.
"""

from __future__ import annotations

import asyncio
import gc
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from replay_pools import DATE_MODEL, TINY_MODEL, TINY_POOL, user
from replay_server import Fault, ReplayServer, start_replay_server

import allocator.llm
from allocator.errors import LLMError, ParameterError
from allocator.llm import Completion, LLMClient, OpenAIClient
from allocator.llm.openai_client import _retry_after, parse_chat_completion

QUESTION = TINY_POOL[0]["question"]


def run(coroutine: Any) -> Any:
    """Run one coroutine on a fresh event loop."""
    return asyncio.run(coroutine)


def client_for(server: ReplayServer, **options: Any) -> OpenAIClient:
    """A client of ``server`` with fast retries (tests override what they test)."""
    defaults: dict[str, Any] = {"base_url": server.url, "backoff": 0.01, "max_backoff": 0.5,
                                "timeout": 10.0, "max_retries": 3}
    return OpenAIClient(options.pop("model", TINY_MODEL), **(defaults | options))


async def complete_once(server: ReplayServer, prompt: str = QUESTION, n: int = 1,
                        **options: Any) -> list[Completion]:
    async with client_for(server, **options) as client:
        return await client.complete(user(prompt), n=n)


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Poll ``condition`` until it holds or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


# --- the public surface ------------------------------------------------------------------


def test_llm_package_exports_are_pinned_and_the_client_is_lazy() -> None:
    assert sorted(allocator.llm.__all__) == sorted(
        ["Completion", "LLMClient", "LLMError", "Message", "OpenAIClient", "as_messages"])
    assert allocator.llm.LLMError is LLMError
    assert isinstance(OpenAIClient("m", base_url="http://127.0.0.1:9/v1"), LLMClient)
    code = ("import sys, allocator, allocator.llm, allocator.answers; "
            "assert 'httpx' not in sys.modules, 'httpx imported eagerly'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_configuration_comes_from_arguments_then_environment(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ALLOCATOR_MODEL", raising=False)
    with pytest.raises(ParameterError, match="ALLOCATOR_MODEL"):
        OpenAIClient()
    monkeypatch.setenv("ALLOCATOR_MODEL", "env-model")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:1/v1/")
    client = OpenAIClient()
    assert (client.model, client.url) == ("env-model", "http://127.0.0.1:1/v1/chat/completions")
    assert OpenAIClient("arg-model", base_url="http://h/v1").model == "arg-model"
    assert "key" not in repr(OpenAIClient(api_key="sk-secret")).lower()


@pytest.mark.parametrize(("option", "value"), [
    ("max_retries", -1), ("max_concurrency", 0), ("timeout", 0), ("backoff", -0.1),
    ("max_retries", 1.5), ("base_url", "localhost:8000/v1"),
])
def test_bad_options_raise_parameter_error(option: str, value: Any) -> None:
    with pytest.raises(ParameterError, match=option):
        OpenAIClient("m", **{option: value})


@pytest.mark.parametrize("n", [0, -1, 1.0, True])
def test_bad_n_raises_before_any_request(n: Any) -> None:
    client = OpenAIClient("m", base_url="http://127.0.0.1:9/v1")
    with pytest.raises(ParameterError, match="'n'"):
        run(client.complete(user("hi"), n=n))


# --- replaying real generations ----------------------------------------------------------


@pytest.mark.public_logs
def test_n_completions_are_the_logged_generations_in_order(
        date_server: ReplayServer, date_log: list[dict[str, Any]]) -> None:
    record = date_log[3]
    few_shot = ("Q: Today is Christmas Eve of 1937. What is the date tomorrow in MM/DD/YYYY?\n"
                "A: 12/25/1937\n\n"
                f"Q: {date_log[0]['question']}\nA: {date_log[0]['answer']}\n\n"
                f"Q: {record['question']}\nExplain:")

    async def main() -> tuple[list[Completion], list[Completion]]:
        async with client_for(date_server, model=DATE_MODEL) as client:
            first = await client.complete(user(record["question"]), n=5)
            second = await client.complete(user(few_shot), n=3)
            return first, second

    first, second = run(main())
    assert [c.text for c in first] == record["generated"][:5]
    assert [c.text for c in second] == record["generated"][5:8]  # same cursor, prompt style
    seen = date_server.requests_seen()
    assert [r["generation_indices"] for r in seen] == [[0, 1, 2, 3, 4], [5, 6, 7]]
    usage = first[0].raw["usage"]
    assert usage["estimated"] is True
    assert sum(c.completion_tokens for c in first) == usage["completion_tokens"]
    assert sum(c.prompt_tokens or 0 for c in first) == pytest.approx(usage["prompt_tokens"])
    assert {c.finish_reason for c in first} == {"stop"}
    assert {c.model for c in first} == {DATE_MODEL}


def test_a_caller_supplied_transport_carries_the_requests(tiny_server: ReplayServer) -> None:
    class CountingTransport(httpx.AsyncHTTPTransport):
        calls = 0

        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            CountingTransport.calls += 1
            return await super().handle_async_request(request)

    completions = run(complete_once(tiny_server, n=2, transport=CountingTransport()))
    assert [c.text for c in completions] == TINY_POOL[0]["generated"][:2]
    assert CountingTransport.calls == 1


# The first loop's connections are abandoned, unclosed: a ResourceWarning, as documented.
@pytest.mark.filterwarnings("ignore::ResourceWarning",
                            "ignore::pytest.PytestUnraisableExceptionWarning")
def test_one_client_serves_successive_event_loops(tiny_server: ReplayServer) -> None:
    client = client_for(tiny_server)
    first = run(client.complete(user(QUESTION)))
    second = run(client.complete(user(QUESTION)))
    run(client.aclose())
    gc.collect()
    assert [first[0].text, second[0].text] == TINY_POOL[0]["generated"][:2]


# --- retries -------------------------------------------------------------------------------


@pytest.mark.parametrize("fault", [Fault.rate_limit(retry_after=0.01, times=2),
                                   Fault.server_error(times=2), Fault.drop(times=2)],
                         ids=["429", "500", "dropped-connection"])
def test_retryable_failures_are_retried_until_success(tiny_server: ReplayServer,
                                                      fault: Fault) -> None:
    tiny_server.set_faults([fault])
    completions = run(complete_once(tiny_server, n=2))
    assert [c.text for c in completions] == TINY_POOL[0]["generated"][:2]
    seen = tiny_server.requests_seen()
    assert [r["fault"] for r in seen] == [fault.kind, fault.kind, None]
    assert seen[-1]["generation_indices"] == [0, 1]  # failed attempts consumed nothing


def test_retry_after_is_honoured(tiny_server: ReplayServer) -> None:
    tiny_server.set_faults([Fault.rate_limit(retry_after=0.3, times=1)])
    run(complete_once(tiny_server, backoff=0.001))
    first, second = tiny_server.requests_seen()
    assert second["started"] - first["finished"] >= 0.25  # backoff alone would be ~1 ms


def test_gives_up_after_max_retries_with_the_last_status(tiny_server: ReplayServer) -> None:
    tiny_server.set_faults([Fault.server_error(times=None)])
    with pytest.raises(LLMError, match="gave up after 3 attempts") as caught:
        run(complete_once(tiny_server, max_retries=2))
    error = caught.value
    assert (error.status, error.attempts, error.retryable) == (500, 3, True)
    assert error.url == f"{tiny_server.url}/chat/completions"
    assert len(tiny_server.requests_seen()) == 3


# --- failures that are not retried ----------------------------------------------------------


@pytest.mark.parametrize(("status", "case", "fix"), [
    (400, "n above the pool", "parameter"),
    (401, "wrong key", "OPENAI_API_KEY"),
    (404, "unknown model", "/models"),
])
def test_client_errors_fail_at_once_with_the_fix(status: int, case: str, fix: str) -> None:
    options: dict[str, Any] = {"api_key": "wrong" if status == 401 else "right"}
    if status == 404:
        options["model"] = "no-such-model"
    n = len(TINY_POOL[0]["generated"]) + 1 if status == 400 else 1
    with start_replay_server({TINY_MODEL: TINY_POOL}, api_key="right") as server:
        with pytest.raises(LLMError, match=fix) as caught:
            run(complete_once(server, n=n, **options))
        assert len(server.requests_seen()) == 1, case
    assert (caught.value.status, caught.value.attempts, caught.value.retryable) == (
        status, 1, False)


def test_a_reply_without_choices_raises_llm_error_at_once(tiny_server: ReplayServer) -> None:
    tiny_server.set_faults([Fault.no_choices()])
    with pytest.raises(LLMError, match="no 'choices' list") as caught:
        run(complete_once(tiny_server))
    assert (caught.value.status, caught.value.attempts) == (200, 1)


def test_a_truncated_json_body_is_retried_then_fails_clearly(tiny_server: ReplayServer
                                                             ) -> None:
    tiny_server.set_faults([Fault.malformed()])  # once: the retry gets a whole body
    completions = run(complete_once(tiny_server))
    assert completions and len(tiny_server.requests_seen()) == 2
    tiny_server.set_faults([Fault.malformed(times=None)])
    with pytest.raises(LLMError, match="not valid JSON") as caught:
        run(complete_once(tiny_server, max_retries=2))
    assert (caught.value.status, caught.value.attempts) == (200, 3)


def test_a_slow_server_times_out_is_retried_then_fails(tiny_server: ReplayServer) -> None:
    tiny_server.set_faults([Fault.slow(30.0, times=None)])
    started = time.monotonic()
    with pytest.raises(LLMError, match="timed out") as caught:
        run(complete_once(tiny_server, timeout=0.2, max_retries=1))
    assert time.monotonic() - started < 5.0  # two 0.2 s timeouts, not 30 s
    assert (caught.value.attempts, caught.value.retryable, caught.value.status) == (2, True, None)
    assert wait_until(lambda: all(r["client_closed"] for r in tiny_server.requests_seen()))
    assert len(tiny_server.requests_seen()) == 2


# --- concurrency, cancellation, crashes ------------------------------------------------------


def test_requests_in_flight_never_exceed_max_concurrency() -> None:
    pool = [{"question": f"Question {i}?", "generated": [f"answer {i}"]} for i in range(10)]
    with start_replay_server({TINY_MODEL: pool}, faults=[Fault.slow(0.15, times=None)]) as server:
        async def main() -> list[list[Completion]]:
            async with client_for(server, max_concurrency=3) as client:
                return await asyncio.gather(*(client.complete(user(f"Question {i}?"))
                                              for i in range(10)))

        results = run(main())
        assert [r[0].text for r in results] == [f"answer {i}" for i in range(10)]
        assert server.max_in_flight() == 3


def test_cancelling_the_task_closes_the_request_promptly(tiny_server: ReplayServer) -> None:
    tiny_server.set_faults([Fault.slow(30.0)])

    async def main() -> float:
        async with client_for(tiny_server) as client:
            task = asyncio.create_task(client.complete(user(QUESTION)))
            arrived = await asyncio.to_thread(
                wait_until, lambda: tiny_server.stats()["in_flight"] == 1)
            assert arrived, "the request never reached the server"
            started = time.monotonic()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            return time.monotonic() - started

    assert run(main()) < 2.0
    assert wait_until(lambda: tiny_server.requests_seen()[0]["client_closed"])
    assert tiny_server.stats()["in_flight"] == 0


def test_a_server_killed_mid_request_gives_llm_error_not_a_hang() -> None:
    with start_replay_server({TINY_MODEL: TINY_POOL},
                             faults=[Fault.slow(30.0, times=None)]) as server:
        async def main() -> None:
            async with client_for(server, max_retries=2, timeout=30.0) as client:
                task = asyncio.create_task(client.complete(user(QUESTION)))
                await asyncio.to_thread(wait_until, lambda: server.stats()["in_flight"] == 1)
                await asyncio.to_thread(server.kill)
                await asyncio.wait_for(task, timeout=5.0)

        with pytest.raises(LLMError, match="connection failed") as caught:
            run(main())
    assert (caught.value.attempts, caught.value.retryable) == (3, True)


# --- parsing a reply (pure functions, no HTTP) ---------------------------------------------


def _reply(choices: list[dict[str, Any]], usage: dict[str, Any] | None) -> dict[str, Any]:
    reply: dict[str, Any] = {"id": "x", "model": "m", "choices": choices}
    if usage is not None:
        reply["usage"] = usage
    return reply


def _choice(text: str | None, logprobs: list[float] | None = None) -> dict[str, Any]:
    choice: dict[str, Any] = {"message": {"role": "assistant", "content": text},
                              "finish_reason": "length"}
    if logprobs is not None:
        choice["logprobs"] = {"content": [{"token": "t", "logprob": lp} for lp in logprobs]}
    return choice


@pytest.mark.parametrize(("choices", "usage", "completion_tokens", "prompt_tokens"), [
    # the response total split evenly, the remainder to the first choices
    ([_choice("a"), _choice("b"), _choice("c")],
     {"prompt_tokens": 30, "completion_tokens": 11}, [4, 4, 3], 10.0),
    # logprobs give an exact per-choice count
    ([_choice("a", [-0.1, -0.2]), _choice("b", [-0.3])],
     {"prompt_tokens": 8, "completion_tokens": 3}, [2, 1], 4.0),
    # only a total: the total less the prompt, split
    ([_choice("a"), _choice("b")], {"prompt_tokens": 6, "total_tokens": 16}, [5, 5], 3.0),
    # no usage at all
    ([_choice("a")], None, [0], None),
])
def test_usage_is_split_across_choices(choices: list[dict[str, Any]],
                                       usage: dict[str, Any] | None,
                                       completion_tokens: list[int],
                                       prompt_tokens: float | None) -> None:
    completions = parse_chat_completion(_reply(choices, usage), len(choices))
    assert [c.completion_tokens for c in completions] == completion_tokens
    assert [c.prompt_tokens for c in completions] == [prompt_tokens] * len(choices)


def test_logprobs_text_and_metadata_are_parsed() -> None:
    first, second = parse_chat_completion(
        _reply([_choice("a", [-0.5, -1.0]), _choice(None)], {"completion_tokens": 4}), 2)
    assert (first.text, first.logprobs, first.finish_reason, first.model) == (
        "a", (-0.5, -1.0), "length", "m")
    assert (second.text, second.logprobs) == ("", None)


def test_null_indices_and_logprobs_do_not_break_parsing() -> None:
    """Some gateways send ``"index": null`` or a null logprob: no TypeError escapes."""
    second = {**_choice("b"), "index": 1}
    first = {**_choice("a"), "index": None,
             "logprobs": {"content": [{"token": "t", "logprob": None},
                                      {"token": "u", "logprob": -0.5}]}}
    parsed = parse_chat_completion(_reply([second, first], {"completion_tokens": 2}), 2)
    assert [c.text for c in parsed] == ["a", "b"]  # null index sorts as 0
    assert parsed[0].logprobs == (-0.5,)


@pytest.mark.parametrize(("payload", "n", "message"), [
    ([], 1, "expected a JSON object"),
    ({"id": "x"}, 1, r"no 'choices' list \(keys: \['id'\]\)"),
    (_reply([_choice("a")], None), 2, "asked for n=2 completions, got 1"),
    (_reply([{"text": "legacy"}], None), 1, r"choices\[0\] has no 'message.content'"),
])
def test_unusable_payloads_name_what_is_missing(payload: Any, n: int, message: str) -> None:
    with pytest.raises(LLMError, match=message):
        parse_chat_completion(payload, n, url="http://h/v1/chat/completions")


@pytest.mark.parametrize(("headers", "seconds"), [
    ({"retry-after": "2"}, 2.0), ({"retry-after-ms": "250"}, 0.25),
    ({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}, 0.0), ({}, None),
    # unparsable or non-finite values are ignored (backoff applies), never a ValueError
    # escaping complete() instead of a retry
    ({"retry-after": "soon"}, None), ({"retry-after": "nan"}, None),
    ({"retry-after-ms": "nan", "retry-after": "1"}, 1.0),
])
def test_retry_after_headers(headers: dict[str, str], seconds: float | None) -> None:
    assert _retry_after(httpx.Response(429, headers=headers)) == seconds
