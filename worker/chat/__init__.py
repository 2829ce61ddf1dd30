"""The provider layer: types, errors, routing, one module per provider, the builder."""

from chatq.errors import (
    AuthenticationFailed,
    BadRequest,
    ChatqError,
    DeadlineExceeded,
    InvalidRequest,
    JobFailed,
    MalformedResponse,
    ModelNotFound,
    ProviderNotFound,
    QuotaExhausted,
    RateLimited,
    RetryAfterTooLong,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from worker.chat.builder import build_registry
from worker.chat.registry import Registry, route
from worker.chat.types import ChatRequest, ChatResponse, Message

__all__ = [
    "AuthenticationFailed",
    "BadRequest",
    "ChatRequest",
    "ChatResponse",
    "ChatqError",
    "DeadlineExceeded",
    "InvalidRequest",
    "JobFailed",
    "MalformedResponse",
    "Message",
    "ModelNotFound",
    "ProviderNotFound",
    "QuotaExhausted",
    "RateLimited",
    "Registry",
    "RetryAfterTooLong",
    "UpstreamError",
    "UpstreamTimeout",
    "UpstreamUnavailable",
    "build_registry",
    "route",
]
