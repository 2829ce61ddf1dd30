"""What a batch will cost, before it runs, and a budget it may not pass.

A line's cost is bounded from its request: its prompt in tokens (estimated, about four
characters a token) and the answer it allows (`max_tokens`, or DEFAULT_OUTPUT_BOUND
tokens when the line sets none), priced by CHATQ_PRICES. The low end assumes an empty
answer, the high end an answer of max_tokens.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from config.prices import DEFAULT_OUTPUT_BOUND, PriceTable
from tasks.batch.input import Line
from worker.chat.types import ChatRequest
from worker.limits import estimate_prompt_tokens

__all__ = ["Budget", "Estimate", "estimate_lines"]


@dataclass
class Estimate:
    """A file's lines, tokens and cost bounds, counted without queueing anything."""

    lines: int = 0
    bad: int = 0
    input_tokens: int = 0
    output_bound: int = 0
    low: float = 0.0
    high: float = 0.0
    #: Lines whose model has no price, by model.
    unpriced: Counter[str] = field(default_factory=Counter)

    def add(self, request: ChatRequest, prices: PriceTable) -> None:
        prompt, bound = estimate_prompt_tokens(request), _bound(request)
        self.lines += 1
        self.input_tokens += prompt
        self.output_bound += bound
        price = prices.price_for(request.model)
        if price is None:
            self.unpriced[request.model] += 1
            return
        self.low += price.cost(prompt, 0)
        self.high += price.cost(prompt, bound)


def estimate_lines(lines: Iterable[Line], prices: PriceTable) -> Estimate:
    """The estimate of every line (bad lines are counted, and cost nothing)."""
    estimate = Estimate()
    for line in lines:
        if line.request is None:
            estimate.lines += 1
            estimate.bad += 1
        else:
            estimate.add(line.request, prices)
    return estimate


class Budget:
    """`--max-cost`: a line is queued only while what was spent, plus the worst case of
    every line queued and not yet answered, plus its own worst case, stays within
    `limit` dollars. A line with no price cannot be bounded, and is not queued."""

    def __init__(self, limit: float, prices: PriceTable):
        self.limit = limit
        self.prices = prices
        self.spent = 0.0
        self.reserved = 0.0
        self.held = 0

    def spend(self, response: dict[str, Any]) -> None:
        """Count an answered line's cost (an answer from the cache was paid before)."""
        if response.get("cached"):
            return
        cost = response.get("cost")
        if cost is None:
            cost = self.prices.cost(response.get("model", ""), response.get("input_tokens", 0),
                                    response.get("output_tokens", 0))  # fmt: skip
        self.spent += float(cost or 0.0)

    def reserve(self, request: ChatRequest) -> None:
        """Count a line queued earlier and not answered yet at its worst case."""
        self.reserved += self.worst(request) or 0.0

    def worst(self, request: ChatRequest) -> float | None:
        price = self.prices.price_for(request.model)
        if price is None:
            return None
        return price.cost(estimate_prompt_tokens(request), _bound(request))

    def admit(self, request: ChatRequest) -> dict[str, Any] | None:
        """Reserve the line and return None, or the error that says why it waits."""
        worst = self.worst(request)
        if worst is None:
            self.held += 1
            return _held(f"no price for {request.model} in CHATQ_PRICES: --max-cost cannot "
                         "bound it; add a price (0 for a free model)")  # fmt: skip
        if self.spent + self.reserved + worst > self.limit:
            self.held += 1
            return _held(f"not queued: it could cost up to ${worst:.4f}, and the batch's "
                         f"spent ${self.spent:.4f} plus up to ${self.reserved:.4f} in flight "
                         f"would pass --max-cost ${self.limit:g}; run again with a higher "
                         "--max-cost to queue it")  # fmt: skip
        self.reserved += worst
        return None


def _bound(request: ChatRequest) -> int:
    return request.max_tokens or DEFAULT_OUTPUT_BOUND


def _held(message: str) -> dict[str, Any]:
    return {"type": "BudgetExceeded", "message": message}
