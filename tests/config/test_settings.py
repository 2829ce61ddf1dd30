"""Settings: read once from an environment and `.env`, validated, with keys kept secret."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from config import KEYED_PROVIDERS, Secret, SettingsError, load_settings


@pytest.fixture
def directory(tmp_path: Path) -> Path:
    """An empty working directory of the test's own (no `.env` until a test writes one)."""
    path = tmp_path / "cwd"
    path.mkdir()
    return path


@pytest.fixture
def base(tmp_path: Path) -> dict[str, str]:
    """An environment pointing every key file into the test's directory."""
    return {f"{p.upper()}_KEY_FILE": str(tmp_path / "keys" / f"{p}.env") for p in KEYED_PROVIDERS}


def _key_file(base: dict[str, str], provider: str, text: str) -> None:
    path = Path(base[f"{provider.upper()}_KEY_FILE"])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_defaults(base, directory):
    settings = load_settings(base, directory=directory)

    assert settings.urls == {
        "ollama": "http://localhost:11434",
        "ollama_cloud": "https://ollama.com",
        "openrouter": "https://openrouter.ai/api/v1",
        "opencode": "https://opencode.ai/zen/v1",
        "kimi": "https://api.kimi.com/coding/v1",
    }
    assert settings.api_keys == {}
    assert settings.timeout == 180.0
    assert settings.connect_timeout == 10.0
    assert settings.http_pool_size == 0  # automatic: enough for every worker thread
    assert settings.http_connections == max(64, settings.concurrency * settings.chunk_size)
    assert settings.openrouter_referer == "https://github.com/chatq/chatq"
    assert settings.openrouter_title == "chatq"
    assert settings.redis_url is None
    assert settings.max_attempts == 6
    assert settings.pool == "threads"


def test_values_are_read_from_the_environment(base, directory):
    settings = load_settings(
        {
            **base,
            "CHATQ_TIMEOUT": "2.5",
            "CHATQ_CONNECT_TIMEOUT": "1",
            "OLLAMA_URL": "http://gpu-box:11434/",
            "OPENROUTER_TITLE": "judge",
            "REDIS_URL": "redis://:pw@cache:6379/2",
        },
        directory=directory,
    )

    assert settings.timeout == 2.5
    assert settings.connect_timeout == 1.0
    assert settings.urls["ollama"] == "http://gpu-box:11434"
    assert settings.openrouter_title == "judge"
    assert settings.redis_url == "redis://:pw@cache:6379/2"


def test_settings_cannot_be_changed_once_read(base, directory):
    settings = load_settings(base, directory=directory)

    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.timeout = 1.0


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("CHATQ_TIMEOUT", "soon"),
        ("CHATQ_TIMEOUT", "0"),
        ("CHATQ_TIMEOUT", "-5"),
        ("CHATQ_TIMEOUT", "inf"),
        ("CHATQ_TIMEOUT", "nan"),
        ("CHATQ_CONNECT_TIMEOUT", "ten"),
        ("CHATQ_MAX_ATTEMPTS", "2.5"),
        ("CHATQ_HTTP_POOL_SIZE", "many"),
        ("CHATQ_IN_FLIGHT", "-3"),
        ("CHATQ_IN_FLIGHT", "lots"),
        ("OLLAMA_URL", "localhost:11434"),
        ("OLLAMA_CLOUD_URL", "ollama.com"),
        ("OPENROUTER_URL", "openrouter.ai/api/v1"),
        ("OPENCODE_URL", "ftp://opencode.ai/zen/v1"),
        ("KIMI_URL", "https://"),
        ("REDIS_URL", "localhost:6379"),
        ("CHATQ_POOL", "eventlet"),
        ("CHATQ_METRICS_PORT", "70000"),
        ("CHATQ_METRICS_PORT", "http"),
    ],
)
def test_a_bad_value_raises_a_settings_error_naming_the_variable(base, directory, name, value):
    with pytest.raises(SettingsError) as caught:
        load_settings({**base, name: value}, directory=directory)

    assert str(caught.value).startswith(f"{name}:")
    assert repr(value) in str(caught.value)


def test_the_workers_metrics_endpoint_is_off_unless_a_port_is_given(base, directory):
    assert load_settings(base, directory=directory).metrics_port is None
    settings = load_settings({**base, "CHATQ_METRICS_PORT": "9108"}, directory=directory)
    assert (settings.metrics_port, settings.metrics_address) == (9108, "127.0.0.1")


def test_calls_in_flight_are_uncapped_unless_set_and_size_the_connection_pool(base, directory):
    assert load_settings(base, directory=directory).in_flight is None
    for uncapped in ("unlimited", "0"):
        environ = {**base, "CHATQ_IN_FLIGHT": uncapped}
        assert load_settings(environ, directory=directory).in_flight is None
    environ = {**base, "CHATQ_IN_FLIGHT": "100", "CHATQ_CONCURRENCY": "20"}
    settings = load_settings(environ, directory=directory)
    assert settings.in_flight == 100
    assert settings.http_connections == 100  # not 20 threads x 16 jobs: no more calls
    environ["CHATQ_HTTP_POOL_SIZE"] = "50"
    assert load_settings(environ, directory=directory).http_connections == 50


def test_a_backoff_cap_below_its_base_is_refused(base, directory):
    environ = {**base, "CHATQ_BACKOFF_BASE": "5", "CHATQ_BACKOFF_MAX": "1"}

    with pytest.raises(SettingsError, match="CHATQ_BACKOFF_MAX"):
        load_settings(environ, directory=directory)


def test_an_empty_variable_means_the_default(base, directory):
    assert load_settings({**base, "CHATQ_TIMEOUT": "  "}, directory=directory).timeout == 180.0


def test_a_dotenv_in_the_directory_is_read(base, directory):
    (directory / ".env").write_text("CHATQ_TIMEOUT=42\nOLLAMA_URL=http://from-dotenv:11434\n")

    settings = load_settings(base, directory=directory)

    assert settings.timeout == 42.0
    assert settings.urls["ollama"] == "http://from-dotenv:11434"


def test_the_environment_beats_the_dotenv(base, directory):
    (directory / ".env").write_text("CHATQ_TIMEOUT=42\nCHATQ_MAX_ATTEMPTS=3\n")

    settings = load_settings({**base, "CHATQ_TIMEOUT": "7"}, directory=directory)

    assert settings.timeout == 7.0
    assert settings.max_attempts == 3


def test_a_settings_ini_is_read_when_there_is_no_dotenv(base, directory):
    (directory / "settings.ini").write_text("[settings]\nCHATQ_TIMEOUT=33\n")

    assert load_settings(base, directory=directory).timeout == 33.0


def test_a_bad_value_in_the_dotenv_is_named_too(base, directory):
    (directory / ".env").write_text("CHATQ_TIMEOUT=forever\n")

    with pytest.raises(SettingsError, match="CHATQ_TIMEOUT"):
        load_settings(base, directory=directory)


# -- API keys -----------------------------------------------------------------------


@pytest.mark.parametrize("provider", KEYED_PROVIDERS)
def test_a_key_is_read_from_the_environment(base, directory, provider):
    environ = {**base, f"{provider.upper()}_API_KEY": " env-key-123456 "}

    keys = load_settings(environ, directory=directory).api_keys

    assert keys == {provider: Secret("env-key-123456")}


@pytest.mark.parametrize("provider", KEYED_PROVIDERS)
def test_a_key_is_read_from_the_providers_key_file(base, directory, provider):
    _key_file(base, provider, f"{provider.upper()}_API_KEY=file-key-123456\n")

    keys = load_settings(base, directory=directory).api_keys

    assert keys == {provider: Secret("file-key-123456")}


def test_the_environment_key_wins_over_the_key_file(base, directory):
    _key_file(base, "openrouter", "OPENROUTER_API_KEY=file-key-123456\n")
    environ = {**base, "OPENROUTER_API_KEY": "env-key-123456"}

    keys = load_settings(environ, directory=directory).api_keys

    assert keys["openrouter"].reveal() == "env-key-123456"


def test_a_key_in_the_dotenv_counts_as_set(base, directory):
    (directory / ".env").write_text("KIMI_API_KEY=dotenv-key-123456\n")

    assert load_settings(base, directory=directory).api_keys["kimi"].reveal() == (
        "dotenv-key-123456"
    )


@pytest.mark.parametrize(
    "setup",
    ["nothing", "empty-variable", "blank-key-in-file", "other-providers-key-in-file", "a-folder"],
)
def test_without_a_key_the_provider_has_none(base, directory, tmp_path, setup):
    environ = dict(base)
    if setup == "empty-variable":
        environ["KIMI_API_KEY"] = ""
    elif setup == "blank-key-in-file":
        _key_file(base, "kimi", "KIMI_API_KEY=   \n")
    elif setup == "other-providers-key-in-file":
        _key_file(base, "kimi", "OPENCODE_API_KEY=not-for-kimi-123\n")
    elif setup == "a-folder":
        environ["KIMI_KEY_FILE"] = str(tmp_path)

    assert "kimi" not in load_settings(environ, directory=directory).api_keys


def test_a_key_never_shows_in_the_settings_repr(base, directory):
    environ = {**base, "OPENROUTER_API_KEY": "fake-openrouter-key-hidden-123456"}

    settings = load_settings(environ, directory=directory)

    assert "hidden-123456" not in repr(settings)
    assert "hidden-123456" not in str(settings.api_keys)
    assert settings.api_keys["openrouter"].reveal() == "fake-openrouter-key-hidden-123456"


def test_gevent_is_not_offered_as_a_pool(tmp_path):
    with pytest.raises(SettingsError, match="CHATQ_POOL"):
        load_settings({"CHATQ_POOL": "gevent"}, directory=tmp_path)
