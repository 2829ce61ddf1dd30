"""Chat messages as the OpenAI chat completions API writes them: text, content parts with
images, an assistant's tool calls and the tool's replies.

Each provider translates them (worker/chat/<provider>.py) or refuses what it cannot
take, naming itself; nothing is dropped on the way.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)

__all__ = ["ImagePart", "Message", "Part", "Role", "TextPart", "ToolCall"]

Role = Literal["system", "user", "assistant", "tool"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TextPart(_Frozen):
    """`{"type": "text", "text": ...}`"""

    type: Literal["text"]
    text: StrictStr


class ImageURL(_Frozen):
    """An image's address: `https://...` or a `data:image/...;base64,...` URL."""

    url: StrictStr = Field(min_length=1)
    detail: Literal["auto", "low", "high"] | None = None


class ImagePart(_Frozen):
    """`{"type": "image_url", "image_url": {"url": ..., "detail": ...}}`"""

    type: Literal["image_url"]
    image_url: ImageURL


Part = Annotated[TextPart | ImagePart, Field(discriminator="type")]


class FunctionCall(_Frozen):
    """The function a tool call names, and its arguments as JSON text (OpenAI's form)."""

    name: StrictStr = Field(min_length=1)
    arguments: StrictStr


class ToolCall(_Frozen):
    """One call an assistant asked for: `{"id", "type": "function", "function"}`."""

    id: StrictStr = Field(min_length=1)
    type: Literal["function"] = "function"
    function: FunctionCall


class Message(_Frozen):
    """One chat message.

    `content` is text, a list of text and image_url parts, or null for an assistant
    message that carries `tool_calls`. A `tool` message answers one call by its
    `tool_call_id` (which Ollama-style clients leave out).
    """

    role: Role
    # Before `content`, so that its validator sees them.
    tool_calls: list[ToolCall] | None = Field(default=None, min_length=1)
    # Optional even for a tool message: Ollama's own tool messages carry none.
    tool_call_id: StrictStr | None = None
    # Absent means null: the OpenAI SDK leaves out a null content, as does a task
    # message (dumped without its None fields).
    content: StrictStr | list[Part] | None = Field(default=None, validate_default=True)

    @field_validator("tool_calls")
    @classmethod
    def _only_an_assistant_calls_tools(cls, value: Any, info: ValidationInfo) -> Any:
        if value is not None and info.data.get("role") != "assistant":
            raise ValueError("only an assistant message carries tool calls")
        return value

    @field_validator("tool_call_id")
    @classmethod
    def _only_a_tool_answers_a_call(cls, value: Any, info: ValidationInfo) -> Any:
        if value is not None and info.data.get("role") != "tool":
            raise ValueError("only a tool message answers a tool call")
        return value

    @field_validator("content", mode="wrap")
    @classmethod
    def _content_is_text_parts_or_calls(cls, value: Any, handler: Any, info: ValidationInfo):
        # Wrapped, so that a bad value is named `content`, not one member of the union.
        try:
            value = handler(value)
        except ValidationError:
            raise ValueError(
                "must be text or a list of text and image_url parts"
                + (" (or null beside tool_calls)" if info.data.get("role") == "assistant" else "")
            ) from None
        if value is None and not info.data.get("tool_calls"):
            raise ValueError("is required (null only in an assistant message with tool_calls)")
        images = isinstance(value, list) and any(isinstance(p, ImagePart) for p in value)
        if images and info.data.get("role") != "user":
            raise ValueError("only a user message carries images")
        return value

    @property
    def text(self) -> str:
        """The message's text: its content, its text parts joined, or "" (tool calls)."""
        if isinstance(self.content, str):
            return self.content
        return "".join(p.text for p in self.content or () if isinstance(p, TextPart))

    @property
    def images(self) -> list[str]:
        """The URLs of its image parts, in order."""
        return [p.image_url.url for p in self.content or () if isinstance(p, ImagePart)]

    @property
    def size(self) -> int:
        """Characters of text and tool-call arguments (what counts toward the limit)."""
        calls = sum(len(c.function.name) + len(c.function.arguments) for c in self.tool_calls or ())
        return len(self.text) + calls
