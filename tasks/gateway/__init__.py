"""chatq's HTTP front door: chatd's `/v1/chat` and OpenAI's API over the queue.

    app.py          the ASGI app (Starlette), its lifespan and the batch mover
    guard.py        API keys, body size limits, JSON bodies
    errors.py       the one place chatq's errors become HTTP answers
    state.py        what the routes share; one chat call through the queue
    waiter.py       many requests waiting for results on one event loop
    chat.py         /v1/chat, /v1/chat/providers, /v1/chat/completions, /v1/models, /healthz
    files.py        the file store under CHATQ_HOME/files
    batches.py      OpenAI batch objects on chatq's batch store
    openai_api.py   /v1/files and /v1/batches

It only translates HTTP to the producer and batch services: routing, validation and
batches live where the CLI and the Python API find them too. Start it with
`chatq serve`.
"""

from tasks.gateway.app import create_app, serve_app

__all__ = ["create_app", "serve_app"]
