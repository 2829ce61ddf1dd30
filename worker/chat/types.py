"""The values that cross chatq: a chat request in, a chat response out."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictStr, ValidationError, field_validator

from chatq.errors import InvalidRequest

__all__ = ["MAX_REQUEST_CHARS", "ChatRequest", "ChatResponse", "Message", "Role"]

Role = Literal["system", "user", "assistant", "tool"]
#: The most characters of message content one request may carry (about a million tokens).
MAX_REQUEST_CHARS = 4_000_000


class Message(BaseModel):
    """One chat message: a role and its text."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    role: Role
    content: StrictStr


class ChatRequest(BaseModel):
    """One chat call, before a provider is chosen.

    `model` carries the routing prefix (`openrouter/vendor/m`, `m:cloud`, ...); the
    registry resolves it. `think` None means the provider's default (off for Ollama).
    `timeout` bounds one upstream call's read, overriding CHATQ_TIMEOUT.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: StrictStr = Field(min_length=1)
    messages: list[Message] = Field(min_length=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int | None = Field(default=None, gt=0)
    format: Literal["json"] | None = None
    think: bool | None = None
    timeout: float | None = Field(default=None, gt=0, le=3600)

    @field_validator("model")
    @classmethod
    def _model_has_text(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("model must not be blank")
        return value.strip()

    @field_validator("messages")
    @classmethod
    def _messages_fit(cls, value: list[Message]) -> list[Message]:
        size = sum(len(m.content) for m in value)
        if size > MAX_REQUEST_CHARS:
            raise ValueError(
                f"messages hold {size:,} characters, more than the {MAX_REQUEST_CHARS:,} allowed"
            )
        return value

    @classmethod
    def parse(cls, data: Any) -> ChatRequest:
        """Validate `data` (a dict or a ChatRequest).

        Raises:
            InvalidRequest: naming each bad field, e.g. `messages.0.role: ...`.
        """
        if isinstance(data, ChatRequest):
            return data
        if not isinstance(data, dict):
            raise InvalidRequest(f"a chat request must be a JSON object, not {type(data).__name__}")
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise InvalidRequest(describe(exc), field=_first_field(exc)) from None

    @property
    def size(self) -> int:
        """Characters of message content: what monitoring may show instead of the prompt."""
        return sum(len(m.content) for m in self.messages)

    def summary(self) -> str:
        """`model=... msgs=N chars=M`: the request, safe to show in logs and Flower."""
        return f"model={self.model} msgs={len(self.messages)} chars={self.size}"


class ChatResponse(BaseModel):
    """One chat answer, as stored in the result backend."""

    model_config = ConfigDict(extra="ignore")

    model: str
    content: str
    input_tokens: int = 0
    output_tokens: int = 0
    finish_reason: str | None = None
    provider: str
    latency_ms: float = 0.0
    attempts: int = 1
    #: Calls retried, by the failed call's error class and status ("RateLimited 429").
    retries: dict[str, int] = Field(default_factory=dict)
    cached: bool = False


def describe(exc: ValidationError) -> str:
    """One line naming every bad field of a pydantic error."""
    parts = []
    for err in exc.errors(include_url=False):
        where = ".".join(str(p) for p in err["loc"]) or "request"
        msg = err["msg"]
        if err["type"] == "missing":
            msg = "is required"
        elif err["type"] == "extra_forbidden":
            msg = "is not a known field"
        parts.append(f"{where}: {msg}")
    return "invalid chat request: " + "; ".join(parts)


def _first_field(exc: ValidationError) -> str | None:
    errors = exc.errors(include_url=False)
    return ".".join(str(p) for p in errors[0]["loc"]) if errors else None
