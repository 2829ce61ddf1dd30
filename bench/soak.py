"""A long run with faults and nobody following: `python -m bench.soak [--minutes 30]`.

A private Redis (append-only file, `appendfsync everysec`), a fake upstream with random
faults in its own process, and two standing workers. Every 20 s a 200-line batch is
sent with `chatq batch submit`, and nothing follows it. Every two minutes one fault,
in turn: a worker SIGKILLed (and replaced), Redis SIGKILLed and restarted, Redis
frozen for 15 s. Every 10 s the run samples the workers' memory, threads and open
files, Redis's memory and its connected clients.

Results, batch records and the journal expire after 5 minutes here (CHATQ_RESULT_TTL),
so that Redis's memory reaches a steady state a leak would show against. Each batch is
checked the moment it is marked done: every line's result is read (succeeded, or failed
with a chatq error). At the end (submitting stops, the fleet gets five minutes to
finish) the run checks: every batch done with every line ended; no chatq key left
without a TTL; and each sample series flat (the median of the last third of the run no
more than 25% above the highest sample of the middle third, plus a small absolute
slack: connection pools refill once after a Redis restart, a leak keeps climbing). It
prints the figures as JSON (and writes them with --out) and exits 1 when a check
fails. Loopback only.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import redis

from bench.harness import ROOT, Harness, Workers
from tests.redis_server import RedisServer

CHAOS = {"429": 0.05, "500": 0.03, "timeout": 0.01, "garbage": 0.005}
BATCH_LINES = 200
SUBMIT_EVERY = 20.0
FAULT_EVERY = 120.0
SAMPLE_EVERY = 10.0
FAULTS = ("kill a worker", "kill Redis", "freeze Redis")
#: (relative, absolute) slack of a flat series, by sample.
FLAT = {"worker_rss_mb": (0.25, 10.0), "worker_threads": (0.25, 8), "worker_fds": (0.25, 16),
        "redis_memory_mb": (0.25, 8.0), "redis_clients": (0.25, 8)}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--out", type=Path, help="write the figures here as JSON")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="chatq-soak-") as tmp:
        figures = _soak(Path(tmp), args.minutes * 60)
    text = json.dumps(figures, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0 if figures["passed"] else 1


def _soak(workdir: Path, seconds: float) -> dict:
    server = RedisServer(workdir / "redis").start()
    url = server.url
    upstream = subprocess.Popen(
        [sys.executable, "-m", "tests.fake_upstream", "--delay", "0.5",
         "--chaos", json.dumps(CHAOS), "--seed", "3"],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    upstream_url = upstream.stdout.readline().strip()
    env = {
        "REDIS_URL": url, "CHATQ_HOME": str(workdir / "home"),
        "OPENROUTER_API_KEY": "soak-openrouter-key-0123456789",
        "OPENROUTER_URL": upstream_url + "/openrouter/v1",
        "CHATQ_TIMEOUT": "5", "CHATQ_BACKOFF_BASE": "0.1", "CHATQ_BACKOFF_MAX": "1",
        "CHATQ_CONCURRENCY": "16", "CHATQ_CHUNK_SIZE": "8", "CHATQ_RESULT_TTL": "300",
    }  # fmt: skip
    harness = Harness(workdir)
    workers = [harness.workers("worker", url, concurrency=16, env=env) for _ in range(2)]
    for pool in workers:
        pool.wait_ready()
    batches: list[str] = []
    checked: dict[str, dict] = {}
    samples: list[dict] = []
    faults: list[dict] = []
    began = time.monotonic()
    next_submit = next_fault = next_sample = began
    fault_no = 0
    try:
        while time.monotonic() - began < seconds:
            now = time.monotonic()
            if now >= next_submit:
                batches.append(_submit(workdir, env, len(batches)))
                next_submit += SUBMIT_EVERY
            if now >= next_fault and now > began + 30:
                kind = FAULTS[fault_no % len(FAULTS)]
                fault_no += 1
                workers = _inject(kind, server, workers, harness, url, env)
                faults.append({"at_s": round(now - began), "fault": kind})
                next_fault = now + FAULT_EVERY
            if now >= next_sample:
                samples.append(_sample(workers, url, round(now - began)))
                next_sample += SAMPLE_EVERY
                _check_done(url, batches, checked)
            time.sleep(0.5)
        end = time.monotonic() + 300
        while len(checked) < len(batches) and time.monotonic() < end:
            _check_done(url, batches, checked)
            time.sleep(2)
        finish = _summary(batches, checked)
        ttl = _keys_without_ttl(url)
    finally:
        for pool in workers:
            pool.stop()
        upstream.terminate()
        upstream.wait(10)
        server.stop()
    flat = {name: _flatness(samples, name, *slack) for name, slack in FLAT.items()}
    passed = (finish["lines_unended"] == 0 and finish["batches_not_done"] == 0
              and not ttl["chatq"] and all(f["flat"] for f in flat.values()))  # fmt: skip
    return {
        "minutes": round(seconds / 60, 1), "batches": len(batches),
        "lines": len(batches) * BATCH_LINES, **finish, "faults": faults,
        "keys_without_ttl": ttl, "flat": flat, "samples": samples, "passed": passed,
    }  # fmt: skip


def _submit(workdir: Path, env: dict, number: int) -> str:
    path = workdir / f"batch-{number}.jsonl"
    with open(path, "w") as handle:
        for i in range(BATCH_LINES):
            prompt = [{"role": "user", "content": f"soak {number} line {i}"}]
            row = {"custom_id": f"b{number}-{i}", "model": "openrouter/soak/m", "messages": prompt}
            handle.write(json.dumps(row) + "\n")
    for _attempt in range(30):  # Redis may be down for a fault: try again
        done = subprocess.run(
            [sys.executable, "-m", "tasks.cli", "batch", "submit", str(path)],
            env={**os.environ, **env}, cwd=ROOT, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        if done.returncode == 0:
            return done.stdout.strip().splitlines()[-1]
        time.sleep(2)
    raise RuntimeError(f"could not submit a batch: {done.stderr.strip()}")


def _inject(kind: str, server: RedisServer, workers: list[Workers], harness: Harness,
            url: str, env: dict) -> list[Workers]:  # fmt: skip
    if kind == "kill a worker":
        doomed = workers.pop(0)
        for proc in doomed.procs:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        fresh = harness.workers("worker", url, concurrency=16, env=env)
        fresh.wait_ready()
        workers.append(fresh)
    elif kind == "kill Redis":
        server.restart(after=2.0)
    else:
        server.freeze()
        time.sleep(15)
        server.thaw()
    return workers


def _sample(workers: list[Workers], url: str, at: int) -> dict:
    rss = threads = fds = 0.0
    for pool in workers:
        rss += pool.rss_mb()
        for proc in pool.procs:
            with contextlib.suppress(psutil.Error):
                process = psutil.Process(proc.pid)
                threads += process.num_threads()
                fds += process.num_fds()
    memory = clients = None
    with contextlib.suppress(redis.RedisError):
        client = redis.Redis.from_url(url, socket_timeout=3)
        info = client.info()
        memory, clients = info["used_memory"] / 1e6, info["connected_clients"]
        client.close()
    return {"at_s": at, "worker_rss_mb": round(rss, 1), "worker_threads": threads,
            "worker_fds": fds, "redis_memory_mb": memory and round(memory, 2),
            "redis_clients": clients}  # fmt: skip


def _check_done(url: str, batches: list[str], checked: dict[str, dict]) -> None:
    """Read every line of each batch newly marked done (before its keys expire)."""
    with contextlib.suppress(redis.RedisError):
        client = redis.Redis.from_url(url, socket_timeout=10)
        for batch_id in batches:
            if batch_id in checked or client.hget(f"chatq:batch:{batch_id}", "state") != b"done":
                continue
            lines = [json.loads(r) for r in client.lrange(f"chatq:batch:{batch_id}:lines", 0, -1)]
            ids = [f"celery-task-meta-{e['t']}" for e in lines if "t" in e]
            states = [json.loads(m).get("status") if m else None for m in client.mget(ids)]
            checked[batch_id] = {
                "lines": len(lines),
                "unended": sum(1 for s in states if s not in ("SUCCESS", "FAILURE")),
                "failed": states.count("FAILURE"),
            }
        client.close()


def _summary(batches: list[str], checked: dict[str, dict]) -> dict:
    seen = list(checked.values())
    return {"batches_not_done": len(batches) - len(checked),
            "lines_checked": sum(c["lines"] for c in seen),
            "lines_unended": sum(c["unended"] for c in seen) + sum(
                BATCH_LINES for b in batches if b not in checked),
            "lines_failed": sum(c["failed"] for c in seen)}  # fmt: skip


def _keys_without_ttl(url: str) -> dict:
    """Keys that never expire, by prefix: chatq's own must have none (kombu's queues
    and bindings are its own and live while they are used)."""
    client = redis.Redis.from_url(url, socket_timeout=10)
    found: dict[str, list[str]] = {"chatq": [], "other": []}
    for key in client.scan_iter(count=1000):
        if client.ttl(key) == -1:
            name = key.decode()
            mine = name.startswith(("chatq:", "celery-task-meta-"))
            found["chatq" if mine else "other"].append(name)
    found["other"] = sorted(found["other"])[:20]
    return found


def _flatness(samples: list[dict], name: str, relative: float, absolute: float) -> dict:
    series = [s[name] for s in samples if s.get(name) is not None]
    third = max(1, len(series) // 3)
    middle = max(series[third : 2 * third] or series)
    last = statistics.median(series[-third:])
    return {"middle_third_max": middle, "last_third_median": last,
            "flat": last <= middle * (1 + relative) + absolute}  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
