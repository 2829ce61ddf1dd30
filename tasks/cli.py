"""The `chatq` command line.

Exit codes: 0 ok, 2 invalid input, 3 provider not found, 4 upstream failure after
retries, 5 timed out waiting, 1 anything else (Redis unreachable, a broken setup).
Errors go to stderr as one line.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from config import Settings, SettingsError, load_settings
from worker.chat.errors import (
    ChatqError,
    InvalidRequest,
    ProviderNotFound,
    RedisUnavailable,
    WaitTimedOut,
)
from worker.chat.redaction import redact

__all__ = ["EXIT_CODES", "main"]

EXIT_OK, EXIT_OTHER, EXIT_INVALID, EXIT_NOT_FOUND, EXIT_UPSTREAM, EXIT_TIMEOUT = 0, 1, 2, 3, 4, 5
EXIT_CODES = {
    InvalidRequest: EXIT_INVALID,
    ProviderNotFound: EXIT_NOT_FOUND,
    WaitTimedOut: EXIT_TIMEOUT,
    RedisUnavailable: EXIT_OTHER,
}

Command = Callable[[argparse.Namespace, Settings], int]
_COMMANDS: dict[str, Command] = {}


def command(name: str) -> Callable[[Command], Command]:
    """Register the function that runs subcommand `name`."""

    def register(fn: Command) -> Command:
        _COMMANDS[name] = fn
        return fn

    return register


def exit_code(error: BaseException) -> int:
    """The process exit code for an error that ended a command."""
    for kind, code in EXIT_CODES.items():
        if isinstance(error, kind):
            return code
    if isinstance(error, ChatqError):
        return EXIT_UPSTREAM
    return EXIT_OTHER


def fail(message: str, code: int) -> int:
    """Print `chatq: message` on stderr (one line, secrets redacted); return `code`."""
    print(f"chatq: {redact(' '.join(str(message).split()))}", file=sys.stderr)
    return code


class _Parser(argparse.ArgumentParser):
    """Usage errors are one line on stderr, like every other error, and exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_INVALID, f"chatq: {self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="chatq", description="A job queue for LLM chat calls.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more to stderr")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

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

    from tasks import batch_cli, judge_cli  # their subcommands register themselves

    batch_cli.add_parser(sub)
    judge_cli.add_parser(sub)
    limits = sub.add_parser("limits", help="show each provider's fleet-wide limits and state")
    limits.add_argument("--minutes", type=float, default=5.0, help="window of the 429 count")
    limits.add_argument("--json", action="store_true", help="print JSON")

    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="chatq: %(message)s",
        stream=sys.stderr,
    )
    for name in ("worker.embedded_redis", "tasks.runtime"):
        logging.getLogger(name).setLevel(logging.INFO)
    try:
        settings = load_settings()
    except SettingsError as exc:
        return fail(f"bad setting: {exc}", EXIT_INVALID)
    try:
        return _COMMANDS[args.command](args, settings)
    except ChatqError as exc:
        return fail(f"{type(exc).__name__}: {exc}", exit_code(exc))
    except KeyboardInterrupt:
        return fail("interrupted", 130)
    except Exception as exc:  # the last line of defence: one clear line, no traceback
        if args.verbose:
            logging.getLogger(__name__).exception("unexpected error")
        return fail(f"{type(exc).__name__}: {exc}", EXIT_OTHER)


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
    build_registry(settings).resolve(request.model)  # refuse before starting anything
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


if __name__ == "__main__":
    from tasks import cli  # the module subcommands register with (this one is __main__)

    sys.exit(cli.main())
