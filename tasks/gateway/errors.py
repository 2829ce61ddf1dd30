"""The one place where chatq's errors become HTTP answers.

Two envelopes, one status table:

    chatd's     {"error": message, "type": class, "status": upstream status, "excerpt": ...}
    OpenAI's    {"error": {"message", "type", "param", "code"}}

    NotFound              404   no such file or batch
    InvalidRequest        400   a field is wrong (named in `param`)
    ProviderNotFound      404   no provider for the model (nothing was queued)
    RateLimited,          429   the provider still refused after our retries, or asked
    QuotaExhausted,             for a longer pause than we accept; Retry-After when known
    RetryAfterTooLong
    UpstreamError         502   the upstream failed; its status and an excerpt go along
    WaitTimedOut,         504   the answer did not come in time (the job may still finish)
    DeadlineExceeded
    RedisUnavailable      503   the queue cannot be reached
    anything else         500
"""

from __future__ import annotations

import math
from typing import Any

from starlette.responses import JSONResponse

from chatq.errors import (
    ChatqError,
    DeadlineExceeded,
    InvalidRequest,
    ProviderNotFound,
    QuotaExhausted,
    RateLimited,
    RedisUnavailable,
    RetryAfterTooLong,
    UpstreamError,
    WaitTimedOut,
)

__all__ = ["HTTPError", "NotFound", "chatd_error", "openai_error", "status_of"]


class HTTPError(Exception):
    """An answer that is the HTTP layer's own (401, 404 of a route, 413, 415, ...)."""

    def __init__(self, status: int, message: str, *, code: str | None = None,
                 param: str | None = None, kind: str = "invalid_request_error"):  # fmt: skip
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.kind = kind


class NotFound(InvalidRequest):
    """The id names no file or batch (never made, deleted, or expired)."""


_TABLE: tuple[tuple[type[ChatqError], int, str, str], ...] = (
    # (class, status, OpenAI type, OpenAI code); the first match wins
    (NotFound, 404, "invalid_request_error", "not_found"),
    (InvalidRequest, 400, "invalid_request_error", "invalid_request"),
    (ProviderNotFound, 404, "invalid_request_error", "model_not_found"),
    (QuotaExhausted, 429, "insufficient_quota", "insufficient_quota"),
    (RateLimited, 429, "rate_limit_error", "rate_limit_exceeded"),
    (RetryAfterTooLong, 429, "rate_limit_error", "rate_limit_exceeded"),
    (UpstreamError, 502, "upstream_error", "upstream_error"),
    (WaitTimedOut, 504, "timeout_error", "timeout"),
    (DeadlineExceeded, 504, "timeout_error", "deadline_exceeded"),
    (RedisUnavailable, 503, "server_error", "queue_unavailable"),
)


def status_of(exc: ChatqError) -> tuple[int, str, str]:
    """(HTTP status, OpenAI error type, OpenAI error code) of a chatq error."""
    for kind, status, oa_type, code in _TABLE:
        if isinstance(exc, kind):
            return status, oa_type, code
    return 500, "server_error", "internal_error"


def _headers(exc: BaseException) -> dict[str, str]:
    retry_after = getattr(exc, "facts", {}).get("retry_after")
    if retry_after is None:
        return {}
    return {"Retry-After": str(max(1, math.ceil(float(retry_after))))}


def chatd_error(exc: BaseException, job: str | None = None) -> JSONResponse:
    """`exc` in chatd's envelope."""
    headers = {"x-chatq-job-id": job} if job else {}
    if isinstance(exc, HTTPError):
        return JSONResponse({"error": exc.message, "type": exc.code or "http"}, exc.status)
    assert isinstance(exc, ChatqError)
    status, _, _ = status_of(exc)
    body: dict[str, Any] = {"error": exc.message, "type": type(exc).__name__}
    for fact in ("status", "excerpt", "provider", "field", "retry_after"):
        if exc.facts.get(fact) is not None:
            body[fact] = exc.facts[fact]
    return JSONResponse(body, status, headers={**headers, **_headers(exc)})


def openai_error(exc: BaseException, job: str | None = None) -> JSONResponse:
    """`exc` in OpenAI's envelope."""
    headers = {"x-chatq-job-id": job} if job else {}
    if isinstance(exc, HTTPError):
        error = {"message": exc.message, "type": exc.kind, "param": exc.param, "code": exc.code}
        return JSONResponse({"error": error}, exc.status, headers=headers)
    assert isinstance(exc, ChatqError)
    status, kind, code = status_of(exc)
    param = exc.facts.get("field")
    if isinstance(param, str) and param.startswith("body."):
        param = param[len("body.") :]
    error: dict[str, Any] = {"message": exc.message, "type": kind, "param": param, "code": code}
    if exc.facts.get("status") is not None:
        error["upstream_status"] = exc.facts["status"]
    return JSONResponse({"error": error}, status, headers={**headers, **_headers(exc)})
