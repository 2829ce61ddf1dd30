"""The gateway's ASGI app: its routes, its guard, and what it opens for its life."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from anyio import to_thread
from starlette.applications import Starlette
from starlette.middleware import Middleware

from config import Settings, load_settings
from tasks.gateway import chat, openai_api
from tasks.gateway.batches import OpenAIBatches
from tasks.gateway.errors import NotFound
from tasks.gateway.guard import Guard
from tasks.gateway.state import Gateway
from tasks.runtime import open_runtime

__all__ = ["create_app", "serve_app"]

log = logging.getLogger(__name__)

#: Seconds between two passes over the unfinished HTTP batches.
ADVANCE_EVERY = 1.0


def create_app(settings: Settings | None = None) -> Starlette:
    """The gateway on `settings` (default: read from the environment).

    The runtime opens when the server starts: REDIS_URL, or the embedded Redis with
    local workers for as long as the server runs.
    """
    settings = settings or load_settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        runtime = await to_thread.run_sync(open_runtime, settings)
        gateway = Gateway(settings, runtime)
        app.state.gateway = gateway
        gateway.waiter.start()
        mover = asyncio.get_running_loop().create_task(_advance_batches(gateway))
        try:
            yield
        finally:
            mover.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await mover
            await gateway.waiter.close()
            await to_thread.run_sync(runtime.close)

    guard = Middleware(Guard, keys=settings.gateway_keys, max_body=settings.max_body_bytes,
                       max_file=settings.max_file_bytes,
                       body_timeout=settings.body_timeout)  # fmt: skip
    return Starlette(routes=[*chat.ROUTES, *openai_api.ROUTES], middleware=[guard],
                     lifespan=lifespan)  # fmt: skip


def serve_app() -> Starlette:
    """The factory `chatq serve` hands uvicorn (by name, so the CLI imports no route)."""
    return create_app()


async def _advance_batches(gateway: Gateway) -> None:
    """Move every unfinished HTTP batch along, whether or not a client polls it."""
    batches = gateway.openai_batches
    while True:
        await asyncio.sleep(ADVANCE_EVERY)
        try:
            for batch_id in await to_thread.run_sync(batches.active):
                await to_thread.run_sync(_advance_one, batches, batch_id)
        except Exception:  # the next pass tries again
            log.exception("moving HTTP batches along failed")


def _advance_one(batches: OpenAIBatches, batch_id: str) -> None:
    try:
        batches.advance(batch_id)
    except NotFound:
        batches.forget(batch_id)
