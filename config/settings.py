"""chatq's settings: read once, validated, frozen.

Every value comes from the environment first, then `.env` or `settings.ini` in the
working directory (python-decouple parses the files). Nothing else in chatq reads the
environment: the worker, the producer and the command line take a `Settings`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

from chatq.errors import SettingsError
from config.prices import PriceTable, load_prices
from config.providers import KEYED_PROVIDERS, PROVIDERS, TABLE, spec
from config.sources import Source, read_dotenv

__all__ = [
    "ProviderLimits",
    "Secret",
    "Settings",
    "SettingsError",
    "load_settings",
]

T = TypeVar("T")

_DEFAULT_URLS = {p.name: p.url for p in TABLE if p.url is not None}
_DEFAULT_KEY_DIR = Path("/etc/chatq")


class Secret:
    """An API key that never shows itself in a repr, a log line or an error."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value

    def reveal(self) -> str:
        """The key itself, for the one place that puts it in an Authorization header."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class ProviderLimits:
    """How hard the whole fleet may press one provider (None: no limit)."""

    concurrency: int | None = None
    rpm: float | None = None
    tpm: float | None = None


@dataclass(frozen=True)
class Settings:
    """Everything chatq is configured with. Build it with `load_settings()`."""

    urls: Mapping[str, str] = field(default_factory=lambda: dict(_DEFAULT_URLS))
    api_keys: Mapping[str, Secret] = field(default_factory=dict)
    timeout: float = 180.0
    connect_timeout: float = 10.0
    #: Ask upstreams to stream their answers, so that a stall is told from a long answer.
    stream: bool = True
    #: Seconds a streamed answer may go without a byte before the call is abandoned.
    idle_timeout: float = 60.0
    http_pool_size: int = 0
    openrouter_referer: str = "https://github.com/chatq/chatq"
    openrouter_title: str = "chatq"

    redis_url: str | None = None
    home: Path = field(default_factory=lambda: _default_home())
    result_ttl: int = 7 * 24 * 3600
    backoff_base: float = 1.0
    backoff_max: float = 60.0
    retry_after_max: float = 300.0
    quota_pause: float = 600.0
    max_attempts: int = 6
    job_deadline: float = 900.0
    concurrency: int = 32
    pool: str = "threads"
    local_workers: int = 1
    limits: Mapping[str, ProviderLimits] = field(default_factory=dict)
    limit_lease: float = 0.0
    visibility_margin: float = 60.0
    chunk_size: int = 16
    #: Upstream calls in flight at once per worker process (None: every job it holds).
    in_flight: int | None = None
    sweep_interval: float = 5.0
    lost_after: float = 15.0
    redis_timeout: float = 10.0
    #: What calls cost (CHATQ_PRICES); empty: costs are unknown unless reported.
    prices: PriceTable = field(default_factory=PriceTable)
    #: The keys HTTP clients must present to `chatq serve` (empty: no key asked).
    gateway_keys: tuple[Secret, ...] = ()
    max_body_bytes: int = 1 << 20
    max_file_bytes: int = 200 << 20
    #: Seconds an HTTP client may pause while sending its request body.
    body_timeout: float = 30.0
    #: A port on which each worker serves the fleet's metrics (None: no endpoint).
    metrics_port: int | None = None
    metrics_address: str = "127.0.0.1"

    @property
    def visibility_timeout(self) -> int:
        """Seconds before Redis hands an unacknowledged job to another worker.

        A job runs for at most `job_deadline` (waits and calls are clipped to what is
        left of it), plus one call's read timeout for a call begun just before the end,
        plus `visibility_margin` (a minute) of slack: the broker never redelivers a job
        still being worked.
        """
        return math.ceil(self.job_deadline + self.timeout + self.visibility_margin)

    @property
    def http_connections(self) -> int:
        """Pooled connections per provider per process: CHATQ_HTTP_POOL_SIZE, or enough
        for every call a worker may have in flight (CHATQ_IN_FLIGHT, else concurrency x
        chunk size; at least 64)."""
        calls = self.in_flight or self.concurrency * self.chunk_size
        return self.http_pool_size or max(64, calls)

    def limits_for(self, provider: str) -> ProviderLimits:
        """The configured limits of `provider`, else its row's default concurrency (local
        Ollama: one call at a time)."""
        default = ProviderLimits(concurrency=spec(provider).concurrency)
        return self.limits.get(provider, default)

    @property
    def heartbeat_ttl(self) -> float:
        """Seconds a worker process's heartbeat lives without renewal (it renews every
        sweep interval): past it, the process is taken for dead and its jobs requeued."""
        return max(3.0 * self.sweep_interval, 3.0)

    @property
    def lease_seconds(self) -> float:
        """How long a concurrency slot is held before it expires on its own."""
        return self.limit_lease or self.timeout + 30


def load_settings(
    environ: Mapping[str, str] | None = None, *, directory: Path | None = None
) -> Settings:
    """Read and validate every setting.

    Args:
        environ: the variables to read; default the process environment.
        directory: where `.env` or `settings.ini` is looked for; default the cwd.

    Raises:
        SettingsError: a value is malformed; the message names the variable.
    """
    src = Source.discover(environ, directory)
    urls = {
        provider: _get(src, f"{provider.upper()}_URL", _url, default)
        for provider, default in _DEFAULT_URLS.items()
    }
    timeout = _get(src, "CHATQ_TIMEOUT", _positive(float), 180.0)
    deadline = _get(src, "CHATQ_JOB_DEADLINE", _positive(float), 900.0)
    backoff_base = _get(src, "CHATQ_BACKOFF_BASE", _positive(float), 1.0)
    backoff_max = _get(src, "CHATQ_BACKOFF_MAX", _positive(float), 60.0)
    if backoff_max < backoff_base:
        raise SettingsError(
            f"CHATQ_BACKOFF_MAX ({backoff_max:g}) is below CHATQ_BACKOFF_BASE ({backoff_base:g})"
        )
    pool = _get(src, "CHATQ_POOL", _choice("threads", "prefork", "solo"), "threads")
    return Settings(
        urls=urls,
        api_keys=_api_keys(src),
        timeout=timeout,
        connect_timeout=_get(src, "CHATQ_CONNECT_TIMEOUT", _positive(float), 10.0),
        stream=_get(src, "CHATQ_STREAM", _flag, True),
        idle_timeout=_get(src, "CHATQ_IDLE_TIMEOUT", _positive(float), 60.0),
        http_pool_size=_get(src, "CHATQ_HTTP_POOL_SIZE", _positive(int), 0),
        openrouter_referer=_get(src, "OPENROUTER_REFERER", str, "https://github.com/chatq/chatq"),
        openrouter_title=_get(src, "OPENROUTER_TITLE", str, "chatq"),
        redis_url=_get(src, "REDIS_URL", _redis_url, None),
        home=_get(src, "CHATQ_HOME", lambda v: Path(v).expanduser(), _default_home()),
        result_ttl=_get(src, "CHATQ_RESULT_TTL", _positive(int), 7 * 24 * 3600),
        backoff_base=backoff_base,
        backoff_max=backoff_max,
        retry_after_max=_get(src, "CHATQ_RETRY_AFTER_MAX", _positive(float), 300.0),
        quota_pause=_get(src, "CHATQ_QUOTA_PAUSE", _positive(float), 600.0),
        max_attempts=_get(src, "CHATQ_MAX_ATTEMPTS", _positive(int), 6),
        job_deadline=deadline,
        concurrency=_get(src, "CHATQ_CONCURRENCY", _positive(int), 32),
        pool=pool,
        local_workers=_get(src, "CHATQ_LOCAL_WORKERS", _positive(int), 1),
        limits={p: lim for p in PROVIDERS if (lim := _limits(src, p)) is not None},
        limit_lease=_get(src, "CHATQ_LIMIT_LEASE", _positive(float), 0.0),
        visibility_margin=_get(src, "CHATQ_VISIBILITY_MARGIN", _positive(float), 60.0),
        chunk_size=_get(src, "CHATQ_CHUNK_SIZE", _positive(int), 16),
        in_flight=_get(src, "CHATQ_IN_FLIGHT", _optional(_positive(int)), None),
        sweep_interval=_get(src, "CHATQ_SWEEP_INTERVAL", _positive(float), 5.0),
        lost_after=_get(src, "CHATQ_LOST_AFTER", _positive(float), 15.0),
        redis_timeout=_get(src, "CHATQ_REDIS_TIMEOUT", _positive(float), 10.0),
        prices=load_prices(Path(prices).expanduser())
        if (prices := src.get("CHATQ_PRICES"))
        else PriceTable(),
        gateway_keys=tuple(
            Secret(k.strip()) for k in (src.get("CHATQ_API_KEYS") or "").split(",") if k.strip()
        ),
        max_body_bytes=_get(src, "CHATQ_MAX_BODY_BYTES", _positive(int), 1 << 20),
        max_file_bytes=_get(src, "CHATQ_MAX_FILE_BYTES", _positive(int), 200 << 20),
        body_timeout=_get(src, "CHATQ_BODY_TIMEOUT", _positive(float), 30.0),
        metrics_port=_get(src, "CHATQ_METRICS_PORT", _optional(_port), None),
        metrics_address=_get(src, "CHATQ_METRICS_ADDRESS", str, "127.0.0.1"),
    )


def _default_home() -> Path:
    return Path("~/.local/state/chatq").expanduser()


def _api_keys(src: Source) -> dict[str, Secret]:
    """Each keyed provider's key: its variable, else its dotenv file; absent when neither."""
    keys: dict[str, Secret] = {}
    for provider in KEYED_PROVIDERS:
        var = f"{provider.upper()}_API_KEY"
        value = (src.get(var) or "").strip()
        if not value:
            key_file = src.get(f"{provider.upper()}_KEY_FILE")
            path = Path(key_file) if key_file else _DEFAULT_KEY_DIR / f"{provider}.env"
            value = read_dotenv(path).get(var, "").strip()
        if value:
            keys[provider] = Secret(value)
    return keys


def _limits(src: Source, provider: str) -> ProviderLimits | None:
    prefix = f"CHATQ_{provider.upper()}_"
    concurrency = _get(src, prefix + "CONCURRENCY", _optional(_positive(int)), None)
    rpm = _get(src, prefix + "RPM", _optional(_positive(float)), None)
    tpm = _get(src, prefix + "TPM", _optional(_positive(float)), None)
    if concurrency is None and rpm is None and tpm is None:
        return None
    if concurrency is None and src.get(prefix + "CONCURRENCY") is None:
        concurrency = spec(provider).concurrency
    return ProviderLimits(concurrency=concurrency, rpm=rpm, tpm=tpm)


def _get(src: Source, name: str, cast: Callable[[str], T], default: T) -> T:
    raw = src.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return cast(raw.strip())
    except (ValueError, TypeError) as exc:
        shown = raw.strip()[:80]
        if "KEY" in name or "PASSWORD" in name:
            shown = "********"
        shown = re.sub(r"(//[^:/@\s]*:)[^@\s]+@", r"\1********@", shown)
        raise SettingsError(f"{name}: {exc} (got {shown!r})") from None


def _positive(kind: Callable[[str], T]) -> Callable[[str], T]:
    def cast(raw: str) -> T:
        try:
            value = kind(raw)
        except ValueError:
            noun = "a whole number" if kind is int else "a number"
            raise ValueError(f"expected {noun}") from None
        if not value > 0 or (isinstance(value, float) and not math.isfinite(value)):
            raise ValueError("expected a positive value")
        return value

    return cast


def _optional(cast: Callable[[str], T]) -> Callable[[str], T | None]:
    def wrapped(raw: str) -> T | None:
        return None if raw.lower() in ("none", "unlimited", "0") else cast(raw)

    return wrapped


def _flag(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected 1 or 0 (true or false)")


def _choice(*allowed: str) -> Callable[[str], str]:
    def cast(raw: str) -> str:
        if raw not in allowed:
            raise ValueError(f"expected one of {', '.join(allowed)}")
        return raw

    return cast


def _port(raw: str) -> int:
    port = _positive(int)(raw)
    if port > 65535:
        raise ValueError("expected a TCP port, 1 to 65535")
    return port


def _url(raw: str) -> str:
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("expected an http:// or https:// URL with a host")
    return raw.rstrip("/")


def _redis_url(raw: str) -> str:
    parts = urlsplit(raw)
    if parts.scheme not in ("redis", "rediss", "unix") or not (parts.netloc or parts.path):
        raise ValueError("expected a redis://, rediss:// or unix:// URL")
    return raw
