"""What `chatq limits` shows: per provider, the configured limits and what the fleet learned."""

from __future__ import annotations

from typing import Any

from config import TABLE, Settings
from worker.limits.backends import LimitBackend

__all__ = ["format_report", "limits_report"]

_COLUMNS = (
    ("provider", "PROVIDER"),
    ("concurrency", "CONCURRENCY"),
    ("rpm", "RPM"),
    ("tpm", "TPM"),
    ("learned_rpm", "LEARNED RPM"),
    ("in_flight", "IN FLIGHT"),
    ("paused_for", "PAUSED FOR"),
    ("recent_429s", "429s"),
    ("paused_because", "WHY PAUSED"),
)


def limits_report(
    settings: Settings, backend: LimitBackend, *, minutes: float = 5.0
) -> list[dict[str, Any]]:
    """One row per provider (the mock only when it has limits configured).

    `concurrency`, `rpm`, `tpm` are configured (None: no limit); `learned_rpm` is the
    rate the fleet learned from 429s (None: none yet); `in_flight` the calls holding a
    lease now; `paused_for` the seconds left of a pause (a Retry-After, or a spent
    quota); `recent_429s` the 429s of the last `minutes`; `paused_because` why a quota
    pause was taken (None: no such pause).
    """
    rows = []
    for row in TABLE:
        provider = row.name
        if row.offline and provider not in settings.limits:
            continue
        configured = settings.limits_for(provider)
        rows.append(
            {
                "provider": provider,
                "concurrency": configured.concurrency,
                "rpm": configured.rpm,
                "tpm": configured.tpm,
                **backend.status(provider, minutes=minutes),
            }
        )
        last = rows[-1]
        last["paused_for"] = max(last["paused_for"], last.pop("quota_paused_for", 0.0))
    return rows


def format_report(rows: list[dict[str, Any]], *, minutes: float) -> str:
    """The rows as an aligned table for a terminal."""
    header = [title for _, title in _COLUMNS]
    header[-2] = f"429s ({minutes:g} MIN)"
    table = [header] + [[_cell(row[key]) for key, _ in _COLUMNS] for row in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    lines = ("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) for line in table)
    return "\n".join(line.rstrip() for line in lines)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)
