"""The project's exceptions, in one place.

Every error a user can trigger derives from :class:`AllocatorError`. Errors about input
data say *where* (file, line, column) and *how to fix it*, so that a user reading a
traceback from a 10-million-row log knows which row to look at.
"""

from __future__ import annotations

__all__ = [
    "AllocatorError",
    "BundleError",
    "ConverterError",
    "EnvironmentConfigError",
    "ExecutorError",
    "LLMError",
    "LogFormatError",
    "MissingExtraError",
    "OffPolicySupportError",
    "ParameterError",
    "VerifierError",
]


class AllocatorError(Exception):
    """Base class of every error raised by ttc-allocator."""


class ParameterError(AllocatorError, ValueError):
    """A function or constructor argument has an invalid value.

    The message names the parameter, its owner, what was expected and what was given.
    """

    def __init__(self, owner: str, parameter: str, expected: str, given: object) -> None:
        self.owner = owner
        self.parameter = parameter
        super().__init__(f"{owner}: parameter {parameter!r} must be {expected}, got {given!r}.")


class LogFormatError(AllocatorError, ValueError):
    """A log (attempt table or query table) is malformed.

    Attributes:
        source: the file (or other source) that holds the bad data, if known.
        line: the 1-based line (JSONL/CSV) or row (Parquet, in-memory) number, if known.
        column: the offending column, if known.
        fix: a short hint on how to fix the input.
    """

    def __init__(
        self,
        problem: str,
        *,
        source: str | None = None,
        line: int | None = None,
        column: str | None = None,
        fix: str | None = None,
    ) -> None:
        self.problem = problem
        self.source = source
        self.line = line
        self.column = column
        self.fix = fix
        super().__init__(self._render())

    def _render(self) -> str:
        where = []
        if self.source is not None:
            where.append(str(self.source))
        if self.line is not None:
            where.append(f"line {self.line}")
        if self.column is not None:
            where.append(f"column {self.column!r}")
        text = (", ".join(where) + ": " if where else "") + self.problem
        if self.fix:
            text += f" Fix: {self.fix}"
        return text


class BundleError(AllocatorError, ValueError):
    """An exported policy bundle was refused: missing, tampered, or made for other code.

    Raised by :func:`allocator.bundle.read_bundle` (and when writing a bundle would
    overwrite something that is not one). The message says what is wrong and how to fix
    it: re-export the bundle from its training run, upgrade ttc-allocator, or retrain
    with the current featurizer.

    Attributes:
        path: the bundle directory (or the file in it) concerned, if known.
    """

    def __init__(self, message: str, *, path: object = None) -> None:
        self.path = None if path is None else str(path)
        super().__init__(message if path is None else f"{path}: {message}")


class ConverterError(LogFormatError):
    """A converter could not turn a third-party file into a log."""


class EnvironmentConfigError(AllocatorError, ValueError):
    """The replay environment was configured with a log or settings it cannot replay."""


class OffPolicySupportError(AllocatorError, ValueError):
    """An off-policy estimate was refused: the evaluated policy leaves the logged support.

    Raised when the evaluated (target) policy gives probability > 0 to an action the
    logging policy gave probability 0 in some logged state (importance weights are then
    undefined and every estimator is biased), or when no logged episode is consistent
    with the target. The message says in how many states, which actions, and the fix.

    Attributes:
        n_states: logged states where the support is violated.
        actions: action name -> number of logged states where it is the culprit.
    """

    def __init__(self, message: str, *, n_states: int = 0,
                 actions: dict[str, int] | None = None) -> None:
        self.n_states = n_states
        self.actions = dict(actions or {})
        super().__init__(message)


class LLMError(AllocatorError, RuntimeError):
    """An LLM request failed for good (after the client's retries), or its reply was unusable.

    Attributes:
        url: the endpoint called, if any.
        status: the last HTTP status, if a response came back.
        attempts: how many times the request was tried.
        retryable: whether the last failure was of a kind worth retrying later
            (429, 5xx, timeout, dropped connection).
    """

    def __init__(self, message: str, *, url: str | None = None, status: int | None = None,
                 attempts: int = 1, retryable: bool = False) -> None:
        self.url = url
        self.status = status
        self.attempts = attempts
        self.retryable = retryable
        super().__init__(message)


class VerifierError(AllocatorError, RuntimeError):
    """A verifier could not run at all (not: a candidate failed its checks, which is a score)."""


class ExecutorError(AllocatorError, RuntimeError):
    """A strategy executor could not finish a query; the run log written so far stays valid.

    Attributes:
        query_id: the query being run.
    """

    def __init__(self, message: str, *, query_id: str | None = None) -> None:
        self.query_id = query_id
        super().__init__(message if query_id is None else f"query {query_id!r}: {message}")


class MissingExtraError(AllocatorError, ImportError):
    """A feature needs an optional extra that is not installed (the message says which
    extra and the ``pip install`` line that adds it).

    Attributes:
        extra: the extra's name (``train``, ``serve``, ``mlflow``...).
    """

    def __init__(self, message: str, *, extra: str) -> None:
        self.extra = extra
        super().__init__(message)
