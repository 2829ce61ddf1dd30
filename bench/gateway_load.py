"""The gateway under load and abuse: `python -m bench.gateway_load [--seconds 60]`.

A private Redis, a fake upstream answering in 200 ms in its own process, two standing
workers and `chatq serve`, all on loopback. Four phases, each checked:

1. load: 500 concurrent clients send `POST /v1/chat/completions` for a minute; half-way
   one worker process is SIGKILLed (and a new one started, as a supervisor would).
   Every request must get an HTTP answer, 200 or an error in OpenAI's envelope with a
   clear status; none may hang.
2. slow senders: 100 clients send part of a body and stop; each must get 408 after
   CHATQ_BODY_TIMEOUT while other clients are served meanwhile.
3. huge uploads: a 1 GB upload announced by Content-Length is refused at once, and a
   1 GB chunked upload is refused at the file limit; the gateway's memory stays flat.
4. batches: a 50,000-line batch created over HTTP runs to `completed` with every line in
   its output file, while another batch is cancelled mid-run and ends `cancelled`.

Prints the figures as JSON (and writes them with --out); exits 1 when a check fails.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import socket
import sys
import tempfile
import time
from pathlib import Path

import psutil
import requests

from bench.harness import Harness
from bench.harness import gateway as serve

KEY = "load-openrouter-key-0123456789"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gateway_load", description=__doc__)
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the load phase")
    parser.add_argument("--clients", type=int, default=500)
    parser.add_argument("--lines", type=int, default=50_000, help="lines of the big batch")
    parser.add_argument("--out", type=Path, help="write the figures here as JSON")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="chatq-load-") as tmp:
        figures = run(Path(tmp), args.seconds, args.clients, args.lines)
    text = json.dumps(figures, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0 if figures["passed"] else 1


def run(workdir: Path, seconds: float, clients: int, lines: int) -> dict:
    figures: dict = {}
    with Harness(workdir) as harness, harness.upstream(delay=0.2) as upstream:
        url = harness.fresh_db()
        env = {
            "REDIS_URL": url, "CHATQ_HOME": str(workdir / "home"),
            "OPENROUTER_API_KEY": KEY, "OPENROUTER_URL": upstream + "/v1",
            "CHATQ_CONCURRENCY": "32", "CHATQ_BODY_TIMEOUT": "5",
            "CHATQ_MAX_FILE_BYTES": str(64 << 20),
        }  # fmt: skip
        pools = [harness.workers("worker", url, concurrency=32, env=env) for _ in range(2)]
        for pool in pools:
            pool.wait_ready()

        def kill_one() -> None:
            for proc in pools[0].procs:
                proc.send_signal(signal.SIGKILL)
            pools.append(harness.workers("worker", url, concurrency=32, env=env))

        try:
            with serve(env, workdir / "gateway.log") as (base, pid):
                before = harness.upstream_stats(upstream)["calls"]
                load = asyncio.run(_load(base, seconds, clients, kill_one))
                load["upstream_calls"] = harness.upstream_stats(upstream)["calls"] - before
                figures["load"] = load
                figures["slow_senders"] = asyncio.run(_slow_senders(base, 100, timeout=5))
                figures["huge_uploads"] = _huge_uploads(base, pid)
                figures["batches"] = _batches(base, workdir, lines)
        finally:
            for pool in pools:
                pool.stop()
    figures["passed"] = all(part.get("passed") for part in figures.values())
    return figures


async def _load(base: str, seconds: float, clients: int, kill) -> dict:
    import aiohttp

    body = {"model": "openrouter/acme/m1", "messages": [{"role": "user", "content": "hi"}]}
    statuses: dict[str, int] = {}
    latencies: list[float] = []
    unclear: list[str] = []
    end = time.monotonic() + seconds
    timeout = aiohttp.ClientTimeout(total=180)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                     timeout=timeout) as session:  # fmt: skip

        async def client() -> None:
            while time.monotonic() < end:
                started = time.monotonic()
                try:
                    async with session.post(f"{base}/v1/chat/completions", json=body) as answer:
                        data = await answer.json(content_type=None)
                        key = str(answer.status)
                        if answer.status != 200 and not data.get("error", {}).get("message"):
                            unclear.append(f"{answer.status}: {str(data)[:100]}")
                except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
                    key = type(exc).__name__
                statuses[key] = statuses.get(key, 0) + 1
                latencies.append(time.monotonic() - started)

        async def killer() -> None:
            await asyncio.sleep(seconds / 2)
            await asyncio.get_running_loop().run_in_executor(None, kill)

        began = time.monotonic()
        await asyncio.gather(killer(), *(client() for _ in range(clients)))
        wall = time.monotonic() - began
    latencies.sort()
    answered = sum(n for k, n in statuses.items() if k.isdigit())
    total = sum(statuses.values())
    return {
        "clients": clients, "seconds": round(wall, 1), "requests": total,
        "statuses": statuses, "ok_per_s": round(statuses.get("200", 0) / wall, 1),
        "p50_ms": round(latencies[len(latencies) // 2] * 1000),
        "p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1000),
        "max_s": round(latencies[-1], 1), "unclear": unclear[:5],
        "passed": answered == total and not unclear,
    }  # fmt: skip


async def _slow_senders(base: str, count: int, *, timeout: float) -> dict:
    host, port = base.removeprefix("http://").split(":")
    head = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
            b"\r\nContent-Length: 1000\r\n\r\n{\"model\": ")  # fmt: skip

    async def slow() -> tuple[bytes, float]:
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(head)
        await writer.drain()
        started = time.monotonic()
        line = await asyncio.wait_for(reader.readline(), timeout * 4)
        writer.close()
        return line, time.monotonic() - started

    async def normal() -> int:
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"GET /v1/models HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        line = await reader.readline()
        writer.close()
        return int(line.split()[1])

    slow_tasks = [asyncio.ensure_future(slow()) for _ in range(count)]
    await asyncio.sleep(0.5)
    served = await asyncio.gather(*(normal() for _ in range(20)))
    answers = await asyncio.gather(*slow_tasks)
    refused = sum(b" 408 " in line for line, _ in answers)
    waited = max(t for _, t in answers)
    return {
        "slow_clients": count, "answered_408": refused, "longest_wait_s": round(waited, 1),
        "others_served_meanwhile": served.count(200),
        "passed": refused == count and waited < timeout + 3 and served.count(200) == 20,
    }  # fmt: skip


def _huge_uploads(base: str, pid: int) -> dict:
    host, port = base.removeprefix("http://").split(":")
    rss = psutil.Process(pid).memory_info().rss / 1e6
    boundary = "chatqload"
    part = "Content-Disposition: form-data; name="
    preamble = (f'--{boundary}\r\n{part}"purpose"\r\n\r\nbatch\r\n--{boundary}\r\n'
                f'{part}"file"; filename="big.jsonl"\r\n\r\n').encode()  # fmt: skip
    head = (b"POST /v1/files HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; "
            b"boundary=" + boundary.encode() + b"\r\n")  # fmt: skip
    figures = {"rss_before_mb": round(rss, 1)}
    # Announced: refused from its headers, before a byte of the body is read.
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        started = time.monotonic()
        sock.sendall(head + b"Content-Length: 1073741824\r\n\r\n" + preamble)
        status = sock.recv(4096).split(b"\r\n")[0]
        took = round(time.monotonic() - started, 2)
        figures["announced"] = {"status": status.decode(), "seconds": took}
    # Chunked, no length: read until the file limit, then refused.
    sent = 0
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(head + b"Transfer-Encoding: chunked\r\n\r\n")
        block = b'{"custom_id": "x", "body": {}}\n' * 32768  # 1 MB
        status = b""
        try:
            sock.sendall(b"%x\r\n%s\r\n" % (len(preamble), preamble))
            while sent < (1 << 30):
                sock.sendall(b"%x\r\n%s\r\n" % (len(block), block))
                sent += len(block)
                sock.setblocking(False)
                try:
                    status = sock.recv(4096)
                except BlockingIOError:
                    status = b""
                sock.setblocking(True)
                if status:
                    break
        except OSError:  # the gateway answered and closed while we were still sending
            pass
        if not status:
            sock.settimeout(10)
            try:
                status = sock.recv(4096)
            except OSError:
                status = b""
    figures["chunked"] = {"status": status.split(b"\r\n")[0].decode(),
                          "sent_mb": round(sent / 1e6)}  # fmt: skip
    after = psutil.Process(pid).memory_info().rss / 1e6
    figures["rss_after_mb"] = round(after, 1)
    figures["passed"] = (" 413 " in figures["announced"]["status"]
                         and " 413 " in figures["chunked"]["status"]
                         and figures["chunked"]["sent_mb"] < 200 and after - rss < 50)  # fmt: skip
    return figures


def _batches(base: str, workdir: Path, lines: int) -> dict:
    big = workdir / "big.jsonl"
    with big.open("w") as out:
        for i in range(lines):
            body = {"model": "mock/echo", "messages": [{"role": "user", "content": f"q{i}"}]}
            out.write(json.dumps({"custom_id": f"b{i}", "method": "POST",
                                  "url": "/v1/chat/completions", "body": body}) + "\n")  # fmt: skip
    slow = workdir / "slow.jsonl"
    with slow.open("w") as out:
        for i in range(3000):
            body = {"model": "openrouter/acme/m1", "messages": [{"role": "user", "content": "s"}]}
            out.write(json.dumps({"custom_id": f"s{i}", "body": body}) + "\n")
    http = requests.Session()

    def create(path: Path) -> dict:
        with path.open("rb") as handle:
            uploaded = http.post(f"{base}/v1/files", files={"file": handle},
                                 data={"purpose": "batch"}, timeout=120).json()  # fmt: skip
        return http.post(f"{base}/v1/batches", json={"input_file_id": uploaded["id"],
                         "endpoint": "/v1/chat/completions", "completion_window": "24h"},
                         timeout=60).json()  # fmt: skip

    def until(batch_id: str, states: tuple[str, ...], timeout: float = 900) -> dict:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            doc = http.get(f"{base}/v1/batches/{batch_id}", timeout=60).json()
            if doc["status"] in states:
                return doc
            time.sleep(1)
        raise RuntimeError(f"batch {batch_id} stayed {doc['status']}")

    started = time.monotonic()
    big_doc = create(big)
    slow_doc = create(slow)
    until(slow_doc["id"], ("in_progress",))
    time.sleep(3)
    http.post(f"{base}/v1/batches/{slow_doc['id']}/cancel", timeout=60)
    cancelled = until(slow_doc["id"], ("cancelled",), timeout=300)
    done = until(big_doc["id"], ("completed", "failed"))
    seconds = time.monotonic() - started
    ids = set()
    count = 0
    with http.get(f"{base}/v1/files/{done['output_file_id']}/content", stream=True,
                  timeout=120) as answer:  # fmt: skip
        for line in answer.iter_lines():
            if line:
                count += 1
                ids.add(json.loads(line)["custom_id"])
    counts = cancelled["request_counts"]
    return {
        "big": {"lines": lines, "status": done["status"], "counts": done["request_counts"],
                "output_lines": count, "unique_ids": len(ids), "seconds": round(seconds, 1)},
        "cancelled": {"status": cancelled["status"], "counts": counts},
        "passed": done["status"] == "completed" and count == len(ids) == lines
        and cancelled["status"] == "cancelled" and counts["completed"] < counts["total"],
    }  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
