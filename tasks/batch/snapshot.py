"""A batch's counts at one moment: what followers, `batch status` and progress show."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Snapshot"]


@dataclass
class Snapshot:
    """A batch's counts at one moment."""

    total: int = 0
    succeeded: int = 0
    failed: int = 0
    cancelled: int = 0
    running: int = 0
    retried: int = 0
    cached: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    #: US dollars of the answered lines that have a cost, and how many have none.
    cost: float = 0.0
    unpriced: int = 0
    rate: float = 0.0
    errors: dict[str, int] = field(default_factory=dict)
    #: When the latest result seen was stored (epoch seconds), if any.
    last_result: float | None = None

    @property
    def finished(self) -> int:
        return self.succeeded + self.failed + self.cancelled

    @property
    def pending(self) -> int:
        return self.total - self.finished

    @property
    def eta(self) -> float | None:
        """Seconds left at the current rate (None when unknown)."""
        if self.pending == 0:
            return 0.0
        return self.pending / self.rate if self.rate > 0 else None
