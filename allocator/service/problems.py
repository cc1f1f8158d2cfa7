"""Error answers: every 4xx/5xx body is an :class:`~allocator.service.schemas.ErrorBody`
that names the field at fault and says how to fix it.

:func:`install_handlers` installs them on the app; its docstring lists the status codes
and their ``error`` names.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from allocator.errors import AllocatorError, ParameterError
from allocator.service.operations import WIRE_NAMES, RequestFieldError
from allocator.service.schemas import (
    EVENT_TAGS,
    AttemptEvent,
    ErrorBody,
    FieldProblem,
    ModelInfo,
    VerifyEvent,
)
from allocator.service.work import RequestTimeout

__all__ = ["error_response", "install_handlers", "validation_problems"]

logger = logging.getLogger("allocator.service")

_CODES = {400: "invalid_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
          405: "method_not_allowed", 413: "payload_too_large", 415: "unsupported_media_type"}
_EVENTS: dict[str, type[BaseModel]] = {"sample": AttemptEvent, "refine": AttemptEvent,
                                       "verify": VerifyEvent}
_SCHEMA_HINT = "see the request schema at /openapi.json (or /docs)"


def error_response(status: int, error: str, message: str,
                   fields: Sequence[FieldProblem] = (), *, serving: ModelInfo | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    """A JSON :class:`ErrorBody` answer."""
    body = ErrorBody(error=error, message=message, fields=list(fields), serving=serving)
    return JSONResponse(body.model_dump(mode="json", exclude_none=True), status_code=status,
                        headers=headers)


def install_handlers(app: FastAPI, bodies: dict[str, type[BaseModel]]) -> None:
    """Answer validation errors and the oracle's refusals (both 422), HTTP errors and
    bugs with :class:`ErrorBody` bodies.

    =====  ======================  ===========================================================
    code   ``error``               when
    =====  ======================  ===========================================================
    400    ``invalid_request``     the HTTP request itself is malformed (a Content-Length
                                   that is not a number)
    401    ``unauthorized``        missing or wrong bearer token
    404    ``not_found``           no such endpoint
    413    ``payload_too_large``   the body exceeds the server's limit
    422    ``invalid_request``     any invalid value in the body, whoever finds it: the
                                   schema (types, bounds, unknown fields, malformed JSON),
                                   the bundle (unknown arms, candidates) or the oracle
                                   (lambda outside the training range, target_cost on an
                                   uncalibrated bundle...)
    500    ``internal_error``      a bug: see the server log
    502    ``reload_failed``       a reload could not load the new bundle (the old one stays)
    503    ``timeout``             a batch request took longer than the server's limit
    =====  ======================  ===========================================================

    Args:
        app: the application.
        bodies: request path -> its body model (to list the allowed fields).
    """

    async def invalid(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, RequestValidationError)
        fields = validation_problems(error.errors(), bodies.get(request.url.path))
        return error_response(422, "invalid_request", _summary(fields), fields)

    async def refused(request: Request, error: Exception) -> JSONResponse:
        if isinstance(error, RequestTimeout):
            return error_response(503, "timeout", str(error), headers={"Retry-After": "5"})
        if isinstance(error, RequestFieldError):
            problem = FieldProblem(field=error.field, problem=str(error),
                                   fix=f"'{error.field}' must be {error.expected}",
                                   given=_short(error.given))
            return error_response(422, "invalid_request", str(error), [problem])
        if isinstance(error, ParameterError):
            field = WIRE_NAMES.get(error.parameter, error.parameter)
            expected = str(error).partition(" must be ")[2].rpartition(", got ")[0]
            fix = f"'{field}' must be {expected}" if expected else _SCHEMA_HINT
            problem = FieldProblem(field=field, problem=str(error), fix=fix)
            return error_response(422, "invalid_request", str(error), [problem])
        return error_response(422, "invalid_request", str(error))

    async def http_error(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, StarletteHTTPException)
        message = str(error.detail)
        if error.status_code in (404, 405):
            message = (f"{message}: no endpoint {request.method} {request.url.path}; the "
                       "endpoints are listed at /docs and /openapi.json.")
        return error_response(error.status_code, _CODES.get(error.status_code, "http_error"),
                              message, headers=getattr(error, "headers", None))

    async def crashed(request: Request, error: Exception) -> JSONResponse:
        logger.exception("internal error on %s %s", request.method, request.url.path)
        return error_response(500, "internal_error", f"the server failed on this request "
                              f"({type(error).__name__}); see the server log.")

    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(AllocatorError, refused)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, crashed)


# ------------------------------------------------------------------ validation errors
def validation_problems(errors: Sequence[dict[str, Any]],
                        body: type[BaseModel] | None) -> list[FieldProblem]:
    """Pydantic's errors as :class:`FieldProblem`, one per field, with a fix each."""
    problems: dict[str, FieldProblem] = {}
    for error in errors:
        kind, loc = error["type"], tuple(error.get("loc", ()))
        field = _field(loc, kind)
        problem = FieldProblem(field=field, problem=_problem(error), fix=_fix(error, loc, body),
                               given=None if kind in ("missing", "json_invalid") else
                               _short(error.get("input")))
        problems.setdefault(field, problem)
    return list(problems.values())


def _field(loc: tuple[Any, ...], kind: str) -> str:
    """``("body", "history", 3, "sample", "arm")`` -> ``"history.3.arm"``."""
    parts: list[str] = []
    previous: Any = None
    for part in loc[1:] if loc[:1] == ("body",) else loc:
        if isinstance(previous, int) and part in EVENT_TAGS and parts[:1] == ["history"]:
            previous = part
            continue  # the discriminator's branch, not a field
        if part == "[key]" and parts:
            parts[-1] += " (key)"
        elif not (kind == "json_invalid" and isinstance(part, int)):
            parts.append(str(part))
        previous = part
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        parts.append("kind")
    return ".".join(parts) or "body"


def _problem(error: dict[str, Any]) -> str:
    if error["type"] == "json_invalid":
        where = error["loc"][1] if len(error.get("loc", ())) > 1 else "?"
        return f"malformed JSON at character {where}: {error.get('ctx', {}).get('error')}"
    if error["type"] == "extra_forbidden":
        return "unknown field"
    return str(error["msg"])


def _fix(error: dict[str, Any], loc: tuple[Any, ...], body: type[BaseModel] | None) -> str:
    kind, message, ctx = error["type"], str(error["msg"]), error.get("ctx") or {}
    name = str(loc[-1]) if loc else "body"
    if kind == "extra_forbidden":
        allowed = _allowed(loc, body)
        return (f"remove '{name}'" + (f"; the fields here are {allowed}" if allowed else "")
                + f" ({_SCHEMA_HINT})")
    if kind == "missing":
        return f"add the required field '{name}'"
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        return "set 'kind' to one of " + ", ".join(repr(tag) for tag in EVENT_TAGS)
    if kind == "json_invalid":
        return "send one valid JSON object, with Content-Type: application/json"
    if kind in ("model_type", "model_attributes_type", "dict_type") and len(loc) <= 1:
        return "send a JSON object as the body, with Content-Type: application/json"
    if kind in ("too_long", "string_too_long"):
        unit = "characters" if kind.startswith("string") else "entries"
        return f"send at most {ctx.get('max_length')} {unit} (split larger requests)"
    if kind in ("too_short", "string_too_short"):
        unit = "characters" if kind.startswith("string") else "entries"
        return f"send at least {ctx.get('min_length')} {unit}"
    if message.startswith("Input should be "):
        rest = message[len("Input should be "):]
        return ("send a value " if rest.startswith(("greater", "less")) else "send ") + rest
    return _SCHEMA_HINT


def _allowed(loc: tuple[Any, ...], body: type[BaseModel] | None) -> list[str] | None:
    """The field names of the object holding the unknown field ``loc[-1]``."""
    path = loc[1:-1] if loc[:1] == ("body",) else loc[:-1]
    model: type[BaseModel] | None = None
    if not path:
        model = body
    elif len(path) == 3 and path[0] == "history" and isinstance(path[1], int):
        model = _EVENTS.get(str(path[2]))
    if model is None:
        return None
    return [field.alias or name for name, field in model.model_fields.items()]


def _summary(fields: Sequence[FieldProblem]) -> str:
    shown = "; ".join(f"{p.field}: {p.problem} (fix: {p.fix})" for p in fields[:5])
    more = f"; and {len(fields) - 5} more" if len(fields) > 5 else ""
    return f"invalid request body: {shown}{more}"


def _short(value: Any, limit: int = 120) -> str | None:
    if value is None:
        return None
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
