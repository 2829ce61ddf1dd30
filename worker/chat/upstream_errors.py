"""How an upstream's error answer becomes a chatq error: by its status, and by the
few facts its body adds (a spent quota, a full queue, the upstream's own reason).

`error_for_status` reads a non-2xx answer; `error_in_answer` reads an error object a
provider sent inside a 2xx answer (OpenRouter's envelope, in one JSON body or as an
event of a streamed one). Both name the upstream's reason, and for OpenRouter the
provider behind it and that provider's raw words.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from chatq.errors import (
    AuthenticationFailed,
    BadRequest,
    MalformedResponse,
    ModelNotFound,
    QuotaExhausted,
    RateLimited,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from chatq.redaction import redact
from worker.chat.rate_budget import read_budget
from worker.chat.retry_after import parse_retry_after

__all__ = ["error_for_status", "error_in_answer"]

_HINTS = {
    400: "the provider refused the request as sent",
    402: "the account has no credit left; top it up",
    401: "check the provider's API key",
    403: "the API key is not allowed to use this model",
    404: "check the model name",
    413: "the request is too large for this provider",
    422: "the provider refused the request as sent",
    429: "the provider is rate limiting us",
    503: "unavailable or busy",
    504: "timed out upstream",
}


def error_for_status(
    provider: str, status: int, headers: Mapping[str, str], body: str
) -> UpstreamError:
    """The chatq error for an upstream answer with a non-2xx `status`: its class names
    what a user can do about it (see chatq/errors.py), its message ends with the
    upstream's own reason when the body gives one.

    Beyond the status, the body decides two cases, as the providers send them:
    a spent quota (OpenAI's `insufficient_quota` and kin in `error.type`/`error.code`,
    Ollama Cloud's "hourly/session/weekly usage limit" 429s) is QuotaExhausted, never a
    rate limit; Ollama's 503 "server busy ... maximum pending requests exceeded" (its
    queue is full) is RateLimited, so that the fleet paces its calls.
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    should = {"true": True, "false": False}.get(str(lowered.get("x-should-retry", "")).lower())
    error = _error_of(body)
    reason = _upstream_reason(error)
    facts = {"provider": provider, "status": status, "excerpt": body, "should_retry": should}
    if status in (402, 429) and _quota_spent(error):
        hint = "the account's quota or usage limit is spent; waiting will not help"
        return QuotaExhausted(_message(provider, status, hint, reason), facts)
    busy = status == 503 and isinstance(error, str) and _QUEUE_FULL in error.lower()
    if status == 429 or busy:
        retry_after = parse_retry_after(headers)
        if retry_after is None:  # no Retry-After: the reset of the budget it says is spent
            budget = read_budget(headers)
            retry_after = budget.wait() if budget else None
        hint = _HINTS[429] if status == 429 else "the server is busy: calls are paced"
        message = _message(provider, status, hint, reason)
        if retry_after is not None:
            message += f" (asked to wait {retry_after:g}s)"
        return RateLimited(message, facts, retry_after=retry_after)
    if status == 403 and _flagged(error):
        hint = "the input was flagged by the provider's moderation"
        return BadRequest(_message(provider, status, hint, reason), facts)
    hint = _HINTS.get(status) or ("the provider failed" if status >= 500 else "")
    if 300 <= status < 400:  # the transport follows no redirect: it would send the call again
        where = lowered.get("location")
        hint = (f"its URL redirects{f' to {redact(where)}' if where else ''}; set the "
                "provider's URL to where it points")  # fmt: skip
    kind = _BY_STATUS.get(status)
    if kind is None:
        kind = UpstreamUnavailable if status >= 500 else UpstreamError
    return kind(_message(provider, status, hint, reason), facts)


#: OpenAI-style `error.type`/`error.code` values saying the money or quota is spent
#: (OpenAI's, and Moonshot's for Kimi), as opposed to a rate limit that passes.
_QUOTA_CODES = frozenset({"insufficient_quota", "billing_hard_limit_reached",
                          "billing_not_active", "exceeded_current_quota_error"})  # fmt: skip
#: Ollama Cloud's usage-limit 429s say so only in their text ("you've reached your
#: hourly usage limit, please wait or upgrade to continue").
_USAGE_LIMIT = re.compile(r"\b(hourly|session|daily|weekly|monthly) usage limit\b", re.I)


#: Ollama's 503 when its queue of pending requests (OLLAMA_MAX_QUEUE) is full.
_QUEUE_FULL = "maximum pending requests exceeded"


def _error_of(body: str) -> Any:
    """The body's `error` member (an object or a string), if the body is JSON with one."""
    try:
        data = json.loads(body)
    except ValueError:
        return None
    return data.get("error") if isinstance(data, dict) else None


def _quota_spent(error: Any) -> bool:
    if isinstance(error, dict):
        return bool({error.get("type"), error.get("code")} & _QUOTA_CODES) or (
            error.get("code") == 402
        )
    return isinstance(error, str) and bool(_USAGE_LIMIT.search(error))


def _flagged(error: Any) -> bool:
    """OpenRouter's 403 for input its moderation flagged (`metadata.reasons`), which no
    key will pass."""
    meta = error.get("metadata") if isinstance(error, dict) else None
    return isinstance(meta, dict) and bool(meta.get("reasons"))


def _upstream_reason(error: Any) -> str | None:
    """The upstream's own words: Ollama's error text, an OpenAI-style `error.message`,
    and OpenRouter's `metadata` (the provider behind it and its raw reason, or the
    reasons its moderation flagged the input for). Redacted before it is cut short, so
    that a cut never keeps part of a key."""
    if isinstance(error, dict):
        text = str(error.get("message") or "")
        meta = error.get("metadata") if isinstance(error.get("metadata"), dict) else {}
        raw = meta.get("raw") or meta.get("reasons")
        if raw is not None and not isinstance(raw, str):
            raw = json.dumps(raw)  # some providers' raw answer is an object
        who = meta.get("provider_name")
        if raw or who:
            text += f" ({': '.join(str(part) for part in (who, raw) if part)})"
    else:
        text = error if isinstance(error, str) else ""
    text = " ".join(redact(text).split())
    return (text[:197] + "...") if len(text) > 200 else (text or None)


def _message(provider: str, status: int, hint: str, reason: str | None) -> str:
    message = f"{provider} answered {status}" + (f": {hint}" if hint else "")
    return message + (f" (upstream: {reason})" if reason else "")


_BY_STATUS: dict[int, type[UpstreamError]] = {
    400: BadRequest,
    401: AuthenticationFailed,
    402: QuotaExhausted,
    403: AuthenticationFailed,
    404: ModelNotFound,
    408: UpstreamTimeout,
    422: BadRequest,
    # "Client closed request" (Ollama's and nginx's): the call was cut before its
    # answer, as by a timeout.
    499: UpstreamTimeout,
    504: UpstreamTimeout,
}


def error_in_answer(provider: str, error: Any, *, midway: bool) -> UpstreamError:
    """The chatq error for an `error` object a provider sent inside a 2xx answer.

    OpenRouter answers 200 once a model has been asked, and reports a failure after
    that in its envelope `{"error": {"code", "message", "metadata": {"provider_name",
    "raw"}}}`: as the whole body, as an event of a streamed answer, or beside a choice
    whose `finish_reason` is "error". A numeric `code` is the status it stands for, and
    the error is the one that status would give (402 QuotaExhausted, 429 RateLimited,
    502 UpstreamUnavailable, ...). Without one, an answer that broke off `midway` is
    UpstreamUnavailable (another call may finish it); anything else MalformedResponse.
    """
    body = json.dumps({"error": error})
    code = error.get("code") if isinstance(error, dict) else None
    if isinstance(code, str) and code.isdigit():
        code = int(code)
    if isinstance(code, int) and not isinstance(code, bool) and 400 <= code < 600:
        return error_for_status(provider, code, {}, body)
    reason = _upstream_reason(error) or "no reason given"
    if midway:
        message = f"{provider} broke off its answer with an error (upstream: {reason})"
        return UpstreamUnavailable(message, provider=provider, excerpt=body)
    message = f"{provider} answered an error without choices: {reason}"
    return MalformedResponse(message, provider=provider, excerpt=body)
