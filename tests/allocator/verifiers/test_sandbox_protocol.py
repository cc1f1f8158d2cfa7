"""What crosses between the candidate process and the judge process, and what does not.

The judge runs the tests; the candidate answers requests with data by value. Each row is
an honest candidate whose test must pass (the value the test sees is exactly what plain
Python would give), or a limit of the protocol that must fail with a clear message.
Every row runs in real sandboxes.
"""

from __future__ import annotations

import pytest

from allocator.verifiers import Limits, run_tests

# (what the candidate returns or does, program, test case): the test must pass
CROSSINGS = [
    ("int, huge int, bool", "def f():\n    return (7, 10 ** 5000, True)\n",
     "a, b, c = f()\nassert a == 7 and b == 10 ** 5000 and c is True and type(a) is int"),
    ("floats incl. nan, inf and -0.0",
     "def f():\n    return [0.1, float('inf'), float('nan'), -0.0, 1e-310]\n",
     "import math\nx = f()\nassert x[0] == 0.1 and x[1] == math.inf and math.isnan(x[2])\n"
     "assert math.copysign(1, x[3]) == -1 and x[4] == 1e-310"),
    ("complex", "def f():\n    return 1.5 - 2j\n", "assert f() == 1.5 - 2j"),
    ("strings with lone surrogates and NULs", "def f(s):\n    return s + '\\ud800\\x00'\n",
     "assert f('é') == 'é\\ud800\\x00'"),
    ("bytes and bytearray", "def f():\n    return b'\\x00\\xff', bytearray(b'ab')\n",
     "b, ba = f()\nassert b == b'\\x00\\xff' and type(ba) is bytearray and ba == b'ab'"),
    ("tuple, list, set, frozenset, dict with tuple keys",
     "def f():\n    return (1, [2, {3}], frozenset({4}), {(5, 6): {'k': None}})\n",
     "assert f() == (1, [2, {3}], frozenset({4}), {(5, 6): {'k': None}})\n"
     "assert type(f()[2]) is frozenset"),
    ("Counter, defaultdict, namedtuple and OrderedDict as their built-in values",
     "import collections\nP = collections.namedtuple('P', 'x y')\n"
     "def f():\n    return (collections.Counter('aab'), collections.defaultdict(int, a=1),\n"
     "            P(1, 2), collections.OrderedDict(z=0))\n",
     "c, d, p, o = f()\nassert c == {'a': 2, 'b': 1} and d == {'a': 1} and p == (1, 2)\n"
     "assert o == {'z': 0}"),
    ("arguments by value, keywords included",
     "def f(xs, *, scale=1):\n    return sorted(x * scale for x in xs)\n",
     "assert f([3, 1, 2], scale=2) == [2, 4, 6]"),
    ("a generator, iterated by the test", "def f(n):\n    yield from range(n)\n",
     "assert list(f(4)) == [0, 1, 2, 3] and sum(f(3)) == 3"),
    ("an object with methods and attributes",
     "class Stack:\n    def __init__(self):\n        self.items = []\n"
     "    def push(self, x):\n        self.items.append(x)\n"
     "    def pop(self):\n        return self.items.pop()\n"
     "    def __len__(self):\n        return len(self.items)\n",
     "s = Stack()\ns.push(1)\ns.push(2)\nassert len(s) == 2 and s.pop() == 2 and s.items == [1]"),
    ("candidate objects compare with each other",
     "import dataclasses\n@dataclasses.dataclass(frozen=True)\nclass P:\n    x: int\n",
     "assert P(1) == P(1) and P(1) != P(2) and len({P(1), P(1)}) == 1"),
    ("a built-in exception, caught by the test",
     "def f(x):\n    if x < 0:\n        raise ValueError('negative')\n    return x\n",
     "try:\n    f(-1)\nexcept ValueError as e:\n    assert str(e) == 'negative'\n"
     "else:\n    raise AssertionError('no error')"),
    ("a module the program imported, used by the test", "import math\n",
     "assert math.sqrt(16) == 4"),
    ("module-level data of the program", "TABLE = {'a': [1, 2]}\n",
     "assert TABLE == {'a': [1, 2]}"),
    ("a helper the program defines, used by the test (HumanEval/38-style)",
     "def encode(s):\n    return s[::-1]\ndef decode(s):\n    return s[::-1]\n",
     "assert decode(encode('abc')) == 'abc'"),
]


@pytest.mark.parametrize(("program", "test"), [(p, t) for _, p, t in CROSSINGS],
                         ids=[name for name, _, _ in CROSSINGS])
def test_honest_answers_cross_exactly(program: str, test: str, small_limits: Limits) -> None:
    run = run_tests(program, [test], small_limits)
    assert run.outcomes == ("passed",), (run.messages, run.program_message, run.stderr)


# (what goes wrong, program, test, outcome, message start)
FAILURES = [
    ("a custom exception keeps its name", "class Oops(Exception):\n    pass\n"
     "def f():\n    raise Oops('bad')\n", "f()", "error", "Oops: bad"),
    ("an assertion inside the candidate fails the test", "def f():\n    assert 1 == 2\n",
     "f()", "failed", "AssertionError"),
    ("a test cannot pass its own function to the candidate",
     "def f(g):\n    return g(1)\n", "assert f(lambda x: x) == 1", "error",
     "TypeError: only data"),
    ("a candidate object never equals a test value",
     "class Two:\n    def __eq__(self, other):\n        return other == 2\n"
     "    __hash__ = object.__hash__\ndef f():\n    return Two()\n",
     "assert f() == 2", "failed", "AssertionError"),
]


@pytest.mark.parametrize(("program", "test", "outcome", "message"),
                         [row[1:] for row in FAILURES], ids=[row[0] for row in FAILURES])
def test_protocol_limits_fail_clearly(program: str, test: str, outcome: str, message: str,
                                      small_limits: Limits) -> None:
    run = run_tests(program, [test, "assert True"], small_limits)
    assert run.outcomes == (outcome, "passed")
    assert run.messages[0].startswith(message), run.messages


def test_a_candidate_stuck_in_a_call_is_replaced(small_limits: Limits) -> None:
    # sum() over a huge range runs in C inside the candidate: its own timer cannot stop
    # it; the judge times the test out and the next case runs against a fresh candidate
    program = "def stuck():\n    return sum(range(10 ** 13))\ndef f(x):\n    return x\n"
    run = run_tests(program, ["assert f(1) == 1", "stuck()", "assert f(2) == 2"],
                    small_limits)
    assert run.outcomes == ("passed", "timeout", "passed"), run.messages
    assert "time limit" in run.messages[1]


def test_a_candidate_that_dies_in_a_call_costs_that_test_only(small_limits: Limits) -> None:
    program = "import os\ndef die():\n    os._exit(7)\ndef f(x):\n    return x\n"
    run = run_tests(program, ["assert f(1) == 1", "die()", "assert f(2) == 2"],
                    small_limits)
    assert run.outcomes == ("passed", "error", "passed")
    assert run.messages[1] == "crashed (exit status 7)"


def test_the_candidate_never_sees_the_tests(small_limits: Limits) -> None:
    # the tests live only in the judge: the candidate's memory and files hold no trace
    program = ("import gc, os\n"
               "def holds(o):\n    return isinstance(o, list) and any(\n"
               "        isinstance(s, str) and 'SECRET-' + 'EXPECTED' in s for s in o)\n"
               "seen = [o for o in gc.get_objects()\n"
               "        if isinstance(o, dict) and any(holds(v) for v in o.values())]\n"
               "files = [n for n in os.listdir('.')]\n"
               "def f():\n    return (len(seen), files)\n")
    run = run_tests(program, ["assert f() == (0, []), f()  # SECRET-EXPECTED"], small_limits)
    assert run.outcomes == ("passed",), run.messages
