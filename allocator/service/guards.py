"""What stands before the operations: the request body size limit and the bearer token.

:class:`BodyLimitMiddleware` is plain ASGI: it refuses a ``Content-Length`` above the
limit at once, and otherwise reads the body (chunked bodies included) up to the limit
before the application sees it, answering 413 as soon as it is exceeded. The rest of a
refused body is read and discarded by uvicorn (closing the connection instead would
reset it under a client still sending, which then never sees the 413); put a proxy
limit in front of the service against clients that send gigabytes.

:func:`bearer_guard` is a FastAPI dependency: ``Authorization: Bearer TOKEN`` compared
with :func:`hmac.compare_digest`; a missing or wrong token gets 401 with a
``WWW-Authenticate`` header (RFC 6750).
"""

# No ``from __future__ import annotations`` here: FastAPI must see the dependency's
# annotation as an object (it names the local security scheme).
import hmac
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Annotated, Any

from fastapi import Depends, HTTPException, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

__all__ = ["DEFAULT_MAX_BODY_BYTES", "BodyLimitMiddleware", "bearer_guard",
           "optional_bearer"]

#: The default largest request body, in bytes.
DEFAULT_MAX_BODY_BYTES = 1_000_000

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class BodyLimitMiddleware:
    """Refuse request bodies over ``max_bytes`` with 413 (before the application runs).

    Args:
        app: the ASGI application.
        max_bytes: the largest body accepted.
    """

    def __init__(self, app: ASGIApp, max_bytes: int = DEFAULT_MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = int(max_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared == -1:
            await _refuse(send, 400, "invalid_request", "the Content-Length header is not a "
                          "non-negative integer; send the body's length in bytes.")
            return
        if declared is not None and declared > self.max_bytes:
            await self._too_large(send)
            return
        body, outcome = await self._read(receive)
        if outcome == "too large":
            await self._too_large(send)
        elif outcome == "complete":
            await self.app(scope, _replay(body, receive), send)
        # "gone": the client disconnected; there is no one to answer

    async def _read(self, receive: Receive) -> tuple[bytes, str]:
        """The whole body and "complete"; or "too large" / "gone" (disconnected)."""
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return b"", "gone"
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                return b"", "too large"
            chunks.append(chunk)
            more = message.get("more_body", False)
        return b"".join(chunks), "complete"

    async def _too_large(self, send: Send) -> None:
        await _refuse(send, 413, "payload_too_large",
                      f"the request body exceeds {self.max_bytes} bytes; send a shorter "
                      "history or a smaller batch (split it over several requests).")


def _content_length(scope: Scope) -> int | None:
    """The declared Content-Length; None if absent, -1 if malformed."""
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            text = value.decode("latin-1").strip()
            return int(text) if text.isdigit() else -1
    return None


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that gives the buffered body once, then defers to the original."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


async def _refuse(send: Send, code: int, error: str, message: str) -> None:
    payload = json.dumps({"error": error, "message": message, "fields": [
        {"field": "body", "problem": message, "fix": message.split("; ", 1)[-1]}]}).encode()
    await send({"type": "http.response.start", "status": code,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(payload)).encode())]})
    await send({"type": "http.response.body", "body": payload})


def bearer_guard(token: str) -> Callable[..., Awaitable[None]]:
    """A dependency that requires ``Authorization: Bearer <token>``.

    Args:
        token: the expected token (non-empty).

    Raises:
        ValueError: ``token`` is empty.
    """
    if not token:
        raise ValueError("bearer_guard: token must be a non-empty string")
    expected = token.encode("utf-8")
    scheme = HTTPBearer(auto_error=False, description="the service's token "
                                                      "(allocator serve --token-env)")

    async def check(
            credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(scheme)],
    ) -> None:
        if credentials is None:
            raise _unauthorized("missing bearer token: send the header "
                                "'Authorization: Bearer <token>'.", None)
        # the server decodes header bytes as Latin-1: encoding back gives the bytes sent
        # (clients send a non-ASCII token as UTF-8)
        if not hmac.compare_digest(credentials.credentials.encode("latin-1"), expected):
            raise _unauthorized("wrong bearer token: send the token the server was "
                                "started with (the variable named by --token-env).",
                                "invalid_token")

    return check


def optional_bearer(token: str | None) -> Callable[..., Awaitable[bool]]:
    """A dependency telling whether the request may see details: True on a server
    without a token, or with the right ``Authorization: Bearer <token>``; False without
    the header. A wrong token gets 401, as on the guarded endpoints.

    Args:
        token: the expected token, or None (no authentication).
    """
    scheme = HTTPBearer(auto_error=False, description="the service's token "
                                                      "(allocator serve --token-env)")
    check = None if token is None else bearer_guard(token)

    async def authenticated(
            credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(scheme)],
    ) -> bool:
        if check is None:
            return True
        if credentials is None:
            return False
        await check(credentials)
        return True

    return authenticated


def _unauthorized(message: str, error: str | None) -> HTTPException:
    challenge = 'Bearer realm="allocator"' + (f', error="{error}"' if error else "")
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail=message,
                         headers={"WWW-Authenticate": challenge})
