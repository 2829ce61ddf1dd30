"""A real HTTP server on loopback that plays the upstream providers.

It speaks Ollama's `/api/chat` and `/api/generate` and the OpenAI-compatible
`/chat/completions` (under any base path), records every request it receives, and
misbehaves on demand: scripted answers (429 with Retry-After, 5xx, slow, garbage,
truncated, zero choices, a reset connection), a requests-per-second limit that answers
429 above it, or random faults at given rates.

Used by the tests in-process and by the benchmarks as `python -m tests.fake_upstream`.
"""

from __future__ import annotations

import argparse
import json
import random
import socket
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["REAL_ERRORS", "Answer", "FakeUpstream", "Received"]


@dataclass(frozen=True)
class Answer:
    """What the fake upstream does for one call.

    kind: "ok" (a proper answer in the route's wire format), "status" (`status` with
    `body`), "garbage" (200, not JSON), "truncated" (200, JSON cut short), "cut" (headers
    promise more body than is sent, then the connection closes), "zero_choices",
    "reset" (the connection closes before any answer), "json" (200 with `body` as JSON).
    """

    kind: str = "ok"
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    content: str | None = None
    #: A proper answer that calls these tools: [(name, arguments as a dict), ...].
    tool_calls: tuple | None = None

    @classmethod
    def error(cls, status: int, body: Any = None, **headers: str) -> Answer:
        """A `status` answer with `body` (JSON when not a string) and headers."""
        hdrs = {k.replace("_", "-"): v for k, v in headers.items()}
        return cls(kind="status", status=status, body=body, headers=hdrs)

    @classmethod
    def rate_limited(cls, retry_after: float | str | None = None) -> Answer:
        """A 429, with `Retry-After` when given."""
        hdrs = {} if retry_after is None else {"Retry-After": str(retry_after)}
        return cls(kind="status", status=429, body={"error": "rate limited"}, headers=hdrs)

    @classmethod
    def calling(cls, *calls: tuple[str, dict]) -> Answer:
        """A proper answer that asks for tool calls `(name, arguments)`, in the route's
        real shape: Ollama's arguments as an object (no id), the OpenAI family's as JSON
        text with an id, content null and finish_reason `tool_calls`."""
        return cls(content="", tool_calls=tuple(calls))

    @classmethod
    def error_in_200(cls, error: dict, *, streamed: bool = False, after: str = "",
                     finish_error: bool = False) -> Answer:  # fmt: skip
        """An error object inside a 200, as OpenRouter sends one once a model was asked:
        the whole JSON body, or (`streamed`) a server-sent event after `after` was
        streamed as content; `finish_error` puts it beside a choice whose finish_reason
        is "error", as OpenRouter ends a stream that failed mid-answer."""
        if not streamed:
            return cls(kind="json", body={"error": error})
        base = {"id": "gen-1", "object": "chat.completion.chunk", "model": "fake"}
        delta = {"role": "assistant", "content": after}
        chunks = [{**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}]
        failed = {**base, "error": error}
        if finish_error:
            failed["choices"] = [{"index": 0, "delta": {"content": ""}, "finish_reason": "error"}]
        events = [": OPENROUTER PROCESSING", *(f"data: {json.dumps(c)}" for c in chunks),
                  f"data: {json.dumps(failed)}", "data: [DONE]"]  # fmt: skip
        return cls(kind="raw_stream", body="\n\n".join(events) + "\n\n")

    @classmethod
    def slow(cls, seconds: float, content: str | None = None) -> Answer:
        """A proper answer after `seconds` (not a byte before then)."""
        return cls(delay=seconds, content=content)

    @classmethod
    def stall(cls, seconds: float, *, after: int = 1) -> Answer:
        """A streamed answer that stops for `seconds` after its first `after` pieces (an
        upstream that hangs mid-answer), then ends properly."""
        return cls(kind="stall", body={"after": after, "seconds": seconds})

    @classmethod
    def trickle(cls, seconds: float, *, pieces: int = 8, content: str | None = None) -> Answer:
        """A healthy long answer: streamed in `pieces`, spread over `seconds`."""
        return cls(kind="trickle", body={"pieces": pieces, "seconds": seconds}, content=content)


#: Errors as real providers send them (status and body), by the behaviour they show.
REAL_ERRORS: dict[str, Answer] = {
    # OpenAI (and the APIs that copy it): the account has no quota left.
    "openai_insufficient_quota": Answer.error(429, {"error": {
        "message": "You exceeded your current quota, please check your plan and billing "
                   "details.",
        "type": "insufficient_quota", "param": None, "code": "insufficient_quota"}}),
    # OpenRouter: too little credit for the call, as a 402 in its own envelope.
    "openrouter_402": Answer.error(402, {"error": {
        "code": 402,
        "message": "This request requires more credits, or fewer max_tokens. You requested "
                   "up to 4096 tokens, but can only afford 112."}}),
    # OpenRouter: an upstream provider's refusal, named in metadata.
    "openrouter_upstream_400": Answer.error(400, {"error": {
        "code": 400, "message": "Provider returned error",
        "metadata": {"provider_name": "Fireworks", "raw": "prompt is too long"}}}),
    # OpenRouter: an error once the model was asked comes in a 200, its code the status
    # it stands for: as the whole body, as an event mid-stream, or beside a choice that
    # finishes with "error" (a string code: the provider broke off).
    "openrouter_502_in_200": Answer.error_in_200({
        "code": 502, "message": "Provider returned error",
        "metadata": {"provider_name": "Together", "raw": "upstream connect error"}}),
    "openrouter_429_event_midstream": Answer.error_in_200({
        "code": 429, "message": "Provider returned error",
        "metadata": {"provider_name": "DeepInfra", "raw": "rate limit exceeded, retry"}},
        streamed=True, after="The answer beg"),
    "openrouter_finish_reason_error": Answer.error_in_200({
        "code": "server_error", "message": "Provider disconnected unexpectedly"},
        streamed=True, after="The answer beg", finish_error=True),
    # OpenRouter: input its moderation flagged (a 403 no key passes).
    "openrouter_moderation_403": Answer.error(403, {"error": {
        "code": 403, "message": "meta-llama/llama-guard requires moderation",
        "metadata": {"reasons": ["violence"], "flagged_input": "...",
                     "provider_name": "Lepton", "model_slug": "x/y"}}}),
    # Ollama Cloud's usage limits: 429s that waiting seconds will not cure.
    "ollama_cloud_hourly_limit": Answer.error(429, {
        "error": "you've reached your hourly usage limit, please wait or upgrade to continue"}),
    "ollama_cloud_session_limit": Answer.error(429, {
        "error": "you (someone) have reached your session usage limit, upgrade for higher "
                 "limits: https://ollama.com/upgrade"}),
    "ollama_cloud_weekly_limit": Answer.error(429, {
        "error": "you (someone) have reached your weekly usage limit, upgrade for higher "
                 "limits: https://ollama.com/upgrade"}),
    # Ollama: its queue of pending requests is full (OLLAMA_MAX_QUEUE).
    "ollama_busy": Answer.error(503, {
        "error": "server busy, please try again.  maximum pending requests exceeded"}),
    # Ollama: the model is not pulled on this server.
    "ollama_model_not_found": Answer.error(404, {
        "error": 'model "llama9" not found, try pulling it first'}),
    # Ollama: a format it cannot turn into a grammar.
    "ollama_invalid_schema": Answer.error(400, {"error": "invalid JSON schema in format"}),
    # "Client closed request": the call was cut before its answer (no body).
    "499": Answer.error(499, ""),
}  # fmt: skip


@dataclass(frozen=True)
class Received:
    """One request as the fake upstream saw it."""

    path: str
    headers: dict[str, str]
    body: Any
    at: float
    #: How it was answered: "ok", a chaos fault's name, or a scripted answer's kind.
    answer: str = "ok"


class FakeUpstream:
    """A threaded HTTP server on 127.0.0.1; use as a context manager or start()/stop().

    Args:
        delay: seconds every answer waits before it is sent.
        rate_limit: answer 429 (Retry-After: the time to the next free slot) above this
            many requests per second.
        chaos: random faults by rate, e.g. {"429": 0.1, "500": 0.05, "timeout": 0.02,
            "garbage": 0.01, "zero_choices": 0.01}.
        seed: for the random faults.
        port: 0 picks a free port.
    """

    def __init__(
        self,
        *,
        delay: float = 0.0,
        rate_limit: float | None = None,
        chaos: dict[str, float] | None = None,
        timeout_delay: float = 30.0,
        seed: int = 0,
        port: int = 0,
        record: bool = True,
    ):
        self.delay = delay
        self.rate_limit = rate_limit
        self.chaos = dict(chaos or {})
        self.timeout_delay = timeout_delay
        self.record = record
        #: Answer 400 to every request that carries a JSON Schema (as a provider or model
        #: without structured outputs does), in the route's own error shape.
        self.refuse_schemas = False
        #: A budget of calls per window, announced in rate-limit headers (`budget()`).
        self._budget: tuple[int, float, str] | None = None
        self._window = (0.0, 0)  # its start (monotonic) and the calls it admitted
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._script: deque[Answer] = deque()
        self._by_marker: dict[str, tuple[deque[Answer], Answer | None]] = {}
        self._received: list[Received] = []
        self._count = 0
        self._stamps: deque[float] = deque()
        self.in_flight = 0
        self.peak_in_flight = 0
        self.answered: dict[str, int] = {}
        #: Random faults injected so far, by name ("429", "timeout", ...).
        self.injected: dict[str, int] = {}
        self._server = _Server(("127.0.0.1", port), _Handler)
        self._server.upstream = self
        self._thread: threading.Thread | None = None
        self.stopped = False

    # -- lifecycle ---------------------------------------------------------------------
    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        """The base URL for Ollama-style providers (`/api/...` is appended)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def openai_url(self) -> str:
        """A base URL for OpenAI-compatible providers (`/chat/completions` is appended)."""
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> FakeUpstream:
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopped = True
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeUpstream:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- scripting and inspection ------------------------------------------------------
    def push(self, *answers: Answer) -> None:
        """Answer the next calls with these, in order; then answer normally again."""
        with self._lock:
            self._script.extend(answers)

    def when(self, marker: str, *answers: Answer, then: Answer | None = None) -> None:
        """Answer requests whose body holds `marker` with these, in order, then with
        `then` every time (or normally when None): a script per prompt, whatever order
        concurrent calls arrive in. Checked before the general script."""
        with self._lock:
            self._by_marker[marker] = (deque(answers), then)

    def budget(self, requests: int, *, per: float, style: str = "openai") -> None:
        """Allow `requests` calls per window of `per` seconds (from the window's first
        call), announcing on every answer what is left, as real providers do: OpenAI's
        `x-ratelimit-remaining-requests` and `x-ratelimit-reset-requests` (a duration,
        `1.5s`), or OpenRouter's `x-ratelimit-remaining` and `x-ratelimit-reset` (a Unix
        time in milliseconds). A call beyond the budget is answered 429."""
        with self._lock:
            self._budget, self._window = (requests, per, style), (0.0, 0)

    @property
    def received(self) -> list[Received]:
        with self._lock:
            return list(self._received)

    @property
    def calls(self) -> int:
        """How many requests arrived (whatever was answered)."""
        with self._lock:
            return self._count

    def reset(self) -> None:
        """Forget the script, the records and the counters."""
        with self._lock:
            self._script.clear()
            self._by_marker.clear()
            self._received.clear()
            self._count = 0
            self._stamps.clear()
            self.answered.clear()
            self.injected.clear()
            self.peak_in_flight = self.in_flight
            self.refuse_schemas = False
            self._budget = None

    # -- deciding an answer ------------------------------------------------------------
    def _next(self, path: str, headers: dict[str, str], body: Any) -> Answer:
        with self._lock:
            self._count += 1
            answer, name = self._marked(body) or self._decide(path, body)
            if self.record:
                self._received.append(Received(path, headers, body, time.time(), name))
            return answer

    def _marked(self, body: Any) -> tuple[Answer, str] | None:
        """The scripted answer for a request holding a marker (under the lock)."""
        if not self._by_marker:
            return None
        text = json.dumps(body)
        for marker, (answers, then) in self._by_marker.items():
            if marker in text:
                answer = answers.popleft() if answers else then
                if answer is None:
                    return None
                return answer, answer.kind if answer.kind != "status" else str(answer.status)
        return None

    def _decide(self, path: str, body: Any) -> tuple[Answer, str]:
        """The next answer and its name (under the lock)."""
        now = time.monotonic()
        if self.refuse_schemas and _has_schema(body):
            return _schema_refused(path), "400"
        if self._script:
            answer = self._script.popleft()
            return answer, answer.kind if answer.kind != "status" else str(answer.status)
        if self._budget:
            return self._budgeted(now)
        if self.rate_limit:
            while self._stamps and self._stamps[0] <= now - 1.0:
                self._stamps.popleft()
            if len(self._stamps) >= self.rate_limit:
                wait = max(0.05, self._stamps[0] + 1.0 - now)
                return Answer.rate_limited(f"{wait:.2f}"), "429"
            self._stamps.append(now)
        if self.chaos:
            return self._chaos_answer()
        return Answer(delay=self.delay), "ok"

    def _budgeted(self, now: float) -> tuple[Answer, str]:
        """A call under `budget()`: answered with what is left, or 429 (under the lock)."""
        requests, per, style = self._budget  # type: ignore[misc]
        start, used = self._window
        if used == 0 or now >= start + per:
            start, used = now, 0
        reset = start + per - now
        if style == "openai":
            headers = {"x-ratelimit-limit-requests": str(requests),
                       "x-ratelimit-reset-requests": f"{reset:.3f}s"}  # fmt: skip
            left = "x-ratelimit-remaining-requests"
        else:
            headers = {"X-RateLimit-Limit": str(requests),
                       "X-RateLimit-Reset": str(int((time.time() + reset) * 1000))}  # fmt: skip
            left = "X-RateLimit-Remaining"
        if used >= requests:
            headers.update({left: "0", "Retry-After": f"{reset:.2f}"})
            return Answer(kind="status", status=429, body={"error": "rate limited"},
                          headers=headers), "429"  # fmt: skip
        self._window = (start, used + 1)
        headers[left] = str(requests - used - 1)
        return Answer(delay=self.delay, headers=headers), "ok"

    def _chaos_answer(self) -> tuple[Answer, str]:
        roll = self._rng.random()
        for fault, rate in self.chaos.items():
            if roll < rate:
                self.injected[fault] = self.injected.get(fault, 0) + 1
                return _FAULTS[fault](self), fault
            roll -= rate
        return Answer(delay=self.delay), "ok"

    def _track(self, kind: str, delta: int) -> None:
        with self._lock:
            self.in_flight += delta
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
            if delta < 0:
                self.answered[kind] = self.answered.get(kind, 0) + 1


_FAULTS = {
    "429": lambda up: Answer.rate_limited(f"{up._rng.uniform(0.2, 1.0):.2f}"),
    "500": lambda up: Answer.error(500, {"error": "internal error"}),
    "503": lambda up: Answer.error(503, {"error": "server busy"}),
    "timeout": lambda up: Answer(delay=up.timeout_delay),
    "garbage": lambda up: Answer(kind="garbage"),
    "truncated": lambda up: Answer(kind="truncated"),
    "zero_choices": lambda up: Answer(kind="zero_choices"),
    "reset": lambda up: Answer(kind="reset"),
}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024
    upstream: FakeUpstream

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that dies mid-request (a killed worker) is expected, not news."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; with Nagle's algorithm on, the second waits
    # for the client's delayed ACK of the first (about 40 ms on Linux), which no real
    # provider adds and which would hide the client's own costs in the benchmarks.
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        """`/_stats`: the counters, for a benchmark that runs the server in another process."""
        up = self.server.upstream
        if self.path != "/_stats":
            self._send(404, {"error": "not found"}, {})
            return
        with up._lock:
            stats = {"calls": up._count, "answered": dict(up.answered), "peak": up.peak_in_flight}
        self._send(200, stats, {})

    def do_DELETE(self) -> None:
        """`/_stats`: reset the counters."""
        self.server.upstream.reset()
        self._send(200, {"reset": True}, {})

    def do_POST(self) -> None:
        up = self.server.upstream
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw)
        except ValueError:
            body = raw.decode("utf-8", errors="replace")
        answer = (
            Answer(kind="reset")
            if up.stopped
            else up._next(self.path, dict(self.headers.items()), body)
        )
        up._track(answer.kind, +1)
        try:
            if answer.delay:
                time.sleep(answer.delay)
            self._answer(answer, body)
        except (BrokenPipeError, ConnectionResetError):
            pass
        finally:
            up._track(answer.kind if answer.kind != "status" else str(answer.status), -1)

    def _answer(self, answer: Answer, request: Any) -> None:
        if answer.kind == "reset":
            self.connection.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
            )
            self.close_connection = True
            self.connection.close()
            return
        if answer.kind == "status":
            body = answer.body if answer.body is not None else {"error": f"status {answer.status}"}
            self._send(answer.status, body, answer.headers)
            return
        if answer.kind == "garbage":
            self._send(200, "<html><body>502 Bad Gateway</body></html>", {}, "text/html")
            return
        ok = _ok_body(self.path, request, answer.content, answer.tool_calls)
        streamed = isinstance(request, dict) and request.get("stream") is True
        if answer.kind in ("ok", "stall", "trickle") and (streamed or answer.kind != "ok"):
            self._stream(answer, ok)
            return
        if answer.kind == "raw_stream":  # `body` as the whole stream, then the end
            self._chunked([answer.body.encode()], _stream_type(self.path), {}, answer.headers)
            return
        if answer.kind == "json":
            self._send(200, answer.body, answer.headers)
        elif answer.kind == "zero_choices":
            self._send(200, {**ok, "choices": []}, {})
        elif answer.kind == "truncated":
            text = json.dumps(ok)
            self._send(200, text[: len(text) // 2], {})
        elif answer.kind == "cut":
            data = json.dumps(ok).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data) * 2))
            self.end_headers()
            self.wfile.write(data)
            self.wfile.flush()
            self.close_connection = True
        else:
            self._send(200, ok, answer.headers)

    def _stream(self, answer: Answer, ok: dict[str, Any]) -> None:
        """`ok` streamed in pieces, with the pauses `answer` asks for."""
        pieces = (answer.body or {}).get("pieces", 3)
        events, ctype = _stream_events(self.path, ok, pieces)
        pause = {}
        if answer.kind == "stall":
            pause = {answer.body["after"]: answer.body["seconds"]}
        elif answer.kind == "trickle":
            gap = answer.body["seconds"] / max(1, len(events) - 1)
            pause = dict.fromkeys(range(1, len(events)), gap)
        self._chunked(events, ctype, pause, answer.headers)

    def _chunked(
        self, events: list[bytes], ctype: str, pause: dict[int, float], headers: dict[str, str]
    ) -> None:
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Transfer-Encoding", "chunked")
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        if not pause:  # nothing to wait for: one write (the benchmarks' upstream stays cheap)
            events = [b"".join(events)]
        for index, event in enumerate(events):
            if pause.get(index):
                time.sleep(pause[index])
            self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _send(self, status: int, body: Any, headers: dict[str, str], ctype: str = "") -> None:
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype or "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)


def _has_schema(body: Any) -> bool:
    """Whether a request asks for a JSON Schema: Ollama's `format: {...}`, the OpenAI
    family's `response_format: {"type": "json_schema"}`."""
    if not isinstance(body, dict):
        return False
    fmt = body.get("response_format")
    return isinstance(body.get("format"), dict) or (
        isinstance(fmt, dict) and fmt.get("type") == "json_schema"
    )


def _schema_refused(path: str) -> Answer:
    """The 400 a provider sends for a schema it cannot take: Ollama's `{"error": text}`,
    OpenRouter's envelope (code, message, metadata naming the upstream provider)."""
    if path.endswith("/api/chat") or path.endswith("/api/generate"):
        return Answer.error(400, {"error": "invalid format: json schema is not supported"})
    return Answer.error(400, {"error": {
        "code": 400,
        "message": "Provider returned error",
        "metadata": {"provider_name": "Fake", "raw": "response_format json_schema is not "
                     "supported by this model"},
    }})  # fmt: skip


def _stream_events(path: str, ok: dict[str, Any], pieces: int) -> tuple[list[bytes], str]:
    """The answer `ok` (a non-streamed body of `path`'s API) as the events of a stream."""
    if path.endswith("/api/chat") or path.endswith("/api/generate"):
        key = "response" if path.endswith("/api/generate") else "message"
        text = ok["response"] if key == "response" else ok["message"]["content"]
        out = []
        for part in _split(text, pieces):
            piece = part if key == "response" else {"role": "assistant", "content": part}
            out.append({"model": ok["model"], key: piece, "done": False})
        if key == "message" and ok["message"].get("tool_calls"):  # in a piece of their own
            calls = {"role": "assistant", "content": "", "tool_calls": ok["message"]["tool_calls"]}
            out.append({"model": ok["model"], key: calls, "done": False})
        last = {**ok, key: "" if key == "response" else {"role": "assistant", "content": ""}}
        out.append(last)
        return [json.dumps(o).encode() + b"\n" for o in out], _stream_type(path)
    message = ok["choices"][0]["message"]
    base = {"id": ok["id"], "object": "chat.completion.chunk", "model": ok["model"]}
    chunks = [{**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": part},
                                    "finish_reason": None}]}
              for part in _split(message["content"] or "", pieces)]  # fmt: skip
    for index, call in enumerate(message.get("tool_calls") or ()):
        # The id and name first, then the arguments' text in pieces, as OpenAI streams.
        head = {"index": index, "id": call["id"], "type": "function",
                "function": {"name": call["function"]["name"], "arguments": ""}}  # fmt: skip
        parts = [{"index": index, "function": {"arguments": p}}
                 for p in _split(call["function"]["arguments"], pieces)]  # fmt: skip
        for p in [head, *parts]:
            delta = {"index": 0, "delta": {"tool_calls": [p]}, "finish_reason": None}
            chunks.append({**base, "choices": [delta]})
    finish = ok["choices"][0]["finish_reason"]
    chunks.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
    chunks.append({**base, "choices": [], "usage": ok["usage"]})
    events = [b": keep-alive\n\n"] + [b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks]
    return [*events, b"data: [DONE]\n\n"], _stream_type(path)


def _stream_type(path: str) -> str:
    ollama = path.endswith("/api/chat") or path.endswith("/api/generate")
    return "application/x-ndjson" if ollama else "text/event-stream"


def _split(text: str, pieces: int) -> list[str]:
    size = max(1, -(-len(text) // max(1, pieces)))
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def _ok_body(
    path: str, request: Any, content: str | None, calls: tuple | None = None
) -> dict[str, Any]:
    """A well-formed answer in the wire format of `path`, echoing the last user text (or
    calling tools)."""
    request = request if isinstance(request, dict) else {}
    model = request.get("model", "fake")
    if content is None:
        if "prompt" in request:
            content = str(request.get("prompt"))
        else:
            msgs = [m for m in request.get("messages") or [] if isinstance(m, dict)]
            users = [m.get("content", "") for m in msgs if m.get("role") == "user"]
            content = str(users[-1]) if users else ""
        content = f"echo: {content}"
    prompt_tokens = max(1, len(json.dumps(request)) // 4)
    out_tokens = max(1, len(content) // 4)
    if path.endswith("/api/chat"):
        message: dict[str, Any] = {"role": "assistant", "content": content}
        if calls:
            message["tool_calls"] = [{"function": {"name": n, "arguments": a}} for n, a in calls]
        return {
            "model": model,
            "created_at": "2026-01-01T00:00:00Z",
            "message": message,
            "done": True,
            "done_reason": "stop",
            "prompt_eval_count": prompt_tokens,
            "eval_count": out_tokens,
        }
    if path.endswith("/api/generate"):
        return {
            "model": model,
            "created_at": "2026-01-01T00:00:00Z",
            "response": content,
            "done": True,
            "done_reason": "stop",
            "prompt_eval_count": prompt_tokens,
            "eval_count": out_tokens,
        }
    message = {"role": "assistant", "content": content}
    if calls:
        message = {"role": "assistant", "content": None, "tool_calls": [
            {"id": f"call_{i}abc", "type": "function",
             "function": {"name": n, "arguments": json.dumps(a)}}
            for i, (n, a) in enumerate(calls)]}  # fmt: skip
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 1767225600,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": "tool_calls" if calls else "stop",
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": out_tokens,
            "total_tokens": prompt_tokens + out_tokens,
        },
    }


def main() -> None:
    """Serve until interrupted: `python -m tests.fake_upstream --port 8089 --delay 0.2`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--rate-limit", type=float, default=None)
    parser.add_argument("--chaos", default="", help='JSON, e.g. {"429": 0.1}')
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    up = FakeUpstream(
        delay=args.delay,
        rate_limit=args.rate_limit,
        chaos=json.loads(args.chaos) if args.chaos else None,
        seed=args.seed,
        port=args.port,
        record=False,
    )
    up.start()
    print(up.url, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        up.stop()


if __name__ == "__main__":
    main()
