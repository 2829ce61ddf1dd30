"""Where raw setting values come from: the environment, then `.env` or `settings.ini`.

python-decouple parses the files; the lookup order is ours so that tests can hand in
an environment mapping instead of the process's.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from decouple import RepositoryEmpty, RepositoryEnv, RepositoryIni

__all__ = ["Source", "read_dotenv"]


class Source:
    """Raw string values by name: `environ` first, then the settings file, if any."""

    def __init__(self, environ: Mapping[str, str], repository: RepositoryEmpty | None = None):
        self._environ = environ
        self._repository = repository or RepositoryEmpty()

    @classmethod
    def discover(cls, environ: Mapping[str, str] | None = None, directory: Path | None = None):
        """Use `environ` (default: the process's) and `.env` or `settings.ini` in `directory`."""
        directory = Path.cwd() if directory is None else directory
        repository: RepositoryEmpty | None = None
        if (directory / ".env").is_file():
            repository = RepositoryEnv(str(directory / ".env"))
        elif (directory / "settings.ini").is_file():
            repository = RepositoryIni(str(directory / "settings.ini"))
        return cls(dict(os.environ) if environ is None else environ, repository)

    def get(self, name: str) -> str | None:
        """The raw value of `name`, or None when neither the environment nor the file sets it."""
        if name in self._environ:
            return self._environ[name]
        try:
            return self._repository[name]
        except KeyError:
            return None


def read_dotenv(path: Path) -> dict[str, str]:
    """The `NAME=value` pairs of a dotenv file; an unreadable file reads as empty."""
    try:
        return dict(RepositoryEnv(str(path)).data)
    except (OSError, UnicodeDecodeError):
        return {}
