"""Run untrusted Python in a sandboxed subprocess.

Candidate programs (and test cases) are untrusted: a crash, a hang, endless output, a
memory hog or a fork bomb in one must never take the host down or hang the caller. Each
run therefore happens in a fresh process, with:

- a wall-time limit; on expiry the whole process group (and, with namespaces, the whole
  PID namespace) is killed;
- ``RLIMIT_CPU``, ``RLIMIT_AS`` (memory), ``RLIMIT_FSIZE``, ``RLIMIT_NPROC`` and no core
  dumps, set by a small runner before the candidate runs;
- a per-test CPU and wall timeout inside the child (``setitimer``), so one looping test
  case does not hide the others; a test that kills the interpreter or hangs in C code is
  recorded as such and the run resumes with the next case in a fresh sandbox;
- captured stdout/stderr capped at :attr:`Limits.output_bytes` (the rest is drained and
  dropped);
- a fresh temporary directory as working directory (and ``HOME``), removed afterwards;
- ``python -I`` (isolated mode: no ``PYTHON*`` variables, no user site, no cwd on the path);
- no network: a new user + network + PID namespace (``unshare -rn --pid --fork``) when the
  kernel allows it, and always an audit-hook guard in the child that refuses socket
  creation, DNS, ``exec``/``system``/``subprocess`` and ``setsid``/``setpgid`` (a child
  in its own session or group would escape the group kill), and counts forks against the
  process limit (so a fork bomb dies even where the kernel does not apply ``RLIMIT_NPROC``).

When the host runs as root (root ignores ``RLIMIT_NPROC``), candidates run as ``nobody``
(uid 65534) by default, with the first interpreter that user can execute (which may be
the system's ``python3`` rather than a virtual environment's under ``/root``). This is a
guard against accidents (model-written code that loops, floods or forks), not a security
boundary against code written to attack the runner: run untrusted code at scale inside a
container or VM as well.

Two entry points: :func:`run_tests` (synchronous, for batch jobs and process pools; it
returns a :class:`TestRun`) and :func:`describe_sandbox` (how candidates will run on this
host). What to run and how to score it is :mod:`allocator.verifiers.code`'s concern.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import secrets
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from allocator.errors import ParameterError, VerifierError

__all__ = [
    "Limits",
    "Sandbox",
    "TestRun",
    "describe_sandbox",
    "run_tests",
]

#: Per-test outcomes a :class:`TestRun` can hold.
OUTCOMES = ("passed", "failed", "error", "timeout", "not run")

#: The uid candidates run as when the host is root and ``Sandbox.user`` is ``"auto"``.
NOBODY = 65534

_NAMESPACE_FLAGS = ("--user", "--map-root-user", "--net", "--pid", "--fork", "--kill-child")
_ISOLATIONS = ("auto", "namespace", "guard")
_STANDARD_PATH = "/usr/local/bin:/usr/bin:/bin"
_KILL_GRACE_SECONDS = 0.5
_PAYLOAD = ".ttc-payload.json"
_STDOUT, _STDERR = "stdout", "stderr"

# The runner executes inside the sandbox: it reads (and deletes) a JSON payload file, sets the
# limits, installs the guard, runs the program then each test case, and reports one JSON
# line per step on a dedicated pipe (tagged with a nonce, so that a candidate printing to
# stdout cannot forge results by accident). Standard library only; Python >= 3.8.
_RUNNER = r'''
import builtins, json, mmap, os, resource, signal, struct, sys

_write, _dumps, _getpid, _exit = os.write, json.dumps, os.getpid, os._exit


class _Timeout(BaseException):
    pass


class _CpuLimit(BaseException):
    pass


_BLOCKED = frozenset({
    "socket.__new__", "socket.connect", "socket.bind", "socket.getaddrinfo",
    "socket.gethostbyname", "socket.gethostbyaddr", "socket.sendto", "os.system",
    "os.exec", "os.posix_spawn", "subprocess.Popen", "pty.spawn",
})


def set_limits(lim):
    cpu = lim["cpu_seconds"]
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    resource.setrlimit(resource.RLIMIT_AS, (lim["memory_bytes"],) * 2)
    resource.setrlimit(resource.RLIMIT_FSIZE, (lim["file_bytes"],) * 2)
    resource.setrlimit(resource.RLIMIT_NPROC, (lim["max_processes"],) * 2)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def install_guard(max_forks):
    counter = mmap.mmap(-1, 8)  # shared with forked children: one count per sandbox

    def hook(event, args):
        if event in _BLOCKED:
            raise PermissionError("sandbox: %s is disabled" % event)
        if event in ("os.fork", "os.forkpty"):
            forks = struct.unpack("q", counter[:8])[0]
            if forks >= max_forks:
                raise BlockingIOError(11, "sandbox: process limit reached")
            counter[:8] = struct.pack("q", forks + 1)

    sys.addaudithook(hook)

    def detach(*args, **kwargs):  # no audit event: replace the functions themselves
        raise PermissionError("sandbox: leaving the process group is disabled")

    for name in ("setsid", "setpgid", "setpgrp"):  # a detached child escapes the kill
        if hasattr(os, name):
            setattr(os, name, detach)


def describe(error):
    text = type(error).__name__
    detail = error.args[0] if error.args else None
    if isinstance(error, OSError) and isinstance(error.strerror, str):
        detail = error.strerror
    if isinstance(detail, str):
        text += ": " + detail[:160]
    return text


def run(source, name, namespace, lim, state):
    try:
        code = compile(source, name, "exec")
    except BaseException as error:
        return "error", describe(error)
    try:
        state["fired"] = None
        state["armed"] = True
        signal.setitimer(signal.ITIMER_PROF, lim["test_seconds"], 0.05)
        signal.setitimer(signal.ITIMER_REAL, lim["test_wall_seconds"], 0.05)
        try:
            exec(code, namespace)
        finally:
            state["armed"] = False
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.setitimer(signal.ITIMER_PROF, 0)
        if state["fired"] == "cpu":  # the candidate swallowed the limit (bare except)
            return "cpu", "CPU time limit"
        if state["fired"]:
            return "timeout", state["fired"]
        return "passed", ""
    except _Timeout as error:
        return "timeout", error.args[0]
    except _CpuLimit:
        return "cpu", "CPU time limit"
    except AssertionError as error:
        return "failed", describe(error)
    except BaseException as error:
        return "error", describe(error)


def main():
    with open(sys.argv[1], "rb") as source:
        payload = json.loads(source.read().decode("utf-8"))
    os.unlink(sys.argv[1])
    out, nonce, lim = payload["fd"], payload["nonce"], payload["limits"]
    owner = _getpid()

    def report(**record):
        record["n"] = nonce
        _write(out, (_dumps(record) + "\n").encode("utf-8"))

    def on_alarm(signum, frame):
        if state["armed"]:
            state["fired"] = state["fired"] or ("per-test CPU time limit"
                                                if signum == signal.SIGPROF
                                                else "per-test wall time limit")
            raise _Timeout(state["fired"])

    def on_xcpu(signum, frame):
        state["fired"] = "cpu"
        raise _CpuLimit()

    state = {"armed": False, "fired": None}
    set_limits(lim)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    signal.signal(signal.SIGALRM, on_alarm)
    signal.signal(signal.SIGPROF, on_alarm)
    signal.signal(signal.SIGXCPU, on_xcpu)
    install_guard(lim["max_processes"] - 1)
    report(ready=True)
    namespace = {"__name__": "__candidate__", "__builtins__": builtins}
    status, message = run(payload["program"], "<candidate>", namespace, lim, state)
    if _getpid() != owner:  # a process the candidate forked: never report
        _exit(0)
    report(program=status, m=message)
    if status != "passed":
        return
    for index, source in enumerate(payload["tests"]):
        status, message = run(source, "<test %d>" % index, namespace, lim, state)
        if _getpid() != owner:
            _exit(0)
        report(i=index, s=status, m=message)
        if status == "cpu":
            return
    usage = resource.getrusage(resource.RUSAGE_SELF)
    report(done=True, cpu=usage.ru_utime + usage.ru_stime)


def finish():
    # exit at once: no waiting for threads the candidate left running, no atexit hooks
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:
            pass
    _exit(0)


try:
    main()
finally:
    finish()
'''


@dataclass(frozen=True)
class Limits:
    """Resource limits of one sandboxed run (one program and all its test cases).

    Attributes:
        wall_seconds: wall-clock limit of the whole run; on expiry every process of the
            sandbox is killed and the test cases not yet reported count as ``timeout``.
        test_seconds: CPU time of each test case (and of running the program itself),
            enforced inside the child (``ITIMER_PROF``), so one looping test does not hide
            the others; CPU time, so that a loaded host does not turn slow tests into
            timeouts.
        test_wall_seconds: wall time of each test case (``ITIMER_REAL``: catches sleeps
            and blocking calls); must be >= ``test_seconds``.
        cpu_seconds: ``RLIMIT_CPU`` of the run (rounded up to whole seconds).
        memory_bytes: ``RLIMIT_AS``: address space of each sandbox process.
        file_bytes: ``RLIMIT_FSIZE``: largest file a candidate may write.
        max_processes: ``RLIMIT_NPROC`` (per sandbox with namespaces) and the guard's
            fork budget: processes the sandbox may hold, the runner included.
        output_bytes: stdout and stderr kept (each); the rest is read and dropped.
    """

    wall_seconds: float = 10.0
    test_seconds: float = 1.0
    test_wall_seconds: float = 5.0
    cpu_seconds: float = 10.0
    memory_bytes: int = 1 << 30
    file_bytes: int = 16 << 20
    max_processes: int = 16
    output_bytes: int = 64 << 10

    def __post_init__(self) -> None:
        for name in ("wall_seconds", "test_seconds", "test_wall_seconds", "cpu_seconds"):
            _check_positive_number(name, getattr(self, name))
        if self.test_wall_seconds < self.test_seconds:
            raise ParameterError("Limits", "test_wall_seconds",
                                 f">= test_seconds ({self.test_seconds})",
                                 self.test_wall_seconds)
        for name, least in (("memory_bytes", 16 << 20), ("file_bytes", 1),
                            ("max_processes", 2), ("output_bytes", 0)):
            _check_int_at_least(name, getattr(self, name), least)


def _runner_limits(limits: Limits) -> dict[str, float | int]:
    """The limits as the runner reads them (whole CPU seconds)."""
    return {
        "test_seconds": limits.test_seconds,
        "test_wall_seconds": limits.test_wall_seconds,
        "cpu_seconds": math.ceil(limits.cpu_seconds),
        "memory_bytes": limits.memory_bytes,
        "file_bytes": limits.file_bytes,
        "max_processes": limits.max_processes,
    }


def _check_positive_number(name: str, value: object) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or value <= 0:  # type: ignore[arg-type]
        raise ParameterError("Limits", name, "a finite number > 0", value)


def _check_int_at_least(name: str, value: object, least: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < least:
        raise ParameterError("Limits", name, f"an integer >= {least}", value)


@dataclass(frozen=True)
class Sandbox:
    """How candidates are isolated (as opposed to how much they may use: :class:`Limits`).

    Attributes:
        isolation: ``"namespace"`` (new user, network and PID namespaces via ``unshare``:
            no network at all, and every process dies with the sandbox), ``"guard"``
            (the in-process guard only) or ``"auto"`` (namespaces where the kernel allows
            them, else the guard). The guard is installed in every mode.
        python: the interpreter that runs candidates; ``None`` picks the first of this
            interpreter, its real path and ``python3`` on the standard path that runs in
            the sandbox.
        user: the uid candidates run as. ``"auto"``: ``nobody`` (65534) when the host is
            root (root ignores ``RLIMIT_NPROC``), falling back to root if no interpreter
            is executable by ``nobody``; unchanged otherwise. ``None``: never switch.
    """

    isolation: str = "auto"
    python: str | None = None
    user: int | str | None = "auto"

    def __post_init__(self) -> None:
        if self.isolation not in _ISOLATIONS:
            raise ParameterError("Sandbox", "isolation", f"one of {_ISOLATIONS}",
                                 self.isolation)
        user_ok = self.user is None or self.user == "auto" or (
            isinstance(self.user, int) and not isinstance(self.user, bool) and self.user >= 0)
        if not user_ok:
            raise ParameterError("Sandbox", "user", "'auto', None or a uid >= 0", self.user)
        if self.python is not None and not (isinstance(self.python, str) and self.python):
            raise ParameterError("Sandbox", "python", "a path to an interpreter or None",
                                 self.python)


@dataclass(frozen=True)
class _Resolved:
    """A sandbox made concrete: the command prefix, interpreter and uid that work here."""

    prefix: tuple[str, ...]
    python: str
    uid: int | None

    @property
    def description(self) -> str:
        """E.g. ``"namespace (user+net+pid), uid 65534, /usr/bin/python3"``."""
        mode = "namespace (user+net+pid)" if self.prefix else "guard only"
        who = f"uid {self.uid}" if self.uid is not None else f"uid {os.geteuid()}"
        return f"{mode}, {who}, {self.python}"


@dataclass(frozen=True)
class TestRun:
    """What happened when one program ran against its test cases.

    Attributes:
        outcomes: one of :data:`OUTCOMES` per test case, in order.
        status: ``"ok"`` (every test case has an outcome), ``"program error"`` (the
            program itself raised, timed out or did not compile: every test counts as
            ``error``), ``"timeout"`` (the run hit ``Limits.wall_seconds``: the cases
            not reached count as ``timeout``) or ``"crashed"`` (sandboxes kept dying
            and the run gave up: the cases not reached stay ``"not run"``).
        messages: a short reason per test case (``"AssertionError"``...), ``""`` if passed.
        program_message: why the program failed, when ``status == "program error"``.
        stdout: the captured standard output (at most ``Limits.output_bytes``).
        stderr: the captured standard error (at most ``Limits.output_bytes``).
        output_truncated: whether stdout or stderr was cut.
        wall_seconds: wall time of the run.
        cpu_seconds: CPU time of the sandbox; for runs killed at the wall limit, their
            wall time (the CPU time of killed processes cannot be read).
        sandbox: how the run was isolated (see :class:`Sandbox`).
    """

    outcomes: tuple[str, ...]
    status: str
    messages: tuple[str, ...] = ()
    program_message: str = ""
    stdout: str = ""
    stderr: str = ""
    output_truncated: bool = False
    wall_seconds: float = 0.0
    cpu_seconds: float = 0.0
    sandbox: str = field(default="", compare=False)

    __test__ = False  # not a pytest test class, despite the name

    @property
    def passed(self) -> int:
        """Test cases passed."""
        return sum(outcome == "passed" for outcome in self.outcomes)

    @property
    def total(self) -> int:
        """Test cases run or due."""
        return len(self.outcomes)

    @property
    def score(self) -> float:
        """Fraction of test cases passed; NaN when there were none."""
        return self.passed / self.total if self.total else math.nan

    @property
    def detail(self) -> str:
        """E.g. ``"7/10 tests passed"``, ``"timeout: 3/10 tests passed"``."""
        counted = f"{self.passed}/{self.total} tests passed"
        if self.status == "ok":
            return counted
        if self.status == "program error":
            return f"program error: {self.program_message}"
        return f"{self.status}: {counted}"


# --------------------------------------------------------------------------- run_tests

#: Sandboxes one run may start: the first, plus fresh ones that resume after a test case
#: killed the interpreter or hung where the per-test timer could not interrupt it.
_MAX_SEGMENTS = 8


def run_tests(program: str, tests: Sequence[str], limits: Limits | None = None,
              sandbox: Sandbox | None = None) -> TestRun:
    """Run ``program`` then each test case in a sandboxed subprocess.

    Every test case is Python source executed in the program's global namespace (after
    the program, in order); it passes when it raises nothing. A test that raises
    ``AssertionError`` fails, any other exception is an error, and one that runs past
    ``limits.test_seconds`` of CPU (or ``limits.test_wall_seconds`` of wall time) times
    out; the next test case still runs. A test case that kills the interpreter (a
    segfault, ``os._exit``) or hangs where the per-test timer cannot interrupt it (a long
    C call) counts as ``error`` or ``timeout``, and the run resumes with the next case in
    a fresh sandbox (at most 8 sandboxes per run), all within ``limits.wall_seconds``.

    Args:
        program: the candidate program (for HumanEval: prompt + completion).
        tests: the test cases, e.g. ``["assert f(1) == 2", "assert f(0) == 0"]``.
        limits: resource limits (default :class:`Limits()`).
        sandbox: isolation settings (default :class:`Sandbox()`).

    Returns:
        The outcome of every test case, the captured output and the time used.

    Raises:
        ParameterError: ``program`` is not a string or ``tests`` not a sequence of strings.
        VerifierError: the sandbox cannot run here at all (not: the candidate misbehaved).
    """
    _check_sources(program, tests)
    limits = limits if limits is not None else Limits()
    resolved = _resolve(sandbox if sandbox is not None else Sandbox())
    start = time.monotonic()
    tally = _Tally(len(tests), limits.output_bytes)
    for _ in range(_MAX_SEGMENTS):
        remaining = list(tests[tally.resume_at:])
        segment = _run_segment(resolved, program, remaining, limits,
                               deadline=start + limits.wall_seconds)
        tally.absorb(segment, resolved)
        if tally.finished:
            break
    return tally.result(time.monotonic() - start, resolved)


def _check_sources(program: object, tests: object) -> None:
    if not isinstance(program, str):
        raise ParameterError("run_tests", "program", "a string of Python source", program)
    if isinstance(tests, str) or not isinstance(tests, Sequence) or not all(
            isinstance(test, str) for test in tests):
        raise ParameterError("run_tests", "tests", "a sequence of strings (one per test case)",
                             tests)


@dataclass(frozen=True)
class _Segment:
    """One sandbox's run: its records and how it ended.

    ``end`` is ``"done"`` (the runner finished), ``"exited"`` (it died early),
    ``"hung"`` (no progress for too long: killed) or ``"deadline"`` (wall limit: killed).
    """

    records: list[dict[str, object]]
    end: str
    returncode: int | None
    stdout: str
    stderr: str
    truncated: bool
    cpu: float


def _run_segment(resolved: _Resolved, program: str, tests: list[str], limits: Limits,
                 deadline: float) -> _Segment:
    workdir = _make_workdir(resolved.uid)
    try:
        return _run_in(workdir, resolved, program, tests, limits, deadline)
    finally:
        _remove_tree(workdir)


def _run_in(workdir: str, resolved: _Resolved, program: str, tests: list[str],
            limits: Limits, deadline: float) -> _Segment:
    nonce = secrets.token_hex(8)
    read_fd, write_fd = os.pipe()
    payload = {"fd": write_fd, "nonce": nonce, "limits": _runner_limits(limits),
               "program": program, "tests": tests}
    _write_payload(workdir, payload, resolved.uid)
    start = time.monotonic()
    try:
        process = _spawn(resolved, workdir, write_fd)
    except BaseException:
        os.close(read_fd)
        raise
    finally:
        os.close(write_fd)
    with contextlib.closing(_Pipes(process, read_fd, limits.output_bytes)) as pipes:
        end, cpu = pipes.collect(deadline, hang_after=limits.test_wall_seconds + 1.0)
        records = _records(pipes.data(read_fd), nonce)
        if end == "exited" and any(record.get("done") for record in records):
            end = "done"
        return _Segment(records, end, process.returncode, pipes.text(_STDOUT),
                        pipes.text(_STDERR), pipes.truncated,
                        cpu if cpu is not None and end in ("done", "exited")
                        else time.monotonic() - start)


def _spawn(resolved: _Resolved, workdir: str, result_fd: int) -> subprocess.Popen[bytes]:
    command = [*resolved.prefix, resolved.python, "-I", "-c", _RUNNER, _PAYLOAD]
    switch = {} if resolved.uid is None else {
        "user": resolved.uid, "group": resolved.uid, "extra_groups": []}
    try:
        return subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            cwd=workdir, env=_child_env(workdir), pass_fds=(result_fd,),
            start_new_session=True, close_fds=True, **switch)
    except OSError as error:
        raise VerifierError(f"could not start the sandbox ({command[0]}): {error}") from error


def _child_env(workdir: str) -> dict[str, str]:
    return {"PATH": _STANDARD_PATH, "HOME": workdir, "TMPDIR": workdir, "LANG": "C.UTF-8",
            "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _write_payload(workdir: str, payload: Mapping[str, object], uid: int | None) -> None:
    path = os.path.join(workdir, _PAYLOAD)
    with open(path, "w", encoding="utf-8") as file:
        json.dump(payload, file)
    if uid is not None:
        os.chown(path, uid, uid)


class _Pipes:
    """Reads the sandbox's stdout, stderr and result pipes until it exits or is killed.

    Output beyond the cap is read and dropped (so a flooding child never blocks on a full
    pipe). The sandbox is killed at the deadline, or when it has reported nothing for
    ``hang_after`` seconds (a test the in-child timer could not interrupt); its whole
    process group is killed in any case once the leader is gone.
    """

    def __init__(self, process: subprocess.Popen[bytes], result_fd: int, cap: int) -> None:
        assert process.stdout is not None and process.stderr is not None
        self.process = process
        self.streams = {_STDOUT: process.stdout.fileno(), _STDERR: process.stderr.fileno()}
        self.caps = {self.streams[_STDOUT]: cap, self.streams[_STDERR]: cap,
                     result_fd: 1 << 24}
        self.chunks: dict[int, list[bytes]] = {fd: [] for fd in self.caps}
        self.sizes = dict.fromkeys(self.caps, 0)
        self.truncated = False
        self.result_fd = result_fd
        self.last_report: float | None = None
        self.selector = selectors.DefaultSelector()
        for fd in self.caps:
            os.set_blocking(fd, False)
            self.selector.register(fd, selectors.EVENT_READ)

    def collect(self, deadline: float, hang_after: float) -> tuple[str, float | None]:
        """Read until the sandbox ends; returns how it ended and its CPU seconds."""
        pid, end = self.process.pid, "exited"
        while not _exited(pid):
            now = time.monotonic()
            if now >= deadline:
                end = "deadline"
                break
            if self.last_report is not None and now - self.last_report > hang_after:
                end = "hung"
                break
            self._wait_or_read(min(0.05, deadline - now))
        if end == "exited":  # what it wrote before exiting is still in the pipes
            self._drain_until(time.monotonic() + 0.2)
        _kill_group(self.process)
        self._drain_until(time.monotonic() + _KILL_GRACE_SECONDS)
        return end, _reap(self.process)

    def _drain_until(self, until: float) -> None:
        while self.selector.get_map() and time.monotonic() < until:
            self._read_ready(0.02)

    def _wait_or_read(self, timeout: float) -> None:
        if self.selector.get_map():
            self._read_ready(timeout)
        else:
            time.sleep(timeout)

    def _read_ready(self, timeout: float) -> None:
        for key, _ in self.selector.select(timeout):
            self._read(key.fd)

    def _read(self, fd: int) -> None:
        try:
            chunk = os.read(fd, 1 << 16)
        except BlockingIOError:
            return
        if not chunk:
            self.selector.unregister(fd)
            return
        if fd == self.result_fd:
            self.last_report = time.monotonic()
        room = self.caps[fd] - self.sizes[fd]
        if len(chunk) > room:
            self.truncated = self.truncated or fd != self.result_fd
            chunk = chunk[:max(room, 0)]
        self.chunks[fd].append(chunk)
        self.sizes[fd] += len(chunk)

    def data(self, fd: int) -> bytes:
        """Everything kept from one pipe."""
        return b"".join(self.chunks[fd])

    def text(self, name: str) -> str:
        """Captured ``"stdout"`` or ``"stderr"``, decoded with replacement."""
        return self.data(self.streams[name]).decode("utf-8", "replace")

    def close(self) -> None:
        """Close every pipe (the result pipe included)."""
        self.selector.close()
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()
        with contextlib.suppress(OSError):
            os.close(self.result_fd)


def _exited(pid: int) -> bool:
    """Whether the child has exited, without reaping it (its pid stays reserved)."""
    try:
        info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return True
    return info is not None


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL the sandbox's process group; the leader is not reaped yet, so the id is ours."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


def _reap(process: subprocess.Popen[bytes]) -> float | None:
    """Wait for the (killed) leader; its CPU seconds including the children it waited for."""
    try:
        _, status, usage = os.wait4(process.pid, 0)
    except ChildProcessError:
        process.returncode = process.returncode if process.returncode is not None else -9
        return None
    process.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_utime + usage.ru_stime


def _records(data: bytes, nonce: str) -> list[dict[str, object]]:
    records = []
    for line in data.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("n") == nonce:
            records.append(record)
    return records


class _Tally:
    """Test outcomes gathered over the sandboxes of one run."""

    def __init__(self, n_tests: int, output_cap: int) -> None:
        self.outcomes = ["not run"] * n_tests
        self.messages = [""] * n_tests
        self.resume_at = 0
        self.finished = False
        self.status = "ok"
        self.program_message = ""
        self.output = {_STDOUT: "", _STDERR: ""}
        self.output_cap = output_cap
        self.truncated = False
        self.cpu = 0.0

    def absorb(self, segment: _Segment, resolved: _Resolved) -> None:
        """Record one sandbox's results; decide whether the run is over."""
        if segment.end in ("done", "exited") and not any(r.get("ready") for r in segment.records):
            raise VerifierError(
                f"the sandbox did not start (exit status {segment.returncode}; "
                f"{resolved.description}): {segment.stderr[-500:].strip() or 'no output'}. "
                "Is Limits.memory_bytes too small for the interpreter?")
        self._add_output(segment)
        program = next((r for r in segment.records if "program" in r), None)
        if program is None or program.get("program") != "passed":
            self._program_failed(program, segment)
            return
        reported = _test_records(segment.records)
        for index, record in reported:
            self._set(self.resume_at + index, record)
        next_index = self.resume_at + (reported[-1][0] + 1 if reported else 0)
        stopped_by_cpu = bool(reported) and reported[-1][1].get("s") == "cpu"
        self._advance(segment, next_index, stopped_by_cpu)

    def _set(self, index: int, record: Mapping[str, object]) -> None:
        if 0 <= index < len(self.outcomes):
            status = str(record.get("s"))
            self.outcomes[index] = "timeout" if status == "cpu" else status
            self.messages[index] = str(record.get("m", ""))

    def _advance(self, segment: _Segment, next_index: int, stopped_by_cpu: bool) -> None:
        n_tests = len(self.outcomes)
        if segment.end == "done" or next_index >= n_tests:
            self.finished = True
        elif segment.end == "deadline":
            self._fill(next_index, "timeout", "wall-time limit")
            self.status, self.finished = "timeout", True
        else:
            if not stopped_by_cpu:
                self.outcomes[next_index] = "timeout" if segment.end == "hung" else "error"
                self.messages[next_index] = _abnormal(segment)
                next_index += 1
            self.resume_at = next_index
            self.finished = next_index >= n_tests

    def _program_failed(self, program: Mapping[str, object] | None, segment: _Segment) -> None:
        self.finished = True
        if program is None and segment.end == "deadline":
            self._fill(self.resume_at, "timeout", "wall-time limit")
            self.status = "timeout"
            return
        self.program_message = str(program.get("m", "")) if program else _abnormal(segment)
        if program is not None and program.get("program") in ("timeout", "cpu"):
            self.program_message = f"timeout ({self.program_message})"
        self._fill(self.resume_at, "error", "program error")
        self.status = "program error" if self.resume_at == 0 else "crashed"

    def _fill(self, start: int, outcome: str, message: str) -> None:
        for index in range(start, len(self.outcomes)):
            if self.outcomes[index] == "not run":
                self.outcomes[index], self.messages[index] = outcome, message

    def _add_output(self, segment: _Segment) -> None:
        self.cpu += segment.cpu
        self.truncated = self.truncated or segment.truncated
        for name, text in ((_STDOUT, segment.stdout), (_STDERR, segment.stderr)):
            joined = self.output[name] + text
            if len(joined) > self.output_cap:
                joined, self.truncated = joined[:self.output_cap], True
            self.output[name] = joined

    def result(self, wall: float, resolved: _Resolved) -> TestRun:
        """The run's :class:`TestRun`."""
        status = self.status
        if not self.finished:  # out of sandboxes: the rest stays "not run"
            status = "crashed"
        return TestRun(
            outcomes=tuple(self.outcomes), status=status, messages=tuple(self.messages),
            program_message=self.program_message, stdout=self.output[_STDOUT],
            stderr=self.output[_STDERR], output_truncated=self.truncated,
            wall_seconds=wall, cpu_seconds=self.cpu, sandbox=resolved.description)


def _test_records(records: list[dict[str, object]]) -> list[tuple[int, dict[str, object]]]:
    """The per-test records, with their test index."""
    found = []
    for record in records:
        index = record.get("i")
        if isinstance(index, int):
            found.append((index, record))
    return found


def _abnormal(segment: _Segment) -> str:
    if segment.end == "hung":
        return "hung (killed: the per-test timer could not interrupt it)"
    return f"crashed (exit status {segment.returncode})"


# --------------------------------------------------------------------------- sandbox setup


@functools.lru_cache(maxsize=16)
def _resolve(sandbox: Sandbox) -> _Resolved:
    """The first working (isolation, interpreter, uid) for ``sandbox`` on this host."""
    for uid in _uids(sandbox.user):
        for python in _interpreters(sandbox.python):
            for prefix in _prefixes(sandbox.isolation):
                candidate = _Resolved(prefix, python, uid)
                if _probe(candidate):
                    return candidate
    raise VerifierError(
        f"no way to run candidates here with {sandbox}: the interpreter does not start "
        "in the sandbox (for isolation='namespace', user namespaces may be disabled: "
        "try isolation='guard'; as root with user=65534 the interpreter must be readable "
        "by that user: pass Sandbox(python=...) or user=None).")


def _uids(user: int | str | None) -> list[int | None]:
    root = os.geteuid() == 0
    if user == "auto":
        return [NOBODY, None] if root else [None]
    if user is None or (isinstance(user, int) and user == os.geteuid()):
        return [None]
    if not root:
        raise VerifierError(f"Sandbox(user={user}) needs a root host to switch users.")
    return [int(user)]


def _interpreters(python: str | None) -> list[str]:
    if python is not None:
        return [python]
    found = [sys.executable, os.path.realpath(sys.executable),
             shutil.which("python3", path=_STANDARD_PATH) or ""]
    return [p for i, p in enumerate(found) if p and p not in found[:i]]


def _prefixes(isolation: str) -> list[tuple[str, ...]]:
    unshare = shutil.which("unshare", path=_STANDARD_PATH) or shutil.which("unshare")
    namespace = [(unshare, *_NAMESPACE_FLAGS)] if unshare else []
    if isolation == "namespace":
        return namespace
    if isolation == "guard":
        return [()]
    return [*namespace, ()]


def _probe(candidate: _Resolved) -> bool:
    """Whether the runner's interpreter starts in this sandbox (a trivial run)."""
    command = [*candidate.prefix, candidate.python, "-I", "-c",
               "import json, mmap, resource, signal; print('ok')"]
    switch = {} if candidate.uid is None else {
        "user": candidate.uid, "group": candidate.uid, "extra_groups": []}
    try:
        done = subprocess.run(command, capture_output=True, timeout=20, cwd="/",
                              env=_child_env("/"), check=False, **switch)
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0 and done.stdout.strip() == b"ok"


def _make_workdir(uid: int | None) -> str:
    workdir = tempfile.mkdtemp(prefix="ttc-sandbox-")
    if uid is not None:
        os.chown(workdir, uid, uid)
    return workdir


def _remove_tree(path: str) -> None:
    """Remove the work directory, even where a candidate made parts of it unwritable."""
    shutil.rmtree(path, ignore_errors=True)
    if not os.path.exists(path):
        return
    for root, dirs, _ in os.walk(path):
        for name in dirs:
            with contextlib.suppress(OSError):
                os.chmod(os.path.join(root, name), 0o700)
    with contextlib.suppress(OSError):
        os.chmod(path, 0o700)
    shutil.rmtree(path, ignore_errors=True)


def describe_sandbox(sandbox: Sandbox | None = None) -> str:
    """How candidates will run here, e.g. ``"namespace (user+net+pid), uid 65534, ..."``.

    Raises:
        VerifierError: no configuration of ``sandbox`` works on this host.
    """
    return _resolve(sandbox if sandbox is not None else Sandbox()).description
