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
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.upstream_answers import REAL_ERRORS, Answer, Received, has_schema, schema_refused
from tests.upstream_shapes import ok_body, stream_events, stream_type

__all__ = ["REAL_ERRORS", "Answer", "FakeUpstream", "Received"]


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
        if self.refuse_schemas and has_schema(body):
            return schema_refused(path), "400"
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
    # Room for thousands of connections opened at once (the scale benchmark opens 2,000).
    request_queue_size = 4096
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
        ok = ok_body(self.path, request, answer.content, answer.tool_calls)
        streamed = isinstance(request, dict) and request.get("stream") is True
        if answer.kind in ("ok", "stall", "trickle") and (streamed or answer.kind != "ok"):
            self._stream(answer, ok)
            return
        if answer.kind == "raw_stream":  # `body` as the whole stream, then the end
            self._chunked([answer.body.encode()], stream_type(self.path), {}, answer.headers)
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
        events, ctype = stream_events(self.path, ok, pieces)
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
