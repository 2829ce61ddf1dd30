"""Run every benchmark side by side with its baseline, print a table, save the figures.

    python -m bench                 # everything, under 10 minutes on 2 cores
    python -m bench --only overhead enqueue
    python -m bench --smoke --out smoke.json   # every measurement at tiny sizes (a check)

Each figure is compared with a baseline measured in the same run, on the same private
Redis and fake upstream, because these machines are shared and noisy. The results go
to bench/results/<date>.json. The exit status is 1 when a measurement could not run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import tempfile
import time
import traceback
from pathlib import Path

import celery
import kombu

from bench import measurements
from bench.harness import Harness

RESULTS = Path(__file__).resolve().parent / "results"
ORDER = (
    "overhead", "io_concurrency", "scale", "rate_limit", "enqueue", "memory", "batch",
    "gateway",
)  # fmt: skip
#: Sizes for `--smoke`: every measurement runs end to end in seconds. Its figures say
#: nothing about speed; it shows that the suite still runs (used by the tests).
SMOKE = {
    "overhead": {"jobs": 60},
    "io_concurrency": {"jobs": 60, "concurrency": 20, "delay": 0.05},
    "scale": {"jobs": 200, "concurrency": 100, "delay": 0.1, "chunk": 20},
    "rate_limit": {"jobs": 40, "limit": 40},
    "enqueue": {"jobs": 500},
    "memory": {"jobs": 60},
    "batch": {"lines": 200},
    "gateway": {"requests": 100, "clients": 8},
}


def _batch(harness: Harness, workdir: Path, **sizes: int) -> dict:
    from bench import batch_bench  # the batch benchmark (batch submit and batch run)

    figures = batch_bench.run(**sizes)
    figures["target"] = "submit >= 5,000 jobs/s; batch run < 300 MB"
    figures["met"] = (
        figures["submit_jobs_per_s"] >= 5000
        and figures.get("run_exit") == 0
        and figures.get("run_peak_rss_mb", 0) < 300
    )
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", choices=ORDER, help="run only these")
    parser.add_argument("--out", type=Path, default=None, help="where to write the JSON")
    parser.add_argument(
        "--smoke", action="store_true", help="tiny sizes: check that every measurement runs"
    )
    args = parser.parse_args(argv)
    if args.smoke and args.out is None:
        parser.error("--smoke needs --out: its figures are not results")
    chosen = args.only or list(ORDER)
    started = time.perf_counter()
    results: dict = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(), "celery": celery.__version__,
            "kombu": kombu.__version__,
        },
        "measurements": {},
    }  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="chatq-bench-") as tmp, Harness(Path(tmp)) as harness:
        for name in ORDER:
            if name not in chosen:
                continue
            print(f"… {name}", file=sys.stderr, flush=True)
            step = time.perf_counter()
            sizes = SMOKE[name] if args.smoke else {}
            try:
                if name == "batch":
                    figures = _batch(harness, Path(tmp), **sizes)
                elif name == "gateway":
                    from bench.gateway_bench import gateway

                    figures = gateway(harness, Path(tmp), **sizes)
                else:
                    figures = getattr(measurements, name)(harness, Path(tmp), **sizes)
            except Exception as exc:  # one broken measurement must not hide the others
                traceback.print_exc()
                figures = {"error": f"{type(exc).__name__}: {exc}", "met": False}
            figures["wall_seconds"] = round(time.perf_counter() - step, 1)
            results["measurements"][name] = figures
    results["total_seconds"] = round(time.perf_counter() - started, 1)
    print(table(results))
    out = args.out or RESULTS / f"{dt.date.today().isoformat()}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwritten to {out}", file=sys.stderr)
    broken = [n for n, m in results["measurements"].items() if "error" in m]
    if broken:
        print(f"could not run: {', '.join(broken)}", file=sys.stderr)
    return 1 if broken else 0


def table(results: dict) -> str:
    """A Markdown table of the run: one row per measurement."""
    rows = [
        "| measurement | chatq | baseline (same run) | ratio | target | met |",
        "|---|---|---|---|---|---|",
    ]
    for name, m in results["measurements"].items():
        if "error" in m:
            rows.append(f"| {name} | error: {m['error']} | | | | no |")
            continue
        rows.append("| " + " | ".join(_row(name, m)) + " |")
    return "\n".join(rows)


def _row(name: str, m: dict) -> list[str]:
    met = "yes" if m.get("met") else "**no**"
    if name == "overhead":
        return [name, f"{m['chatq']['jobs_per_s']} jobs/s", f"{m['baseline']['jobs_per_s']} jobs/s"
                " (bare Celery task)", str(m["ratio"]), m["target"], met]  # fmt: skip
    if name == "io_concurrency":
        return [name, f"{m['chatq']['jobs_per_s']} jobs/s (limit configured); "
                f"{m['chatq_cold']['jobs_per_s']} jobs/s cold ({m['cold_ratio']})",
                f"asyncio {m['baseline']['jobs_per_s']} jobs/s; stock Celery "
                f"{m['stock_celery']['jobs_per_s']} jobs/s ({m['stock_ratio']})",
                str(m["ratio"]), m["target"], met]  # fmt: skip
    if name == "scale":
        c = m["chatq"]
        return [f"scale ({c['jobs']:,} calls, {m['in_flight']:,} in flight)",
                f"{c['jobs_per_s']} jobs/s; peak RSS {c['peak_rss_mb']} MB; worker CPU "
                f"{c['worker_cpu_ms_per_job']} ms/job", f"asyncio {m['baseline']['jobs_per_s']} "
                f"jobs/s; its CPU {m['baseline']['cpu_ms_per_call']} ms/call", str(m["ratio"]),
                m["target"], met]  # fmt: skip
    if name == "rate_limit":
        c, b = m["chatq"], m["baseline"]
        return [name, f"{c['seconds']} s, 429s {c['share_429']:.1%}, {_failed(c)}",
                f"autoretry: {b['seconds']} s, 429s {b['share_429']:.1%}, {_failed(b)}",
                f"{c['vs_ideal']} x ideal", m["target"], met]  # fmt: skip
    if name == "enqueue":
        return [name, f"{m['chatq']['jobs_per_s']:,} jobs/s",
                f"raw LPUSH {m['baseline']['jobs_per_s']:,} jobs/s", str(m["ratio"]),
                m["target"], met]  # fmt: skip
    if name == "batch":
        return [f"batch ({m['lines']:,} lines)",
                f"submit {m['submit_jobs_per_s']:,} jobs/s; batch run peak RSS "
                f"{m.get('run_peak_rss_mb')} MB, {m.get('run_seconds')} s",
                f"raw LPUSH {m['baseline_lpush_per_s']:,} jobs/s", str(m["submit_vs_baseline"]),
                m["target"], met]  # fmt: skip
    if name == "gateway":
        c, b = m["chatq"], m["baseline"]
        return [f"gateway ({m['clients']} clients)",
                f"{c['requests_per_s']} req/s, p50 {c['p50_ms']} ms, p99 {c['p99_ms']} ms",
                f"enqueue + wait: {b['requests_per_s']} req/s, p50 {b['p50_ms']} ms, "
                f"p99 {b['p99_ms']} ms", str(m["ratio"]), m["target"], met]  # fmt: skip
    if name == "memory":
        c = m["chatq"]
        return [name, f"peak worker RSS {c['peak_rss_mb']} MB at concurrency {m['concurrency']}"
                f" x chunk {m['chunk_size']} ({c['jobs_per_s']} jobs/s)", "none", "", "stated",
                "yes" if m.get("met") else "**no**"]  # fmt: skip
    return [name, json.dumps({k: v for k, v in m.items() if k != "met"})[:200], "", "", "", met]


def _failed(run: dict) -> str:
    unfinished = run.get("unfinished", 0)
    return f"failed {run['failed']}" + (f", unfinished {unfinished}" if unfinished else "")


if __name__ == "__main__":
    sys.exit(main())
