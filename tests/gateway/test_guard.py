"""Bad input over HTTP: each gets a clear answer naming what is wrong, and nothing else
is lost. This module's gateway asks for an API key."""

from __future__ import annotations

import openai
import pytest

GATEWAY_ENV = {"CHATQ_API_KEYS": "key-one, key-two", "CHATQ_MAX_BODY_BYTES": "4096",
               "CHATQ_BODY_TIMEOUT": "2",
               "CHATQ_MAX_FILE_BYTES": "20000"}  # fmt: skip
AUTH = {"Authorization": "Bearer key-two"}
HELLO = {"model": "mock/echo", "messages": [{"role": "user", "content": "hello"}]}


def test_every_route_but_healthz_wants_a_key(gw):
    with gw.client() as http:
        assert http.get("/healthz").status_code == 200
        for method, path in [("POST", "/v1/chat"), ("GET", "/v1/chat/providers"),
                             ("POST", "/v1/chat/completions"), ("GET", "/v1/models"),
                             ("GET", "/v1/files"), ("GET", "/v1/batches"),
                             ("GET", "/metrics")]:  # fmt: skip
            missing = http.request(method, path, json=HELLO)
            wrong = http.request(method, path, json=HELLO, headers={"Authorization": "Bearer no"})
            assert missing.status_code == wrong.status_code == 401, path
        assert http.post("/v1/chat", json=HELLO, headers=AUTH).status_code == 200
    assert "key" in missing.json()["error"]["message"]


def test_the_sdk_with_a_wrong_key_gets_its_authentication_error(gw):
    bad = openai.OpenAI(base_url=f"{gw.url}/v1", api_key="nope", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()
    good = openai.OpenAI(base_url=f"{gw.url}/v1", api_key="key-one", max_retries=0)
    assert good.chat.completions.create(**HELLO).choices[0].message.content == "hello"


def test_malformed_json_and_wrong_content_types(gw):
    with gw.client(headers=AUTH) as http:
        broken = http.post("/v1/chat/completions", content=b'{"model": ',
                           headers={"content-type": "application/json"})  # fmt: skip
        text = http.post("/v1/chat", content=b"hello", headers={"content-type": "text/plain"})
        array = http.post("/v1/chat", json=[1, 2])
        upload = http.post("/v1/files", json={"purpose": "batch"})
    assert broken.status_code == 400 and "JSON" in broken.json()["error"]["message"]
    assert text.status_code == 415 and "text/plain" in text.json()["error"]
    assert array.status_code == 400 and "object" in array.json()["error"]
    assert upload.status_code == 415 and "multipart" in upload.json()["error"]["message"]


def test_an_oversized_body_is_413_and_the_gateway_goes_on(gw):
    big = {**HELLO, "messages": [{"role": "user", "content": "x" * 10_000}]}
    with gw.client(headers=AUTH) as http:
        reply = http.post("/v1/chat/completions", json=big)
        chunked = http.post("/v1/chat", content=iter([b'{"model": "', b"x" * 8000, b'"}']),
                            headers={"content-type": "application/json"})  # fmt: skip
        huge = http.post("/v1/files", data={"purpose": "batch"},
                         files={"file": ("a.jsonl", b"x" * 30_000)})  # fmt: skip
        after = http.post("/v1/chat", json=HELLO)
    assert reply.status_code == 413 and "4,096" in reply.json()["error"]["message"]
    assert chunked.status_code == 413  # no Content-Length: counted as it arrives
    assert huge.status_code == 413
    assert after.status_code == 200


def test_unknown_ids_and_bad_batch_fields(gw):
    with gw.client(headers=AUTH) as http:
        no_file = http.get("/v1/files/file-000000000000000000000000")
        odd_file = http.get("/v1/files/../../etc/passwd")
        no_batch = http.get("/v1/batches/batch_0000")
        cancel = http.post("/v1/batches/batch_0000/cancel")
        create = http.post("/v1/batches", json={"input_file_id": "file-000000000000000000000000",
                                                "endpoint": "/v1/chat/completions",
                                                "completion_window": "24h"})  # fmt: skip
        endpoint = http.post("/v1/batches", json={"input_file_id": "x",
                                                  "endpoint": "/v1/embeddings"})  # fmt: skip
        limit = http.get("/v1/batches", params={"limit": "500"})
        purpose = http.post("/v1/files", data={"purpose": "fine-tune"},
                            files={"file": ("a.jsonl", b"{}\n")})  # fmt: skip
    assert no_file.status_code == 404 and no_file.json()["error"]["code"] == "not_found"
    assert odd_file.status_code == 404
    assert no_batch.status_code == cancel.status_code == create.status_code == 404
    assert endpoint.status_code == 400 and endpoint.json()["error"]["param"] == "endpoint"
    assert limit.status_code == 400 and limit.json()["error"]["param"] == "limit"
    assert purpose.status_code == 400 and purpose.json()["error"]["param"] == "purpose"


def test_a_body_that_stops_arriving_is_408_and_holds_nothing(gw):
    import socket
    import time

    host, port = gw.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as slow:
        slow.sendall(b"POST /v1/chat HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer key-one\r\n"
                     b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{")  # fmt: skip
        started = time.monotonic()
        with gw.client(headers=AUTH) as http:  # others are served meanwhile
            assert http.post("/v1/chat", json=HELLO).status_code == 200
        answer = _read_answer(slow)
    assert b" 408 " in answer.split(b"\r\n")[0] and b"stopped arriving" in answer
    assert 1.5 < time.monotonic() - started < 5


def _read_answer(sock) -> bytes:
    """A whole HTTP answer: its head and the body its Content-Length announces (the
    server may send them in separate writes, so one recv can return the head alone)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)  # fmt: skip
    while len(body) < length:
        chunk = sock.recv(4096)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body
