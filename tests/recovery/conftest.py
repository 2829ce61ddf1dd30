"""Fixtures of the recovery tests: a producer and a sweeper on the test's Redis, with
short recovery delays, and helpers that play a worker taking (or losing) messages."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import redis

from tasks.recovery.journal import Journal
from tasks.recovery.sweeper import Sweeper
from worker.heartbeat import PREFIX as HEARTBEAT

#: Recovery delays short enough for tests (the defaults are 5 s and 15 s).
FAST = {"CHATQ_SWEEP_INTERVAL": "0.2", "CHATQ_LOST_AFTER": "0.5"}


@dataclass
class Fleet:
    producer: Any
    sweeper: Sweeper
    journal: Journal
    client: redis.Redis

    def take(self, queue: str, *, holder: str | None) -> dict:
        """Pop the oldest message of `queue` as a worker would; with `holder`, mark it
        received by that `host:pid` (None: the message is lost on its way)."""
        raw = self.client.rpop(queue)
        assert raw is not None, f"{queue} is empty"
        message = json.loads(raw)
        if holder is not None:
            self.journal.received(message["headers"]["id"], holder)
        return message

    def beat(self, holder: str) -> None:
        self.client.set(HEARTBEAT + holder, "1", px=60_000)

    def claim(self, job: str, holder: str) -> bytes:
        token = f"{holder}:cafe0001".encode()
        self.client.set(f"chatq:claim:{job}", token, px=60_000)
        return token

    def messages(self, queue: str) -> list[dict]:
        return [json.loads(m) for m in self.client.lrange(queue, 0, -1)]


@pytest.fixture
def fleet(env, producer_for) -> Iterator[Fleet]:
    env.update(FAST)
    producer = producer_for(env)
    client = redis.Redis.from_url(env["REDIS_URL"])
    sweeper = Sweeper(client, producer.app, producer.runtime.settings)
    yield Fleet(producer, sweeper, sweeper.journal, client)
    client.close()


def wait_past_lost_after() -> None:
    time.sleep(float(FAST["CHATQ_LOST_AFTER"]) + 0.1)
