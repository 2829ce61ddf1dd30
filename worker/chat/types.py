"""The values that cross chatq: a chat request in, a chat response out."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictStr, ValidationError, field_validator

from chatq.errors import InvalidRequest
from worker.chat.messages import Message, Role
from worker.chat.rate_budget import RateBudget
from worker.chat.schema import check_schema

__all__ = ["MAX_REQUEST_CHARS", "SAMPLING", "ChatRequest", "ChatResponse", "Message", "Role"]

#: The most characters of message content one request may carry (about a million tokens).
MAX_REQUEST_CHARS = 4_000_000
#: The sampling options a request may set; each provider says which of them it honours,
#: and a request setting one its provider cannot honour is refused before it is queued.
SAMPLING = ("seed", "top_p", "stop", "presence_penalty", "frequency_penalty", "top_k", "min_p")


class ChatRequest(BaseModel):
    """One chat call, before a provider is chosen.

    `model` carries the routing prefix (`openrouter/vendor/m`, `m:cloud`, ...); the
    registry resolves it. `think` None means the provider's default (off for Ollama).
    `format` is "json" (any JSON) or a JSON Schema object the answer must match (the
    Python API also takes a pydantic model class: its schema is used).
    `timeout` bounds one upstream call's read, overriding CHATQ_TIMEOUT. The sampling
    options (`SAMPLING`) are sent only when set; `n` may only be 1 (one answer a job).
    `tools` (OpenAI's function tools) and `tool_choice` travel as given to the providers
    that take them.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: StrictStr = Field(min_length=1)
    messages: list[Message] = Field(min_length=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int | None = Field(default=None, gt=0)
    format: Literal["json"] | dict[str, Any] | None = None
    think: bool | None = None
    timeout: float | None = Field(default=None, gt=0, le=3600)
    seed: int | None = None
    top_p: float | None = Field(default=None, ge=0, le=1)
    stop: StrictStr | list[StrictStr] | None = None
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    top_k: int | None = Field(default=None, ge=0)
    min_p: float | None = Field(default=None, ge=0, le=1)
    n: int | None = None
    tools: list[dict[str, Any]] | None = Field(default=None, min_length=1)
    tool_choice: StrictStr | dict[str, Any] | None = None

    @field_validator("model")
    @classmethod
    def _model_has_text(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("model must not be blank")
        return value.strip()

    @field_validator("format", mode="before")
    @classmethod
    def _format_is_json_or_a_schema(cls, value: Any) -> Any:
        if isinstance(value, type) and issubclass(value, BaseModel):
            value = value.model_json_schema()
        if isinstance(value, dict):
            if not value:
                raise ValueError('an empty schema asks for nothing: use "json"')
            return check_schema(value)
        if value is None or value == "json":
            return value
        raise ValueError('must be "json" or a JSON Schema object')

    @field_validator("stop", mode="before")
    @classmethod
    def _stop_is_text(cls, value: Any) -> Any:
        # Checked before the union, so that the error names `stop`, not a union member.
        if value is None or isinstance(value, str):
            return value
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
        raise ValueError("must be a string or a list of strings")

    @field_validator("tools")
    @classmethod
    def _tools_are_functions(cls, value: Any) -> Any:
        for index, tool in enumerate(value or ()):
            function = tool.get("function")
            if tool.get("type") != "function" or not isinstance(function, dict):
                raise ValueError(f"tool {index} must be {{'type': 'function', 'function': ...}}")
            if not isinstance(function.get("name"), str) or not function["name"]:
                raise ValueError(f"tool {index} has no function name")
        return value

    @field_validator("n")
    @classmethod
    def _one_answer(cls, value: int | None) -> int | None:
        if value is not None and value != 1:
            raise ValueError(f"must be 1: a job asks for one answer (got {value})")
        return value

    @field_validator("messages")
    @classmethod
    def _messages_fit(cls, value: list[Message]) -> list[Message]:
        size = sum(m.size for m in value)
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

    def sampling(self) -> dict[str, Any]:
        """The sampling options this request sets, by name (in `SAMPLING` order)."""
        return {k: getattr(self, k) for k in SAMPLING if getattr(self, k) is not None}

    @property
    def size(self) -> int:
        """Characters of message content: what monitoring may show instead of the prompt."""
        return sum(m.size for m in self.messages)

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
    #: The calls the model asks for instead of (or beside) an answer, in OpenAI's form:
    #: `{"id", "type": "function", "function": {"name", "arguments": <JSON text>}}`.
    tool_calls: list[dict[str, Any]] | None = None
    #: The answer as JSON, when the request asked for JSON (checked against its schema).
    parsed: Any = None
    #: What a person should know about how the answer was got (a fallback taken, ...).
    notes: list[str] = Field(default_factory=list)
    #: US dollars, as the provider reported it or as CHATQ_PRICES computes it (None:
    #: unknown).
    cost: float | None = None
    #: The rate budget the answer's headers announced: read by the limiter, which
    #: pauses the provider fleet-wide once it is spent; never stored.
    budget: RateBudget | None = Field(default=None, exclude=True)


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
