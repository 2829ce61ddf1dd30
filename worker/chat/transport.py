"""The HTTP boundary: one pooled aiohttp session per provider, and the one place where
aiohttp's errors and upstream error statuses (by `upstream_errors`) become chatq errors.

Every call is a coroutine on the process's event loop (`worker.aio`). A POST is never
sent twice by this module or by aiohttp: aiohttp re-sends a request on a stale pooled
connection only for idempotent methods (`IDEMPOTENT_METHODS` in aiohttp's client), and
redirects are not followed (a 307 or 308 would send the call again, elsewhere).
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import aiohttp

from chatq.errors import MalformedResponse, UpstreamError, UpstreamTimeout, UpstreamUnavailable
from worker.chat.rate_budget import RateBudget, read_budget
from worker.chat.upstream_errors import error_for_status

__all__ = ["Reply", "Timeout", "Transport"]

#: aiohttp rounds a timeout of more than `ceil_threshold` seconds up to a whole second
#: of the loop's clock (to share timers); ours are bounds a user set, kept exact.
_EXACT = float("inf")
_STREAMED_TYPES = ("event-stream", "ndjson")


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


class _Answer(NamedTuple):
    """What came back over the wire, before it is judged (its headers: aiohttp's
    case-insensitive mapping)."""

    status: int
    headers: Mapping[str, str]
    body: bytes


class Transport:
    """POSTs JSON to one provider over a pooled `aiohttp.ClientSession`.

    The session is opened on the first call, inside the running loop (a transport is
    built in an ordinary thread, before any loop runs). A session belongs to the loop it
    was opened on: a call from another loop (a forked child's) opens one of its own and
    leaves the old one alone, its sockets not this loop's to close.

    Args:
        provider: the provider's name, recorded on every error.
        base_url: prefixed to every path.
        headers: sent with every call (the Authorization header lives here only).
        pool_size: connections kept open at most; match the calls a process has in
            flight (a call beyond it waits for a free connection).
    """

    def __init__(
        self,
        provider: str,
        base_url: str,
        *,
        headers: Mapping[str, str] | None = None,
        pool_size: int = 64,
    ):
        self.provider = provider
        self.base_url = base_url.rstrip("/")
        self._headers = {"Content-Type": "application/json", **(headers or {})}
        self._pool_size = pool_size
        self._urls: dict[str, str] = {}
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def post_json(
        self,
        path: str,
        payload: Mapping[str, Any],
        *,
        timeout: Timeout,
        until: float | None = None,
    ) -> Reply:
        """POST `payload` to `base_url + path`; the decoded JSON answer and its budget.

        `until` (a `time.monotonic()` instant), when given, bounds the whole call.

        Raises:
            UpstreamTimeout: no connection or no answer within `timeout`, or still
                answering at `until`.
            UpstreamUnavailable: the connection was refused or reset.
            UpstreamError: (or a subclass) the answer's status is not 2xx.
            MalformedResponse: a 2xx answer whose body is not JSON, or cut short.
        """
        answer = await self._exchange(path, payload, timeout, until)
        return Reply(self._decode(answer), read_budget(answer.headers))

    async def post_stream(
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
        ones included. `until` (a `time.monotonic()` instant) bounds the whole answer
        (aiohttp's bound on the whole call stops a trickle that would outlast it). The
        body is read whole as it arrives (one wake-up of the caller, not one a piece),
        then its lines are assembled. An upstream
        that answers with one JSON body instead (any other Content-Type) is read as such.

        Raises:
            UpstreamTimeout: no connection in time, no bytes for `timeout.read` seconds
                (a stall, before or in the middle of the answer), or still answering at
                `until`.
            UpstreamUnavailable, UpstreamError, MalformedResponse: as `post_json`; also
                MalformedResponse when a streamed line is not JSON.
        """
        answer = await self._exchange(path, payload, timeout, until)
        ctype = answer.headers.get("Content-Type", "").lower()
        if 200 <= answer.status < 300 and any(kind in ctype for kind in _STREAMED_TYPES):
            try:
                body = assemble(_lines(answer.body))
            except ValueError as exc:
                raise MalformedResponse(
                    f"{self.provider}: a streamed line is not JSON ({exc})",
                    provider=self.provider,
                ) from None
            return Reply(body, read_budget(answer.headers))
        return Reply(self._decode(answer), read_budget(answer.headers))

    async def aclose(self) -> None:
        """Close the pooled connections; call it on the loop the calls ran on (a session
        of another loop is let go, not closed). The next call opens a new session."""
        session, loop = self._session, self._loop
        self._session = self._loop = None
        if session is not None and loop is asyncio.get_running_loop():
            await session.close()

    def _session_here(self) -> aiohttp.ClientSession:
        """This loop's session, opened on first use."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._pool_size),
                # Providers are stateless APIs: a shared session must not carry one
                # call's cookies into the next.
                cookie_jar=aiohttp.DummyCookieJar(),
                trust_env=False,
                headers=self._headers,
            )
            self._loop = loop
        return self._session

    async def _exchange(
        self,
        path: str,
        payload: Mapping[str, Any],
        timeout: Timeout,
        until: float | None,
    ) -> _Answer:
        """One POST and its whole answer, whatever its status. The one place where
        aiohttp's errors become chatq's (`_failure`)."""
        url = self._urls.get(path) or self._urls.setdefault(path, self.base_url + path)
        limits = aiohttp.ClientTimeout(
            # `until` bounds everything, the wait for a free pooled connection included
            # (the pool is sized for every call a process has in flight: rarely a wait).
            total=None if until is None else max(0.001, until - time.monotonic()),
            connect=None,
            sock_connect=timeout.connect,
            sock_read=timeout.read,
            ceil_threshold=_EXACT,
        )
        answered = False
        try:
            async with self._session_here().post(
                url, data=_json_body(payload), timeout=limits, allow_redirects=False
            ) as resp:
                answered = True
                body = await resp.read()
                return _Answer(resp.status, resp.headers, body)
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            raise self._failure(exc, timeout, answered=answered) from None

    def _failure(self, exc: BaseException, timeout: Timeout, *, answered: bool) -> UpstreamError:
        """The chatq error for what aiohttp (or the socket below it) raised during a call;
        `answered`: the status and headers had arrived (the body had not, or not whole)."""
        base, provider = self.base_url, self.provider
        if isinstance(exc, aiohttp.ConnectionTimeoutError):  # sock_connect (or `until`)
            message = f"{provider}: no connection to {base} within {timeout.connect:g}s"
            return UpstreamTimeout(message, provider=provider)
        idle = isinstance(exc, aiohttp.ServerTimeoutError)  # sock_read: no bytes in time
        # aiohttp's bound on the whole call (`until`) raises a bare TimeoutError; one
        # with an errno is the kernel's (a connection that timed out), not ours.
        bound = isinstance(exc, asyncio.TimeoutError) and getattr(exc, "errno", None) is None
        if (idle or bound) and not answered:
            message = f"{provider}: no answer from {base} within {timeout.read:g}s"
            return UpstreamTimeout(message, provider=provider)
        if idle:
            message = f"{provider}: the answer from {base} stalled (no bytes for {timeout.read:g}s)"
            return UpstreamTimeout(message, provider=provider)
        if bound:
            return self._out_of_time()
        connection = (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError, OSError)
        if answered and isinstance(exc, connection):
            message = f"{provider}: the answer from {base} was cut short"
            return MalformedResponse(message, provider=provider)
        if isinstance(exc, connection):
            message = f"{provider}: cannot reach {base} ({_reason(exc)})"
            return UpstreamUnavailable(message, provider=provider)
        message = f"{provider}: request to {base} failed ({_reason(exc)})"
        return UpstreamUnavailable(message, provider=provider)

    def _out_of_time(self) -> UpstreamTimeout:
        return UpstreamTimeout(
            f"{self.provider}: still answering when the call's time ran out",
            provider=self.provider,
        )

    def _decode(self, answer: _Answer) -> Any:
        """The JSON body of a 2xx answer.

        Raises:
            UpstreamError: (or a subclass) the status is not 2xx.
            MalformedResponse: the body is not JSON.
        """
        text = answer.body.decode("utf-8", errors="replace")
        if not 200 <= answer.status < 300:
            raise error_for_status(self.provider, answer.status, answer.headers, text)
        try:
            return json.loads(text)
        except ValueError:
            raise MalformedResponse(
                f"{self.provider}: the answer is not JSON (status {answer.status})",
                provider=self.provider,
                status=answer.status,
                excerpt=text,
            ) from None


def _lines(body: bytes) -> Iterator[str]:
    """The body's lines (NDJSON objects, or server-sent event fields); a last line with
    no newline counts unless it is blank."""
    *complete, last = body.decode("utf-8", errors="replace").split("\n")
    for line in complete:
        yield line.rstrip("\r")
    if last.strip():
        yield last


def _reason(exc: BaseException) -> str:
    """Why a connection failed, in a few words, without the request's URL or headers."""
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "the server closed the connection"
    cause = getattr(exc, "os_error", exc)  # a ClientConnectorError's own OSError
    if isinstance(cause, ssl.SSLError):  # its numbers are OpenSSL's, not the kernel's
        return (cause.reason or type(cause).__name__).lower().replace("_", " ")
    if isinstance(cause, OSError):
        if cause.errno and cause.errno > 0:
            return os.strerror(cause.errno).lower()
        if cause.strerror:  # getaddrinfo's errors have negative numbers
            return cause.strerror.lower()
    return type(exc).__name__


def _json_body(payload: Mapping[str, Any]) -> aiohttp.payload.BytesPayload:
    """The request's JSON as a ready body (aiohttp need not look up how to send it)."""
    return aiohttp.payload.BytesPayload(
        json.dumps(payload).encode(), content_type="application/json"
    )
