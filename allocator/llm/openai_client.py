"""An OpenAI-compatible chat-completions client (extra ``llm``: ``ttc-allocator[llm]``).

:class:`OpenAIClient` implements :class:`allocator.llm.LLMClient` over ``httpx`` against
any server that speaks ``POST {base_url}/chat/completions``: vLLM, llama.cpp's server,
SGLang, OpenAI, gateways such as LiteLLM or OpenRouter. Its docstring covers
configuration, retries and cancellation; :func:`parse_chat_completion` how tokens are
counted per choice.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import math
import os
import random
import time
from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from allocator.errors import LLMError, ParameterError
from allocator.llm.protocol import Completion, Message

__all__ = ["DEFAULT_BASE_URL", "ENV_API_KEY", "ENV_BASE_URL", "ENV_MODEL", "OpenAIClient",
           "parse_chat_completion"]

DEFAULT_BASE_URL = "https://api.openai.com/v1"
ENV_BASE_URL = "OPENAI_BASE_URL"
ENV_API_KEY = "OPENAI_API_KEY"
ENV_MODEL = "ALLOCATOR_MODEL"

_OWNER = "OpenAIClient"


class OpenAIClient:
    """Chat completions from an OpenAI-compatible server, with retries and a concurrency cap.

    Configuration, argument first, then environment:

    =============  ======================  =====================================
    argument       environment variable    default
    =============  ======================  =====================================
    ``base_url``   ``OPENAI_BASE_URL``     ``https://api.openai.com/v1``
    ``api_key``    ``OPENAI_API_KEY``      none (local servers need no key)
    ``model``      ``ALLOCATOR_MODEL``     required
    =============  ======================  =====================================

    ``base_url`` ends in ``/v1`` as with the official SDK (``http://localhost:8000/v1``).

    Failures: 429, 408, 5xx, timeouts, dropped or refused connections and 2xx bodies that
    are not JSON (truncated) are retried up to
    ``max_retries`` times with exponential backoff and jitter (``Retry-After`` /
    ``retry-after-ms`` honoured, capped at ``max_backoff``); any other 4xx fails at once.
    Either way the caller gets one :class:`~allocator.errors.LLMError` whose message says
    the likely fix. Cancelling the task awaiting :meth:`OpenAIClient.complete` aborts the
    HTTP request (httpx closes the connection), so executors can stop samples in flight.

    Safe to call concurrently from one event loop (use one client per event loop). Use
    it as ``async with OpenAIClient(...) as client:`` or call :meth:`aclose` when done.

    Args:
        model: the model name sent with every request (a request may override it with
            ``model=...``); default ``$ALLOCATOR_MODEL``.
        base_url: the API root, ending in ``/v1``; default ``$OPENAI_BASE_URL``, then
            ``https://api.openai.com/v1``.
        api_key: sent as ``Authorization: Bearer ...``; default ``$OPENAI_API_KEY``;
            none is sent when neither is set.
        timeout: seconds (connect, read, write and pool each), or an ``httpx.Timeout``.
        max_retries: retries after the first attempt for retryable failures.
        backoff: the first retry's base delay in seconds; it doubles per retry, and each
            delay is drawn uniformly from [half, all] of it (jitter).
        max_backoff: the longest delay between attempts, ``Retry-After`` included.
        max_concurrency: requests in flight at once from this client (more wait).
        default_params: body fields sent with every request (``temperature``,
            ``max_tokens``...); ``complete(**params)`` overrides them.
        headers: extra HTTP headers sent with every request.
        transport: an ``httpx.AsyncBaseTransport`` to use instead of the network
            (``httpx.MockTransport``, ``httpx.ASGITransport``...).

    Raises:
        ParameterError: no model given, or a numeric argument out of range.

    Example:
        >>> async def main():  # doctest: +SKIP
        ...     async with OpenAIClient("Qwen/Qwen2.5-7B-Instruct",
        ...                             base_url="http://localhost:8000/v1") as client:
        ...         return await client.complete([{"role": "user", "content": "2+2?"}],
        ...                                      n=4, temperature=0.7)
    """

    def __init__(self, model: str | None = None, *, base_url: str | None = None,
                 api_key: str | None = None, timeout: float | httpx.Timeout = 60.0,
                 max_retries: int = 3, backoff: float = 0.5, max_backoff: float = 20.0,
                 max_concurrency: int = 16, default_params: Mapping[str, Any] | None = None,
                 headers: Mapping[str, str] | None = None,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.model = _resolve_model(model)
        self.base_url = _resolve_base_url(base_url)
        self.url = f"{self.base_url}/chat/completions"
        self.timeout = _check_timeout(timeout)
        self.max_retries = _check_number("max_retries", max_retries, 0, "an integer >= 0")
        self.backoff = _check_number("backoff", backoff, 0.0, "a number of seconds >= 0")
        self.max_backoff = _check_number("max_backoff", max_backoff, 0.0,
                                         "a number of seconds >= 0")
        self.max_concurrency = _check_number("max_concurrency", max_concurrency, 1,
                                             "an integer >= 1")
        self.default_params = dict(default_params or {})
        self._headers = _request_headers(api_key or os.environ.get(ENV_API_KEY), headers)
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        self._semaphore: asyncio.Semaphore | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._random = random.Random()

    def __repr__(self) -> str:
        return (f"OpenAIClient(model={self.model!r}, base_url={self.base_url!r}, "
                f"max_concurrency={self.max_concurrency}, max_retries={self.max_retries})")

    async def __aenter__(self) -> OpenAIClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connections; a later call opens new ones.

        Connections opened by another (finished) event loop cannot be closed from this
        one: they are abandoned.
        """
        client, self._client = self._client, None
        if client is not None and self._loop is asyncio.get_running_loop():
            await client.aclose()

    async def complete(self, messages: Sequence[Message], *, n: int = 1,
                       **params: Any) -> list[Completion]:
        """Generate ``n`` completions of ``messages``.

        Args:
            messages: the chat so far (``{"role": ..., "content": ...}`` mappings).
            n: how many completions (sent as the request's ``n``).
            **params: body fields for this request (``temperature``, ``max_tokens``,
                ``logprobs``, ``stop``, ``model``...), over ``default_params``.

        Returns:
            ``n`` completions in the server's order.

        Raises:
            ParameterError: ``n`` is not a positive integer, or a message is malformed.
            LLMError: the request failed for good, or the reply is unusable.
        """
        body = self._body(messages, n, params)
        self._bind_loop()
        payload, attempts = await self._post(body)
        return parse_chat_completion(payload, n, url=self.url, attempts=attempts)

    def _body(self, messages: Sequence[Message], n: int, params: Mapping[str, Any]
              ) -> dict[str, Any]:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ParameterError(f"{_OWNER}.complete", "n", "an integer >= 1", n)
        body: dict[str, Any] = {"model": self.model, **self.default_params, **params}
        body["messages"] = _check_messages(messages)
        body["n"] = n
        return body

    async def _post(self, body: dict[str, Any]) -> tuple[Any, int]:
        """POST with retries: the decoded JSON reply and the attempts it took.

        A 2xx reply whose body is not JSON (truncated by a proxy, cut off mid-stream) is
        retried like a dropped connection; after the last attempt it raises
        :class:`LLMError` saying the body is not valid JSON.
        """
        attempt = 0
        while True:
            attempt += 1
            failure, retry_after, response = await self._attempt(body)
            if failure is None and response is not None:
                try:
                    return _decode_json(response, self.url, attempt), attempt
                except LLMError:
                    if attempt > self.max_retries:
                        raise
                    await asyncio.sleep(self._delay(attempt, None))
                    continue
            status = None if response is None else response.status_code
            if response is not None and not _retryable_status(response.status_code):
                raise LLMError(_client_error_message(self, response, body),
                               url=self.url, status=status, attempts=attempt)
            if attempt > self.max_retries:
                raise LLMError(
                    f"POST {self.url}: gave up after {attempt} attempts; last failure: "
                    f"{failure}. The server is overloaded, down or too slow: raise "
                    f"max_retries or timeout, or lower max_concurrency.",
                    url=self.url, status=status, attempts=attempt, retryable=True)
            await asyncio.sleep(self._delay(attempt, retry_after))

    async def _attempt(self, body: dict[str, Any]
                       ) -> tuple[str | None, float | None, httpx.Response | None]:
        """One request: (failure description or None, Retry-After seconds, response)."""
        async with self._limit():
            try:
                response = await self._http().post(self.url, json=body)
            except httpx.TimeoutException as error:
                return f"timed out ({type(error).__name__}, timeout={self.timeout})", None, None
            except httpx.TransportError as error:
                return f"connection failed ({type(error).__name__}: {error})", None, None
        if response.is_success:
            return None, None, response
        description = f"HTTP {response.status_code} ({_server_message(response)})"
        return description, _retry_after(response), response

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        """Seconds to wait after failed attempt number ``attempt``."""
        if retry_after is not None:
            return min(retry_after, self.max_backoff)
        ceiling = min(self.max_backoff, self.backoff * 2 ** (attempt - 1))
        return ceiling * (0.5 + 0.5 * self._random.random())

    def _bind_loop(self) -> None:
        """Open new connections when called from another event loop than before.

        Connections (and the semaphore) belong to the loop that made them; a caller that
        runs ``asyncio.run`` per query with one client gets fresh ones each time, and the
        finished loop's connections are abandoned unclosed (a ``ResourceWarning``): prefer
        one ``async with`` block per event loop.
        """
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._loop, self._client, self._semaphore = loop, None, None

    def _limit(self) -> asyncio.Semaphore:
        if self._semaphore is None:
            self._semaphore = asyncio.Semaphore(self.max_concurrency)
        return self._semaphore

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            limits = httpx.Limits(max_connections=self.max_concurrency,
                                  max_keepalive_connections=self.max_concurrency)
            self._client = httpx.AsyncClient(headers=self._headers, timeout=self.timeout,
                                             limits=limits, transport=self._transport)
        return self._client


# --- parsing -------------------------------------------------------------------------


def parse_chat_completion(payload: Any, n: int, *, url: str | None = None,
                          attempts: int = 1) -> list[Completion]:
    """The completions of a decoded ``chat.completion`` reply.

    Tokens: the response's ``usage.prompt_tokens`` is split
    evenly across its ``n`` choices (a float share each). A choice's ``completion_tokens``
    is the length of its ``logprobs.content`` when the server returned logprobs (an exact
    per-choice count); otherwise the response total ``usage.completion_tokens`` (or, when a
    server gives only ``total_tokens``, that total less the prompt tokens) is split evenly
    in integers, the remainder going to the first choices, so that the parts add up to the
    total. A reply without ``usage`` gives 0 completion tokens and ``prompt_tokens=None``.

    Args:
        payload: the decoded JSON body.
        n: the number of completions asked for.
        url: the endpoint, for error messages.
        attempts: the attempts the request took, for error messages.

    Raises:
        LLMError: the reply is not an object, has no ``choices`` list, a choice has no
            ``message.content``, or it holds another number of choices than ``n``.
    """
    def fail(problem: str) -> LLMError:
        return LLMError(f"POST {url}: unusable reply: {problem}.", url=url, status=200,
                        attempts=attempts)

    if not isinstance(payload, Mapping):
        raise fail(f"expected a JSON object, got {type(payload).__name__}")
    choices = payload.get("choices")
    if not isinstance(choices, list):
        raise fail(f"no 'choices' list (keys: {sorted(payload)})")
    if len(choices) != n:
        raise fail(f"asked for n={n} completions, got {len(choices)} choices; a server "
                   f"that ignores n (some do) needs n=1 requests repeated")
    choices = sorted(choices, key=_choice_index)
    texts = [_choice_text(choice, index, fail) for index, choice in enumerate(choices)]
    logprobs = [_choice_logprobs(choice) for choice in choices]
    usage = payload.get("usage") if isinstance(payload.get("usage"), Mapping) else {}
    completion_tokens = _completion_tokens(usage, logprobs, n)
    prompt_tokens = _number_or_none(usage.get("prompt_tokens"))
    model = payload.get("model")
    return [
        Completion(text=texts[i], completion_tokens=completion_tokens[i],
                   prompt_tokens=None if prompt_tokens is None else prompt_tokens / n,
                   logprobs=logprobs[i], finish_reason=choices[i].get("finish_reason"),
                   model=model if isinstance(model, str) else None,
                   raw={"id": payload.get("id"), "choice": choices[i], "usage": dict(usage)})
        for i in range(n)
    ]


def _choice_text(choice: Any, index: int, fail: Any) -> str:
    message = choice.get("message") if isinstance(choice, Mapping) else None
    if not isinstance(message, Mapping) or "content" not in message:
        raise fail(f"choices[{index}] has no 'message.content'")
    content = message["content"]
    if content is not None and not isinstance(content, str):
        raise fail(f"choices[{index}].message.content is {type(content).__name__}, not text")
    return content or ""


def _choice_logprobs(choice: Mapping[str, Any]) -> tuple[float, ...] | None:
    logprobs = choice.get("logprobs")
    content = logprobs.get("content") if isinstance(logprobs, Mapping) else None
    if not isinstance(content, list):
        return None
    return tuple(float(token["logprob"]) for token in content
                 if isinstance(token, Mapping) and _number_or_none(token.get("logprob"))
                 is not None)


def _choice_index(choice: Any) -> float:
    """A choice's ``index`` for sorting (0 when missing, null or not a number)."""
    index = choice.get("index") if isinstance(choice, Mapping) else None
    return _number_or_none(index) or 0


def _completion_tokens(usage: Mapping[str, Any], logprobs: list[tuple[float, ...] | None],
                       n: int) -> list[int]:
    """Per-choice completion tokens (see :func:`parse_chat_completion`)."""
    if all(lp is not None for lp in logprobs):
        return [len(lp) for lp in logprobs if lp is not None]
    total = _number_or_none(usage.get("completion_tokens"))
    whole = _number_or_none(usage.get("total_tokens"))
    if total is None and whole is not None:
        total = whole - (_number_or_none(usage.get("prompt_tokens")) or 0)
    base, extra = divmod(max(int(total or 0), 0), n)
    return [base + (i < extra) for i in range(n)]


def _number_or_none(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return value


def _decode_json(response: httpx.Response, url: str, attempts: int) -> Any:
    try:
        return response.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise LLMError(
            f"POST {url}: unusable reply: the body is not valid JSON ({error}; starts "
            f"{response.text[:120]!r}). Is base_url an OpenAI-compatible API?",
            url=url, status=response.status_code, attempts=attempts) from error


# --- errors and retries ----------------------------------------------------------------


def _retryable_status(status: int) -> bool:
    return status in (408, 429) or status >= 500


def _retry_after(response: httpx.Response) -> float | None:
    """Seconds the server asked to wait (``retry-after-ms`` or ``Retry-After``), if any."""
    milliseconds = _finite(response.headers.get("retry-after-ms"))
    if milliseconds is not None:
        return max(milliseconds / 1000.0, 0.0)
    value = response.headers.get("retry-after")
    if value is None:
        return None
    seconds = _finite(value)
    if seconds is not None:
        return max(seconds, 0.0)
    try:  # an HTTP date; anything else is ignored (the backoff applies)
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)


def _finite(value: str | None) -> float | None:
    """``value`` as a finite float, else None."""
    try:
        number = float(value) if value is not None else math.nan
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _server_message(response: httpx.Response) -> str:
    """The server's error message (OpenAI error shape), else the start of the body."""
    try:
        error = response.json().get("error")
        message = error.get("message") if isinstance(error, Mapping) else error
        if message:
            return str(message)
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        pass
    return response.text[:200].strip() or response.reason_phrase


def _client_error_message(client: OpenAIClient, response: httpx.Response,
                          body: Mapping[str, Any]) -> str:
    """A non-retryable 4xx, with what to fix."""
    status, said = response.status_code, _server_message(response)
    model = body.get("model")
    fixes = {
        400: f"Check the request fields ({sorted(body)}): a parameter this server does not "
             "support, n or max_tokens above its limits, or a prompt longer than the "
             "model's context.",
        401: f"The API key was refused: set {ENV_API_KEY} or pass api_key=... (local "
             "servers started with --api-key need it too).",
        403: f"The key has no access to model {model!r}.",
        404: f"Check model={model!r} (GET {client.base_url}/models lists what the server "
             f"serves) and that base_url ends in /v1 (it is {client.base_url!r}).",
        422: f"The server could not process the request fields ({sorted(body)}).",
    }
    fix = fixes.get(status, "The server refused the request; it is not retried.")
    return f"POST {client.url}: HTTP {status}: {said}. {fix}"


# --- argument checks -------------------------------------------------------------------


def _resolve_model(model: str | None) -> str:
    resolved = model or os.environ.get(ENV_MODEL)
    if not resolved:
        raise ParameterError(_OWNER, "model",
                             f"a model name (or set ${ENV_MODEL})", model)
    return resolved


def _resolve_base_url(base_url: str | None) -> str:
    resolved = (base_url or os.environ.get(ENV_BASE_URL) or DEFAULT_BASE_URL).rstrip("/")
    if not resolved.startswith(("http://", "https://")):
        raise ParameterError(_OWNER, "base_url",
                             f"an http(s) URL such as http://localhost:8000/v1 (or set "
                             f"${ENV_BASE_URL})", resolved)
    return resolved


def _check_timeout(timeout: float | httpx.Timeout) -> httpx.Timeout:
    if isinstance(timeout, httpx.Timeout):
        return timeout
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
        raise ParameterError(_OWNER, "timeout", "a number of seconds > 0 or an httpx.Timeout",
                             timeout)
    return httpx.Timeout(float(timeout))


def _check_number(name: str, value: Any, minimum: float, expected: str) -> Any:
    integer = isinstance(minimum, int)
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or value < minimum:
        raise ParameterError(_OWNER, name, expected, value)
    return value


def _request_headers(api_key: str | None, headers: Mapping[str, str] | None
                     ) -> dict[str, str]:
    result = {"Accept": "application/json"}
    if api_key:
        result["Authorization"] = f"Bearer {api_key}"
    result.update(headers or {})
    return result


def _check_messages(messages: Sequence[Message]) -> list[dict[str, str]]:
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence) \
            or not messages:
        raise ParameterError(f"{_OWNER}.complete", "messages",
                             "a non-empty list of {'role': ..., 'content': ...} (see "
                             "allocator.llm.as_messages)", messages)
    checked = []
    for message in messages:
        if not isinstance(message, Mapping) or "role" not in message \
                or "content" not in message:
            raise ParameterError(f"{_OWNER}.complete", "messages",
                                 "mappings with 'role' and 'content'", message)
        checked.append(dict(message))
    return checked
