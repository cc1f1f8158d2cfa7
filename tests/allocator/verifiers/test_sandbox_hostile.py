"""Hostile candidates: code written to attack the runner, one table row per attack.

Every row runs in real sandboxes (no mocks), in every isolation backend that claims
containment on this host (bubblewrap, and the hand-written namespace fallback). Each row
says what the candidate tries and what must hold afterwards; the rows reproduce the
attacks of issue 14, item 11 (they all succeeded against the single-process runner).

The bubblewrap rows skip only where ``bwrap`` is not installed (``make install`` installs
it as root); CI installs it, so CI runs them.
"""

from __future__ import annotations

import os
import secrets
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from allocator.errors import VerifierError
from allocator.verifiers import (
    CodeVerifier,
    Limits,
    Sandbox,
    TestRun,
    describe_sandbox,
    run_tests,
)
from allocator.verifiers import sandbox as sandbox_module

PROJECT_FILE = Path(sandbox_module.__file__).resolve()
TOKEN = secrets.token_hex(6)
FAILING_TESTS = ["assert f(1) == 2", "assert f(2) == 3", "assert f(3) == 4"]


def backends() -> list:
    """Every containing backend; bubblewrap skips (with the reason) only where absent."""
    bwrap = pytest.param("bubblewrap", marks=pytest.mark.skipif(
        shutil.which("bwrap") is None,
        reason="bubblewrap is not installed (apt-get install -y bubblewrap; make install "
               "does it as root)"))
    return [bwrap, "namespace"]


def sandbox_for(isolation: str) -> Sandbox:
    sandbox = Sandbox(isolation=isolation)
    try:
        describe_sandbox(sandbox)
    except VerifierError as error:
        if isolation == "bubblewrap":
            raise  # bwrap is installed (else skipped): it must work
        pytest.skip(f"{isolation} unavailable here: {error}")
    return sandbox


# --------------------------------------------------------------------------- forging


FORGE_THROUGH_GC = """
import gc, json, os
def f(x):
    return 0
for thing in gc.get_objects():
    if isinstance(thing, dict) and 'nonce' in thing and 'fd' in thing:
        fd, nonce = thing['fd'], thing['nonce']
        n = len(thing.get('tests', []))
        records = [{'program': 'passed', 'm': '', 'n': nonce}]
        records += [{'i': i, 's': 'passed', 'm': '', 'n': nonce} for i in range(n)]
        records.append({'done': True, 'cpu': 0.0, 'n': nonce})
        for record in records:
            os.write(fd, (json.dumps(record) + '\\n').encode())
        os._exit(0)
"""

FORGE_ON_EVERY_FD = """
import json, os
def f(x):
    return 0
lines = [{'ready': True}, {'program': 'passed', 'm': '', 'names': {}}]
lines += [{'i': i, 's': 'passed', 'm': ''} for i in range(8)] + [{'done': True}]
lines += [{'ok': True}] * 8
payload = ''.join(json.dumps(line) + '\\n' for line in lines).encode()
for fd in range(3, 64):
    try:
        os.write(fd, payload)
    except OSError:
        pass
os._exit(0)
"""

ALWAYS_EQUAL = """
class Anything:
    def __eq__(self, other):
        return True
    __hash__ = object.__hash__
def f(x):
    return Anything()
"""

STRING_THAT_EQUALS_ALL = """
class Liar(int):
    def __eq__(self, other):
        return True
    __hash__ = int.__hash__
def f(x):
    return Liar(0)
"""

EXIT_ZERO_IN_THE_FUNCTION = """
import os, sys
def f(x):
    sys.stdout.flush()
    os._exit(0)
"""


# forges when called, i.e. after the judge reported the earlier tests: later records win
FORGE_THROUGH_THE_JUDGES_PROC = """
import json, os
lines = [{'i': i, 's': 'passed', 'm': ''} for i in range(8)] + [{'done': True}]
payload = ''.join(json.dumps(line) + '\\n' for line in lines).encode()
def f(x):
    for pid in os.listdir('/proc'):
        try:
            cmdline = open(f'/proc/{pid}/cmdline', 'rb').read()
            if not pid.isdigit() or b'PEER_GONE = ' not in cmdline:
                continue
            mine = {os.readlink(f'/proc/self/fd/{fd}') for fd in range(3, 16)
                    if os.path.exists(f'/proc/self/fd/{fd}')}
            for fd in os.listdir(f'/proc/{pid}/fd'):  # only the judge's report pipe
                path = f'/proc/{pid}/fd/{fd}'
                if int(fd) > 2 and os.readlink(path) not in mine:
                    os.write(os.open(path, os.O_WRONLY), payload)
        except OSError:
            pass
    return 0
"""


@dataclass(frozen=True)
class Forgery:
    name: str
    program: str


FORGERIES = [
    Forgery("writes 'passed' records on the channel it finds with gc", FORGE_THROUGH_GC),
    Forgery("writes 'passed' records on every file descriptor", FORGE_ON_EVERY_FD),
    Forgery("returns an object equal to everything", ALWAYS_EQUAL),
    Forgery("returns an int subclass equal to everything", STRING_THAT_EQUALS_ALL),
    Forgery("exits with status 0 when called", EXIT_ZERO_IN_THE_FUNCTION),
    Forgery("writes 'passed' records into the judge's descriptors through /proc",
            FORGE_THROUGH_THE_JUDGES_PROC),
]


# guard mode contains nothing, but its outcomes still come from the judge: it is a row too
@pytest.mark.parametrize("isolation", [*backends(), "guard"])
@pytest.mark.parametrize("forgery", FORGERIES, ids=lambda forgery: forgery.name)
def test_a_candidate_cannot_forge_passes(forgery: Forgery, isolation: str,
                                         small_limits: Limits) -> None:
    run = run_tests(forgery.program, FAILING_TESTS, small_limits, sandbox_for(isolation))
    assert run.passed == 0, (run.outcomes, run.messages)
    # an honest wrong answer is a failure, not a pass: the judge still judges
    honest = run_tests("def f(x):\n    return 0\n", FAILING_TESTS, small_limits,
                       sandbox_for(isolation))
    assert honest.outcomes == ("failed",) * 3


# --------------------------------------------------------------------------- the host


def read_attempt(path: str) -> str:
    return (f"try:\n    print('READ', open({path!r}, 'rb').read(64))\n"
            f"except OSError as error:\n    print('DENIED', type(error).__name__)\n")


def list_attempt(path: str) -> str:
    return (f"try:\n    print('READ', os.listdir({path!r})[:5])\n"
            f"except OSError as error:\n    print('DENIED', type(error).__name__)\n")


HOST_TMP_FILES = [f"/tmp/ttc-hostile-{TOKEN}", f"/var/tmp/ttc-hostile-{TOKEN}",
                  f"/dev/shm/ttc-hostile-{TOKEN}"]

LEAVE_FILES = "".join(
    f"try:\n    open({path!r}, 'w').write('x')\nexcept OSError:\n    pass\n"
    for path in HOST_TMP_FILES)

COUNT_PROCESSES = "print('PIDS', sum(name.isdigit() for name in os.listdir('/proc')))\n"


def denied(run: TestRun) -> bool:
    return "DENIED" in run.stdout and "READ" not in run.stdout


def hidden_unless_interpreter(run: TestRun) -> bool:
    interpreter = run.sandbox.rsplit(", ", 1)[-1]
    return denied(run) or os.path.realpath(interpreter).startswith("/usr/local/")


def few_processes(run: TestRun) -> bool:
    count = int(run.stdout.split("PIDS")[1].split()[0])
    return count <= 4


def nothing_left_in_tmp(run: TestRun) -> bool:
    return not any(os.path.exists(path) for path in HOST_TMP_FILES)


@dataclass(frozen=True)
class Probe:
    name: str
    program: str
    holds: Callable[[TestRun], bool]


PROBES = [
    Probe("reads the project source", read_attempt(str(PROJECT_FILE)), denied),
    Probe("lists /work", list_attempt("/work"), denied),
    Probe("lists the project folder", list_attempt(str(PROJECT_FILE.parents[2])), denied),
    Probe("reads /etc/passwd", read_attempt("/etc/passwd"), denied),
    Probe("lists /root", list_attempt("/root"), denied),
    Probe("lists /usr/local/bin (unless the interpreter lives there)",
          list_attempt("/usr/local/bin"), hidden_unless_interpreter),
    Probe("sees the host's processes in /proc", COUNT_PROCESSES, few_processes),
    Probe("leaves files in the host's temporary folders", LEAVE_FILES, nothing_left_in_tmp),
]


@pytest.mark.parametrize("isolation", backends())
@pytest.mark.parametrize("probe", PROBES, ids=lambda probe: probe.name)
def test_a_candidate_cannot_reach_the_host(probe: Probe, isolation: str,
                                          small_limits: Limits) -> None:
    run = run_tests("import os\n" + probe.program, ["assert True"], small_limits,
                    sandbox_for(isolation))
    assert run.status == "ok", (run.program_message, run.stderr)
    assert probe.holds(run), run.stdout


KILL_EVERYTHING = (
    "import ctypes, signal\n"
    "libc = ctypes.CDLL(None)\n"
    "for _ in range(20):\n"
    "    libc.kill(-1, signal.SIGKILL)\n"
)


@pytest.mark.parametrize("isolation", backends())
def test_kill_minus_one_does_not_reach_another_candidate(isolation: str) -> None:
    limits = Limits(wall_seconds=15.0, test_seconds=3.0, test_wall_seconds=6.0)
    sandbox = sandbox_for(isolation)
    honest: list[TestRun] = []
    slow = threading.Thread(target=lambda: honest.append(run_tests(
        "import time\ndef f(x):\n    time.sleep(2)\n    return x + 1\n",
        ["assert f(1) == 2"], limits, sandbox)))
    slow.start()
    try:
        for _ in range(3):
            run_tests(KILL_EVERYTHING, ["assert True"], limits, sandbox)
    finally:
        slow.join()
    assert honest[0].outcomes == ("passed",), honest[0]


# --------------------------------------------------------------------------- backends


def test_bubblewrap_is_preferred_where_installed(small_limits: Limits) -> None:
    if shutil.which("bwrap") is None:
        pytest.skip("bubblewrap is not installed (apt-get install -y bubblewrap)")
    run = run_tests("def f(x):\n    return x + 1\n", ["assert f(1) == 2"], small_limits)
    assert run.backend == "bubblewrap" and run.sandbox.startswith("bubblewrap")
    assert run.outcomes == ("passed",)


def test_the_code_verifier_reports_its_backend() -> None:
    if shutil.which("bwrap") is None:
        pytest.skip("bubblewrap is not installed (apt-get install -y bubblewrap)")
    assert CodeVerifier().backend == "bubblewrap"
    assert CodeVerifier(sandbox=Sandbox(isolation="guard")).backend == "guard"


@pytest.mark.parametrize("isolation", ["bubblewrap", "namespace", "guard", "auto"])
def test_a_backend_that_cannot_run_is_a_clear_error(isolation: str) -> None:
    broken = Sandbox(isolation=isolation, python="/nonexistent/python3")
    with pytest.raises(VerifierError, match="no way to run candidates") as caught:
        describe_sandbox(broken)
    assert "Sandbox(python=...)" in str(caught.value)
    if isolation in ("bubblewrap", "auto"):
        assert "bubblewrap" in str(caught.value)
