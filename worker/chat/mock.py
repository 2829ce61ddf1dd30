"""The built-in mock provider: no network, deterministic answers, realistic token counts.

`mock/echo` echoes the last user message, `mock/json` answers a JSON object, and
`mock/score` answers a number from 1 to 10 derived from a hash of the input, so that
batches and judge runs can be tried and benchmarked offline. When the prompt asks for a
judge framework's output format (MT-Bench's `[[rating]]` or `[[A]]`/`[[B]]`/`[[C]]`,
Arena-Hard's `[[A>>B]]` labels, Prometheus' `[RESULT]`), `mock/score` answers a short
judgment that ends in that format, its verdict drawn from the same hash.
"""

from __future__ import annotations

import hashlib
import json
import time

from chatq.errors import UpstreamError
from worker.chat.provider import Provider
from worker.chat.types import ChatRequest, ChatResponse

__all__ = ["MOCK_MODELS", "MockProvider", "estimate_tokens"]

MOCK_MODELS = ("echo", "json", "score")


def estimate_tokens(text: str) -> int:
    """About four characters a token, as the common tokenizers average on English."""
    return max(1, (len(text) + 3) // 4) if text else 0


class MockProvider(Provider):
    """Answers without any I/O."""

    name = "mock"

    async def chat(
        self, request: ChatRequest, upstream_model: str, *, deadline: float | None = None
    ) -> ChatResponse:
        started = time.perf_counter()
        if upstream_model == "echo":
            content = _last_user(request)
        elif upstream_model == "json":
            content = json.dumps(
                {"answer": _last_user(request), "digest": _digest(request)[:12]},
                ensure_ascii=False,
            )
        elif upstream_model == "score":
            content = _judgment(request)
        else:
            raise UpstreamError(
                f"mock has no model {upstream_model!r} (it knows {', '.join(MOCK_MODELS)})",
                provider=self.name,
                status=404,
            )
        if request.max_tokens is not None and estimate_tokens(content) > request.max_tokens:
            content, finish = content[: request.max_tokens * 4], "length"
        else:
            finish = "stop"
        prompt_tokens = sum(estimate_tokens(m.text) + 4 for m in request.messages)
        return ChatResponse(
            model=request.model,
            content=content,
            input_tokens=prompt_tokens,
            output_tokens=estimate_tokens(content),
            finish_reason=finish,
            provider=self.name,
            latency_ms=round((time.perf_counter() - started) * 1000.0, 3),
        )


def _judgment(request: ChatRequest) -> str:
    """mock/score's answer: a number, or a judgment in the format the prompt asks for."""
    pick = int(_digest(request)[:8], 16)
    prompt = "\n".join(m.content for m in request.messages)
    if "[[A>>B]]" in prompt:
        label = ("A>>B", "A>B", "A=B", "B>A", "B>>A")[pick % 5]
        return (
            "My own answer names 3 key points. Assistant A covers 2 of them, assistant B "
            f"covers 2 as well, in a different order.\n\nMy final verdict is: [[{label}]]"
        )
    if "[[C]]" in prompt:
        return (
            "Both assistants answer the question; one of them explains 1 step more. "
            f"[[{'ABC'[pick % 3]}]]"
        )
    if "[[rating]]" in prompt:
        return (
            f"The response covers 3 of the 4 points a complete answer needs and is clear. "
            f"Rating: [[{pick % 10 + 1}]]"
        )
    if "[RESULT]" in prompt:
        if '"A" or "B"' in prompt:
            return f"Feedback: Response A meets 2 of the 3 criteria. [RESULT] {'AB'[pick % 2]}"
        return f"Feedback: The response meets 3 of the rubric's 5 levels. [RESULT] {pick % 5 + 1}"
    return str(pick % 10 + 1)


def _last_user(request: ChatRequest) -> str:
    return next((m.text for m in reversed(request.messages) if m.role == "user"), "")


def _digest(request: ChatRequest) -> str:
    turns = [[m.role, m.model_dump(mode="json")["content"]] for m in request.messages]
    canonical = json.dumps(turns, ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()
