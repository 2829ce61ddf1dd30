"""Every error chatq raises, and whether it is worth another upstream call.

    ChatqError
    ├── SettingsError           a setting has a value chatq cannot use  (names the variable)
    ├── EmbeddedRedisError      the private Redis could not be found or started
    ├── RedisUnavailable        the queue's Redis cannot be reached     never retried here
    ├── InvalidRequest          the request itself is wrong             never retried
    ├── ProviderNotFound        no registered provider for the model    never retried
    ├── WaitTimedOut            a producer stopped waiting for a result
    ├── JobFailed               the queue gave up on a job              never retried
    │   ├── DeadlineExceeded    CHATQ_JOB_DEADLINE passed
    │   └── RetryAfterTooLong   the provider asked for a longer pause than we accept
    ├── ChunkFailed             some jobs of a chunk failed (each stored its own error)
    └── UpstreamError           the provider answered badly             by status
        ├── AuthenticationFailed  401, 403: the key is wrong or not allowed   never retried
        ├── ModelNotFound       404: no such model (or endpoint)        never retried
        ├── BadRequest          400, 422: the provider refused the request   never retried
        ├── QuotaExhausted      the account's credit or quota is spent  never retried
        ├── RateLimited         429, carries retry_after                retried
        ├── UpstreamTimeout     no connection or answer in time, 408, 504    retried
        ├── UpstreamUnavailable connection refused or reset, other 5xx  retried
        ├── MalformedResponse   a body we cannot read                   retried a little
        └── InvalidAnswer       not JSON matching the asked schema      re-asked (attempts)

Whether to retry is decided by type (and, for a plain UpstreamError, by status and the
upstream's `x-should-retry` header), never by message text. The facts travel as
attributes. Errors survive Celery's JSON result backend: `args` is `(message, facts)`
and the constructor accepts exactly that.

This module and `chatq.redaction` are chatq's ground floor: every package, `config`
included, may import them, and they import nothing else of chatq.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from chatq.redaction import excerpt as _excerpt
from chatq.redaction import redact

__all__ = [
    "AuthenticationFailed",
    "BadRequest",
    "ChatqError",
    "ChunkFailed",
    "DeadlineExceeded",
    "EmbeddedRedisError",
    "InvalidAnswer",
    "InvalidRequest",
    "JobFailed",
    "MalformedResponse",
    "ModelNotFound",
    "ProviderNotFound",
    "QuotaExhausted",
    "RateLimited",
    "RedisUnavailable",
    "RetryAfterTooLong",
    "SettingsError",
    "UpstreamError",
    "UpstreamTimeout",
    "UpstreamUnavailable",
    "WaitTimedOut",
    "error_from_dict",
    "error_label",
]

_RETRYABLE_STATUS = frozenset({408, 409, 429})
_FACTS = (
    "provider",
    "model",
    "status",
    "excerpt",
    "retry_after",
    "should_retry",
    "field",
    "attempts",
    "usage",
    "outcomes",
)


def _fact(name: str) -> property:
    return property(lambda self: self.facts.get(name), doc=f"The error's {name}, if known.")


class ChatqError(Exception):
    """The root of every chatq error."""

    #: Whether another upstream call could succeed where this one failed.
    retryable: ClassVar[bool] = False
    #: At most this many upstream calls for a job that keeps failing this way (None: no cap).
    max_calls: ClassVar[int | None] = None

    def __init__(self, message: str = "", facts: Mapping[str, Any] | None = None, /, **kw: Any):
        merged = {k: v for k, v in {**(facts or {}), **kw}.items() if v is not None}
        unknown = set(merged) - set(_FACTS)
        if unknown:
            raise TypeError(f"unknown error facts: {sorted(unknown)}")
        if "excerpt" in merged:
            merged["excerpt"] = _excerpt(merged["excerpt"])
        message = redact(message)
        super().__init__(message, merged)
        self.message = message
        self.facts = merged

    provider = _fact("provider")
    model = _fact("model")
    status = _fact("status")
    excerpt = _fact("excerpt")

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r})"

    @property
    def label(self) -> str:
        """`AuthenticationFailed 401`: the error's class and status, as summaries count it."""
        return error_label(type(self).__name__, self.status)

    def to_dict(self) -> dict[str, Any]:
        """`{"type", "message", ...facts}`: how a batch line or a CLI records the error."""
        return {"type": type(self).__name__, "message": self.message, **self.facts}


class SettingsError(ChatqError, ValueError):
    """A setting has a value chatq cannot use; the message names the variable."""


class EmbeddedRedisError(ChatqError, RuntimeError):
    """The private Redis could not be found or started; the message says what to do."""


class InvalidRequest(ChatqError):
    """The request is malformed: a missing model, no messages, a bad field value."""


class ProviderNotFound(ChatqError):
    """The model names a provider that is not registered (usually: no API key)."""


class WaitTimedOut(ChatqError):
    """The result did not arrive in time; the job itself may still finish."""


class RedisUnavailable(ChatqError):
    """The queue's Redis did not answer after bounded reconnect attempts; the message
    names its URL, password redacted. A job that meets it ends with this error if that
    can be stored; if not, its unacknowledged message is delivered again later."""


class JobFailed(ChatqError):
    """The queue stopped trying: the cause is in the message."""


class DeadlineExceeded(JobFailed):
    """The job's whole-job deadline passed before an upstream call succeeded."""


class RetryAfterTooLong(JobFailed):
    """The provider asked us to wait longer than CHATQ_RETRY_AFTER_MAX allows."""

    retry_after = _fact("retry_after")


class ChunkFailed(ChatqError):
    """Some jobs of a `chatq.chat_many` chunk failed. Each job's own error is stored under
    its own task id; `outcomes` counts the chunk's jobs by outcome and error class."""


class UpstreamError(ChatqError):
    """The provider answered with an error status (carries status, provider, excerpt)."""

    @property
    def retryable(self) -> bool:  # type: ignore[override]
        """408, 409, 429 and 5xx are worth retrying unless the upstream said otherwise."""
        should = self.facts.get("should_retry")
        if should is not None:
            return bool(should)
        return self._status_retryable()

    def _status_retryable(self) -> bool:
        status = self.status
        return status is not None and (status in _RETRYABLE_STATUS or status >= 500)


class AuthenticationFailed(UpstreamError):
    """401 or 403: the API key is wrong, revoked, or not allowed to use this model."""

    def _status_retryable(self) -> bool:
        return False


class ModelNotFound(UpstreamError):
    """404: the provider knows no such model (or the URL names no such endpoint)."""

    def _status_retryable(self) -> bool:
        return False


class BadRequest(UpstreamError):
    """400 or 422: the provider refused the request as sent (a field it cannot take)."""

    def _status_retryable(self) -> bool:
        return False


class QuotaExhausted(UpstreamError):
    """The account's credit, quota or spend limit is used up: waiting will not help.
    Never retried; the provider is paused fleet-wide (see worker/limits)."""

    @property
    def retryable(self) -> bool:  # type: ignore[override]
        return False


class RateLimited(UpstreamError):
    """429 Too Many Requests; `retry_after` is the pause the provider asked for, if any."""

    retry_after = _fact("retry_after")

    def _status_retryable(self) -> bool:
        return True


class UpstreamTimeout(UpstreamError):
    """The provider did not connect or answer in time (or said so: 408, 504)."""

    def _status_retryable(self) -> bool:
        return True


class UpstreamUnavailable(UpstreamError):
    """The connection was refused or reset, or the provider failed (5xx but 504)."""

    def _status_retryable(self) -> bool:
        return True


class MalformedResponse(UpstreamError):
    """The provider's body is not what its API promises (not JSON, truncated, no choices)."""

    max_calls: ClassVar[int | None] = 3

    def _status_retryable(self) -> bool:
        return True


class InvalidAnswer(UpstreamError):
    """The answer is not JSON matching the request's schema. The call was paid for:
    `usage` holds its tokens (`input_tokens`, `output_tokens`). Asked again within the
    job's attempts."""

    usage = _fact("usage")

    def _status_retryable(self) -> bool:
        return True


def error_label(kind: str, status: Any = None) -> str:
    """`AuthenticationFailed 401` (or just the class name when there is no status): the
    key under which summaries, metrics and monitoring count an error."""
    return f"{kind} {status}" if status not in (None, "") else str(kind)


def error_from_dict(data: Mapping[str, Any]) -> ChatqError:
    """Rebuild an error recorded with `to_dict()`; an unknown type becomes a `ChatqError`."""
    kind = _BY_NAME.get(str(data.get("type")), ChatqError)
    facts = {k: data[k] for k in _FACTS if data.get(k) is not None}
    return kind(str(data.get("message", "")), facts)


_BY_NAME = {
    cls.__name__: cls
    for cls in (
        ChatqError,
        ChunkFailed,
        SettingsError,
        EmbeddedRedisError,
        AuthenticationFailed,
        ModelNotFound,
        BadRequest,
        QuotaExhausted,
        InvalidRequest,
        ProviderNotFound,
        JobFailed,
        DeadlineExceeded,
        RetryAfterTooLong,
        UpstreamError,
        RateLimited,
        UpstreamTimeout,
        UpstreamUnavailable,
        MalformedResponse,
        InvalidAnswer,
        WaitTimedOut,
        RedisUnavailable,
    )
}
