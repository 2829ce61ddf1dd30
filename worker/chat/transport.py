"""The HTTP boundary: one pooled session per provider, and the one place where
`requests` errors and upstream error statuses (by `upstream_errors`) become chatq errors.
"""

from __future__ import annotations

import contextlib
import http.cookiejar
import json
import socket
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ReadTimeoutError

from chatq.errors import (
    MalformedResponse,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from worker.chat.rate_budget import RateBudget, read_budget
from worker.chat.upstream_errors import error_for_status

__all__ = ["Reply", "Timeout", "Transport"]


@dataclass(frozen=True)
class Reply:
    """A 2xx answer: its decoded body, and the rate budget its headers announce."""

    body: Any
    budget: RateBudget | None = None


@dataclass(frozen=True)
class Timeout:
    """Seconds to wait for a connection, and then between bytes of the answer (for a
    streamed call: the idle timeout)."""

    connect: float
    read: float

    def clipped(self, remaining: float | None) -> Timeout:
        """This timeout, shortened so that no wait outlasts `remaining` seconds."""
        if remaining is None:
            return self
        remaining = max(0.001, remaining)
        return Timeout(min(self.connect, remaining), min(self.read, remaining))


class _NoCookies(http.cookiejar.CookiePolicy):
    """Providers are stateless APIs: a shared session must not carry one call's cookies."""

    return_ok = set_ok = domain_return_ok = path_return_ok = lambda self, *a, **k: False
    netscape = True
    rfc2965 = hide_cookie2 = False


class Transport:
    """POSTs JSON to one provider over a pooled, thread-safe `requests.Session`.

    Args:
        provider: the provider's name, recorded on every error.
        base_url: prefixed to every path.
        headers: sent with every call (the Authorization header lives here only).
        pool_size: connections kept per host; match the worker's concurrency.
        session: a ready session (tests may hand in their own).
    """

    def __init__(
        self,
        provider: str,
        base_url: str,
        *,
        headers: Mapping[str, str] | None = None,
        pool_size: int = 64,
        session: requests.Session | None = None,
    ):
        self.provider = provider
        self.base_url = base_url.rstrip("/")
        self._headers = {"Content-Type": "application/json", **(headers or {})}
        if session is None:
            session = requests.Session()
            adapter = HTTPAdapter(pool_connections=4, pool_maxsize=pool_size, max_retries=0)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            session.cookies.set_policy(_NoCookies())
            session.trust_env = False
        self._session = session

    def post_json(self, path: str, payload: Mapping[str, Any], *, timeout: Timeout) -> Reply:
        """POST `payload` to `base_url + path`; the decoded JSON answer and its budget.

        Raises:
            UpstreamTimeout: no connection or no answer within `timeout`.
            UpstreamUnavailable: the connection was refused or reset.
            UpstreamError: (or a subclass) the answer's status is not 2xx.
            MalformedResponse: a 2xx answer whose body is not JSON.
        """
        with self._calling(timeout):
            resp = self._post(path, payload, timeout, stream=False)
            body = resp.content
        return Reply(self._decode(resp, body), read_budget(resp.headers))

    def post_stream(
        self,
        path: str,
        payload: Mapping[str, Any],
        *,
        timeout: Timeout,
        until: float | None,
        assemble: Callable[[Iterator[str]], Any],
    ) -> Reply:
        """POST `payload` asking for a streamed answer; `assemble` turns its lines (NDJSON
        or server-sent events) into the answer a non-streamed call would have given.

        `timeout.read` is the idle timeout: the longest wait for the next bytes, the first
        ones included. `until` (a `time.monotonic()` instant) bounds the whole answer. An
        upstream that answers with one JSON body instead is read as such.

        Raises:
            UpstreamTimeout: no connection in time, no bytes for `timeout.read` seconds
                (a stall, before or in the middle of the answer), or still answering at
                `until`.
            UpstreamUnavailable, UpstreamError, MalformedResponse: as `post_json`.
        """
        with self._calling(timeout):
            resp = self._post(path, payload, timeout, stream=True)
            try:
                if not 200 <= resp.status_code < 300:
                    return self._decode(resp, _read_all(resp, until, self.provider))
                budget = read_budget(resp.headers)
                ctype = resp.headers.get("Content-Type", "").lower()
                if "event-stream" not in ctype and "ndjson" not in ctype:
                    return Reply(self._decode(resp, _read_all(resp, until, self.provider)), budget)
                try:
                    return Reply(assemble(_lines(resp, until, self.provider)), budget)
                except ValueError as exc:
                    raise MalformedResponse(
                        f"{self.provider}: a streamed line is not JSON ({exc})",
                        provider=self.provider,
                    ) from None
            finally:
                resp.close()

    def _post(
        self, path: str, payload: Mapping[str, Any], timeout: Timeout, *, stream: bool
    ) -> requests.Response:
        return self._session.post(
            self.base_url + path,
            data=json.dumps(payload),
            headers=self._headers,
            timeout=(timeout.connect, timeout.read),
            stream=stream,
        )

    @contextlib.contextmanager
    def _calling(self, timeout: Timeout) -> Iterator[None]:
        """Where every `requests` failure of a call becomes a chatq error."""
        try:
            yield
        except requests.exceptions.ConnectTimeout:
            raise UpstreamTimeout(
                f"{self.provider}: no connection to {self.base_url} within {timeout.connect:g}s",
                provider=self.provider,
            ) from None
        except requests.exceptions.Timeout:
            raise UpstreamTimeout(
                f"{self.provider}: no answer from {self.base_url} within {timeout.read:g}s",
                provider=self.provider,
            ) from None
        except (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError,
                requests.exceptions.ConnectionError) as exc:  # fmt: skip
            if _stalled(exc):  # a read timed out in the middle of the body
                raise UpstreamTimeout(
                    f"{self.provider}: the answer from {self.base_url} stalled (no bytes for "
                    f"{timeout.read:g}s)",
                    provider=self.provider,
                ) from None
            if not isinstance(exc, requests.exceptions.ConnectionError):
                raise MalformedResponse(
                    f"{self.provider}: the answer from {self.base_url} was cut short",
                    provider=self.provider,
                ) from None
            raise UpstreamUnavailable(
                f"{self.provider}: cannot reach {self.base_url} ({_reason(exc)})",
                provider=self.provider,
            ) from None
        except requests.exceptions.RequestException as exc:
            raise UpstreamUnavailable(
                f"{self.provider}: request to {self.base_url} failed ({_reason(exc)})",
                provider=self.provider,
            ) from None

    def _decode(self, resp: requests.Response, body: bytes) -> Any:
        text = body.decode("utf-8", errors="replace")
        if not 200 <= resp.status_code < 300:
            raise error_for_status(self.provider, resp.status_code, resp.headers, text)
        try:
            return json.loads(text)
        except ValueError:
            raise MalformedResponse(
                f"{self.provider}: the answer is not JSON (status {resp.status_code})",
                provider=self.provider,
                status=resp.status_code,
                excerpt=text,
            ) from None


def _stalled(exc: BaseException) -> bool:
    """Whether a read timed out (urllib3's ReadTimeoutError, wherever requests wrapped it)."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return False
        if isinstance(seen, (ReadTimeoutError, socket.timeout, TimeoutError)):
            return True
        nested = next((a for a in seen.args if isinstance(a, BaseException)), None)
        seen = nested or seen.__cause__ or seen.__context__
    return False


def _chunks(resp: requests.Response, until: float | None, provider: str) -> Iterator[bytes]:
    """The body's bytes as they arrive; UpstreamTimeout once `until` has passed."""
    for chunk in resp.iter_content(chunk_size=None):
        if until is not None and time.monotonic() > until:
            raise UpstreamTimeout(f"{provider}: still answering when the call's time ran out",
                                  provider=provider)  # fmt: skip
        yield chunk


def _read_all(resp: requests.Response, until: float | None, provider: str) -> bytes:
    return b"".join(_chunks(resp, until, provider))


def _lines(resp: requests.Response, until: float | None, provider: str) -> Iterator[str]:
    """The body's lines as they arrive (NDJSON objects, or server-sent event fields)."""
    pending = b""
    for chunk in _chunks(resp, until, provider):
        pending += chunk
        *complete, pending = pending.split(b"\n")
        for line in complete:
            yield line.rstrip(b"\r").decode("utf-8", errors="replace")
    if pending.strip():
        yield pending.decode("utf-8", errors="replace")


def _reason(exc: BaseException) -> str:
    """The innermost cause of a connection failure, without the request's URL or headers."""
    cause: BaseException = exc
    for _ in range(8):
        nested = getattr(cause, "reason", None)
        if not isinstance(nested, BaseException):
            nested = next((a for a in cause.args if isinstance(a, BaseException)), None)
        nested = nested or cause.__cause__ or cause.__context__
        if nested is None:
            break
        cause = nested
    if isinstance(cause, OSError) and cause.strerror:
        return cause.strerror.lower()
    return type(cause).__name__
