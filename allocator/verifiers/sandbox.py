"""Run untrusted Python in sandboxed subprocesses, judged from outside the candidate.

Candidate programs and test cases are untrusted: a crash, a hang, endless output, a memory
hog, a fork bomb, or code written to fake its results must never take the host down, hang
the caller or be scored as a pass. Two entry points: :func:`run_tests` (synchronous, for
batch jobs and process pools; it returns a :class:`TestRun` and its docstring describes
the two processes, the limits and the isolation) and :func:`describe_sandbox` (how
candidates will run on this host). What to run and how to score it is
:mod:`allocator.verifiers.code`'s concern.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
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

_ISOLATIONS = ("auto", "bubblewrap", "namespace", "guard")
# --as-pid-1: the runner is the namespace's init, a child the outer bwrap waits for (so its
# CPU time is counted); when it dies, every process of the namespace dies with it.
_BWRAP_FLAGS = ("--unshare-all", "--as-pid-1", "--die-with-parent", "--new-session",
                "--cap-drop", "ALL", "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp")
_NAMESPACE_FLAGS = ("--user", "--map-root-user", "--net", "--pid", "--ipc", "--uts", "--mount",
                    "--fork", "--kill-child")
#: The system folders a candidate sees (read-only); links among them are recreated.
_SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
_HIDDEN = "/usr/local"  # site-specific programs and scripts: hidden unless the interpreter
# The hand-written equivalent of the bubblewrap command, run by ``sh`` as root of a new user
# namespace (mapped to the candidate's uid): a tmpfs root holding read-only binds of the
# view, a private /tmp and /proc, four device nodes and the work folder; then chroot and
# drop every capability (a process with CAP_SYS_CHROOT or CAP_SYS_ADMIN could leave it).
_NAMESPACE_SCRIPT = r"""set -eu
root=$1; work=$2; shift 2
PATH=$PATH:/usr/sbin:/sbin
mount -t tmpfs -o mode=0755 ttc-root "$root"
while [ "$1" != "--" ]; do
  case "$1" in
    ro:*) p=${1#ro:}; mkdir -p "$root$p"; mount --bind "$p" "$root$p"
          mount -o remount,bind,ro "$root$p" ;;
    link:*) spec=${1#link:}; ln -s "${spec%%:*}" "$root${spec#*:}" ;;
    hide:*) p=${1#hide:}; mount -t tmpfs -o ro,mode=0755 ttc-hidden "$root$p" ;;
  esac
  shift
done
shift
mkdir -p "$root/tmp" "$root/proc" "$root/dev"
mount -t tmpfs -o mode=1777 ttc-tmp "$root/tmp"
mount -t proc proc "$root/proc"
for device in null zero random urandom; do
  touch "$root/dev/$device"; mount --bind "/dev/$device" "$root/dev/$device"
done
mkdir -p "$root$work"; mount --bind "$work" "$root$work"
mount -o remount,bind,ro "$root"
exec chroot "$root" setpriv --bounding-set=-all --inh-caps=-all --no-new-privs \
  /bin/sh -c 'cd "$0" && exec "$@"' "$work" "$@"
"""
_STANDARD_PATH = "/usr/local/bin:/usr/bin:/bin"
_KILL_GRACE_SECONDS = 0.5
_PAYLOAD = ".ttc-payload.json"
_STDOUT, _STDERR = "stdout", "stderr"
#: The judge's exit status when the candidate's process died under it.
_PEER_GONE = 86

# Two runners execute inside the sandbox, each in its own process (and, with bubblewrap or
# namespaces, its own PID namespace and file system view): the candidate runner runs the
# candidate program and then answers requests (call this function, read that attribute);
# the judge runner runs the test cases, reaching the candidate only through those
# requests, and is the only process that reports outcomes to the host. Data crosses by
# value as tagged JSON (never pickle), so no candidate object (an ``__eq__`` that says
# yes to everything) and no candidate code ever runs in the judge. Standard library only;
# Python >= 3.8.
_COMMON = r'''
import builtins, json, mmap, os, resource, signal, struct, sys

_write, _dumps, _loads, _getpid, _exit = os.write, json.dumps, json.loads, os.getpid, os._exit


def finish():
    # exit at once: no waiting for threads left running, no atexit hooks
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:
            pass
    _exit(0)


class _Timeout(BaseException):
    pass


class _CpuLimit(BaseException):
    pass


_BLOCKED = frozenset({
    "socket.__new__", "socket.connect", "socket.bind", "socket.getaddrinfo",
    "socket.gethostbyname", "socket.gethostbyaddr", "socket.sendto", "os.system",
    "os.exec", "os.posix_spawn", "subprocess.Popen", "pty.spawn", "os.killpg",
})


def set_limits(lim):
    cpu = lim["cpu_seconds"]
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    resource.setrlimit(resource.RLIMIT_AS, (lim["memory_bytes"],) * 2)
    resource.setrlimit(resource.RLIMIT_FSIZE, (lim["file_bytes"],) * 2)
    resource.setrlimit(resource.RLIMIT_NPROC, (lim["max_processes"],) * 2)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def install_guard(max_forks):
    counter = mmap.mmap(-1, 8)  # shared with forked children: one count per process tree

    def hook(event, args):
        if event in _BLOCKED or (event == "os.kill" and args[0] <= 0):
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


def read_payload():
    with open(sys.argv[1], "rb") as source:
        payload = _loads(source.read().decode("utf-8"))
    os.unlink(sys.argv[1])
    return payload


def start(lim, state, on_alarm):
    def on_xcpu(signum, frame):
        state["fired"] = "cpu"
        raise _CpuLimit()

    set_limits(lim)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    signal.signal(signal.SIGALRM, on_alarm)
    signal.signal(signal.SIGPROF, on_alarm)
    signal.signal(signal.SIGXCPU, on_xcpu)


def timed(thunk, cpu_seconds, wall_seconds, state):
    # (status, value): status "passed" (value: what thunk returned), "timeout", "cpu",
    # "failed" or "error" (value: the exception)
    try:
        state["fired"] = None
        state["armed"] = True
        signal.setitimer(signal.ITIMER_PROF, cpu_seconds, 0.05)
        signal.setitimer(signal.ITIMER_REAL, wall_seconds, 0.05)
        try:
            value = thunk()
        finally:
            state["armed"] = False
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.setitimer(signal.ITIMER_PROF, 0)
        if state["fired"] == "cpu":  # the code swallowed the limit (bare except)
            return "cpu", "CPU time limit"
        if state["fired"]:
            return "timeout", state["fired"]
        return "passed", value
    except _Timeout as error:
        return "timeout", error.args[0]
    except _CpuLimit:
        return "cpu", "CPU time limit"
    except AssertionError as error:
        return "failed", error
    except BaseException as error:
        return "error", error


class Lines:
    # newline-separated JSON messages from a pipe, at most `cap` bytes each
    def __init__(self, fd, cap):
        self.fd, self.cap, self.buffer = fd, cap, b""

    def next(self):
        while b"\n" not in self.buffer:
            if len(self.buffer) > self.cap:
                raise ValueError("a message longer than %d bytes" % self.cap)
            chunk = os.read(self.fd, 1 << 16)
            if not chunk:
                raise EOFError()
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return _loads(line.decode("utf-8"))


def send(fd, message):
    data = (_dumps(message) + "\n").encode("utf-8")
    while data:
        data = data[_write(fd, data):]


# Data crosses between the candidate and the judge as tagged JSON, by value. Only exact
# built-in types (and the built-in part of subclasses, read through the base type's own
# methods) are copied: a subclass's __eq__ never reaches the judge.
def encode(value, handle, depth=0):
    kind = type(value)
    if value is None or kind is bool:
        return value
    if depth > 200:
        raise ValueError("data nested more than 200 deep")
    deeper = depth + 1
    if issubclass(kind, int):
        return ["i", hex(int.__int__(value))]
    if issubclass(kind, float):
        return ["f", float.hex(float.__float__(value))]
    if issubclass(kind, complex):
        return ["c", float.hex(complex.real.__get__(value)),
                float.hex(complex.imag.__get__(value))]
    if issubclass(kind, str):
        return ["s", str.__str__(value)]
    if issubclass(kind, bytes):
        return ["b", memoryview(value).hex()]
    if issubclass(kind, bytearray):
        return ["ba", memoryview(value).hex()]
    if issubclass(kind, list):
        return ["l", [encode(item, handle, deeper) for item in list.copy(value)]]
    if issubclass(kind, tuple):
        items = tuple.__getitem__(value, slice(None))
        return ["t", [encode(item, handle, deeper) for item in items]]
    if issubclass(kind, dict):
        return ["d", [[encode(k, handle, deeper), encode(v, handle, deeper)]
                      for k, v in list(dict.items(value))]]
    if issubclass(kind, frozenset):
        return ["fs", [encode(item, handle, deeper) for item in list(frozenset.__iter__(value))]]
    if issubclass(kind, set):
        return ["set", [encode(item, handle, deeper) for item in list(set.__iter__(value))]]
    return handle(value)


_SCALARS = {
    "i": lambda v: int(v[1], 16),
    "f": lambda v: float.fromhex(v[1]),
    "c": lambda v: complex(float.fromhex(v[1]), float.fromhex(v[2])),
    "s": lambda v: str(v[1]),
    "b": lambda v: bytes.fromhex(v[1]),
    "ba": lambda v: bytearray.fromhex(v[1]),
}


def decode(value, handle):
    if value is None or value is True or value is False:
        return value
    tag = value[0]
    if tag in _SCALARS:
        return _SCALARS[tag](value)
    if tag == "l":
        return [decode(item, handle) for item in value[1]]
    if tag == "t":
        return tuple(decode(item, handle) for item in value[1])
    if tag == "d":
        return {decode(k, handle): decode(v, handle) for k, v in value[1]}
    if tag == "fs":
        return frozenset(decode(item, handle) for item in value[1])
    if tag == "set":
        return {decode(item, handle) for item in value[1]}
    return handle(value)
'''

_CANDIDATE = _COMMON + r'''
OPS = {
    "call": lambda o, a, k: o(*a, **k),
    "getattr": lambda o, a, k: getattr(o, a[0]),
    "setattr": lambda o, a, k: setattr(o, a[0], a[1]),
    "getitem": lambda o, a, k: o[a[0]],
    "setitem": lambda o, a, k: o.__setitem__(a[0], a[1]),
    "delitem": lambda o, a, k: o.__delitem__(a[0]),
    "iter": lambda o, a, k: iter(o),
    "next": lambda o, a, k: next(o),
    "len": lambda o, a, k: len(o),
    "contains": lambda o, a, k: a[0] in o,
    "bool": lambda o, a, k: bool(o),
    "str": lambda o, a, k: str(o),
    "repr": lambda o, a, k: repr(o),
    "hash": lambda o, a, k: hash(o),
    "eq": lambda o, a, k: o == a[0],
    "ne": lambda o, a, k: o != a[0],
    "lt": lambda o, a, k: o < a[0],
    "le": lambda o, a, k: o <= a[0],
    "gt": lambda o, a, k: o > a[0],
    "ge": lambda o, a, k: o >= a[0],
}


def detail(error):
    if isinstance(error, OSError) and isinstance(error.strerror, str):
        return error.strerror[:160]
    first = error.args[0] if error.args else None
    return first[:160] if isinstance(first, str) else None


def main():
    payload = read_payload()
    lim, out = payload["limits"], payload["out"]
    state = {"armed": False, "fired": None}
    owner = _getpid()
    objects = []

    def handle(value):
        objects.append(value)
        return ["h", len(objects) - 1]

    def lookup(value):
        if value[0] != "h":
            raise ValueError("unknown data tag")
        return objects[value[1]]

    def on_alarm(signum, frame):
        if state["armed"]:
            state["fired"] = state["fired"] or ("per-test CPU time limit"
                                                if signum == signal.SIGPROF
                                                else "per-test wall time limit")
            raise _Timeout(state["fired"])

    start(lim, state, on_alarm)
    install_guard(lim["max_processes"] - 1)
    send(out, {"ready": True})
    namespace = {"__name__": "__candidate__", "__builtins__": builtins}

    def program():
        exec(compile(payload["program"], "<candidate>", "exec"), namespace)
        return names(namespace, handle)

    status, value = timed(program, lim["test_seconds"], lim["test_wall_seconds"], state)
    if _getpid() != owner:  # a process the candidate forked: never answer
        _exit(0)
    if status != "passed":
        send(out, {"program": status, "m": describe(value) if isinstance(value, BaseException)
                   else value})
        return
    send(out, {"program": "passed", "names": value})
    serve(payload["in"], out, lookup, handle, lim, state, owner)


def names(namespace, handle):
    found = {}
    for name, value in list(namespace.items()):
        if name.startswith("__") and name.endswith("__"):
            continue
        if type(value) is type(os):
            module = getattr(value, "__name__", "")
            found[name] = ["m", module if isinstance(module, str) else "", handle(value)]
            continue
        try:
            found[name] = encode(value, handle)
        except (ValueError, RecursionError):
            found[name] = handle(value)
    return found


def serve(inp, out, lookup, handle, lim, state, owner):
    lines = Lines(inp, 1 << 26)
    while True:
        try:
            request = lines.next()
        except EOFError:
            return
        operation, target = OPS[request["op"]], lookup(["h", request["h"]])
        args = [decode(a, lookup) for a in request["a"]]
        kwargs = {str(k): decode(v, lookup) for k, v in request["k"].items()}
        status, value = timed(lambda: encode(operation(target, args, kwargs), handle),
                              lim["test_seconds"], lim["test_wall_seconds"], state)
        if _getpid() != owner:
            _exit(0)
        if status == "passed":
            send(out, {"ok": value})
        elif status == "timeout":
            send(out, {"timeout": value})
        elif status == "cpu":
            send(out, {"cpu": True})
            return
        else:
            send(out, {"exc": [type(value).__name__, detail(value)]})


try:
    main()
finally:
    finish()
'''

_JUDGE = _COMMON + r'''
PEER_GONE = @PEER_GONE@


class _Gone(BaseException):
    pass


def protect():
    # not dumpable: a process of the same user can neither ptrace this one nor open its
    # file descriptors through /proc (what a candidate would need to forge reports)
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE, 0
    except BaseException:
        pass


def rebuild(reply):
    name, text = str(reply[0]), reply[1]
    kind = getattr(builtins, name, None)
    if not (isinstance(kind, type) and issubclass(kind, BaseException)):
        kind = type(name if name.isidentifier() else "CandidateError", (Exception,), {})
    try:
        return kind(text) if isinstance(text, str) else kind()
    except BaseException:
        return type(name if name.isidentifier() else "CandidateError", (Exception,), {})(text)


def remote_class(ask):
    class Remote:
        __slots__ = ("_id",)

        def __init__(self, ident):
            object.__setattr__(self, "_id", ident)

        def __call__(self, *args, **kwargs):
            return ask("call", self, args, kwargs)

        def __getattr__(self, name):
            return ask("getattr", self, (name,))

        def __setattr__(self, name, value):
            ask("setattr", self, (name, value))

        def __getitem__(self, key):
            return ask("getitem", self, (key,))

        def __setitem__(self, key, value):
            ask("setitem", self, (key, value))

        def __delitem__(self, key):
            ask("delitem", self, (key,))

        def __iter__(self):
            return ask("iter", self)

        def __next__(self):
            return ask("next", self)

        def __len__(self):
            return ask("len", self)

        def __contains__(self, item):
            return ask("contains", self, (item,))

        def __bool__(self):
            return ask("bool", self)

        def __str__(self):
            return ask("str", self)

        def __repr__(self):
            return ask("repr", self)

        def __hash__(self):
            return ask("hash", self)

    def comparison(op):
        def compare(self, other):  # the candidate's objects compare only with its own
            return ask(op, self, (other,)) if isinstance(other, Remote) else NotImplemented
        return compare

    for op in ("eq", "ne", "lt", "le", "gt", "ge"):
        setattr(Remote, "__%s__" % op, comparison(op))
    return Remote


def main():
    payload = read_payload()
    protect()
    lim, reports, to_candidate = payload["limits"], payload["report"], payload["out"]
    state = {"armed": False, "fired": None, "peer": None}
    owner = _getpid()
    lines = Lines(payload["in"], 1 << 26)

    def report(**record):
        send(reports, record)

    def on_alarm(signum, frame):
        if state["armed"]:
            state["fired"] = state["fired"] or ("per-test CPU time limit"
                                                if signum == signal.SIGPROF
                                                else "per-test wall time limit")
            raise _Timeout(state["fired"])

    def outgoing(value):
        if isinstance(value, Remote):
            return ["h", object.__getattribute__(value, "_id")]
        raise TypeError("only data (numbers, strings, bytes, lists, tuples, dicts, sets) "
                        "and the candidate's own objects can be passed to the candidate, "
                        "not %s" % type(value).__name__)

    def incoming(value):
        if value[0] == "h" and isinstance(value[1], int):
            return Remote(value[1])
        raise ValueError("unreadable data from the candidate")

    def ask(op, target, args=(), kwargs=None):
        if state["peer"] == "gone":
            raise _Gone()
        if state["peer"] == "stuck":
            raise _Timeout(state["fired"] or "per-test wall time limit")
        request = {"op": op, "h": object.__getattribute__(target, "_id"),
                   "a": [encode(a, outgoing) for a in args],
                   "k": {k: encode(v, outgoing) for k, v in (kwargs or {}).items()}}
        try:
            send(to_candidate, request)
            reply = lines.next()
        except (_Timeout, _CpuLimit, ValueError):
            state["peer"] = "stuck"  # mid-answer: a fresh candidate runs the next tests
            raise
        except (EOFError, OSError):
            state["peer"] = "gone"
            raise _Gone()
        return answer(reply)

    def answer(reply):
        if not isinstance(reply, dict):
            reply = {}
        if "ok" in reply:
            return decode(reply["ok"], incoming)
        if "timeout" in reply:
            state["fired"] = state["fired"] or str(reply["timeout"])
            raise _Timeout(state["fired"])
        if "cpu" in reply:
            state["fired"], state["peer"] = "cpu", "gone"
            raise _CpuLimit()
        if "exc" in reply:
            raise rebuild(reply["exc"])
        state["peer"] = "stuck"
        raise ValueError("unreadable answer from the candidate")

    Remote = remote_class(ask)
    start(lim, state, on_alarm)
    install_guard(lim["max_processes"] - 1)
    try:
        if lines.next() != {"ready": True}:
            return
        report(ready=True)
        status, first = timed(lines.next, lim["test_wall_seconds"] + 1.0,
                              lim["test_wall_seconds"] + 1.0, state)
    except (EOFError, OSError, ValueError):
        _exit(PEER_GONE)
    if status != "passed":
        report(program="timeout", m=first if isinstance(first, str) else describe(first))
        return
    if not isinstance(first, dict) or first.get("program") != "passed":
        first = first if isinstance(first, dict) else {"program": "error"}
        report(program=str(first.get("program")), m=str(first.get("m", "")))
        return
    namespace = {"__name__": "__candidate__", "__builtins__": builtins}
    try:
        for name, value in first["names"].items():
            namespace[str(name)] = bind(value, incoming)
    except Exception as error:
        report(program="error", m="unreadable names from the candidate: " + describe(error))
        return
    report(program="passed", m="")
    run_tests(payload["tests"], namespace, lim, state, report, owner)


_NO_IMPORT = frozenset({"antigravity", "this", "idlelib", "turtle", "turtledemo", "tkinter",
                        "__hello__", "__phello__"})


def bind(value, incoming):
    # a module the program imported: the judge imports its own copy when it is a standard
    # library module (never one named by the candidate outside it), else keeps a handle
    if isinstance(value, list) and value and value[0] == "m":
        name = value[1] if isinstance(value[1], str) else ""
        top = name.split(".")[0]
        if top in getattr(sys, "stdlib_module_names", ()) and top not in _NO_IMPORT \
                and all(part.isidentifier() for part in name.split(".")):
            try:
                import importlib
                return importlib.import_module(name)
            except Exception:
                pass
        return incoming(["h", value[2]])
    return decode(value, incoming)


def run_tests(tests, namespace, lim, state, report, owner):
    wall = lim["test_wall_seconds"] + 0.5  # the candidate's own limit answers first
    for index, source in enumerate(tests):
        status, value = timed(
            lambda: exec(compile(source, "<test %d>" % index, "exec"), namespace),
            lim["test_seconds"], wall, state)
        if _getpid() != owner:  # a process a test forked: never report
            _exit(0)
        if state["peer"] == "gone" and status != "cpu":
            _exit(PEER_GONE)  # the host reports how the candidate died
        if isinstance(value, BaseException):
            value = describe(value)
        report(i=index, s=status, m=value if status != "passed" else "")
        if status == "cpu":
            return
        if state["peer"] == "stuck":
            report(restart=True)
            return
    report(done=True)


try:
    main()
finally:
    finish()
'''.replace("@PEER_GONE@", str(_PEER_GONE))


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

    Every backend runs the candidate program and the test cases in two processes: the
    outcomes come from the judge process, which the candidate reaches only through
    requests carrying data by value (see :func:`run_tests`).

    Attributes:
        isolation: ``"bubblewrap"`` (``bwrap --unshare-all``: private PID, network, IPC,
            UTS and mount namespaces, its own ``/proc``, an empty ``/tmp`` that vanishes,
            and a read-only view of only ``/usr`` (without ``/usr/local``), the ``/bin``
            and ``/lib`` links and the interpreter; nothing else of the host's files),
            ``"namespace"`` (the same view built by hand with ``unshare``, ``mount`` and
            ``chroot``, for hosts without bubblewrap but with user namespaces),
            ``"guard"`` (no containment: see below) or ``"auto"`` (bubblewrap where it is
            installed and works, else ``"namespace"``; never ``"guard"``). The choice is
            made once per process and reported as :attr:`TestRun.backend`.
        python: the interpreter that runs candidates; ``None`` picks the first of this
            interpreter, its real path and ``python3`` on the standard path that runs in
            the sandbox.
        user: the uid candidates run as. ``"auto"``: ``nobody`` (65534) when the host is
            root (root ignores ``RLIMIT_NPROC``), falling back to root if no interpreter
            is executable by ``nobody``; unchanged otherwise. ``None``: never switch.

    ``"guard"`` runs the processes on the host with resource limits and an audit hook
    that refuses sockets, ``exec``, ``kill(-1)`` and leaving the process group from
    Python. It cannot contain code that calls libc directly (``ctypes``): such code can
    read every file its uid can read (the project source, world-readable scripts), see
    and signal every process of its uid (``kill(-1)`` kills other candidates' processes
    running as the same user), open network connections, and leave files in ``/tmp``,
    ``/var/tmp`` and ``/dev/shm``; and where the host is not root (candidates then run as
    the host's own user) it can trace the host process itself. It still cannot forge
    outcomes through the judge (the judge is not dumpable, so the candidate cannot open
    its descriptors or trace it), but it can kill the judge (its tests then count as
    errors). Use it only for trusted code.
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


_DESCRIPTIONS = {
    "bubblewrap": "bubblewrap (own pid, net, ipc, mount namespaces; own /proc and /tmp; "
                  "read-only /usr and interpreter only)",
    "namespace": "namespace (user+net+pid+mount via unshare; own /proc and /tmp; "
                 "read-only /usr and interpreter only)",
    "guard": "guard only (no containment)",
}


@dataclass(frozen=True)
class _Resolved:
    """A sandbox made concrete: the backend, its tool, interpreter and uid that work here."""

    backend: str
    tool: str
    python: str
    uid: int | None

    @property
    def description(self) -> str:
        """E.g. ``"bubblewrap (...), uid 65534, /usr/bin/python3"``."""
        who = f"uid {self.uid}" if self.uid is not None else f"uid {os.geteuid()}"
        return f"{_DESCRIPTIONS[self.backend]}, {who}, {self.python}"

    def command(self, base: str, argv: Sequence[str]) -> list[str]:
        """The command that runs ``python *argv`` in this sandbox, working in ``base/work``."""
        work = os.path.join(base, "work")
        if self.backend == "bubblewrap":
            return [self.tool, *_BWRAP_FLAGS, *_bwrap_view(_view(self.python)),
                    "--bind", work, work, "--chdir", work, self.python, *argv]
        if self.backend == "namespace":
            return [self.tool, *_NAMESPACE_FLAGS, "/bin/sh", "-c", _NAMESPACE_SCRIPT, "sh",
                    os.path.join(base, "root"), work, *_view(self.python), "--",
                    self.python, *argv]
        return [self.python, *argv]


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
        sandbox: how the run was isolated, in words (see :class:`Sandbox`).
        backend: the isolation backend that ran it: ``"bubblewrap"``, ``"namespace"``
            or ``"guard"``.
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
    backend: str = field(default="", compare=False)

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

    Each run happens in two fresh processes, so that an untrusted candidate can neither take
    the host down, hang the caller nor be scored as a pass:

    - the *candidate* process runs the program, then answers requests (call this function,
      read that attribute) with data passed by value as tagged JSON: numbers, strings,
      bytes, lists, tuples, dicts and sets (subclasses reduced to their built-in value, so
      an ``__eq__`` that says yes to everything never reaches the judge); other objects stay
      in the candidate and are referred to by handle;
    - the *judge* process runs the test cases against those answers and is the only one
      that reports outcomes to the host. No candidate code runs in it, the candidate cannot
      see the tests, and the judge is not dumpable (not traceable, its descriptors not
      openable through ``/proc``). A candidate that exits, crashes or writes forged
      records gets errors, never passes. Limits of the by-value protocol: a test cannot
      pass its own functions to the candidate, a candidate's changes to its arguments are
      not seen by the test, and the candidate's objects compare equal only to its own.

    Both processes run with:

    - a wall-time limit; on expiry every process of the run is killed;
    - ``RLIMIT_CPU``, ``RLIMIT_AS`` (memory), ``RLIMIT_FSIZE``, ``RLIMIT_NPROC`` and no core
      dumps, set by the runner before any untrusted code runs;
    - per-test CPU and wall timeouts (``setitimer``), so one looping test case does not hide
      the others; a test that kills an interpreter or hangs in C code is recorded as such
      and the run resumes with the next case in fresh processes;
    - captured stdout/stderr capped at :attr:`Limits.output_bytes`;
    - a fresh working directory (and ``HOME``), removed afterwards, and ``python -I``;
    - an audit-hook guard that refuses sockets, DNS, ``exec``/``system``/``subprocess``,
      ``kill`` of process groups and ``setsid``/``setpgid``, and counts forks;
    - an isolation backend (:class:`Sandbox`): **bubblewrap** where installed (private PID,
      network, IPC, UTS and mount namespaces, its own ``/proc``, an empty ``/tmp`` that
      vanishes, and a read-only view of ``/usr`` and the interpreter only: the project, the
      home folders, ``/etc``, ``/work`` and ``/usr/local`` are not there), else the same
      view built with ``unshare``, ``mount`` and ``chroot``; the guard alone only on
      request (see :class:`Sandbox` for what it cannot contain).

    When the host runs as root (root ignores ``RLIMIT_NPROC``), candidates run as ``nobody``
    (uid 65534) by default, with the first interpreter that user can execute (which may be
    the system's ``python3`` rather than a virtual environment's under ``/root``).

    Every test case is Python source executed after the program, in order, in a
    namespace holding the program's globals (data copied by value, modules imported
    afresh, functions and other objects as handles into the candidate process); it
    passes when it raises nothing. Tests run in a judge process apart from the candidate,
    which sees only the requests the tests make. A test that raises
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
    bases = [_make_workdir(resolved.uid), _make_workdir(resolved.uid)]
    try:
        return _run_in(bases, resolved, program, tests, limits, deadline)
    finally:
        for base in bases:
            _remove_tree(base)


def _run_in(bases: list[str], resolved: _Resolved, program: str, tests: list[str],
            limits: Limits, deadline: float) -> _Segment:
    """One candidate process and one judge process, joined by two pipes.

    Only the judge holds the pipe that reports outcomes to the host; the candidate holds
    only its ends of the request and answer pipes (and runs in another sandbox).
    """
    requests, answers, reports = os.pipe(), os.pipe(), os.pipe()
    lim = _runner_limits(limits)
    candidate = {"in": requests[0], "out": answers[1], "limits": lim, "program": program}
    judge = {"in": answers[0], "out": requests[1], "report": reports[1], "limits": lim,
             "tests": tests}
    start = time.monotonic()
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for base, runner, payload, fds in (
                (bases[0], _CANDIDATE, candidate, (requests[0], answers[1])),
                (bases[1], _JUDGE, judge, (answers[0], requests[1], reports[1]))):
            _write_payload(base, payload, resolved.uid)
            processes.append(_spawn(resolved, base, runner, fds))
    except BaseException:
        for process in processes:
            _kill_group(process)
            _reap(process)
        os.close(reports[0])
        raise
    finally:
        for fd in (*requests, *answers, reports[1]):
            os.close(fd)
    with contextlib.closing(_Pipes(processes, reports[0], limits.output_bytes)) as pipes:
        end, cpu = pipes.collect(deadline, hang_after=limits.test_wall_seconds + 1.5)
        records = _records(pipes.data(reports[0]))
        if end == "exited" and any(record.get("done") for record in records):
            end = "done"
        judge_status, candidate_status = processes[1].returncode, processes[0].returncode
        returncode = candidate_status if judge_status == _PEER_GONE else judge_status
        return _Segment(records, end, returncode, pipes.text(_STDOUT),
                        pipes.text(_STDERR), pipes.truncated,
                        cpu if cpu is not None and end in ("done", "exited")
                        else time.monotonic() - start)


def _spawn(resolved: _Resolved, base: str, runner: str,
           fds: tuple[int, ...]) -> subprocess.Popen[bytes]:
    work = os.path.join(base, "work")
    command = resolved.command(base, ["-I", "-c", runner, _PAYLOAD])
    switch = {} if resolved.uid is None else {
        "user": resolved.uid, "group": resolved.uid, "extra_groups": []}
    try:
        return subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            cwd=work, env=_child_env(work), pass_fds=fds, start_new_session=True,
            close_fds=True, **switch)
    except OSError as error:
        raise VerifierError(f"could not start the sandbox ({command[0]}): {error}") from error


def _child_env(workdir: str) -> dict[str, str]:
    return {"PATH": _STANDARD_PATH, "HOME": workdir, "TMPDIR": workdir, "LANG": "C.UTF-8",
            "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _write_payload(base: str, payload: Mapping[str, object], uid: int | None) -> None:
    path = os.path.join(base, "work", _PAYLOAD)
    with open(path, "w", encoding="utf-8") as file:
        json.dump(payload, file)
    if uid is not None:
        os.chown(path, uid, uid)


class _Pipes:
    """Reads the sandbox processes' stdout, stderr and the judge's report pipe.

    The last process is the judge: the run ends when it exits, at the deadline, or when
    it has reported nothing for ``hang_after`` seconds (a test the in-child timer could
    not interrupt). Output beyond the cap is read and dropped (so a flooding child never
    blocks on a full pipe). Every process group is killed in any case at the end.
    """

    def __init__(self, processes: list[subprocess.Popen[bytes]], result_fd: int,
                 cap: int) -> None:
        self.processes = processes
        self.streams: dict[str, list[int]] = {_STDOUT: [], _STDERR: []}
        self.caps = {result_fd: 1 << 24}
        for process in processes:
            assert process.stdout is not None and process.stderr is not None
            for name, stream in ((_STDOUT, process.stdout), (_STDERR, process.stderr)):
                self.streams[name].append(stream.fileno())
                self.caps[stream.fileno()] = cap
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
        """Read until the judge ends; returns how it ended and the processes' CPU seconds."""
        pid, end = self.processes[-1].pid, "exited"
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
        for process in self.processes:
            _kill_group(process)
        self._drain_until(time.monotonic() + _KILL_GRACE_SECONDS)
        used = [_reap(process) for process in self.processes]
        return end, None if None in used else sum(u for u in used if u is not None)

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
        """Captured ``"stdout"`` or ``"stderr"`` (the candidate's, then the judge's)."""
        return b"".join(self.data(fd) for fd in self.streams[name]).decode("utf-8", "replace")

    def close(self) -> None:
        """Close every pipe (the result pipe included)."""
        self.selector.close()
        for process in self.processes:
            for stream in (process.stdout, process.stderr):
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


def _records(data: bytes) -> list[dict[str, object]]:
    records = []
    for line in data.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
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
        # the judge stopped cleanly after its last report (the candidate ran out of CPU
        # time, or is stuck mid-answer): the next case resumes in fresh processes
        clean_stop = bool(reported) and (reported[-1][1].get("s") == "cpu" or any(
            record.get("restart") for record in segment.records))
        self._advance(segment, next_index, clean_stop)

    def _set(self, index: int, record: Mapping[str, object]) -> None:
        if 0 <= index < len(self.outcomes):
            status = str(record.get("s"))
            self.outcomes[index] = "timeout" if status == "cpu" else status
            self.messages[index] = str(record.get("m", ""))

    def _advance(self, segment: _Segment, next_index: int, clean_stop: bool) -> None:
        n_tests = len(self.outcomes)
        if segment.end == "done" or next_index >= n_tests:
            self.finished = True
        elif segment.end == "deadline":
            self._fill(next_index, "timeout", "wall-time limit")
            self.status, self.finished = "timeout", True
        else:
            if not clean_stop:
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
            wall_seconds=wall, cpu_seconds=self.cpu, sandbox=resolved.description,
            backend=resolved.backend)


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
    """The first working (backend, interpreter, uid) for ``sandbox`` on this host (cached)."""
    backends = _backends(sandbox.isolation)
    for uid in _uids(sandbox.user):
        for backend, tool in backends:
            for python in _interpreters(sandbox.python, contained=backend != "guard"):
                candidate = _Resolved(backend, tool, python, uid)
                if _probe(candidate):
                    return candidate
    raise VerifierError(
        f"no way to run candidates here with {sandbox}: {_why_not(sandbox.isolation)} "
        "As root with user=65534 the interpreter must also be readable by that user: "
        "pass Sandbox(python=...) or user=None.")


def _why_not(isolation: str) -> str:
    install = ("install bubblewrap (apt-get install -y bubblewrap; `make install` does it "
               "as root)")
    if isolation == "bubblewrap":
        found = _which("bwrap")
        return (f"bubblewrap ({found}) did not start the interpreter here (user "
                "namespaces disabled, or the interpreter missing?)."
                if found else f"bwrap is not installed: {install}.")
    if isolation == "namespace":
        return ("unshare did not start the interpreter in new user, mount and PID "
                "namespaces here (user namespaces disabled, or the interpreter missing?).")
    if isolation == "guard":
        return "the interpreter does not start."
    return (f"neither bubblewrap nor unshare namespaces work here: {install}, or enable "
            "user namespaces; Sandbox(isolation='guard') runs uncontained (see Sandbox).")


def _which(name: str) -> str | None:
    return shutil.which(name, path=_STANDARD_PATH) or shutil.which(name)


def _uids(user: int | str | None) -> list[int | None]:
    root = os.geteuid() == 0
    if user == "auto":
        return [NOBODY, None] if root else [None]
    if user is None or (isinstance(user, int) and user == os.geteuid()):
        return [None]
    if not root:
        raise VerifierError(f"Sandbox(user={user}) needs a root host to switch users.")
    return [int(user)]


def _interpreters(python: str | None, contained: bool) -> list[str]:
    """Interpreters to try. A contained sandbox never runs a virtual environment's
    ``python`` (its folder, often inside the project, would have to be in the view): the
    real interpreter behind it, with the standard library only."""
    if python is not None:
        return [python]
    system = shutil.which("python3", path=_STANDARD_PATH)
    found = [os.path.realpath(sys.executable), os.path.realpath(system) if system else ""]
    if not contained:
        found.insert(0, sys.executable)
    return [p for i, p in enumerate(found) if p and p not in found[:i]]


def _backends(isolation: str) -> list[tuple[str, str]]:
    """(backend, tool) pairs to try, in order of preference."""
    found = []
    if isolation in ("auto", "bubblewrap"):
        bwrap = _which("bwrap")
        found += [("bubblewrap", bwrap)] if bwrap else []
    if isolation in ("auto", "namespace"):
        unshare = _which("unshare")
        found += [("namespace", unshare)] if unshare else []
    if isolation == "guard":
        found.append(("guard", ""))
    return found


def _view(python: str) -> list[str]:
    """What a candidate sees of the host: ``ro:PATH``, ``link:TARGET:PATH``, ``hide:PATH``.

    The system folders (read-only; links such as ``/lib -> usr/lib`` recreated), the
    interpreter's installation if it lies elsewhere, and ``/usr/local`` hidden unless the
    interpreter lives there.
    """
    view = []
    for path in _SYSTEM_DIRS:
        if os.path.islink(path):
            view.append(f"link:{os.readlink(path)}:{path}")
        elif os.path.isdir(path):
            view.append(f"ro:{path}")
    prefix = os.path.dirname(os.path.dirname(os.path.realpath(python)))
    inside = [d for d in (*_SYSTEM_DIRS, _HIDDEN) if prefix == d or prefix.startswith(d + "/")]
    if not inside and prefix != "/":
        view.append(f"ro:{prefix}")
    if os.path.isdir(_HIDDEN) and _HIDDEN not in inside:
        view.append(f"hide:{_HIDDEN}")
    return view


def _bwrap_view(view: list[str]) -> list[str]:
    """The bubblewrap flags of a :func:`_view`."""
    flags = []
    for item in view:
        kind, _, rest = item.partition(":")
        if kind == "ro":
            flags += ["--ro-bind", rest, rest]
        elif kind == "link":
            target, _, path = rest.rpartition(":")
            flags += ["--symlink", target, path]
        else:
            flags += ["--tmpfs", rest, "--remount-ro", rest]
    return flags


def _probe(candidate: _Resolved) -> bool:
    """Whether the runner's interpreter starts in this sandbox (a trivial run)."""
    base = _make_workdir(candidate.uid)
    command = candidate.command(base, [
        "-I", "-c", "import ctypes, json, mmap, resource, signal; print('ok')"])
    switch = {} if candidate.uid is None else {
        "user": candidate.uid, "group": candidate.uid, "extra_groups": []}
    try:
        done = subprocess.run(command, capture_output=True, timeout=20, cwd="/",
                              env=_child_env("/"), check=False, **switch)
    except (OSError, subprocess.SubprocessError):
        return False
    finally:
        _remove_tree(base)
    return done.returncode == 0 and done.stdout.strip() == b"ok"


def _make_workdir(uid: int | None) -> str:
    """A fresh folder holding ``work`` (the sandbox's working folder) and ``root``."""
    base = tempfile.mkdtemp(prefix="ttc-sandbox-")
    for path in (base, os.path.join(base, "work"), os.path.join(base, "root")):
        os.makedirs(path, exist_ok=True)
        if uid is not None:
            os.chown(path, uid, uid)
    return base


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


def sandbox_backend(sandbox: Sandbox | None = None) -> str:
    """The backend candidates will run in here: ``"bubblewrap"``, ``"namespace"``, ``"guard"``.

    Detected once per process and ``Sandbox`` value (the first that works is kept).

    Raises:
        VerifierError: no configuration of ``sandbox`` works on this host.
    """
    return _resolve(sandbox if sandbox is not None else Sandbox()).backend


def describe_sandbox(sandbox: Sandbox | None = None) -> str:
    """How candidates will run here, e.g. ``"bubblewrap (...), uid 65534, /usr/bin/python3"``.

    Raises:
        VerifierError: no configuration of ``sandbox`` works on this host.
    """
    return _resolve(sandbox if sandbox is not None else Sandbox()).description
