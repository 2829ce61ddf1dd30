"""The HTTP boundary: timeouts, dead connections and unreadable bodies become chatq
errors, and upstream statuses become the right error type."""

from __future__ import annotations

import socket
import time

import pytest

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
from tests.fake_upstream import Answer
from worker.chat.transport import Timeout
from worker.chat.upstream_errors import error_for_status


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize(
    "settings",
    [{"CHATQ_STREAM": "0", "CHATQ_TIMEOUT": "0.3"}, {"CHATQ_IDLE_TIMEOUT": "0.3"}],
    ids=["read timeout, not streamed", "idle timeout, streamed"],
)
def test_an_upstream_silent_past_its_timeout_is_a_timeout(make_registry, upstream, ask, settings):
    registry = make_registry(**settings)
    upstream.push(Answer.slow(1.5))

    started = time.monotonic()
    with pytest.raises(UpstreamTimeout) as caught:
        registry.chat(ask("llama3.2"))

    assert time.monotonic() - started < 1.2
    assert caught.value.provider == "ollama"
    assert caught.value.retryable
    assert "0.3s" in str(caught.value)


def test_a_request_timeout_overrides_chatq_timeout(registry, upstream, ask):
    upstream.push(Answer.slow(1.5))

    started = time.monotonic()
    with pytest.raises(UpstreamTimeout):
        registry.chat(ask("kimi/kimi-for-coding", timeout=0.3))

    assert time.monotonic() - started < 1.2


def test_a_request_timeout_longer_than_the_answer_lets_it_arrive(make_registry, upstream, ask):
    registry = make_registry(CHATQ_TIMEOUT="0.1")
    upstream.push(Answer.slow(0.3, content="worth the wait"))

    assert registry.chat(ask("llama3.2", timeout=2)).content == "worth the wait"


def test_no_wait_outlasts_the_deadline(registry, upstream, ask):
    upstream.push(Answer.slow(1.5))

    started = time.monotonic()
    with pytest.raises(UpstreamTimeout):
        registry.chat(ask("llama3.2"), deadline=time.monotonic() + 0.3)

    assert time.monotonic() - started < 1.2


def test_no_connection_within_the_connect_timeout_is_a_timeout(make_registry, ask):
    # A listener whose backlog is full: the kernel leaves further connections unanswered.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        waiting = [socket.socket() for _ in range(4)]
        for sock in waiting:
            sock.setblocking(False)
            sock.connect_ex(("127.0.0.1", port))
        registry = make_registry(OLLAMA_URL=f"http://127.0.0.1:{port}", CHATQ_CONNECT_TIMEOUT="0.3")

        started = time.monotonic()
        with pytest.raises(UpstreamTimeout) as caught:
            registry.chat(ask("llama3.2"))

        for sock in waiting:
            sock.close()
    assert time.monotonic() - started < 1.5
    assert "no connection" in str(caught.value) and "0.3s" in str(caught.value)
    assert caught.value.retryable


def test_a_refused_connection_means_the_upstream_is_unavailable(make_registry, ask):
    registry = make_registry(OLLAMA_URL=f"http://127.0.0.1:{_closed_port()}")

    with pytest.raises(UpstreamUnavailable) as caught:
        registry.chat(ask("llama3.2"))

    err = caught.value
    assert err.provider == "ollama"
    assert err.retryable
    assert "refused" in str(err)


def test_a_connection_closed_before_any_answer_means_unavailable(registry, upstream, ask):
    upstream.push(Answer(kind="reset"))

    with pytest.raises(UpstreamUnavailable) as caught:
        registry.chat(ask("opencode/grok-code"))

    assert caught.value.provider == "opencode"
    assert caught.value.retryable


@pytest.mark.parametrize(
    "kind",
    ["garbage", "truncated", "cut"],
    ids=["not-json", "json-cut-short", "body-shorter-than-promised"],
)
@pytest.mark.parametrize("model", ["llama3.2", "m:cloud", "openrouter/openai/gpt-4o-mini"])
def test_an_unreadable_body_is_malformed(registry, upstream, ask, kind, model):
    upstream.push(Answer(kind=kind))

    with pytest.raises(MalformedResponse) as caught:
        registry.chat(ask(model))

    assert caught.value.retryable


def test_a_non_json_body_is_quoted_in_the_error(registry, upstream, ask):
    upstream.push(Answer(kind="garbage"))

    with pytest.raises(MalformedResponse) as caught:
        registry.chat(ask("llama3.2"))

    assert "502 Bad Gateway" in caught.value.excerpt
    assert "not JSON" in str(caught.value)


def test_the_next_call_works_after_a_failed_one(registry, upstream, ask):
    upstream.push(Answer(kind="cut"), Answer(kind="reset"), Answer.error(500))
    for _ in range(3):
        with pytest.raises(UpstreamError):
            registry.chat(ask("llama3.2"))

    assert registry.chat(ask("llama3.2", "again")).content == "echo: again"


def test_a_redirect_is_not_followed_since_it_would_send_the_call_again(registry, upstream, ask):
    upstream.push(Answer.error(308, {"error": "moved"}, Location=upstream.url + "/api/chat"))

    with pytest.raises(UpstreamError) as caught:
        registry.chat(ask("llama3.2"))

    assert upstream.calls == 1
    assert caught.value.status == 308 and not caught.value.retryable
    assert f"redirects to {upstream.url}/api/chat" in str(caught.value)


def test_cookies_set_by_one_answer_are_not_sent_with_the_next_call(registry, upstream, ask):
    upstream.push(Answer(headers={"Set-Cookie": "session=abc123; Path=/"}))

    registry.chat(ask("llama3.2"))
    registry.chat(ask("llama3.2"))

    second = {k.lower() for k in upstream.received[1].headers}
    assert "cookie" not in second


def test_the_body_is_sent_as_json(registry, upstream, ask):
    registry.chat(ask("llama3.2"))

    headers = {k.lower(): v for k, v in upstream.received[0].headers.items()}
    assert headers["content-type"] == "application/json"
    assert isinstance(upstream.received[0].body, dict)


@pytest.mark.parametrize(
    ("status", "kind", "retryable"),
    [
        (400, BadRequest, False),
        (401, AuthenticationFailed, False),
        (402, QuotaExhausted, False),
        (403, AuthenticationFailed, False),
        (404, ModelNotFound, False),
        (408, UpstreamTimeout, True),
        (409, UpstreamError, True),
        (413, UpstreamError, False),
        (422, BadRequest, False),
        (429, RateLimited, True),
        (500, UpstreamUnavailable, True),
        (502, UpstreamUnavailable, True),
        (503, UpstreamUnavailable, True),
        (504, UpstreamTimeout, True),
    ],
)
def test_each_status_becomes_its_error_type(status, kind, retryable):
    err = error_for_status("kimi", status, {}, '{"error": "x"}')

    assert type(err) is kind
    assert err.status == status
    assert err.provider == "kimi"
    assert err.retryable is retryable
    assert str(status) in str(err)


@pytest.mark.parametrize(
    ("status", "hint"),
    [
        (401, "API key"),
        (403, "not allowed"),
        (404, "model name"),
        (402, "credit"),
        (413, "too large"),
        (429, "rate limiting"),
        (500, "failed"),
    ],
)
def test_an_error_status_comes_with_a_hint_a_person_can_act_on(status, hint):
    assert hint in str(error_for_status("openrouter", status, {}, ""))


@pytest.mark.parametrize(
    ("status", "header", "retryable"),
    [
        (400, "true", True),
        (404, "TRUE", True),
        (500, "false", False),
        (429, "false", False),
        (500, "no", True),
        (400, "", False),
    ],
)
def test_the_x_should_retry_header_decides_over_the_status(status, header, retryable):
    err = error_for_status("kimi", status, {"X-Should-Retry": header}, "")

    assert err.retryable is retryable


def test_a_429_reads_its_retry_after_from_the_headers():
    err = error_for_status("kimi", 429, {"retry-after-ms": "1500"}, "")

    assert isinstance(err, RateLimited)
    assert err.retry_after == 1.5


@pytest.mark.parametrize(
    ("remaining", "expected"),
    [
        (None, Timeout(10, 180)),
        (1000.0, Timeout(10, 180)),
        (30.0, Timeout(10, 30)),
        (2.0, Timeout(2, 2)),
        (-5.0, Timeout(0.001, 0.001)),
    ],
)
def test_a_timeout_is_clipped_to_what_is_left_of_the_deadline(remaining, expected):
    assert Timeout(connect=10, read=180).clipped(remaining) == expected
