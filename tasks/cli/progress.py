"""How a batch shows its progress: a one-line bar on a terminal, a plain line otherwise.

Never prints a prompt or an answer: counts, rates and times only.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

from tasks.batch.snapshot import Snapshot

__all__ = ["Progress", "cost_text", "format_duration"]


def format_duration(seconds: float | None) -> str:
    """`1:02:03`, `2:03` or `--:--` for unknown."""
    if seconds is None:
        return "--:--"
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class Progress:
    """Reports snapshots to `stream`: redrawn in place on a TTY, else a line every
    `every` seconds.

    Args:
        label: what is running (the batch id).
        stream: where to write; default stderr.
        tty: force (or forbid) the bar; default whether `stream` is a terminal.
        every: seconds between plain lines.
        clock: monotonic time source (tests pass their own).
    """

    def __init__(
        self,
        label: str,
        *,
        stream: TextIO | None = None,
        tty: bool | None = None,
        every: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.label = label
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.every = every
        self.clock = clock
        self._last = float("-inf")
        self._drawn = False

    def update(self, snap: Snapshot, *, force: bool = False) -> None:
        now = self.clock()
        if self.tty:
            if force or now - self._last >= 0.2:
                self._last = now
                self.stream.write("\r\x1b[2K" + self.bar(snap))
                self.stream.flush()
                self._drawn = True
        elif force or now - self._last >= self.every:
            self._last = now
            self.stream.write(f"chatq: {self.label}: {self.line(snap)}\n")
            self.stream.flush()

    def close(self) -> None:
        """End the bar's line (a TTY) so later output starts on its own line."""
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False

    def bar(self, snap: Snapshot, width: int = 24) -> str:
        frac = snap.finished / snap.total if snap.total else 1.0
        full = int(frac * width)
        return f"[{'#' * full}{'.' * (width - full)}] {frac * 100:5.1f}% " + self.line(snap)

    @staticmethod
    def line(snap: Snapshot) -> str:
        parts = [f"{snap.finished:,}/{snap.total:,} done", f"ok {snap.succeeded:,}",
                 f"failed {snap.failed:,}"]  # fmt: skip
        if snap.cancelled:
            parts.append(f"cancelled {snap.cancelled:,}")
        parts.append(f"running {snap.running:,}")
        parts.append(f"retried {snap.retried:,}")
        if snap.cached:
            parts.append(f"cached {snap.cached:,}")
        parts.append(f"{snap.rate:,.1f}/s")
        parts.append(f"ETA {format_duration(snap.eta)}")
        return " · ".join(parts)


def cost_text(snap: Snapshot) -> str:
    """`$0.0421` (and how many answers had no price), or `unknown`."""
    answered = snap.succeeded - snap.cached
    if answered > 0 and snap.unpriced >= answered:
        return "unknown (no price for these models: see CHATQ_PRICES)"
    text = f"${snap.cost:,.4f}"
    if snap.unpriced:
        text += f" ({snap.unpriced:,} answer(s) with no price: see CHATQ_PRICES)"
    return text
