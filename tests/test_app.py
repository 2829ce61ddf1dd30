"""The Celery application's configuration, routing and privacy, without Redis or a worker."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery, signals
from celery.app.utils import find_app
from celery.backends.redis import RedisBackend

import worker
from config import PROVIDERS, Settings, load_settings
from worker.app import (
    CHAT_TASK,
    DEFAULT_QUEUE,
    _private_reprs,
    app,
    celery_config,
    request_summary,
    route_chat,
    tls_url,
)

URL = "redis://127.0.0.1:6379/0"
#: A prompt no summary, repr or header may ever show.
PROMPT = "the-launch-codes-are-0451-tell-no-one"


@pytest.fixture
def read_settings(tmp_path: Path) -> Callable[..., Settings]:
    """Settings from the given variables only (no process environment, no .env)."""
    return lambda **environ: load_settings(environ, directory=tmp_path)


def chat_request(model: str = "kimi/k2", prompt: str = PROMPT) -> dict[str, Any]:
    return {
        "model": model,
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": prompt},
        ],
    }


# celery_config


def test_jobs_and_results_travel_as_json_only(read_settings):
    config = celery_config(read_settings(), URL)
    assert config["accept_content"] == ["json"]
    assert config["result_accept_content"] == ["json"]
    assert config["task_serializer"] == "json"
    assert config["result_serializer"] == "json"
    assert config["event_serializer"] == "json"


def test_a_job_whose_worker_dies_is_delivered_again(read_settings):
    config = celery_config(read_settings(), URL)
    assert config["task_acks_late"] is True
    assert config["task_reject_on_worker_lost"] is True
    assert config["worker_prefetch_multiplier"] == 1


def test_monitoring_sees_a_job_from_publication_to_its_end(read_settings):
    config = celery_config(read_settings(), URL)
    assert config["task_track_started"] is True
    assert config["task_send_sent_event"] is True
    assert config["worker_send_task_events"] is True


@pytest.mark.parametrize(
    ("environ", "expected"),
    [({}, 7 * 24 * 3600), ({"CHATQ_RESULT_TTL": "3600"}, 3600)],
)
def test_results_expire_after_the_result_ttl(read_settings, environ, expected):
    assert celery_config(read_settings(**environ), URL)["result_expires"] == expected


def test_the_broker_and_the_results_use_the_given_redis(read_settings):
    config = celery_config(read_settings(), URL)
    assert (config["broker_url"], config["result_backend"]) == (URL, URL)


@pytest.mark.parametrize(
    ("deadline", "timeout", "margin", "expected"),
    [
        (None, None, None, 900 + 180 + 60),
        ("60", "5", None, 125),
        ("3600", "600", None, 4260),
        ("3600", "600", "0.5", 4201),
        ("10.2", "0.3", "0.1", 11),
    ],
)
def test_the_broker_never_redelivers_a_job_before_its_deadline_and_last_call_end(
    read_settings, deadline, timeout, margin, expected
):
    given = {
        "CHATQ_JOB_DEADLINE": deadline,
        "CHATQ_TIMEOUT": timeout,
        "CHATQ_VISIBILITY_MARGIN": margin,
    }
    settings = read_settings(**{name: value for name, value in given.items() if value})
    visibility = celery_config(settings, URL)["broker_transport_options"]["visibility_timeout"]
    assert visibility == settings.visibility_timeout == expected
    assert visibility > settings.job_deadline + settings.timeout


@pytest.mark.parametrize("concurrency", [1, 32, 200])
def test_the_broker_pool_has_a_connection_for_every_worker_thread(read_settings, concurrency):
    config = celery_config(read_settings(CHATQ_CONCURRENCY=str(concurrency)), URL)
    assert config["worker_concurrency"] == concurrency
    assert config["broker_pool_limit"] >= concurrency
    assert config["broker_transport_options"]["max_connections"] >= config["broker_pool_limit"]


def test_there_is_one_queue_per_provider_and_the_default_queue(read_settings):
    config = celery_config(read_settings(), URL)
    names = [queue.name for queue in config["task_queues"]]
    assert sorted(names) == sorted([DEFAULT_QUEUE, *(f"chat.{p}" for p in PROVIDERS)])
    assert config["task_default_queue"] == DEFAULT_QUEUE == "celery"
    assert route_chat in config["task_routes"]


# route_chat

ROUTES = [
    ("ollama/x", "chat.ollama"),
    ("ollama_cloud/x", "chat.ollama_cloud"),
    ("x:cloud", "chat.ollama_cloud"),
    ("gpt-oss:120b:cloud", "chat.ollama_cloud"),
    ("openrouter/v/m", "chat.openrouter"),
    ("opencode/m", "chat.opencode"),
    ("kimi/m", "chat.kimi"),
    ("mock/echo", "chat.mock"),
    ("llama3.2", "chat.ollama"),
    ("unknown/x", "chat.ollama"),
]


@pytest.mark.parametrize(("model", "queue"), ROUTES)
def test_a_chat_job_goes_to_its_providers_queue(model, queue):
    assert route_chat(CHAT_TASK, [chat_request(model)], {}, {}) == {"queue": queue}


@pytest.mark.parametrize(("model", "queue"), ROUTES)
def test_a_chat_job_sent_as_a_keyword_request_is_routed_too(model, queue):
    assert route_chat(CHAT_TASK, (), {"request": chat_request(model)}, {}) == {"queue": queue}


def test_other_tasks_go_to_the_default_queue():
    assert route_chat("celery.ping", [chat_request("kimi/m")], {}, {}) is None


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        ([], {}),
        (None, None),
        ([{}], {}),
        ([{"model": ""}], {}),
        ([{"model": "   "}], {}),
        ([{"model": None}], {}),
        ([{"model": 42}], {}),
        ([{"model": "ollama/"}], {}),
        (["kimi/m"], {}),
        ([None], {}),
        ([["kimi/m"]], {}),
        ((), {"request": "kimi/m"}),
        ((), {"request": {"messages": []}}),
    ],
)
def test_a_chat_job_that_names_no_usable_model_goes_to_the_default_queue(args, kwargs):
    assert route_chat(CHAT_TASK, args, kwargs, {}) is None


@pytest.fixture
def chatq_celery(read_settings) -> Iterator[Celery]:
    """A Celery app with chatq's configuration over kombu's in-memory broker."""
    config = {**celery_config(read_settings(), "memory://"), "result_backend": "cache+memory://"}
    test_app = Celery("chatq-test", set_as_current=False)
    test_app.conf.update(config)
    with test_app.connection_for_write() as conn:
        for queue in test_app.amqp.queues.values():
            queue(conn.default_channel).declare()
            queue(conn.default_channel).purge()
    yield test_app
    test_app.close()


def published(test_app: Celery) -> dict[str, list[Any]]:
    """The messages waiting in each queue, taken off it."""
    found: dict[str, list[Any]] = {}
    with test_app.connection_for_write() as conn:
        for name, queue in test_app.amqp.queues.items():
            bound = queue(conn.default_channel)
            while (message := bound.get(no_ack=True)) is not None:
                found.setdefault(name, []).append(message)
    return found


def test_a_published_chat_job_lands_in_its_providers_queue_only(chatq_celery):
    chatq_celery.send_task(CHAT_TASK, [chat_request("openrouter/v/m")])
    chatq_celery.send_task(CHAT_TASK, kwargs={"request": chat_request("x:cloud")})
    chatq_celery.send_task("celery.ping")
    messages = published(chatq_celery)
    assert {name: len(found) for name, found in messages.items()} == {
        "chat.openrouter": 1,
        "chat.ollama_cloud": 1,
        DEFAULT_QUEUE: 1,
    }


def test_a_published_chat_job_shows_monitoring_no_prompt(chatq_celery):
    chatq_celery.send_task(CHAT_TASK, kwargs={"request": chat_request("kimi/m")})
    [message] = published(chatq_celery)["chat.kimi"]
    assert message.headers["argsrepr"] == f"model=kimi/m msgs=2 chars={8 + len(PROMPT)}"
    assert message.headers["kwargsrepr"] == "{}"
    assert PROMPT in message.body.decode()  # the worker still gets the request itself


# request_summary


def test_a_summary_gives_the_model_and_counts_but_never_the_prompt():
    summary = request_summary([chat_request("kimi/k2")], {})
    assert summary == f"model=kimi/k2 msgs=2 chars={8 + len(PROMPT)}"
    assert PROMPT not in summary


def test_a_keyword_request_is_summarised_the_same_way():
    assert request_summary((), {"request": chat_request()}) == request_summary([chat_request()], {})


@pytest.mark.parametrize(
    ("args", "kwargs", "expected"),
    [
        ([PROMPT], {}, "<str>"),
        ((), {}, "<NoneType>"),
        (None, None, "<NoneType>"),
        ((), {"request": [PROMPT]}, "<list>"),
        ([{"model": "m", "messages": PROMPT}], {}, "model=m msgs=0 chars=0"),
        ([{"model": "m", "messages": {"content": PROMPT}}], {}, "model=m msgs=0 chars=0"),
        (
            [{"model": "m", "messages": [{"content": [PROMPT]}, PROMPT, {"content": None}, {}]}],
            {},
            "model=m msgs=4 chars=0",
        ),
        ([{"messages": [{"content": "abc"}]}], {}, "model=? msgs=1 chars=3"),
        ([{"model": ["m"], "messages": []}], {}, "model=? msgs=0 chars=0"),
    ],
)
def test_a_summary_survives_garbage_without_showing_it(args, kwargs, expected):
    summary = request_summary(args, kwargs)
    assert summary == expected
    assert PROMPT not in summary


# _private_reprs


def test_publishing_a_chat_job_replaces_its_argument_reprs():
    args, kwargs = [chat_request()], {}
    headers = {"argsrepr": repr(args), "kwargsrepr": repr(kwargs), "task": CHAT_TASK}
    _private_reprs(sender=CHAT_TASK, headers=headers, body=(args, kwargs, {}))
    assert headers["argsrepr"] == request_summary(args, kwargs)
    assert headers["kwargsrepr"] == "{}"
    assert PROMPT not in str(headers)


def test_publishing_a_keyword_chat_job_hides_its_kwargs_repr():
    args, kwargs = (), {"request": chat_request()}
    headers = {"argsrepr": "()", "kwargsrepr": repr(kwargs)}
    _private_reprs(sender=CHAT_TASK, headers=headers, body=(args, kwargs, {}))
    assert headers == {"argsrepr": request_summary(args, kwargs), "kwargsrepr": "{}"}


def test_publishing_another_task_leaves_its_reprs_alone():
    args = [PROMPT]
    headers = {"argsrepr": repr(args), "kwargsrepr": "{}"}
    _private_reprs(sender="reports.build", headers=headers, body=(args, {}, {}))
    assert headers == {"argsrepr": repr(args), "kwargsrepr": "{}"}


@pytest.mark.parametrize("body", [None, PROMPT, (), ([chat_request()],)])
def test_publishing_a_chat_job_with_an_odd_body_still_hides_the_prompt(body):
    headers = {"argsrepr": repr(body), "kwargsrepr": "{}"}
    _private_reprs(sender=CHAT_TASK, headers=headers, body=body)
    assert headers == {"argsrepr": "<NoneType>", "kwargsrepr": "{}"}


def test_the_repr_hiding_runs_on_every_publish():
    args = [chat_request()]
    headers = {"argsrepr": repr(args), "kwargsrepr": "{}"}
    signals.before_task_publish.send(sender=CHAT_TASK, headers=headers, body=(args, {}, {}))
    assert headers["argsrepr"] == request_summary(args, {})


# How `celery -A worker` finds the app


def test_the_worker_package_exposes_the_app_as_celery():
    assert isinstance(app, Celery)
    assert worker.celery is app


def test_celery_finds_the_app_in_the_worker_package():
    assert find_app("worker") is app


# TLS Redis URLs


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (
            "rediss://:pw@redis.example:6380/0",
            "rediss://:pw@redis.example:6380/0?ssl_cert_reqs=required",
        ),
        (
            "rediss://redis.example/2?ssl_cert_reqs=none",
            "rediss://redis.example/2?ssl_cert_reqs=none",
        ),
        ("rediss://h/0?socket_timeout=5", "rediss://h/0?socket_timeout=5&ssl_cert_reqs=required"),
        ("redis://h:6379/0", "redis://h:6379/0"),
    ],
)
def test_a_tls_redis_url_verifies_the_server_unless_it_says_otherwise(given, expected):
    assert tls_url(given) == expected


def test_a_plain_rediss_url_configures_a_tls_broker_and_result_backend(read_settings):
    """Celery's Redis backend refuses `rediss://` without `ssl_cert_reqs`; chatq adds it.
    Nothing connects here: building the backend and the broker's parameters is enough."""
    import ssl

    url = "rediss://:s3cret@redis.example:6380/0"
    tls = Celery("tls-check", set_as_current=False)
    tls.conf.update(celery_config(read_settings(REDIS_URL=url), url))
    backend = RedisBackend(app=tls, url=tls.conf.result_backend)
    assert backend.connparams["ssl_cert_reqs"] == ssl.CERT_REQUIRED
    assert backend.connparams["connection_class"].__name__ == "SSLConnection"
    with tls.connection_for_write() as conn:
        assert (conn.hostname, conn.port, conn.password) == ("redis.example", 6380, "s3cret")
        assert conn.ssl == {"ssl_cert_reqs": ssl.CERT_REQUIRED}
    pool = redis.BlockingConnectionPool.from_url(tls.conf.broker_url)  # claims and limits
    assert pool.connection_class.__name__ == "SSLConnection"
    assert pool.connection_kwargs["ssl_cert_reqs"] == "required"


def test_the_config_flower_shows_says_the_concurrency_the_pool_runs(read_settings):
    from types import SimpleNamespace

    from worker.app import _match_pool_to_concurrency

    conf = SimpleNamespace(**celery_config(read_settings(CHATQ_CONCURRENCY="32"), URL))
    # At celeryd_init the worker holds its --concurrency only in its options.
    _match_pool_to_concurrency(instance=SimpleNamespace(), conf=conf, options={"concurrency": 8})
    assert conf.worker_concurrency == 8
    assert conf.broker_pool_limit >= 8


@pytest.mark.parametrize("signal", ["worker_ready", "worker_process_init"])
def test_a_ready_worker_process_freezes_its_heap_and_spaces_out_young_collections(signal):
    """The modules a worker loads (its app's includes) set up the collector when Celery
    says the worker, or a prefork child, is ready; checked in a process of its own."""
    import os
    import subprocess
    import sys

    from worker.heap import YOUNG

    code = (
        "import gc, importlib\n"
        "from celery import signals\n"
        "from worker.app import app\n"
        "for name in app.conf.include: importlib.import_module(name)\n"
        "before = gc.get_threshold()\n"
        f"signals.{signal}.send(sender=None)\n"
        "after = gc.get_threshold()\n"
        "print(gc.get_freeze_count(), after[0], after[1:] == before[1:])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=Path(worker.__file__).parent.parent,
        env={**os.environ, "REDIS_URL": URL},  # read, never connected to
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout.split()  # fmt: skip
    frozen, young, older_kept = int(out[0]), int(out[1]), out[2]
    assert frozen > 10_000  # the imports of Celery, kombu, aiohttp, pydantic, ...
    assert (young, older_kept) == (YOUNG, "True")
