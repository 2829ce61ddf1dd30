"""What every `chatq` subcommand shares: exit codes, one-line errors, registration.

Exit codes: 0 ok, 2 invalid input, 3 provider not found, 4 upstream failure after
retries, 5 timed out waiting, 1 anything else (Redis unreachable, a broken setup).
Errors go to stderr as one line. The subcommand modules import this one; it imports
none of them.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import NoReturn

from chatq.errors import (
    ChatqError,
    InvalidRequest,
    ProviderNotFound,
    RedisUnavailable,
    WaitTimedOut,
)
from chatq.redaction import redact
from config import Settings

__all__ = [
    "COMMANDS",
    "EXIT_CODES",
    "EXIT_INVALID",
    "EXIT_NOT_FOUND",
    "EXIT_OK",
    "EXIT_OTHER",
    "EXIT_TIMEOUT",
    "EXIT_UPSTREAM",
    "Command",
    "Parser",
    "command",
    "exit_code",
    "fail",
]

EXIT_OK, EXIT_OTHER, EXIT_INVALID, EXIT_NOT_FOUND, EXIT_UPSTREAM, EXIT_TIMEOUT = 0, 1, 2, 3, 4, 5
EXIT_CODES = {
    InvalidRequest: EXIT_INVALID,
    ProviderNotFound: EXIT_NOT_FOUND,
    WaitTimedOut: EXIT_TIMEOUT,
    RedisUnavailable: EXIT_OTHER,
}

Command = Callable[[argparse.Namespace, Settings], int]
#: The function that runs each subcommand, by name (filled by `@command`).
COMMANDS: dict[str, Command] = {}


def command(name: str) -> Callable[[Command], Command]:
    """Register the function that runs subcommand `name`."""

    def register(fn: Command) -> Command:
        COMMANDS[name] = fn
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


class Parser(argparse.ArgumentParser):
    """Usage errors are one line on stderr, like every other error, and exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_INVALID, f"chatq: {self.prog}: {message} (see {self.prog} --help)\n")
