"""A local OpenAI-compatible server that replays logged generations, for tests.

It answers ``POST /v1/chat/completions`` with generations that a real model wrote (the
MoT cascade logs: ``../shared/data/public-logs/mot_cascade/raw``), so that the HTTP
client and the strategy executors are tested against real text over real HTTP, and it
injects the faults production servers show (slow replies, 429, 500, malformed bodies,
dropped connections). It runs in a subprocess, so a test can kill it mid-run::

    from replay_server import Fault, mot_sources, start_replay_server

    sources = mot_sources(public_logs, "gpt-3.5-turbo/date_cot1_40")
    with start_replay_server(sources, faults=[Fault.rate_limit(times=2)]) as server:
        client = OpenAIClient("gpt-3.5-turbo/date_cot1_40", base_url=server.url)
        ...                                   # server.url is http://127.0.0.1:PORT/v1
        server.requests_seen()                # one dict per chat request, in order
        server.max_in_flight()                # most chat requests handled at once
        server.kill()                         # SIGKILL, as a crash would

Sources. ``sources`` maps a model name to a MoT-format file (``.json`` or ``.json.gz``: a
JSON list of ``{"question", "answer", "generated": [...], ...}``) or to such a list in
memory (small hand-made pools for tests that need no public data). For the MoT logs,
:func:`mot_sources` builds the mapping from names ``"<model>/<config>"``, where
``<model>`` is ``gpt-3.5-turbo`` (``GPT3_result``), ``gpt-4`` (``GPT4_result``) or
``llama-2-13b`` (``llama2_13B_result``), or the folder name itself, and ``<config>`` the
file name without ``.json.gz``: ``"gpt-3.5-turbo/date_cot1_40"`` replays
``GPT3_result/date_cot1_40.json.gz``.

Replay. The request's ``model`` selects the pool; its last user message selects the
question: the message equals a logged question (after stripping), or a logged question
ends within ``MAX_SUFFIX`` characters of the message's end (few-shot prompts put the
question last, followed by a cue such as ``"A:"``; the occurrence ending last wins). The
reply holds the next ``n`` logged generations of that question, in logged order (one
cursor per model and question). When fewer than ``n`` are left the server answers 400
(code ``replay_exhausted``), unless the request sets ``"replay_wrap": true`` (or header
``X-Replay-Wrap: 1``), or the server was started with ``wrap=True``: the cursor then
cycles. An unknown model or question gets 404 in OpenAI's error shape. ``usage`` is
*estimated* from characters (``ceil(chars / 4)`` per message and per generation; MoT
logged no token counts) and says so: ``usage.estimated`` is true. A top-level
``replay`` object tells which question and generations were served. If the server was
started with ``api_key``, requests without ``Authorization: Bearer <key>`` get 401.

Faults. ``faults`` is a schedule: the first fault applies to the next ``times`` chat
requests, then the second, and so on; after the schedule, requests are served normally
(``times=None``: for ever). A request can ask for its own fault instead with a header
``X-Replay-Fault: KIND[;key=value...]`` or a body field ``"replay_fault": "..."`` (e.g.
``"429;retry_after=0.1"``, ``"slow;delay=2"``, ``"status;status=401"``); it does not
consume the schedule. Kinds: ``slow`` (wait ``delay`` s, then reply normally), ``429``
(``Retry-After: retry_after``), ``500``, ``status`` (any ``status``, OpenAI error body),
``malformed`` (200 with a truncated JSON body), ``no_choices`` (200 JSON without
``choices``), ``drop`` (close the socket without a reply). Any fault may add a
``delay`` first. While a reply waits, the server watches the socket: a client that
hangs up is recorded as ``client_closed`` in :meth:`ReplayServer.requests_seen`.

Simulated timing (opt-in, off by default). With ``latency=Latency(base, per_token,
time_scale)`` each served completion waits ``(base + per_token * completion_tokens) *
time_scale`` seconds before its reply (``completion_tokens`` as ``usage`` reports it), so
that executor logs get realistic, deterministic timing: a long generation takes longer,
concurrent requests overlap (the server answers each on its own thread), and
``time_scale`` shrinks it all so tests stay fast. The wait is recorded as
``simulated_delay`` in :meth:`ReplayServer.requests_seen`.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import math
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

__all__ = ["MAX_SUFFIX", "MOT_MODEL_FOLDERS", "Fault", "Latency", "ReplayServer",
           "mot_sources", "start_replay_server"]

#: Model-name prefix -> folder of ``mot_cascade/raw``.
MOT_MODEL_FOLDERS = {"gpt-3.5-turbo": "GPT3_result", "gpt-4": "GPT4_result",
                     "llama-2-13b": "llama2_13B_result"}
#: How many characters may follow a logged question at the end of a prompt.
MAX_SUFFIX = 200
_PORT_LINE = "REPLAY_SERVER_PORT "
_FAULT_KINDS = ("slow", "429", "500", "status", "malformed", "no_choices", "drop")


@dataclass(frozen=True)
class Latency:
    """Simulated generation time (see the module docstring): a completion of ``t`` tokens
    waits ``(base + per_token * t) * time_scale`` seconds.

    Attributes:
        base: seconds per request (time to first token).
        per_token: seconds per completion token.
        time_scale: multiplies both (e.g. 0.01 to run a 1 s generation in 10 ms).
    """

    base: float = 0.0
    per_token: float = 0.0
    time_scale: float = 1.0

    def __post_init__(self) -> None:
        for name in ("base", "per_token", "time_scale"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) \
                    or not math.isfinite(value) or value < 0:
                raise ValueError(f"Latency.{name} must be a finite number >= 0, got {value!r}")

    def seconds(self, completion_tokens: int) -> float:
        """The wait of a completion of ``completion_tokens`` tokens."""
        return (self.base + self.per_token * completion_tokens) * self.time_scale


@dataclass(frozen=True)
class Fault:
    """One entry of a fault schedule (see the module docstring).

    Attributes:
        kind: ``slow``, ``429``, ``500``, ``status``, ``malformed``, ``no_choices`` or
            ``drop``.
        times: how many consecutive chat requests get it; None: every later one.
        delay: seconds to wait before the fault (or, for ``slow``, before the reply).
        retry_after: the ``Retry-After`` seconds of a 429 (none sent when None).
        status: the HTTP status of a ``status`` fault.
    """

    kind: str
    times: int | None = 1
    delay: float = 0.0
    retry_after: float | None = None
    status: int = 500

    def __post_init__(self) -> None:
        if self.kind not in _FAULT_KINDS:
            raise ValueError(f"Fault kind must be one of {_FAULT_KINDS}, got {self.kind!r}")

    @classmethod
    def slow(cls, delay: float, times: int | None = 1) -> Fault:
        """Reply normally after ``delay`` seconds."""
        return cls("slow", times, delay=delay)

    @classmethod
    def rate_limit(cls, retry_after: float | None = 0.0, times: int | None = 1) -> Fault:
        """429 Too Many Requests with ``Retry-After``."""
        return cls("429", times, retry_after=retry_after)

    @classmethod
    def server_error(cls, times: int | None = 1) -> Fault:
        """500 Internal Server Error."""
        return cls("500", times)

    @classmethod
    def http_status(cls, status: int, times: int | None = 1) -> Fault:
        """Any HTTP error status, with an OpenAI-shaped error body."""
        return cls("status", times, status=status)

    @classmethod
    def malformed(cls, times: int | None = 1) -> Fault:
        """200 with a body that is not valid JSON."""
        return cls("malformed", times)

    @classmethod
    def no_choices(cls, times: int | None = 1) -> Fault:
        """200 with a JSON body that has no ``choices``."""
        return cls("no_choices", times)

    @classmethod
    def drop(cls, times: int | None = 1) -> Fault:
        """Close the connection without replying."""
        return cls("drop", times)

    def header(self) -> str:
        """This fault as an ``X-Replay-Fault`` header value (``times`` is ignored)."""
        fields = [self.kind, f"delay={self.delay}", f"status={self.status}"]
        if self.retry_after is not None:
            fields.append(f"retry_after={self.retry_after}")
        return ";".join(fields)

    @classmethod
    def parse(cls, text: str) -> Fault:
        """A fault from its header form ``KIND[;key=value...]``."""
        kind, *pairs = [part.strip() for part in text.split(";") if part.strip()]
        values: dict[str, Any] = {}
        for pair in pairs:
            key, _, value = pair.partition("=")
            values[key.strip()] = int(value) if key.strip() == "status" else float(value)
        return cls(kind, None, **values)


def mot_sources(raw_root: str | os.PathLike[str], *names: str) -> dict[str, Path]:
    """Model name -> MoT file, for names ``"<model>/<config>"`` (see the module docstring).

    Args:
        raw_root: the ``mot_cascade/raw`` folder, or the ``public-logs`` folder above it.
        *names: e.g. ``"gpt-3.5-turbo/date_cot1_40"``, ``"GPT4_result/gsm_cot1"``.

    Raises:
        FileNotFoundError: a name maps to no file.
    """
    root = Path(raw_root)
    if (root / "mot_cascade" / "raw").is_dir():
        root = root / "mot_cascade" / "raw"
    sources = {}
    for name in names:
        prefix, _, config = name.partition("/")
        path = root / MOT_MODEL_FOLDERS.get(prefix, prefix) / f"{config}.json.gz"
        if not path.is_file():
            raise FileNotFoundError(f"{name!r} -> {path}: no such MoT file (model prefixes: "
                                    f"{sorted(MOT_MODEL_FOLDERS)} or a folder name)")
        sources[name] = path
    return sources


# --- the parent side -----------------------------------------------------------------


class ReplayServer:
    """Handle on a replay server subprocess (made by :func:`start_replay_server`).

    Attributes:
        port: the loopback port it listens on.
        url: the API root for clients, ``http://127.0.0.1:PORT/v1``.
    """

    def __init__(self, process: subprocess.Popen[str], port: int, workdir: Path) -> None:
        self._process = process
        self._workdir = workdir
        self.port = port
        self.url = f"http://127.0.0.1:{port}/v1"

    @property
    def alive(self) -> bool:
        """Whether the subprocess still runs."""
        return self._process.poll() is None

    def stats(self) -> dict[str, Any]:
        """``{"requests": [...], "in_flight": int, "max_in_flight": int}``."""
        return self._control("GET", "stats")

    def requests_seen(self) -> list[dict[str, Any]]:
        """One record per chat request received, in arrival order.

        Each has ``index``, ``model``, ``n``, ``body`` (the decoded request), ``fault``
        (kind or None), ``status`` (what was sent; None if nothing was), ``question_index``
        and ``generation_indices`` (when replayed), ``client_closed`` (the client hung up
        before the reply) and ``started``/``finished`` (server monotonic seconds).
        """
        return self.stats()["requests"]

    def max_in_flight(self) -> int:
        """The most chat requests the server handled at the same time."""
        return self.stats()["max_in_flight"]

    def set_faults(self, faults: Sequence[Fault]) -> None:
        """Replace the fault schedule (it starts again from its first entry)."""
        self._control("POST", "faults", {"faults": [asdict(fault) for fault in faults]})

    def reset(self) -> None:
        """Rewind every replay cursor and forget the requests seen."""
        self._control("POST", "reset", {})

    def kill(self) -> None:
        """SIGKILL the server (as a crash would) and reap it."""
        if self.alive:
            self._process.send_signal(signal.SIGKILL)
        self._process.wait(timeout=10)

    def close(self) -> None:
        """Stop the server and remove its temporary files."""
        if self.alive:
            self._process.terminate()
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.kill()
        if self._process.stdout is not None:
            self._process.stdout.close()
        for path in self._workdir.iterdir():
            path.unlink()
        self._workdir.rmdir()

    def _control(self, method: str, action: str, payload: Any = None) -> Any:
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}/_replay/{action}",
                                         data=data, method=method)
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())


@contextlib.contextmanager
def start_replay_server(sources: Mapping[str, str | os.PathLike[str] | list[dict[str, Any]]],
                        *, faults: Sequence[Fault] = (), wrap: bool = False,
                        api_key: str | None = None, startup_timeout: float = 20.0,
                        latency: Latency | None = None) -> Iterator[ReplayServer]:
    """Start a replay server subprocess on 127.0.0.1 and stop it on exit.

    Args:
        sources: model name -> MoT-format file, or the list of records itself.
        faults: the fault schedule.
        wrap: cycle exhausted pools instead of answering 400.
        api_key: if set, require ``Authorization: Bearer <api_key>``.
        startup_timeout: seconds to wait for the server to listen.
        latency: simulated generation time (None: replies as fast as possible).

    Yields:
        The :class:`ReplayServer`.
    """
    workdir = Path(tempfile.mkdtemp(prefix="replay-server-"))
    config = {"sources": _write_sources(sources, workdir), "wrap": wrap, "api_key": api_key,
              "faults": [asdict(fault) for fault in faults],
              "latency": None if latency is None else asdict(latency)}
    (workdir / "config.json").write_text(json.dumps(config))
    log = (workdir / "server.log").open("w")
    process = subprocess.Popen([sys.executable, __file__, str(workdir / "config.json")],
                               stdout=subprocess.PIPE, stderr=log, text=True)
    log.close()
    try:
        server = ReplayServer(process, _read_port(process, workdir, startup_timeout), workdir)
    except BaseException:
        process.kill()
        process.wait()
        if process.stdout is not None:
            process.stdout.close()
        raise
    try:
        yield server
    finally:
        server.close()


def _write_sources(sources: Mapping[str, Any], workdir: Path) -> dict[str, str]:
    paths = {}
    for index, (model, source) in enumerate(sources.items()):
        if isinstance(source, list):
            path = workdir / f"source-{index}.json"
            path.write_text(json.dumps(source))
            source = path
        paths[model] = str(Path(source).resolve())
    return paths


def _read_port(process: subprocess.Popen[str], workdir: Path, timeout: float) -> int:
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], timeout)
    line = process.stdout.readline() if ready else ""
    if not line.startswith(_PORT_LINE):
        process.kill()
        process.wait()
        log = (workdir / "server.log").read_text()[-3000:]
        raise RuntimeError(f"replay server did not start (stdout {line!r}); its log:\n{log}")
    return int(line[len(_PORT_LINE):])


# --- the server side (runs in the subprocess) ----------------------------------------


class _Pool:
    """One source's questions, their generations, and replay cursors."""

    def __init__(self, path: str) -> None:
        opener = gzip.open if path.endswith(".gz") else open
        with opener(path, "rt", encoding="utf-8") as file:
            self.records: list[dict[str, Any]] = json.load(file)
        self.source = Path(path).name
        self.by_text: dict[str, int] = {}
        for index, record in enumerate(self.records):
            self.by_text.setdefault(str(record["question"]).strip(), index)
        self.cursors: dict[int, int] = {}

    def find(self, prompt: str) -> int | None:
        """The index of the question the prompt asks (see the module docstring)."""
        prompt = prompt.strip()
        if prompt in self.by_text:
            return self.by_text[prompt]
        best: tuple[int, int, int] | None = None  # (end, length, index)
        for text, index in self.by_text.items():
            start = prompt.rfind(text)
            if start < 0 or len(prompt) - (start + len(text)) > MAX_SUFFIX:
                continue
            candidate = (start + len(text), len(text), index)
            best = candidate if best is None or candidate[:2] > best[:2] else best
        return None if best is None else best[2]

    def take(self, index: int, n: int, wrap: bool) -> list[int] | None:
        """The next ``n`` generation indices of question ``index`` (None: exhausted)."""
        size = len(self.records[index]["generated"])
        cursor = self.cursors.get(index, 0)
        if size == 0 or (not wrap and cursor + n > size):
            return None
        self.cursors[index] = cursor + n
        return [(cursor + offset) % size for offset in range(n)]


class _State:
    """Everything the request handlers share, behind one lock."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.lock = threading.Lock()
        self.pools = {model: _Pool(path) for model, path in config["sources"].items()}
        self.wrap = bool(config["wrap"])
        self.api_key = config["api_key"]
        latency = config.get("latency")
        self.latency = None if latency is None else Latency(**latency)
        self.requests: list[dict[str, Any]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.set_faults(config["faults"])

    def set_faults(self, faults: Sequence[Mapping[str, Any]]) -> None:
        self.schedule = [Fault(**fault) for fault in faults]
        self.schedule_used = 0

    def next_fault(self) -> Fault | None:
        """The scheduled fault of the next chat request (call with the lock held)."""
        while self.schedule:
            fault = self.schedule[0]
            if fault.times is None or self.schedule_used < fault.times:
                self.schedule_used += 1
                return fault
            self.schedule.pop(0)
            self.schedule_used = 0
        return None

    def reset(self) -> None:
        for pool in self.pools.values():
            pool.cursors.clear()
        self.requests.clear()
        self.max_in_flight = self.in_flight


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "ReplayServer/1.0"
    state: _State  # set on the class by _serve

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests read requests_seen() instead of a log."""

    def do_GET(self) -> None:
        if self.path == "/_replay/stats":
            with self.state.lock:
                stats = {"requests": list(self.state.requests), "in_flight":
                         self.state.in_flight, "max_in_flight": self.state.max_in_flight}
            self._send_json(200, stats)
        elif self.path.rstrip("/") == "/v1/models":
            models = [{"id": model, "object": "model", "owned_by": "replay"}
                      for model in self.state.pools]
            self._send_json(200, {"object": "list", "data": models})
        else:
            self._send_error(404, f"no route GET {self.path}", "not_found")

    def do_POST(self) -> None:
        body = self._read_body()
        if self.path == "/_replay/faults":
            with self.state.lock:
                self.state.set_faults(body["faults"])
            self._send_json(200, {"ok": True})
        elif self.path == "/_replay/reset":
            with self.state.lock:
                self.state.reset()
            self._send_json(200, {"ok": True})
        elif self.path.rstrip("/") == "/v1/chat/completions":
            self._chat(body)
        else:
            self._send_error(404, f"no route POST {self.path}", "not_found")

    # --- chat completions ----------------------------------------------------------

    def _chat(self, body: Any) -> None:
        record = self._open_record(body)
        try:
            record["status"] = self._answer_chat(body, record)
        except OSError:  # broken pipe, reset: the client hung up mid-reply
            record["client_closed"] = True
        finally:
            with self.state.lock:
                self.state.in_flight -= 1
                record["finished"] = time.monotonic()

    def _open_record(self, body: Any) -> dict[str, Any]:
        body = body if isinstance(body, dict) else {}
        with self.state.lock:
            record = {"index": len(self.state.requests), "model": body.get("model"),
                      "n": body.get("n", 1), "body": body, "fault": None, "status": None,
                      "question_index": None, "generation_indices": None,
                      "client_closed": False, "started": time.monotonic(), "finished": None}
            self.state.requests.append(record)
            self.state.in_flight += 1
            self.state.max_in_flight = max(self.state.max_in_flight, self.state.in_flight)
        return record

    def _answer_chat(self, body: Any, record: dict[str, Any]) -> int | None:
        """Serve one chat request; the status sent (None if the connection was dropped)."""
        if not isinstance(body, dict):
            return self._send_error(400, "the body is not a JSON object", "invalid_json")
        if self.state.api_key and \
                self.headers.get("Authorization") != f"Bearer {self.state.api_key}":
            return self._send_error(401, "Incorrect API key provided.", "invalid_api_key")
        fault = self._fault_for(body)
        record["fault"] = None if fault is None else fault.kind
        if fault is not None and fault.delay > 0 and not self._wait(fault.delay):
            record["client_closed"] = True
            return None
        if fault is not None and fault.kind != "slow":
            return self._send_fault(fault)
        return self._replay(body, record)

    def _fault_for(self, body: Mapping[str, Any]) -> Fault | None:
        text = self.headers.get("X-Replay-Fault") or body.get("replay_fault")
        if text:
            return Fault.parse(str(text))
        with self.state.lock:
            return self.state.next_fault()

    def _send_fault(self, fault: Fault) -> int | None:
        if fault.kind == "drop":
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return None
        if fault.kind == "429":
            headers = {} if fault.retry_after is None else {"Retry-After": f"{fault.retry_after}"}
            return self._send_error(429, "Rate limit reached (replay fault).", "rate_limit",
                                    headers)
        if fault.kind == "malformed":
            return self._send_raw(200, b'{"id": "replay-malformed", "choices": [{"inde')
        if fault.kind == "no_choices":
            return self._send_json(200, {"id": "replay-no-choices", "object": "chat.completion"})
        status = 500 if fault.kind == "500" else fault.status
        return self._send_error(status, f"Injected HTTP {status} (replay fault).", "replay_fault")

    def _replay(self, body: Mapping[str, Any], record: dict[str, Any]) -> int | None:
        model, n = body.get("model"), body.get("n", 1)
        pool = self.state.pools.get(model) if isinstance(model, str) else None
        if pool is None:
            return self._send_error(404, f"The model {model!r} does not exist; served: "
                                    f"{sorted(self.state.pools)}", "model_not_found")
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            return self._send_error(400, f"n must be an integer >= 1, got {n!r}", "invalid_n")
        prompt = _last_user_message(body.get("messages"))
        index = None if prompt is None else pool.find(prompt)
        if index is None:
            return self._send_error(404, f"no logged question of {model!r} matches the last "
                                    "user message (it must equal a question or end with one)",
                                    "question_not_found")
        wrap = self.state.wrap or bool(body.get("replay_wrap")) \
            or self.headers.get("X-Replay-Wrap") == "1"
        with self.state.lock:
            taken = pool.take(index, n, wrap)
        if taken is None:
            size = len(pool.records[index]["generated"])
            return self._send_error(400, f"replay pool exhausted: question #{index} of "
                                    f"{model!r} has {size} logged generations, "
                                    f"{pool.cursors.get(index, 0)} served, {n} asked; send "
                                    "replay_wrap=true to cycle", "replay_exhausted")
        record["question_index"], record["generation_indices"] = index, taken
        reply = _completion_body(body, pool, index, taken)
        if self.state.latency is not None:
            delay = self.state.latency.seconds(reply["usage"]["completion_tokens"])
            record["simulated_delay"] = delay
            if not self._wait(delay):
                record["client_closed"] = True
                return None
        return self._send_json(200, reply)

    # --- plumbing ----------------------------------------------------------------------

    def _wait(self, seconds: float) -> bool:
        """Sleep ``seconds``, watching the socket; False if the client hung up."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            readable, _, _ = select.select([self.connection], [], [], min(left, 0.02))
            if readable and self._client_hung_up():
                return False
        return True

    def _client_hung_up(self) -> bool:
        try:
            return self.connection.recv(1, socket.MSG_PEEK) == b""
        except (ConnectionResetError, OSError):
            return True

    def _read_body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            return json.loads(raw) if raw else None
        except json.JSONDecodeError:
            return raw.decode("utf-8", "replace")

    def _send_error(self, status: int, message: str, code: str,
                    headers: Mapping[str, str] | None = None) -> int:
        kind = "invalid_request_error" if status < 500 else "server_error"
        return self._send_json(status, {"error": {"message": message, "type": kind,
                                                  "param": None, "code": code}}, headers)

    def _send_json(self, status: int, payload: Any,
                   headers: Mapping[str, str] | None = None) -> int:
        return self._send_raw(status, json.dumps(payload).encode(), headers)

    def _send_raw(self, status: int, data: bytes,
                  headers: Mapping[str, str] | None = None) -> int:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()
        return status


def _last_user_message(messages: Any) -> str | None:
    if not isinstance(messages, list):
        return None
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            return content if isinstance(content, str) else None
    return None


def _estimate_tokens(text: str) -> int:
    return math.ceil(len(text) / 4)


def _completion_body(body: Mapping[str, Any], pool: _Pool, index: int,
                     taken: list[int]) -> dict[str, Any]:
    generations = [str(pool.records[index]["generated"][i]) for i in taken]
    prompt = sum(_estimate_tokens(str(m.get("content", ""))) for m in body["messages"]
                 if isinstance(m, dict))
    completion = sum(_estimate_tokens(text) for text in generations)
    choices = [{"index": i, "message": {"role": "assistant", "content": text},
                "logprobs": None, "finish_reason": "stop"} for i, text in enumerate(generations)]
    return {
        "id": f"replay-{index}-{taken[0]}", "object": "chat.completion",
        "created": int(time.time()), "model": body["model"], "choices": choices,
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                  "total_tokens": prompt + completion, "estimated": True,
                  "estimate": "ceil(characters / 4): the replayed log has no token counts"},
        "replay": {"source": pool.source, "question_index": index,
                   "generation_indices": taken},
    }


def _serve(config_path: str) -> None:
    config = json.loads(Path(config_path).read_text())
    _Handler.state = _State(config)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    print(f"{_PORT_LINE}{server.server_address[1]}", flush=True)
    server.serve_forever(poll_interval=0.05)


if __name__ == "__main__":
    _serve(sys.argv[1])
