"""The built-in mock provider: no network, deterministic answers, realistic token counts.

`mock/echo` echoes the last user message, `mock/json` answers a JSON object, and
`mock/score` answers a number from 1 to 10 derived from a hash of the input, so that
batches and judge runs can be tried and benchmarked offline.
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

    def chat(
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
            content = str(int(_digest(request)[:8], 16) % 10 + 1)
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


def _last_user(request: ChatRequest) -> str:
    return next((m.text for m in reversed(request.messages) if m.role == "user"), "")


def _digest(request: ChatRequest) -> str:
    turns = [[m.role, m.model_dump(mode="json")["content"]] for m in request.messages]
    canonical = json.dumps(turns, ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()
