"""`chatq serve`: the HTTP gateway (chatd's /v1/chat and OpenAI's API) on uvicorn."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from config import Settings
from tasks.cli.common import EXIT_INVALID, EXIT_OK, command, fail

__all__ = ["add_parser"]


def add_parser(sub: Any) -> None:
    """Add `serve` to the chatq parser."""
    serve = sub.add_parser("serve", help="serve the HTTP API (chatd's /v1/chat, OpenAI's API)")
    serve.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1: this machine only)",
    )
    serve.add_argument("--port", type=int, default=3220, help="port (default 3220)")
    serve.add_argument("--log-level", default="info", help="uvicorn's log level")  # fmt: skip


@command("serve")
def _serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    if args.host not in ("127.0.0.1", "localhost", "::1") and not settings.gateway_keys:
        print(f"chatq: serving on {args.host} with no CHATQ_API_KEYS: anyone who reaches "
              "this port can spend your providers' credit", file=sys.stderr)  # fmt: skip
    if not 0 < args.port < 65536:
        return fail(f"--port must be 1-65535, not {args.port}", EXIT_INVALID)
    # By name: the command line imports no part of the gateway, its own front door.
    uvicorn.run("tasks.gateway:serve_app", factory=True, host=args.host, port=args.port,
                log_level=args.log_level, timeout_graceful_shutdown=30)  # fmt: skip
    return EXIT_OK
