"""`chatq providers`, `chatq chat`, `chatq limits` and `chatq metrics`: one job, and
what the fleet knows."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from chatq.errors import InvalidRequest
from config import Settings
from tasks.cli.common import EXIT_OK, command

__all__ = ["add_parsers"]


def add_parsers(sub: Any) -> None:
    """Add `providers`, `chat` and `limits` to the chatq parser."""
    providers = sub.add_parser("providers", help="list the registered providers")
    providers.add_argument("--json", action="store_true", help="print JSON")

    chat = sub.add_parser("chat", help="enqueue one chat job, wait and print the answer")
    chat.add_argument("model", help="model name with its routing prefix, e.g. mock/echo")
    chat.add_argument("prompt", help="the user message ('-' reads standard input)")
    chat.add_argument("--system", help="a system message")
    chat.add_argument("--max-tokens", type=int, dest="max_tokens")
    chat.add_argument("--temperature", type=float)
    chat.add_argument("--format", choices=["json"], help="ask for a JSON answer")
    chat.add_argument("--think", action="store_true", help="let the model think (Ollama)")
    chat.add_argument("--json", action="store_true", help="print the whole ChatResponse")
    chat.add_argument("--timeout", type=float, default=None, help="seconds to wait for the result")


def add_limits_parser(sub: Any) -> None:
    """Add `limits` to the chatq parser."""
    limits = sub.add_parser("limits", help="show each provider's fleet-wide limits and state")
    limits.add_argument("--minutes", type=float, default=5.0, help="window of the 429 count")
    limits.add_argument("--json", action="store_true", help="print JSON")
    sub.add_parser("metrics", help="print the fleet's metrics (Prometheus text format)")


@command("providers")
def _providers(args: argparse.Namespace, settings: Settings) -> int:
    from worker.chat.builder import build_registry

    names = build_registry(settings).providers()
    if args.json:
        print(json.dumps(names))
    else:
        print("\n".join(names))
    return EXIT_OK


@command("chat")
def _chat(args: argparse.Namespace, settings: Settings) -> int:
    from tasks.producer import Producer
    from tasks.runtime import open_runtime
    from worker.chat.builder import build_registry
    from worker.chat.types import ChatRequest

    prompt = _read_stdin() if args.prompt == "-" else args.prompt
    messages = [{"role": "user", "content": prompt}]
    if args.system:
        messages.insert(0, {"role": "system", "content": args.system})
    fields = {
        "model": args.model,
        "messages": messages,
        "max_tokens": args.max_tokens,
        "temperature": args.temperature,
        "format": args.format,
        "think": True if args.think else None,
    }
    request = ChatRequest.parse({k: v for k, v in fields.items() if v is not None})
    build_registry(settings).prepare(request)  # refuse before starting anything
    with open_runtime(settings) as runtime:
        producer = Producer(runtime)
        result = producer.enqueue(request)
        response = producer.wait(result, timeout=args.timeout)
    if args.json:
        print(response.model_dump_json())
    else:
        print(response.content)
    return EXIT_OK


@command("limits")
def _limits(args: argparse.Namespace, settings: Settings) -> int:
    import redis

    from worker.embedded_redis import running_url
    from worker.limits import MemoryBackend, RedisBackend
    from worker.limits.report import format_report, limits_report

    url = settings.redis_url or running_url(settings.home)
    client = redis.Redis.from_url(url, socket_connect_timeout=5) if url else None
    try:  # with no Redis running there is no learned state: the configuration alone
        backend = RedisBackend(client) if client is not None else MemoryBackend()
        rows = limits_report(settings, backend, minutes=args.minutes)
    finally:
        if client is not None:
            client.close()
    print(json.dumps(rows) if args.json else format_report(rows, minutes=args.minutes))
    return EXIT_OK


@command("metrics")
def _metrics(args: argparse.Namespace, settings: Settings) -> int:
    import redis

    from worker.app import QUEUES
    from worker.embedded_redis import running_url
    from worker.metrics import exposition

    url = settings.redis_url or running_url(settings.home)
    if url is None:
        print("chatq: no Redis running (REDIS_URL is unset): no metrics yet", file=sys.stderr)
        return EXIT_OK
    client = redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=10)
    try:
        sys.stdout.write(exposition(client, queues=QUEUES))
    finally:
        client.close()
    return EXIT_OK


def _read_stdin() -> str:
    """The prompt on standard input, which must be UTF-8 (never silently mangled).

    Raises:
        InvalidRequest: naming the first byte that is not UTF-8.
    """
    raw = sys.stdin.buffer.read()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidRequest(
            f"the prompt on standard input is not valid UTF-8 (byte 0x{raw[exc.start]:02x} "
            f"at position {exc.start})"
        ) from None
