"""Reading job claims from the producer's side: is a claim's holder still alive?

A worker claims a job id with a token `host:pid:nonce` (worker/claims.py). When a run is
killed, its local workers die holding claims that would otherwise keep their jobs from
running again until the claims expire (CHATQ_JOB_DEADLINE + CHATQ_TIMEOUT). A claim
whose holder is a dead process of this very host can be dropped at once; one held on
another host cannot be judged from here and is left to expire.
"""

from __future__ import annotations

import socket

from worker.embedded_redis import pid_alive

__all__ = ["holder", "only_holders", "stale"]


def holder(token: bytes | str) -> tuple[str, int] | None:
    """(host, pid) of a claim token, or None when it is not one."""
    text = token.decode() if isinstance(token, bytes) else token
    parts = text.rsplit(":", 2)
    if len(parts) != 3 or not parts[1].isdigit():
        return None
    return parts[0], int(parts[1])


def stale(token: bytes | str, *, host: str | None = None) -> bool:
    """Whether the claim's holder is a process of this host that no longer exists."""
    found = holder(token)
    if found is None or found[0] != (host or socket.gethostname()):
        return False
    return not pid_alive(found[1])


def only_holders(pids: set[int], *, host: str | None = None):
    """A staleness test for a Redis only these processes of this host can reach (a
    private Redis just started, with its own workers): every other holder is stale,
    alive or not, since it can never store a result there."""
    here = host or socket.gethostname()

    def is_stale(token: bytes | str) -> bool:
        found = holder(token)
        return found is not None and not (found[0] == here and found[1] in pids)

    return is_stale
