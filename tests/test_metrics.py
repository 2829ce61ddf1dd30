"""The fleet's metrics: counted in Redis by any worker, read back by any process
(fakeredis stands in for the shared Redis)."""

from __future__ import annotations

import fakeredis
from prometheus_client.parser import text_string_to_metric_families

from chatq.errors import AuthenticationFailed, RateLimited, UpstreamUnavailable
from worker.limits.backends import keys_of
from worker.metrics import JobStats, MetricsRecorder, exposition, registry_for

QUEUES = ["celery", "chat.openrouter"]


def _samples(text: str) -> dict[tuple[str, tuple], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_two_workers_counts_add_up_in_redis_and_any_process_reads_them():
    server = fakeredis.FakeServer()
    worker_a, worker_b, reader = (fakeredis.FakeRedis(server=server) for _ in range(3))
    retried = JobStats(provider="openrouter", calls=3, waited=0.25, slot_waited=0.5)
    retried.note_retry(RateLimited("slow down", status=429))
    retried.note_retry(UpstreamUnavailable("down", status=500))
    MetricsRecorder(worker_a).job_ended(retried, response={"input_tokens": 10, "output_tokens": 4})
    MetricsRecorder(worker_b).job_ended(
        JobStats(provider="openrouter", calls=1), error=AuthenticationFailed("no", status=401)
    )

    samples = _samples(exposition(reader, queues=QUEUES))

    assert _value(samples, "chatq_jobs_total", provider="openrouter", outcome="succeeded") == 1
    assert _value(samples, "chatq_jobs_total", provider="openrouter", outcome="failed") == 1
    assert _value(samples, "chatq_upstream_calls_total", provider="openrouter") == 4
    assert _value(samples, "chatq_errors_total", provider="openrouter",
                  error="AuthenticationFailed", status="401") == 1  # fmt: skip
    assert _value(samples, "chatq_retries_total", provider="openrouter",
                  reason="RateLimited 429") == 1  # fmt: skip
    assert _value(samples, "chatq_retries_total", provider="openrouter",
                  reason="UpstreamUnavailable 500") == 1  # fmt: skip
    assert _value(samples, "chatq_rate_limited_total", provider="openrouter") == 1
    assert _value(samples, "chatq_limiter_wait_seconds_total", provider="openrouter") == 0.25
    assert _value(samples, "chatq_slot_wait_seconds_total", provider="openrouter") == 0.5
    assert _value(samples, "chatq_tokens_total", provider="openrouter", direction="in") == 10
    assert _value(samples, "chatq_tokens_total", provider="openrouter", direction="out") == 4


def test_a_job_that_ends_rate_limited_counts_its_last_429_too():
    client = fakeredis.FakeRedis()
    stats = JobStats(provider="kimi", calls=2)
    stats.note_retry(RateLimited("slow", status=429))
    MetricsRecorder(client).job_ended(stats, error=RateLimited("slow", status=429))
    samples = _samples(exposition(client, queues=QUEUES))
    assert _value(samples, "chatq_rate_limited_total", provider="kimi") == 2
    assert _value(samples, "chatq_errors_total", provider="kimi", error="RateLimited",
                  status="429") == 1  # fmt: skip


def test_queue_depths_and_calls_in_flight_are_measured_at_each_scrape():
    client = fakeredis.FakeRedis()
    client.rpush("chat.openrouter", "m1", "m2", "m3")
    sec, _ = client.time()
    client.zadd(keys_of("openrouter")[1], {"live": sec + 60, "expired": sec - 60})
    samples = _samples(exposition(client, queues=QUEUES))
    assert _value(samples, "chatq_queue_depth", queue="chat.openrouter") == 3
    assert _value(samples, "chatq_queue_depth", queue="celery") == 0
    assert _value(samples, "chatq_calls_in_flight", provider="openrouter") == 1
    assert ("chatq_calls_in_flight", (("provider", "mock"),)) not in samples


def test_the_registry_holds_only_the_fleets_metrics():
    registry = registry_for(fakeredis.FakeRedis(), queues=QUEUES)
    names = {family.name for family in registry.collect()}
    assert names and all(name.startswith("chatq_") for name in names)


def test_cost_is_counted_once_and_every_counter_expires_after_its_last_write():
    client = fakeredis.FakeRedis()
    recorder = MetricsRecorder(client, ttl=600)
    answer = {"input_tokens": 10, "output_tokens": 4, "cost": 0.25}
    recorder.job_ended(JobStats(provider="openrouter", calls=1), response=answer)
    recorder.job_ended(JobStats(provider="openrouter"), response={**answer, "cached": True})
    recorder.job_ended(JobStats(provider="kimi", calls=1), response={"output_tokens": 1})

    samples = _samples(exposition(client, queues=QUEUES))
    assert _value(samples, "chatq_cost_dollars_total", provider="openrouter") == 0.25
    assert _value(samples, "chatq_cost_dollars_total", provider="kimi") == 0
    keys = [k for k in client.scan_iter("chatq:metrics:*")]
    assert keys and all(0 < client.ttl(k) <= 600 for k in keys)
