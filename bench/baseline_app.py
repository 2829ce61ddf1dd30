"""The baselines: stock Celery tasks, configured the way a Celery user would write them.

Started as `celery -A bench.baseline_app worker` by the benchmark harness, with the
broker in BENCH_REDIS_URL.
"""

from __future__ import annotations

import os

import requests
from celery import Celery

app = Celery("baseline")
app.conf.update(
    broker_url=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"),
    result_backend=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"),
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    # The same Celery behaviour chatq runs with (acks late, prefetch 1, task events and
    # started states for Flower), so that the comparison measures what chatq adds.
    task_acks_late=True,
    worker_prefetch_multiplier=1,
    task_track_started=True,
    task_send_sent_event=True,
    worker_send_task_events=True,
    broker_pool_limit=250,
    redis_max_connections=500,
    worker_hijack_root_logger=False,
)
_session = requests.Session()


class RateLimitedError(Exception):
    """The upstream answered 429."""


@app.task(name="baseline.echo")
def echo(value):
    """A bare task that returns its argument."""
    return value


@app.task(name="baseline.post")
def post(url, payload):
    """One `requests.post` per task, as a stock Celery user would write it."""
    resp = _session.post(url, json=payload, timeout=30)
    resp.raise_for_status()
    return resp.json()["message"]["content"]


@app.task(
    name="baseline.post_autoretry",
    autoretry_for=(RateLimitedError, requests.RequestException),
    retry_backoff=True,
    retry_jitter=True,
    max_retries=10,
)
def post_autoretry(url, payload):
    """A stock Celery task with autoretry_for, retry_backoff and retry_jitter."""
    resp = _session.post(url, json=payload, timeout=30)
    if resp.status_code == 429:
        raise RateLimitedError("429")
    resp.raise_for_status()
    return resp.json()["message"]["content"]
