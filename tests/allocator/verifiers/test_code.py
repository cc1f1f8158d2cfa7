"""The code verifier: scoring, and candidates that crash, hang, flood, hog or fork.

Everything runs in real sandboxed subprocesses (no mocks). Limits are small so that each
misbehaving candidate is stopped within about a second; "did not hang" bounds are
generous (a shared 2-core machine can be slow), never tight timings.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import os
import socket
import time
from pathlib import Path

import pytest

from allocator.errors import ParameterError, VerifierError
from allocator.verifiers import (
    Candidate,
    CodeVerifier,
    Limits,
    Problem,
    Sandbox,
    describe_sandbox,
    extract_asserts,
    run_tests,
    split_test_suite,
)

ADD = "def add(a, b):\n    return a + b\n"
HANG_BOUND = 20.0  # seconds: "did not hang", not a timing claim


def leftover_processes(workdir: str) -> list[int]:
    """Host processes whose working directory is (or was) the sandbox's."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cwd = os.readlink(f"/proc/{entry}/cwd")
            except OSError:
                continue
            if cwd.startswith(workdir):
                found.append(int(entry))
    return found


def assert_host_is_fine(workdirs: list[str], limits: Limits) -> None:
    """No sandbox process survived, the work directories (the candidate's and the
    judge's, as printed) are gone, and a new run works."""
    assert len(set(workdirs)) == 2  # the candidate's and the judge's
    for workdir in workdirs:
        deadline = time.monotonic() + 5
        while leftover_processes(workdir) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert leftover_processes(workdir) == []
        assert not os.path.exists(workdir)
    assert run_tests(ADD, ["assert add(1, 1) == 2"], limits).score == 1.0


def timed_run(program: str, tests: list[str], limits: Limits, **kwargs):
    start = time.monotonic()
    run = run_tests(program, tests, limits, **kwargs)
    assert time.monotonic() - start < HANG_BOUND
    return run


# --------------------------------------------------------------------------- scoring


def test_each_test_case_counts_separately(small_limits: Limits) -> None:
    run = timed_run(ADD, ["assert add(1, 2) == 3", "assert add(1, 2) == 4",
                          "add(None, 1)", "assert add('a', 'b') == 'ab'"], small_limits)
    assert run.outcomes == ("passed", "failed", "error", "passed")
    assert run.messages[1] == "AssertionError" and run.messages[2].startswith("TypeError")
    assert (run.passed, run.total, run.score) == (2, 4, 0.5)
    assert run.status == "ok" and run.detail == "2/4 tests passed"
    assert run.cpu_seconds > 0 and run.sandbox


def test_a_broken_program_fails_every_test(small_limits: Limits) -> None:
    run = timed_run("def add(a, b:\n", ["assert add(1, 2) == 3", "assert True"], small_limits)
    assert run.status == "program error" and run.outcomes == ("error", "error")
    assert run.score == 0.0 and run.detail.startswith("program error: SyntaxError")


def test_no_tests_gives_a_nan_score(small_limits: Limits) -> None:
    run = timed_run(ADD, [], small_limits)
    assert run.total == 0 and math.isnan(run.score) and run.status == "ok"


def test_main_guard_of_the_candidate_does_not_run(small_limits: Limits) -> None:
    program = ADD + "if __name__ == '__main__':\n    raise SystemExit('ran main')\n"
    assert timed_run(program, ["assert add(2, 2) == 4"], small_limits).score == 1.0


def test_the_child_is_isolated_in_a_fresh_directory(small_limits: Limits) -> None:
    program = ("import os, sys\nprint(os.getcwd())\n"
               "assert not os.listdir('.')\nopen('note.txt', 'w').write('x')\n")
    first = timed_run(program, ["assert sys.flags.isolated == 1",
                                "assert 'PYTHONPATH' not in os.environ"], small_limits)
    second = timed_run(program, [], small_limits)
    assert first.score == 1.0 and second.status == "ok"  # the second saw an empty cwd
    workdirs = [first.stdout.split()[0], second.stdout.split()[0]]
    assert workdirs[0] != workdirs[1]
    assert not any(os.path.exists(path) for path in workdirs)


# --------------------------------------------------------------------------- misbehaviour


def test_hanging_tests_time_out_and_the_next_ones_still_run(small_limits: Limits) -> None:
    run = timed_run("import time\n", ["while True: pass", "time.sleep(60)", "assert 1 == 1"],
                    small_limits)
    assert run.outcomes == ("timeout", "timeout", "passed")
    assert run.status == "ok" and run.detail == "1/3 tests passed"


def test_a_candidate_that_swallows_its_timeout_still_times_out(small_limits: Limits) -> None:
    # a bare `except:` (common in model-written code) catches the runner's timeout
    # exception; the test must not then pass on the value the handler returns
    program = ("import time\n"
               "def spin():\n    try:\n        while True: pass\n    except:\n        return 0\n"
               "def nap():\n    try:\n        time.sleep(60)\n    except:\n        return 0\n")
    run = timed_run(program, ["assert spin() == 0", "assert nap() == 0", "assert 1 == 1"],
                    small_limits)
    assert run.outcomes == ("timeout", "timeout", "passed")
    assert all("time limit" in message for message in run.messages[:2])


def test_a_hang_the_timer_cannot_interrupt_is_killed_and_the_run_resumes(
        small_limits: Limits) -> None:
    # sum() over a huge range runs in C: no Python signal handler can interrupt it
    run = timed_run(ADD, ["assert add(1, 1) == 2", "sum(range(10**13))",
                          "assert add(2, 2) == 4"], small_limits)
    assert run.outcomes == ("passed", "timeout", "passed")
    assert run.messages[1].startswith("hung")


def test_a_crashing_test_does_not_hide_the_others(small_limits: Limits) -> None:
    tests = ["import os; os._exit(3)", "assert add(1, 1) == 2",
             "import ctypes; ctypes.string_at(0)", "assert add(2, 2) == 4"]
    run = timed_run(ADD, tests, small_limits)
    assert run.outcomes == ("error", "passed", "error", "passed")
    assert run.messages[0] == "crashed (exit status 3)"
    assert run.messages[2].startswith("crashed")


def test_threads_left_running_do_not_keep_the_sandbox_alive() -> None:
    # the watchdog would only step in after test_wall_seconds + 1 = 11 s
    limits = Limits(test_seconds=1.0, test_wall_seconds=10.0, wall_seconds=30.0)
    program = "import threading, time\nthreading.Thread(target=time.sleep, args=(60,)).start()\n"
    run = timed_run(program, ["assert 1"], limits)
    assert run.status == "ok" and run.score == 1.0 and run.wall_seconds < 8.0


def test_a_program_that_hangs_is_a_program_error(small_limits: Limits) -> None:
    run = timed_run("while True:\n    pass\n", ["assert 1"], small_limits)
    assert run.status == "program error" and run.outcomes == ("error",)
    assert "timeout" in run.program_message


def test_the_wall_limit_stops_the_whole_run(small_limits: Limits) -> None:
    # each test sleeps under its own limit, but ten of them overrun the run's limit
    limits = Limits(wall_seconds=1.5, test_seconds=1.0, test_wall_seconds=1.0, cpu_seconds=4)
    run = timed_run("import time\n", ["time.sleep(0.8)"] * 10, limits)
    assert run.status == "timeout" and run.detail.startswith("timeout: ")
    assert run.outcomes[-2:] == ("timeout", "timeout") and run.passed <= 2
    assert run.wall_seconds < HANG_BOUND


def test_infinite_output_is_capped(small_limits: Limits) -> None:
    run = timed_run("print('start')\n", ["while True: print('x' * 1000)",
                                         "import sys\nwhile True: sys.stderr.write('y' * 999)",
                                         "assert 2 + 2 == 4"], small_limits)
    assert run.outcomes == ("timeout", "timeout", "passed")
    assert run.stdout.startswith("start") and len(run.stdout) <= small_limits.output_bytes
    assert len(run.stderr) <= small_limits.output_bytes and run.output_truncated


def test_a_memory_hog_gets_a_memory_error(small_limits: Limits) -> None:
    program = "def hog():\n    chunks = []\n    while True:\n        chunks.append(bytes(1 << 20))"
    tests = ["bytearray(4 << 30)", "hog()", "assert len(bytearray(1 << 20)) == 1 << 20"]
    run = timed_run(program, tests, small_limits)
    assert run.outcomes == ("error", "error", "passed")
    assert run.messages[:2] == ("MemoryError", "MemoryError")


def test_big_files_are_refused(small_limits: Limits) -> None:
    run = timed_run("", ["open('big', 'wb').write(bytes(2 << 20))", "assert 1"], small_limits)
    assert run.outcomes == ("error", "passed") and "File too large" in run.messages[0]


def test_a_fork_bomb_dies_and_leaves_the_host_fine(small_limits: Limits) -> None:
    bomb = ("print(os.getcwd(), flush=True)\n"
            "deadline = time.time() + 3\nwhile time.time() < deadline:\n"
            "    try:\n        os.fork()\n    except OSError:\n        pass\n")
    program = "import os, time\nprint(os.getcwd(), flush=True)\n"
    run = timed_run(program, [bomb, "assert 1 + 1 == 2"], small_limits)
    assert run.outcomes == ("timeout", "passed")
    assert_host_is_fine(run.stdout.split(), small_limits)


def test_rlimit_nproc_stops_forks_that_bypass_python(small_limits: Limits) -> None:
    if " uid 0," in describe_sandbox():
        pytest.skip("candidates run as root here: the kernel does not apply RLIMIT_NPROC")
    # libc's fork() straight through ctypes: no audit hook sees it, only the kernel limit
    bomb = ("print(os.getcwd(), flush=True)\n"
            "libc = ctypes.CDLL(None)\nfailed = 0\ndeadline = time.time() + 3\n"
            "while time.time() < deadline and failed < 1000:\n"
            "    failed += libc.fork() < 0\n"
            "assert failed == 0, 'fork refused'\n")
    program = "import ctypes, os, time\nprint(os.getcwd(), flush=True)\n"
    run = timed_run(program, [bomb, "assert 1 + 1 == 2"], small_limits)
    assert run.outcomes == ("failed", "passed")  # the kernel refused forks: the assert fired
    assert run.messages[0] == "AssertionError: fork refused"
    assert_host_is_fine(run.stdout.split(), small_limits)


@pytest.mark.parametrize("isolation", ["bubblewrap", "namespace", "guard"])
def test_a_child_that_leaves_the_process_group_is_not_left_behind(
        small_limits: Limits, isolation: str) -> None:
    try:
        describe_sandbox(Sandbox(isolation=isolation))
    except VerifierError as error:
        pytest.skip(f"{isolation} unavailable here: {error}")
    # without a PID namespace only the process-group kill stops the sandbox's children
    detach = ("print(os.getcwd(), flush=True)\n"
              "if os.fork() == 0:\n    os.setsid()\n    time.sleep(30)\n")
    program = "import os, time\nprint(os.getcwd(), flush=True)\n"
    # room for other processes of uid 65534 on a shared host (guard mode shares the uid)
    limits = dataclasses.replace(small_limits, max_processes=64)
    run = timed_run(program, [detach, "assert 1 + 1 == 2"], limits,
                    sandbox=Sandbox(isolation=isolation))
    assert run.outcomes == ("passed", "passed")
    assert_host_is_fine(run.stdout.split(), small_limits)


@pytest.fixture
def listener():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.3)
    yield server
    server.close()


def connected(server: socket.socket) -> bool:
    try:
        server.accept()[0].close()
    except TimeoutError:
        return False
    return True


def test_a_candidate_cannot_open_a_socket(small_limits: Limits, listener) -> None:
    port = listener.getsockname()[1]
    tests = [f"socket.create_connection(('127.0.0.1', {port}), timeout=1)",
             "socket.socket()", "socket.getaddrinfo('example.com', 80)"]
    run = timed_run("import socket\n", tests, small_limits)
    assert run.outcomes == ("error", "error", "error")
    assert all("PermissionError" in message for message in run.messages)
    assert not connected(listener)


def test_the_network_namespace_stops_sockets_that_bypass_python(
        small_limits: Limits, listener) -> None:
    if describe_sandbox().startswith("guard"):
        pytest.skip("no namespaces here: only the in-process guard blocks sockets")
    port = listener.getsockname()[1]
    raw_connect = (  # socket(2) and connect(2) through ctypes: no audit hook sees them
        "libc = ctypes.CDLL(None)\nfd = libc.socket(2, 1, 0)\nassert fd >= 0\n"
        f"address = struct.pack('=HH4s8x', 2, socket.htons({port}), bytes([127, 0, 0, 1]))\n"
        "assert libc.connect(fd, address, len(address)) == 0, 'no route'\n")
    run = timed_run("import ctypes, socket, struct\n", [raw_connect], small_limits)
    assert run.outcomes == ("failed",) and run.messages == ("AssertionError: no route",)
    assert not connected(listener)


def test_guard_only_isolation_still_scores(small_limits: Limits) -> None:
    guard = Sandbox(isolation="guard")
    run = timed_run(ADD, ["assert add(1, 2) == 3", "import socket; socket.socket()"],
                    small_limits, sandbox=guard)
    assert run.outcomes == ("passed", "error") and "guard only" in run.sandbox


# --------------------------------------------------------------------------- arguments


@pytest.mark.parametrize(("field", "value"), [
    ("wall_seconds", 0), ("test_seconds", -1.0), ("cpu_seconds", math.inf),
    ("test_wall_seconds", math.nan), ("memory_bytes", 1 << 10), ("memory_bytes", 2.5e9),
    ("file_bytes", 0), ("max_processes", 1), ("output_bytes", -1), ("max_processes", True),
    ("wall_seconds", "10"),
])
def test_limits_refuse_bad_values(field: str, value: object) -> None:
    with pytest.raises(ParameterError, match=field):
        Limits(**{field: value})


def test_limits_refuse_a_wall_limit_below_the_cpu_limit_per_test() -> None:
    with pytest.raises(ParameterError, match="test_wall_seconds"):
        Limits(test_seconds=2.0, test_wall_seconds=1.0)


@pytest.mark.parametrize(("field", "value"), [
    ("isolation", "docker"), ("user", -1), ("user", "root"), ("python", ""),
])
def test_sandbox_refuses_bad_values(field: str, value: object) -> None:
    with pytest.raises(ParameterError, match=field):
        Sandbox(**{field: value})


@pytest.mark.parametrize(("program", "tests"), [
    (b"print(1)", ["assert 1"]), ("x = 1", "assert x == 1"), ("x = 1", [1]),
])
def test_run_tests_refuses_bad_arguments(program: object, tests: object) -> None:
    with pytest.raises(ParameterError):
        run_tests(program, tests)  # type: ignore[arg-type]


def test_an_interpreter_that_cannot_start_is_a_verifier_error() -> None:
    with pytest.raises(VerifierError, match="no way to run candidates"):
        run_tests(ADD, ["assert 1"], sandbox=Sandbox(python="/nonexistent/python3"))


# --------------------------------------------------------------------------- test sources

HUMANEVAL_STYLE = '''
METADATA = {"author": "jt"}
import math


def check(candidate):
    """Docstring."""
    assert candidate(1, 2) == 3
    assert True, "debugging marker"
    offset = 10
    assert candidate(offset, 1) == 11
    for x in range(3):
        assert candidate(x, 0) == x
'''


def test_split_test_suite_gives_one_case_per_assert() -> None:
    cases = split_test_suite(HUMANEVAL_STYLE, "add")
    assert len(cases) == 3  # "assert True" tests nothing
    assert all(case.startswith("METADATA = {'author': 'jt'}\nimport math\ncandidate = add")
               for case in cases)
    assert cases[1].endswith("offset = 10\nassert candidate(offset, 1) == 11")
    assert "for x in range(3)" in cases[2]
    run = run_tests(ADD, cases)
    assert run.score == 1.0


def test_split_test_suite_drops_the_suites_own_check_call(small_limits: Limits) -> None:
    # HumanEvalPack-style suites end with `check(add)`: repeated in front of every case
    # without the `check` definition, it raised NameError and failed every case
    cases = split_test_suite(HUMANEVAL_STYLE + "\ncheck(add)\n", "add")
    assert cases == split_test_suite(HUMANEVAL_STYLE, "add")
    assert run_tests(ADD, cases, small_limits).score == 1.0


def test_split_test_suite_plain_asserts_and_errors() -> None:
    assert split_test_suite("import math\nassert f(1) == 1\nassert f(2) == 2\n") == [
        "import math\nassert f(1) == 1", "import math\nassert f(2) == 2"]
    with pytest.raises(ParameterError, match="entry_point"):
        split_test_suite(HUMANEVAL_STYLE)
    with pytest.raises(ParameterError, match="source"):
        split_test_suite("assert (")


def test_extract_asserts_follows_codet() -> None:
    generated = (" add(1, 2) == 3\nassert add(0, 0) == 0\nassert other(1) == 1\n"
                 "assert add(2, 2) == 4\n# a comment\nassert add(3, 3) == 6\n"
                 "assert add(4, 4) == (\nassert add(5, 5) == 10\ndef helper(): pass")
    # CodeT keeps the generated spacing ("assert  add" after the prompt's "assert ")
    assert extract_asserts(generated, "add") == [
        "assert  add(1, 2) == 3", "assert add(0, 0) == 0", "assert add(2, 2) == 4",
        "assert add(3, 3) == 6", "assert add(5, 5) == 10"]
    assert extract_asserts(generated, "add", limit=2) == [
        "assert  add(1, 2) == 3", "assert add(0, 0) == 0"]
    assert extract_asserts("\n", "add") == []


# --------------------------------------------------------------------------- the verifier


def verify(verifier: CodeVerifier, problem: Problem, texts: list[str]):
    return asyncio.run(verifier.verify(problem, [Candidate(text) for text in texts]))


def test_code_verifier_scores_completions_of_the_prompt(small_limits: Limits) -> None:
    problem = Problem("q1", "def add(a, b):\n", metadata={
        "entry_point": "add", "tests": ["assert add(1, 2) == 3", "assert add(2, 2) == 4"]})
    verifier = CodeVerifier(limits=small_limits)
    verdicts = verify(verifier, problem, ["    return a + b\n", "    return a * b\n",
                                          "    return (\n", "    return 0\nwhile True: pass\n"])
    assert [v.score for v in verdicts] == [1.0, 0.5, 0.0, 0.0]
    assert [v.detail for v in verdicts[:2]] == ["2/2 tests passed", "1/2 tests passed"]
    assert verdicts[2].detail.startswith("program error: SyntaxError")
    assert verdicts[3].detail == "program error: timeout (per-test wall time limit)"
    assert all(v.cost > 0 for v in verdicts)


def test_code_verifier_reads_humaneval_suites_per_case_or_whole(small_limits: Limits) -> None:
    problem = Problem("q2", "question", metadata={
        "prompt": "def add(a, b):\n", "entry_point": "add", "tests": HUMANEVAL_STYLE})
    wrong = ["    return a + b if a != 1 else 0\n"]
    per_case = verify(CodeVerifier(limits=small_limits), problem, wrong)
    whole = verify(CodeVerifier(limits=small_limits, granularity="suite"), problem, wrong)
    assert per_case[0].detail == "1/3 tests passed"  # add(1, 2) and add(1, 0) are wrong
    assert whole[0].score == 0.0 and whole[0].detail == "0/1 tests passed"
    program = verify(CodeVerifier(limits=small_limits, include_prompt=False), problem, [ADD])
    assert program[0].score == 1.0


def test_code_verifier_edge_cases(small_limits: Limits) -> None:
    verifier = CodeVerifier(limits=small_limits)
    no_tests = Problem("q3", "def f():\n", metadata={"tests": []})
    assert verify(verifier, no_tests, []) == []
    nan = verify(verifier, no_tests, ["    return 1\n"])
    assert math.isnan(nan[0].score) and nan[0].detail == "no tests"
    with pytest.raises(VerifierError, match="q4"):
        verify(verifier, Problem("q4", "def f():\n"), ["    return 1\n"])
    with pytest.raises(VerifierError, match="q5"):
        verify(verifier, Problem("q5", "x", metadata={"tests": "assert ("}), ["pass"])
    with pytest.raises(ParameterError, match="granularity"):
        CodeVerifier(granularity="file")
    with pytest.raises(ParameterError, match="max_concurrency"):
        CodeVerifier(max_concurrency=0)


def test_public_api_is_pinned() -> None:
    import allocator.verifiers as verifiers

    assert set(verifiers.__all__) == {
        "Candidate", "CodeVerifier", "ExactChecker", "LLMJudge", "Limits", "Problem",
        "Sandbox", "TestRun", "Verdict", "Verifier", "describe_sandbox", "extract_asserts",
        "normalize_answer", "parse_verdict", "run_tests", "split_test_suite"}
    assert all(hasattr(verifiers, name) for name in verifiers.__all__)
    assert Path(verifiers.__file__).parent.name == "verifiers"
