"""How long a provider asked us to wait, read from its headers."""

from __future__ import annotations

from email.utils import formatdate

import pytest

from worker.chat.retry_after import parse_retry_after

NOW = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def _http_date(offset: float) -> str:
    return formatdate(NOW + offset, usegmt=True)


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"retry-after-ms": "1500"}, 1.5),
        ({"Retry-After-Ms": "250"}, 0.25),
        ({"Retry-After": "7"}, 7.0),
        ({"retry-after": "0"}, 0.0),
        ({"Retry-After": "2.5"}, 2.5),
        ({"Retry-After": " 3 "}, 3.0),
        ({"retry-after-ms": "250", "Retry-After": "9"}, 0.25),
        ({"Retry-After": _http_date(30)}, 30.0),
        ({"Retry-After": _http_date(-120)}, 0.0),
        ({"Retry-After": "soon"}, None),
        ({"Retry-After": ""}, None),
        ({"Retry-After": "-3"}, None),
        ({"Retry-After": "inf"}, None),
        ({"Retry-After": "nan"}, None),
        ({"retry-after-ms": "-5", "Retry-After": "4"}, 4.0),
        ({"retry-after-ms": "later", "Retry-After": "4"}, 4.0),
        ({"retry-after-ms": "later"}, None),
        ({}, None),
        ({"Content-Type": "application/json"}, None),
    ],
    ids=[
        "milliseconds",
        "milliseconds-any-case",
        "seconds",
        "zero-seconds",
        "decimal-seconds",
        "padded-seconds",
        "milliseconds-win-over-seconds",
        "http-date-ahead",
        "http-date-past-is-zero",
        "garbage",
        "empty",
        "negative",
        "infinite",
        "not-a-number",
        "negative-milliseconds-fall-back-to-seconds",
        "garbage-milliseconds-fall-back-to-seconds",
        "garbage-milliseconds-alone",
        "absent",
        "other-headers-only",
    ],
)
def test_retry_after_forms(headers, seconds):
    assert parse_retry_after(headers, now=NOW) == seconds


def test_an_http_date_is_measured_from_the_given_now():
    headers = {"Retry-After": _http_date(30)}

    assert parse_retry_after(headers, now=NOW + 10) == pytest.approx(20.0)


def test_an_http_date_without_now_is_measured_from_the_clock():
    headers = {"Retry-After": formatdate(4_000_000_000, usegmt=True)}  # in 2096

    assert parse_retry_after(headers) > 365 * 24 * 3600
