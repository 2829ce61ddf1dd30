"""The error hierarchy: what is worth retrying, what never leaks, what survives a trip
through a JSON result backend."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chatq.errors import (
    AuthenticationFailed,
    BadRequest,
    ChatqError,
    DeadlineExceeded,
    InvalidRequest,
    JobFailed,
    MalformedResponse,
    ModelNotFound,
    ProviderNotFound,
    QuotaExhausted,
    RateLimited,
    RetryAfterTooLong,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
    WaitTimedOut,
    error_from_dict,
)
from chatq.redaction import EXCERPT_LIMIT
from tests.fake_upstream import Answer


@pytest.mark.parametrize(
    ("error", "retryable"),
    [
        (InvalidRequest("no model", field="model"), False),
        (ProviderNotFound("provider 'kimi' is not registered", provider="kimi"), False),
        (JobFailed("gave up"), False),
        (DeadlineExceeded("deadline passed"), False),
        (RetryAfterTooLong("asked to wait 900s", retry_after=900.0), False),
        (WaitTimedOut("no result within 5s"), False),
        (RateLimited("429", provider="kimi"), True),
        (UpstreamTimeout("no answer within 5s", provider="kimi"), True),
        (UpstreamUnavailable("connection refused", provider="kimi"), True),
        (MalformedResponse("not JSON", provider="kimi"), True),
        (AuthenticationFailed("401", provider="kimi", status=401), False),
        (ModelNotFound("404", provider="kimi", status=404), False),
        (BadRequest("422", provider="kimi", status=422), False),
        (QuotaExhausted("no credit", provider="openrouter", status=402), False),
        (QuotaExhausted("quota", provider="openrouter", status=429, should_retry=True), False),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, Exception) else None,
)
def test_whether_an_error_is_retried_follows_its_type(error, retryable):
    assert error.retryable is retryable


@pytest.mark.parametrize(
    ("status", "retryable"),
    [
        (400, False),
        (401, False),
        (403, False),
        (404, False),
        (408, True),
        (409, True),
        (413, False),
        (422, False),
        (429, True),
        (500, True),
        (502, True),
        (503, True),
        (504, True),
        (599, True),
    ],
)
def test_whether_an_upstream_status_is_retried(status, retryable):
    assert UpstreamError(f"answered {status}", status=status).retryable is retryable


@pytest.mark.parametrize(
    ("error", "should_retry", "retryable"),
    [
        (UpstreamError("bad request", status=400), True, True),
        (UpstreamError("server error", status=500), False, False),
        (RateLimited("slow down", status=429), False, False),
        (UpstreamTimeout("no answer"), False, False),
        (UpstreamError("forbidden", status=403), False, False),
        (UpstreamError("busy", status=503), True, True),
    ],
)
def test_the_upstreams_should_retry_word_overrides_the_status(error, should_retry, retryable):
    overridden = type(error)(error.message, {**error.facts, "should_retry": should_retry})

    assert overridden.retryable is retryable


@pytest.mark.parametrize(
    ("status", "header", "retryable"),
    [(500, "false", False), (400, "true", True), (429, "False", False), (500, "maybe", True)],
)
def test_an_x_should_retry_header_from_the_upstream_is_obeyed(
    registry, upstream, ask, status, header, retryable
):
    upstream.push(Answer.error(status, {"error": "nope"}, x_should_retry=header))

    with pytest.raises(UpstreamError) as caught:
        registry.chat(ask("llama3.2"))

    assert caught.value.retryable is retryable


def test_a_malformed_answer_is_retried_only_a_few_times():
    assert MalformedResponse.max_calls is not None
    assert 1 < MalformedResponse.max_calls <= 5
    assert UpstreamError.max_calls is None


# -- nothing secret leaks -------------------------------------------------------------


def _every_rendering(err: ChatqError) -> str:
    return "\n".join(
        [str(err), repr(err), str(err.excerpt), json.dumps(err.to_dict()), json.dumps(err.args)]
    )


def test_an_upstream_error_echoing_the_key_never_shows_it(registry, upstream, ask, keys):
    key = keys["openrouter"]
    body = {
        "error": {"message": f"invalid API key {key}", "code": 401},
        "request": {"headers": {"Authorization": f"Bearer {key}"}},
    }
    upstream.push(Answer.error(401, body))

    with pytest.raises(UpstreamError) as caught:
        registry.chat(ask("openrouter/openai/gpt-4o-mini"))

    shown = _every_rendering(caught.value)
    assert key not in shown
    assert "[redacted]" in caught.value.excerpt
    assert "invalid API key" in caught.value.excerpt


def test_an_error_object_in_a_200_never_shows_the_key_even_when_cut_short(
    registry, upstream, ask, keys
):
    key = keys["kimi"]
    message = "x" * 180 + f" the key {key} is not valid for this endpoint"
    upstream.push(Answer(kind="json", body={"error": {"code": "bad_key", "message": message}}))

    with pytest.raises(MalformedResponse) as caught:
        registry.chat(ask("kimi/kimi-for-coding"))

    shown = _every_rendering(caught.value)
    assert key[:10] not in shown, "part of the key survived the cut"


SECRET = "tok_live_9f8e7d6c5b4a3210"


@pytest.mark.parametrize(
    "text",
    [
        f'{{"headers": {{"Authorization": "Bearer {SECRET}"}}}}',
        f"{{'authorization': 'Bearer {SECRET}'}}",
        f"Authorization: Bearer {SECRET}",
        f"authorization={SECRET}",
        f"sent Bearer {SECRET} and was refused",
        f"invalid api_key={SECRET}&model=x",
        f'{{"api-key": "{SECRET}"}}',
        f'{{"access_token": "{SECRET}"}}',
        f"upstream redis://:{SECRET}@cache:6379/0 is down",
        f"key sk-{SECRET} rejected",
    ],
)
def test_keys_and_authorization_values_are_redacted_from_message_and_excerpt(text):
    err = UpstreamError(f"answered 401: {text}", status=401, excerpt=text)

    assert SECRET not in _every_rendering(err)


def test_an_excerpt_is_at_most_300_characters_and_starts_with_the_body():
    body = '{"error": "' + "overloaded " * 1000 + '"}'

    err = UpstreamError("answered 500", status=500, excerpt=body)

    assert EXCERPT_LIMIT == 300
    assert len(err.excerpt) <= 300
    assert err.excerpt.startswith('{"error": "overloaded')


def test_a_long_upstream_body_reaches_the_error_as_a_short_excerpt(registry, upstream, ask):
    upstream.push(Answer.error(500, "E" * 50_000))

    with pytest.raises(UpstreamError) as caught:
        registry.chat(ask("llama3.2"))

    assert 0 < len(caught.value.excerpt) <= 300
    assert len(json.dumps(caught.value.to_dict())) < 1000


# -- errors survive the result backend ----------------------------------------------

ERRORS = [
    InvalidRequest("invalid chat request: temperature: too high", field="temperature"),
    ProviderNotFound("model 'kimi/k2' needs provider 'kimi'", provider="kimi", model="kimi/k2"),
    RateLimited(
        "openrouter answered 429 (asked to wait 7s)",
        provider="openrouter",
        status=429,
        retry_after=7.0,
        excerpt='{"error": "rate limited"}',
    ),
    UpstreamError("ollama answered 400", provider="ollama", status=400, should_retry=True),
    UpstreamTimeout("kimi: no answer within 5s", provider="kimi"),
    UpstreamUnavailable("ollama answered 503", provider="ollama", status=503),
    MalformedResponse("opencode answered with no choices", provider="opencode", excerpt="{}"),
    DeadlineExceeded("the job deadline passed", model="llama3.2", attempts=4),
    RetryAfterTooLong("asked to wait 900s", retry_after=900.0),
    WaitTimedOut("no result within 5s"),
]
each_error = pytest.mark.parametrize("err", ERRORS, ids=lambda e: type(e).__name__)


def _same(a: ChatqError, b: ChatqError) -> None:
    assert type(a) is type(b)
    assert str(a) == str(b)
    assert a.facts == b.facts
    assert a.args == b.args
    assert a.retryable == b.retryable


@each_error
def test_an_error_rebuilds_from_its_args_after_a_json_round_trip(err):
    args = json.loads(json.dumps(err.args))

    _same(type(err)(*args), err)


@each_error
def test_an_error_rebuilds_from_its_dict(err):
    data = json.loads(json.dumps(err.to_dict()))

    assert data["type"] == type(err).__name__
    assert data["message"] == str(err)
    _same(error_from_dict(data), err)


def test_a_rate_limit_keeps_its_retry_after_through_a_round_trip():
    err = RateLimited("slow down", status=429, retry_after=2.5)

    rebuilt = RateLimited(*json.loads(json.dumps(err.args)))

    assert rebuilt.retry_after == 2.5
    assert error_from_dict(err.to_dict()).retry_after == 2.5


def test_an_unknown_error_type_rebuilds_as_the_root_error():
    rebuilt = error_from_dict({"type": "SomethingNew", "message": "it broke", "status": 500})

    assert type(rebuilt) is ChatqError
    assert str(rebuilt) == "it broke"
    assert rebuilt.status == 500


def test_an_error_refuses_facts_it_does_not_know():
    with pytest.raises(TypeError):
        UpstreamError("x", api_key="nope")


def test_missing_facts_are_left_out_of_the_dict():
    assert UpstreamTimeout("no answer", provider="kimi", status=None).to_dict() == {
        "type": "UpstreamTimeout",
        "message": "no answer",
        "provider": "kimi",
    }


def test_every_chatq_error_is_caught_by_one_except():
    from chatq.errors import SettingsError
    from worker.embedded_redis import EmbeddedRedisError

    for error in (SettingsError("CHATQ_TIMEOUT: bad"), EmbeddedRedisError("none")):
        try:
            raise error
        except ChatqError as caught:
            assert caught is error


def test_a_bad_setting_is_still_a_value_error_for_code_that_caught_it_so():
    from config import load_settings

    with pytest.raises(ValueError, match="CHATQ_TIMEOUT"):
        load_settings({"CHATQ_TIMEOUT": "soon"}, directory=Path("/nonexistent"))


def test_an_error_is_labelled_by_its_class_and_status():
    from chatq.errors import AuthenticationFailed, ChunkFailed, DeadlineExceeded, error_label

    assert AuthenticationFailed("no", status=401).label == "AuthenticationFailed 401"
    assert DeadlineExceeded("late").label == "DeadlineExceeded"
    assert error_label("UpstreamUnavailable", 503) == "UpstreamUnavailable 503"
    counts = {"ok": 1, "failed": {"AuthenticationFailed 401": 1}}
    chunk = ChunkFailed("1 of 2 failed", outcomes=counts)
    assert type(chunk)(*chunk.args).facts["outcomes"] == counts  # survives Celery's JSON
