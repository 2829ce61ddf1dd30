"""Reading chatq's task messages as kombu's Redis transport stores them.

A queue holds each message as JSON (`headers`, `properties`, `body`, base64 when the
properties say so); kombu's `unacked` hash holds `[message, exchange, routing_key]`
for each message a worker took and has not acknowledged. Only chatq's two tasks are
read; anything else carries no job.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from worker.app import CHAT_MANY_TASK, CHAT_TASK

__all__ = ["UNACKED", "UNACKED_INDEX", "job_ids", "job_ids_of_raw"]

#: kombu's keys for messages taken and not yet acknowledged (its defaults).
UNACKED, UNACKED_INDEX = "unacked", "unacked_index"


def job_ids(message: Any) -> list[str]:
    """The job ids a decoded message carries ([] when it is not a chatq message)."""
    try:
        headers = message.get("headers") or {}
        task = headers.get("task")
        if task == CHAT_TASK:
            return [headers["id"]]
        if task != CHAT_MANY_TASK:
            return []
        body = message["body"]
        if (message.get("properties") or {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        args = json.loads(body)[0]
        return [pair[0] for pair in args[0]]
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        return []


def job_ids_of_raw(raw: bytes | str) -> list[str]:
    """The job ids of a message as a queue stores it (JSON text)."""
    try:
        return job_ids(json.loads(raw))
    except ValueError:
        return []
