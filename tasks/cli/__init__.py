"""The `chatq` command line: the parser and `main`; each command group has its module.

    tasks/cli/common.py   exit codes, one-line errors, the command registry
    tasks/cli/chat.py     providers, chat, limits, metrics
    tasks/cli/batch.py    batch run | submit | status | results | cancel | list
    tasks/cli/judge.py    judge, judge compare
    tasks/cli/serve.py    serve (the HTTP gateway, run by uvicorn)

Exit codes: 0 ok, 2 invalid input, 3 provider not found, 4 upstream failure after
retries, 5 timed out waiting, 1 anything else (Redis unreachable, a broken setup).
Errors go to stderr as one line.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from chatq.errors import ChatqError
from config import Settings, SettingsError, load_settings
from tasks.cli import batch, chat, judge, serve
from tasks.cli.common import (
    COMMANDS,
    EXIT_CODES,
    EXIT_INVALID,
    EXIT_OTHER,
    Parser,
    exit_code,
    fail,
)
from worker.redis_guard import UNREACHABLE, unavailable

__all__ = ["EXIT_CODES", "build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="chatq", description="A job queue for LLM chat calls.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more to stderr")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    chat.add_parsers(sub)
    batch.add_parser(sub)
    judge.add_parser(sub)
    chat.add_limits_parser(sub)
    serve.add_parser(sub)
    return parser


def _redis_url(settings: Settings) -> str:
    """The Redis a command uses: REDIS_URL, else the embedded one of CHATQ_HOME."""
    from worker.embedded_redis import running_url

    return settings.redis_url or running_url(settings.home) or f"embedded ({settings.home})"


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
        return COMMANDS[args.command](args, settings)
    except ChatqError as exc:
        return fail(f"{type(exc).__name__}: {exc}", exit_code(exc))
    except UNREACHABLE as exc:  # whichever command met it: one line naming the server
        error = unavailable(_redis_url(settings), exc)
        return fail(f"{type(error).__name__}: {error}", exit_code(error))
    except KeyboardInterrupt:
        return fail("interrupted", 130)
    except Exception as exc:  # the last line of defence: one clear line, no traceback
        if args.verbose:
            logging.getLogger(__name__).exception("unexpected error")
        return fail(f"{type(exc).__name__}: {exc}", EXIT_OTHER)
