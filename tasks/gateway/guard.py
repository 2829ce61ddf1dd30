"""What every request passes before a route sees it: the API key, the body's size and
pace, and, for JSON routes, a body that is a JSON object."""

from __future__ import annotations

import asyncio
import hmac
import json
from collections.abc import Callable, Sequence
from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from config import Secret
from tasks.gateway.errors import HTTPError, chatd_error, openai_error

__all__ = ["Guard", "envelope_for", "read_json"]

#: Routes that answer in chatd's envelope; every other route answers in OpenAI's.
CHATD_PATHS = ("/v1/chat", "/v1/chat/providers")
OPEN_PATHS = ("/healthz",)
FILES_PATH = "/v1/files"


def envelope_for(path: str) -> Callable[..., Any]:
    """The error envelope of the route at `path`."""
    return chatd_error if path in CHATD_PATHS else openai_error


class Guard:
    """ASGI middleware: 401 without a known key (when CHATQ_API_KEYS is set), 413 for
    a body over its limit (uploads to /v1/files have their own, larger one), counted
    as it arrives so that no oversized body is ever held, and 408 for a body that stops
    arriving for `body_timeout` seconds (a slow sender holds nothing for long)."""

    def __init__(self, app: ASGIApp, *, keys: Sequence[Secret], max_body: int, max_file: int,
                 body_timeout: float = 30.0):  # fmt: skip
        self.app = app
        self.keys = [k.reveal().encode() for k in keys]
        self.max_body = max_body
        self.max_file = max_file
        self.body_timeout = body_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        reply = envelope_for(path)
        if self.keys and path not in OPEN_PATHS and not self._authorised(scope):
            error = HTTPError(401, "a valid API key is required: send 'Authorization: "
                              "Bearer <key>' with one of CHATQ_API_KEYS",
                              code="invalid_api_key", kind="authentication_error")  # fmt: skip
            await reply(error)(scope, receive, send)
            return
        limit = self.max_file if path == FILES_PATH else self.max_body
        length = _header(scope, b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            await reply(_too_large(limit))(scope, receive, send)
            return
        seen = 0
        started = False

        whole = False

        async def counted() -> Message:
            nonlocal seen, whole
            if whole:  # the body is in: what follows is the wait for a disconnect
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), self.body_timeout)
            except asyncio.TimeoutError:
                pause = f"{self.body_timeout:g}s"
                raise HTTPError(408, f"the request body stopped arriving for {pause}",
                                code="request_timeout") from None  # fmt: skip
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                whole = not message.get("more_body", False)
                if seen > limit:  # the route answers it in its envelope
                    raise _too_large(limit)
            return message

        async def tracked(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted, tracked)
        except HTTPError as exc:
            if started:
                raise
            await reply(exc)(scope, receive, send)

    def _authorised(self, scope: Scope) -> bool:
        value = _header(scope, b"authorization") or ""
        scheme, _, token = value.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return False
        given = token.strip().encode()
        return any(hmac.compare_digest(given, key) for key in self.keys)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


def _too_large(limit: int) -> HTTPError:
    return HTTPError(413, f"the request body is larger than the {limit:,} bytes allowed",
                     code="request_too_large")  # fmt: skip


async def read_json(request: Request) -> dict[str, Any]:
    """The request's body as a JSON object.

    Raises:
        HTTPError: 415 for another content type, 400 for malformed JSON or a body
            that is not an object.
    """
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/json":
        raise HTTPError(415, f"the body must be application/json, not {ctype or 'unnamed'}",
                        code="unsupported_media_type")  # fmt: skip
    raw = await request.body()
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise HTTPError(400, f"the body is not valid JSON ({exc})", code="invalid_json") from None
    if not isinstance(data, dict):
        raise HTTPError(400, f"the body must be a JSON object, not {type(data).__name__}",
                        code="invalid_json")  # fmt: skip
    return data
