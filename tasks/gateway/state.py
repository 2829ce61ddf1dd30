"""What the gateway's routes share: the runtime, the producer, the batch services, the
file store and the waiter, opened when the server starts and closed when it stops."""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable

from anyio import to_thread
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import Response

from chatq.errors import ChatqError
from config import Settings
from tasks.batch.service import Batches
from tasks.gateway.batches import OpenAIBatches
from tasks.gateway.errors import HTTPError
from tasks.gateway.files import FileStore
from tasks.gateway.guard import envelope_for
from tasks.gateway.waiter import Waiter
from tasks.producer import Producer
from tasks.runtime import Runtime
from worker.chat.types import ChatRequest, ChatResponse

__all__ = ["Gateway", "gateway_of", "route"]

log = logging.getLogger(__name__)


class Gateway:
    """The services behind every route, on one runtime."""

    def __init__(self, settings: Settings, runtime: Runtime):
        self.settings = settings
        self.runtime = runtime
        self.producer = Producer(runtime)
        self.batches = Batches(self.producer)
        self.files = FileStore(settings.home / "files")
        self.openai_batches = OpenAIBatches(self.batches, self.files, ttl=settings.result_ttl)
        self.waiter = Waiter(
            runtime.redis_url, read=self.producer.read, timeout=settings.redis_timeout
        )

    async def chat(self, request: ChatRequest) -> tuple[str, ChatResponse]:
        """Queue one validated request and wait for its answer: (job id, response).

        The wait is bounded by the request's `timeout`, else by CHATQ_JOB_DEADLINE.

        Raises:
            ProviderNotFound: nothing was queued.
            ChatqError: the job failed (its own subclass), or WaitTimedOut.
        """
        request = self.producer.prepare(request)  # refused here: nothing queued
        (result,) = await to_thread.run_sync(
            lambda: self.producer.publish([request], [None], chunk_size=1)
        )
        job = result.id
        timeout = request.timeout or self.settings.job_deadline
        try:
            response = await self.waiter.wait(self.producer.result_key(job), timeout, job=job)
        except ChatqError as exc:
            exc.job = job  # the id travels to the answer's x-chatq-job-id header
            raise
        return job, response


def gateway_of(request: Request) -> Gateway:
    return request.app.state.gateway


def route(handler: Callable[[Request], Awaitable[Response]]) -> Callable:
    """A route whose chatq and HTTP errors are answered in its path's envelope."""

    @functools.wraps(handler)
    async def wrapped(request: Request) -> Response:
        reply = envelope_for(request.url.path)
        try:
            return await handler(request)
        except (ChatqError, HTTPError) as exc:
            return reply(exc, getattr(exc, "job", None))
        except StarletteHTTPException as exc:  # the form parser's own refusals
            return reply(HTTPError(exc.status_code, str(exc.detail)))
        except Exception:
            log.exception("%s %s failed", request.method, request.url.path)
            return reply(HTTPError(500, "internal error (logged by the gateway)",
                                   code="internal_error", kind="server_error"))  # fmt: skip

    return wrapped
