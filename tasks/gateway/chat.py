"""One chat call over HTTP: chatd's `/v1/chat` and OpenAI's `/v1/chat/completions`,
the provider and model lists, the health check and the fleet's metrics."""

from __future__ import annotations

from anyio import to_thread
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from config.providers import spec
from tasks.batch.input import request_from_json
from tasks.batch.output import completion
from tasks.gateway.errors import HTTPError
from tasks.gateway.guard import read_json
from tasks.gateway.state import gateway_of, route
from worker.app import QUEUES
from worker.chat.types import ChatRequest
from worker.heartbeat import PREFIX as WORKER_PREFIX
from worker.metrics import exposition

__all__ = ["ROUTES"]


@route
async def chatd_chat(request: Request) -> Response:
    """chatd's `POST /v1/chat`: its request in, its response out."""
    gateway = gateway_of(request)
    body = await read_json(request)
    job, response = await gateway.chat(ChatRequest.parse(body))
    answer = response.model_dump(include={"model", "content", "input_tokens", "output_tokens",
                                          "finish_reason", "provider", "latency_ms"})  # fmt: skip
    return JSONResponse(answer, headers={"x-chatq-job-id": job})


@route
async def chatd_providers(request: Request) -> Response:
    """chatd's `GET /v1/chat/providers`: the registered providers."""
    return JSONResponse({"providers": gateway_of(request).runtime.registry.providers()})


@route
async def completions(request: Request) -> Response:
    """OpenAI's `POST /v1/chat/completions` (non-streaming), through the queue."""
    gateway = gateway_of(request)
    body = await read_json(request)
    if body.get("stream"):
        raise HTTPError(400, "stream: true is not supported yet; send stream: false",
                        param="stream", code="unsupported_parameter")  # fmt: skip
    job, response = await gateway.chat(request_from_json({"body": body}))
    answer = completion(response.model_dump(), job)
    return JSONResponse(answer, headers={"x-chatq-job-id": job})


@route
async def models(request: Request) -> Response:
    """OpenAI's `GET /v1/models`: one entry per registered provider's model prefix."""
    names = gateway_of(request).runtime.registry.providers()
    data = [{"id": f"{spec(p).prefix}/", "object": "model", "created": 0, "owned_by": p}
            for p in names]  # fmt: skip
    return JSONResponse({"object": "list", "data": data})


@route
async def metrics(request: Request) -> Response:
    """The fleet's metrics in Prometheus' text format (the same as every worker's)."""
    client = gateway_of(request).runtime.redis()
    text = await to_thread.run_sync(lambda: exposition(client, queues=QUEUES))
    return Response(text, media_type=CONTENT_TYPE_LATEST)


@route
async def healthz(request: Request) -> Response:
    """200 when Redis answers and at least one worker process is alive, else 503."""
    client = gateway_of(request).waiter.client
    checks: dict[str, object] = {}
    try:
        await client.ping()
        checks["redis"] = "ok"
        workers = 0
        async for _ in client.scan_iter(match=f"{WORKER_PREFIX}*", count=500):
            workers += 1
        checks["workers"] = workers
    except Exception as exc:  # any failure to read Redis is the answer itself
        checks["redis"] = f"unavailable ({type(exc).__name__})"
        checks["workers"] = None
    healthy = checks["redis"] == "ok" and bool(checks["workers"])
    return JSONResponse({"status": "ok" if healthy else "unhealthy", **checks},
                        200 if healthy else 503)  # fmt: skip


ROUTES = [
    Route("/v1/chat", chatd_chat, methods=["POST"]),
    Route("/v1/chat/providers", chatd_providers, methods=["GET"]),
    Route("/v1/chat/completions", completions, methods=["POST"]),
    Route("/v1/models", models, methods=["GET"]),
    Route("/healthz", healthz, methods=["GET"]),
    Route("/metrics", metrics, methods=["GET"]),
]
