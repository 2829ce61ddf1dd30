"""A call reaches the upstream once: a pooled keep-alive connection that the upstream
closed (between calls, or just as a call arrived) is never a reason for the client to
send the POST again, since a duplicate call costs the user money. And the pool lets many
calls run at once on the one loop.

The keep-alive cases need an upstream that closes connections when told to, and that
counts connections as well as requests: a small socket server here plays it.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from chatq.errors import UpstreamUnavailable
from tests.fake_upstream import Answer
from worker.aio import process_loop

_ANSWER = json.dumps({
    "model": "m", "message": {"role": "assistant", "content": "hi"}, "done": True,
    "done_reason": "stop", "prompt_eval_count": 3, "eval_count": 1,
}).encode()  # fmt: skip


class KeepAliveUpstream:
    """An Ollama-like upstream on loopback that keeps connections open between calls,
    doing to the n-th request what `script[n]` says:

    - "answer": answer it, and keep the connection open;
    - "answer, then close": answer it, then close the connection soon after, without
      having said so (as an upstream whose keep-alive timeout is shorter than ours);
    - "drop": close the connection without answering (the upstream died mid-call).
    """

    def __init__(self, *script: str):
        self.script = list(script)
        self.requests = 0
        self.connections = 0
        self._lock = threading.Lock()
        self._server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._server.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self._server.close()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn, conn.makefile("rb") as reader:
            while True:
                head = [reader.readline()]
                while head[-1] not in (b"\r\n", b""):
                    head.append(reader.readline())
                if head[-1] == b"":
                    return
                length = next(int(h.split(b":")[1]) for h in head
                              if h.lower().startswith(b"content-length"))  # fmt: skip
                reader.read(length)
                with self._lock:
                    self.requests += 1
                    todo = self.script.pop(0) if self.script else "answer"
                if todo == "drop":
                    return
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             b"Content-Length: %d\r\n\r\n%s" % (len(_ANSWER), _ANSWER))  # fmt: skip
                if todo == "answer, then close":
                    time.sleep(0.05)
                    return


@pytest.fixture
def keepalive() -> Iterator[Callable[..., KeepAliveUpstream]]:
    """`keepalive(*script)`: a KeepAliveUpstream, closed when the test ends."""
    made: list[KeepAliveUpstream] = []

    def make(*script: str) -> KeepAliveUpstream:
        made.append(KeepAliveUpstream(*script))
        return made[-1]

    yield make
    for server in made:
        server.close()


def test_a_call_cut_off_on_a_reused_connection_reaches_the_upstream_once(
    make_registry, keepalive, ask
):
    up = keepalive("answer", "drop")
    registry = make_registry(OLLAMA_URL=up.url, CHATQ_STREAM="0")

    assert registry.chat(ask("llama3.2")).content == "hi"
    with pytest.raises(UpstreamUnavailable) as caught:
        registry.chat(ask("llama3.2"))

    assert up.requests == 2  # the second call was not sent again...
    assert up.connections == 1  # ...on a new connection, after its pooled one died
    assert caught.value.retryable  # (the retry policy decides, and counts it)


def test_a_connection_the_upstream_closed_between_calls_costs_no_duplicate_call(
    make_registry, keepalive, ask
):
    up = keepalive("answer, then close", "answer")
    registry = make_registry(OLLAMA_URL=up.url, CHATQ_STREAM="0")
    assert registry.chat(ask("llama3.2")).content == "hi"
    time.sleep(0.2)  # the upstream has closed the pooled connection by now

    try:
        answered = registry.chat(ask("llama3.2")).content == "hi"
    except UpstreamUnavailable:
        answered = False

    assert up.requests == 2  # one for each call, whatever became of the second
    if answered:
        assert up.connections == 2


def test_many_calls_run_at_once_on_the_one_loop(make_registry, upstream, ask):
    registry = make_registry(CHATQ_STREAM="0", CHATQ_HTTP_POOL_SIZE="256")
    upstream.push(*[Answer.slow(0.5)] * 200)

    async def all_at_once():
        return await asyncio.gather(*(registry.achat(ask("llama3.2", f"q{i}")) for i in range(200)))

    started = time.monotonic()
    answers = process_loop().run(all_at_once())

    assert [a.content for a in answers] == [f"echo: q{i}" for i in range(200)]
    assert time.monotonic() - started < 3.0  # about one delay of 0.5 s, not 200 of them
    assert upstream.calls == 200
    assert upstream.peak_in_flight > 100
