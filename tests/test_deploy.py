"""The compose file and the Procfile: what they declare, and that every command they
name really runs here (Docker does not run on these machines, so each command line is
started as a process with local settings)."""

from __future__ import annotations

import base64
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import redis
import yaml

from tests.redis_server import free_port
from worker.embedded_redis import find_redis_server

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
PROCFILE = dict(
    line.split(":", 1) for line in (ROOT / "Procfile").read_text().splitlines() if line.strip()
)


def expand(command: str, variables: dict[str, str]) -> list[str]:
    """A compose/shell command line with ${VAR}, ${VAR:-default} and ${VAR:?msg} filled."""

    def value(match: re.Match) -> str:
        name, op, rest = match.group(1), match.group(2), match.group(3)
        if name in variables:
            return variables[name]
        if op == "-":
            return rest
        raise KeyError(f"{name} must be set ({rest})")

    return shlex.split(re.sub(r"\$\{(\w+)(?::([-?])([^}]*))?\}", value, command))


def test_redis_keeps_an_append_only_file_on_a_volume_and_requires_a_password():
    redis_service = SERVICES["redis"]
    assert "--appendonly yes" in redis_service["command"]
    assert "--requirepass ${REDIS_PASSWORD" in redis_service["command"]
    assert any(v.endswith(":/data") for v in redis_service["volumes"])
    assert "redis-data" in COMPOSE["volumes"]


def test_every_chatq_service_reaches_redis_with_the_password_through_redis_url():
    for name in ("worker-cloud", "worker-ollama", "flower"):
        url = SERVICES[name]["environment"]["REDIS_URL"]
        assert url.startswith("redis://:${REDIS_PASSWORD")
        assert url.endswith("@redis:6379/0")


def test_the_cloud_worker_serves_every_cloud_queue_and_the_default_one():
    argv = expand(SERVICES["worker-cloud"]["command"], {})
    queues = argv[argv.index("--queues") + 1].split(",")
    assert set(queues) == {
        "celery", "chat.ollama_cloud", "chat.openrouter", "chat.opencode", "chat.kimi",
        "chat.mock",
    }  # fmt: skip
    assert argv[argv.index("--pool") + 1] == "threads"


def test_the_ollama_worker_matches_ollama_num_parallel():
    argv = expand(SERVICES["worker-ollama"]["command"], {"OLLAMA_NUM_PARALLEL": "4"})
    assert argv[argv.index("--queues") + 1] == "chat.ollama"
    assert argv[argv.index("--concurrency") + 1] == "4"
    assert SERVICES["ollama"]["profiles"] == ["ollama"]


def test_flower_refuses_to_start_without_basic_auth_credentials():
    with pytest.raises(KeyError, match="FLOWER_USER"):
        expand(SERVICES["flower"]["command"], {})
    with pytest.raises(KeyError, match="FLOWER_BASIC_AUTH"):
        expand(PROCFILE["flower"], {})


def test_flower_is_reachable_from_this_host_only_by_default():
    assert SERVICES["flower"]["ports"] == ["127.0.0.1:5555:5555"]
    argv = expand(PROCFILE["flower"], {"FLOWER_BASIC_AUTH": "ops:pw"})
    assert "--address=127.0.0.1" in argv


def test_no_api_key_is_written_in_the_compose_file_or_the_procfile():
    text = (ROOT / "docker-compose.yml").read_text() + (ROOT / "Procfile").read_text()
    assert not re.search(r"API_KEY\s*[:=]", text)


def test_the_compose_redis_command_runs_and_refuses_clients_without_the_password(tmp_path):
    port = free_port()
    argv = expand(SERVICES["redis"]["command"], {"REDIS_PASSWORD": "s3cret-pw"})
    argv[0] = find_redis_server()
    argv += ["--port", str(port), "--bind", "127.0.0.1", "--dir", str(tmp_path)]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for_port(port)
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(port=port).ping()
        assert redis.Redis(port=port, password="s3cret-pw").ping()
    finally:
        proc.terminate()
        proc.wait(10)
    assert (tmp_path / "appendonlydir").exists() or (tmp_path / "appendonly.aof").exists()


@pytest.mark.parametrize(
    ("source", "name"),
    [("compose", "worker-cloud"), ("compose", "worker-ollama"), ("procfile", "worker")],
)
def test_each_worker_command_starts_a_worker_that_answers_a_job(
    source, name, env, producer_for, tmp_path
):
    command = SERVICES[name]["command"] if source == "compose" else PROCFILE[name]
    argv = _local(expand(command, {"OLLAMA_NUM_PARALLEL": "2", "CHATQ_CONCURRENCY": "4"}))
    producer = producer_for(env)
    log = open(tmp_path / "worker.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(argv, env={**os.environ, **env}, stdout=log, stderr=log)
    try:
        model = "ollama/llama3" if name == "worker-ollama" else "mock/echo"
        response = producer.wait(
            producer.enqueue(model, [{"role": "user", "content": "hi"}]), timeout=60
        )
        assert response.content.endswith("hi")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        log.close()
    assert proc.returncode == 0


@pytest.mark.parametrize("source", ["compose", "procfile"])
def test_the_flower_command_serves_the_dashboard_only_behind_basic_auth(source, env, tmp_path):
    port = free_port()
    if source == "compose":
        argv = expand(
            SERVICES["flower"]["command"], {"FLOWER_USER": "ops", "FLOWER_PASSWORD": "pw"}
        )
        argv = [a.replace("--port=5555", f"--port={port}") for a in argv]
        argv = [a.replace("--address=0.0.0.0", "--address=127.0.0.1") for a in argv]
    else:
        argv = expand(PROCFILE["flower"], {"PORT": str(port), "FLOWER_BASIC_AUTH": "ops:pw"})
    argv = _local(argv)
    log = open(tmp_path / "flower.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(argv, env={**os.environ, **env}, stdout=log, stderr=log)
    try:
        _wait_for_port(port, timeout=60)
        url = f"http://127.0.0.1:{port}/api/workers"
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(url, timeout=10)
        assert refused.value.code == 401
        auth = base64.b64encode(b"ops:pw").decode()
        request = urllib.request.Request(url, headers={"Authorization": f"Basic {auth}"})
        with urllib.request.urlopen(request, timeout=30) as answer:
            assert answer.status == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        log.close()


@pytest.mark.parametrize("source", ["compose", "procfile"])
def test_the_web_command_serves_the_gateway(source, env, start_worker, tmp_path):
    start_worker(env)
    port = free_port()
    if source == "compose":
        service = SERVICES["gateway"]
        argv = expand(service["command"], {})
        argv = [a.replace("3220", str(port)).replace("0.0.0.0", "127.0.0.1") for a in argv]
        assert "127.0.0.1:3220:3220" in service["ports"]  # published on loopback only
        assert "CHATQ_API_KEYS" in service["environment"]
    else:
        argv = expand(PROCFILE["web"], {"PORT": str(port)})
    assert argv[:2] == ["chatq", "serve"]
    argv = [sys.executable, "-m", "tasks.cli", *argv[1:]]
    log = open(tmp_path / "gateway.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(argv, env={**os.environ, **env, "CHATQ_API_KEYS": "k1"},
                            stdout=log, stderr=log)  # fmt: skip
    try:
        _wait_for_port(port, timeout=30)
        body = json.dumps({"model": "mock/echo", "messages": [{"role": "user", "content": "hi"}]})
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/chat", data=body.encode(), method="POST",
            headers={"Content-Type": "application/json", "Authorization": "Bearer k1"},
        )  # fmt: skip
        with urllib.request.urlopen(request, timeout=30) as answer:
            assert json.loads(answer.read())["content"] == "hi"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        log.close()
    # uvicorn shuts down in order, then dies of the signal it was sent, as it should
    assert proc.returncode in (0, -signal.SIGTERM)
    assert "Application shutdown complete" in (tmp_path / "gateway.log").read_text()


def _local(argv: list[str]) -> list[str]:
    """Run `celery` as this interpreter's module, as the container's entry point would."""
    assert argv[0] == "celery"
    return [sys.executable, "-m", "celery", *argv[1:]]


def _wait_for_port(port: int, timeout: float = 15.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"nothing listens on port {port}")
