"""What a provider's rate-limit headers say is left, and until when; and that the budget
an answer announced reaches its ChatResponse (and is never stored)."""

from __future__ import annotations

import time

import pytest

from chatq.errors import RateLimited
from tests.fake_upstream import Answer
from worker.chat.rate_budget import RateBudget, parse_reset, read_budget

NOW = 1_767_225_600.0  # 2026-01-01T00:00:00Z


@pytest.mark.parametrize(
    ("raw", "seconds"),
    [
        ("120ms", 0.12),
        ("1s", 1.0),
        ("2m59.5s", 179.5),
        ("1h", 3600.0),
        ("6m0s", 360.0),
        ("1h2m3s", 3723.0),
        ("0.5s", 0.5),
        ("7", 7.0),
        (" 2.5 ", 2.5),
        (str(int((NOW + 2) * 1000)), 2.0),  # OpenRouter: a Unix time in milliseconds
        (str(int(NOW + 30)), 30.0),  # a Unix time in seconds
        (str(int((NOW - 5) * 1000)), 0.0),  # already passed
        ("soon", None),
        ("5 minutes", None),
        ("-1", None),
        ("", None),
        (None, None),
    ],
)
def test_a_reset_is_read_as_a_duration_or_a_unix_time(raw, seconds):
    found = parse_reset(raw, now=NOW)
    assert found == (pytest.approx(seconds) if seconds is not None else None)


@pytest.mark.parametrize(
    ("headers", "budget"),
    [
        ({"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "2s"},
         RateBudget(requests=0, requests_reset=2.0)),
        ({"X-RateLimit-Remaining-Tokens": "150", "X-RateLimit-Reset-Tokens": "120ms"},
         RateBudget(tokens=150, tokens_reset=0.12)),
        ({"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(int((NOW + 3) * 1000))},
         RateBudget(requests=0, requests_reset=3.0)),
        ({"x-ratelimit-remaining-requests": "many"}, None),
        ({"content-type": "application/json"}, None),
    ],
)  # fmt: skip
def test_the_budget_is_read_from_openai_and_openrouter_headers(headers, budget):
    assert read_budget(headers, now=NOW) == budget


@pytest.mark.parametrize(
    ("budget", "tokens", "wait"),
    [
        (RateBudget(requests=0, requests_reset=2.0), 0, 2.0),
        (RateBudget(requests=1, requests_reset=2.0), 0, None),
        (RateBudget(tokens=100, tokens_reset=5.0), 500, 5.0),
        (RateBudget(tokens=100, tokens_reset=5.0), 50, None),
        (RateBudget(tokens=0, tokens_reset=5.0), 0, 5.0),
        (RateBudget(requests=0, requests_reset=2.0, tokens=0, tokens_reset=9.0), 0, 9.0),
        (RateBudget(requests=0), 0, None),  # spent, but no word on when it resets
    ],
)
def test_a_spent_budget_asks_for_a_wait_until_its_reset(budget, tokens, wait):
    assert budget.wait(tokens) == wait


@pytest.mark.parametrize("stream", ["1", "0"], ids=["streamed", "in-one-piece"])
def test_the_budget_an_answer_announced_reaches_its_response_and_is_not_stored(
    make_registry, upstream, ask, stream
):
    headers = {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "1.5s"}
    upstream.push(Answer(headers=headers))

    response = make_registry(CHATQ_STREAM=stream).chat(ask("kimi/kimi-for-coding"))

    assert response.budget == RateBudget(requests=0, requests_reset=1.5)
    assert "budget" not in response.model_dump(mode="json")


def test_a_429_without_retry_after_waits_for_the_reset_its_headers_name(
    make_registry, upstream, ask
):
    reset = str(int((time.time() + 3) * 1000))
    headers = {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": reset}
    body = {"error": {"code": 429, "message": "Rate limit exceeded"}}
    upstream.push(Answer(kind="status", status=429, body=body, headers=headers))
    with pytest.raises(RateLimited) as caught:
        make_registry().chat(ask("openrouter/a/b"))
    assert 2.0 < caught.value.retry_after <= 3.0
