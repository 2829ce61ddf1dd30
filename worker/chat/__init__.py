"""The provider layer: types, errors, routing, one module per provider, the builder."""

from worker.chat.builder import build_registry
from worker.chat.errors import (
    ChatqError,
    DeadlineExceeded,
    InvalidRequest,
    JobFailed,
    MalformedResponse,
    ProviderNotFound,
    RateLimited,
    RetryAfterTooLong,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from worker.chat.registry import Registry, route
from worker.chat.types import ChatRequest, ChatResponse, Message

__all__ = [
    "ChatRequest",
    "ChatResponse",
    "ChatqError",
    "DeadlineExceeded",
    "InvalidRequest",
    "JobFailed",
    "MalformedResponse",
    "Message",
    "ProviderNotFound",
    "RateLimited",
    "Registry",
    "RetryAfterTooLong",
    "UpstreamError",
    "UpstreamTimeout",
    "UpstreamUnavailable",
    "build_registry",
    "route",
]
