"""What this machine remembers of the Redis servers chatq used, to tell data loss apart.

Each command notes, under `CHATQ_HOME/known-redis.json`, the marker it found on its
Redis (worker/redis_memory.py: Redis's run id and when chatq's data there began). When
a later command finds a newer marker on the same server, chatq's data there is gone:
with a new run id, Redis restarted empty; with the same one, it was flushed or expired.
The command says so once, on stderr, and keeps the notice: a batch that vanished is
then reported as lost with that data, not as never submitted. It also warns, once per
Redis run, when the server keeps no data across a restart.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from pathlib import Path
from typing import Any

import redis

from chatq.redaction import redact
from worker.redis_memory import Marker, persistence_warning

__all__ = ["lost_notice", "watch"]

log = logging.getLogger(__name__)


def _path(home: Path) -> Path:
    return Path(home) / "known-redis.json"


def _load(home: Path) -> dict[str, Any]:
    try:
        data = json.loads(_path(home).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _save(home: Path, data: dict[str, Any]) -> None:
    with contextlib.suppress(OSError):  # a read-only home only costs the notices
        path = _path(home)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1))
        tmp.replace(path)


def watch(client: redis.Redis, url: str, *, home: Path, ttl: int) -> str | None:
    """Renew the marker of the Redis at `url`; warn (once per Redis run) when it keeps
    nothing across a restart; return a notice when chatq's data there was lost since
    this machine last looked (and log it as a warning).

    Redis errors pass through (the caller's boundary translates them).
    """
    shown = redact(url)
    state = Marker(client, ttl=ttl).touch()
    known = _load(home)
    before = known.get(shown) or {}
    notice = None
    if before and float(before.get("created", 0)) != state.created:
        since = time.strftime("%Y-%m-%d %H:%M", time.localtime(float(before["created"])))
        if before.get("run_id") != state.run_id:
            notice = (
                f"Redis at {shown} restarted empty: the jobs, results and batch records "
                f"chatq kept there since {since} are gone"
            )
        else:
            notice = (
                f"Redis at {shown} no longer holds chatq's data kept since {since} "
                "(it was flushed, or everything expired)"
            )
        log.warning("%s", notice)
    entry = {"run_id": state.run_id, "created": state.created, "lost": before.get("lost")}
    if notice is not None:
        entry["lost"] = {"notice": notice, "at": time.time()}
    if before.get("warned_run") != state.run_id:
        warning = persistence_warning(client, shown)
        if warning:
            log.warning("%s", warning)
        entry["warned_run"] = state.run_id
    else:
        entry["warned_run"] = before.get("warned_run")
    known[shown] = entry
    _save(home, known)
    return notice


def lost_notice(url: str, *, home: Path) -> str | None:
    """The last data-loss notice recorded for the Redis at `url`, if any."""
    lost = (_load(home).get(redact(url)) or {}).get("lost")
    return lost.get("notice") if isinstance(lost, dict) else None
