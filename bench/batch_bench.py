"""Batch benchmark: enqueue rate of `batch submit` and peak memory of `batch run`.

Loopback only: starts its own embedded Redis in a temporary home. Measures, in one run,
(1) a raw Redis LPUSH pipeline of the same number of messages (the ceiling), (2)
`Batches.submit` of N generated mock/echo lines (parse, validate, index, publish), and
(3) the peak RSS of `chatq batch run` on the same file with local workers answering.

    python bench/batch_bench.py [--lines 100000] [--skip-run]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _write_input(path: Path, lines: int) -> None:
    with open(path, "w") as f:
        for i in range(lines):
            f.write(json.dumps({"custom_id": f"q{i}", "model": "mock/echo", "messages": [
                {"role": "user", "content": f"Summarize item {i} in one sentence, please."}]})
                + "\n")  # fmt: skip


def _baseline(url: str, lines: int) -> float:
    import redis

    client = redis.Redis.from_url(url)
    payload = b"x" * 600  # about a kombu message of one small chat job
    started = time.perf_counter()
    for start in range(0, lines, 1000):
        pipe = client.pipeline(transaction=False)
        for _ in range(min(1000, lines - start)):
            pipe.lpush("bench.baseline", payload)
        pipe.execute()
    seconds = time.perf_counter() - started
    client.delete("bench.baseline")
    return lines / seconds


def _peak_rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def run(*, lines: int = 100_000, skip_run: bool = False) -> dict:
    """Run the benchmark; its figures as a dict."""
    from config import load_settings
    from tasks.batch.service import Batches, FileSource
    from tasks.producer import Producer
    from tasks.runtime import LocalWorkers, Runtime
    from worker.app import configure
    from worker.chat.builder import build_registry
    from worker.embedded_redis import EmbeddedRedis

    out: dict = {"lines": lines}
    with tempfile.TemporaryDirectory(prefix="chatq-batch-bench-") as tmp:
        home = Path(tmp)
        data = home / "in.jsonl"
        _write_input(data, lines)
        server = EmbeddedRedis(home / "home")
        url = server.start()
        try:
            out["baseline_lpush_per_s"] = round(_baseline(url, lines))
            env = {"REDIS_URL": url, "CHATQ_HOME": str(home / "home")}
            settings = load_settings(env, directory=home)
            app = configure(settings, url)
            producer = Producer(Runtime(settings, app, build_registry(settings), url))
            batches = Batches(producer)
            source = FileSource(data, prepare=producer.prepare)
            started = time.perf_counter()
            report = batches.submit("bench-submit", source)
            seconds = time.perf_counter() - started
            out["submit_seconds"] = round(seconds, 2)
            out["submit_jobs_per_s"] = round(report.enqueued / seconds)
            out["submit_vs_baseline"] = round(out["submit_jobs_per_s"] /
                                              out["baseline_lpush_per_s"], 3)  # fmt: skip
            for queue in app.conf.task_queues:
                batches.store.client.delete(queue.name)
            if not skip_run:
                workers = LocalWorkers(url, count=2, concurrency=32, log_dir=home / "logs")
                workers.start()
                try:
                    cmd = [sys.executable, "-m", "tasks.cli", "batch", "run", str(data),
                           "-o", str(home / "out.jsonl"), "--batch-id", "bench-run"]  # fmt: skip
                    base = {k: v for k, v in os.environ.items() if not k.startswith("CHATQ_")}
                    started = time.perf_counter()
                    proc = subprocess.Popen(cmd, env={**base, **env}, stdout=subprocess.DEVNULL,
                                            stderr=subprocess.DEVNULL, cwd=home)  # fmt: skip
                    peak = 0.0
                    while proc.poll() is None:
                        peak = max(peak, _peak_rss_mb(proc.pid))
                        time.sleep(0.2)
                    out["run_seconds"] = round(time.perf_counter() - started, 1)
                    out["run_exit"] = proc.returncode
                    out["run_peak_rss_mb"] = round(peak, 1)
                    out["run_lines_per_s"] = round(lines / out["run_seconds"])
                finally:
                    workers.stop()
        finally:
            server.stop()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument("--skip-run", action="store_true", help="only measure the enqueue")
    args = parser.parse_args()
    print(json.dumps(run(lines=args.lines, skip_run=args.skip_run), indent=2))


if __name__ == "__main__":
    main()
