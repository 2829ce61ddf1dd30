"""The benchmark suite still runs: every measurement end to end, at tiny sizes.

Its figures are not checked against the targets (those are met in `python -m bench`
at full size, never in timed tests); what is checked is that each measurement runs
with what the dev extra installs, serves every job it queued, and writes its results.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.__main__ import ORDER, table

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(400)
def test_every_measurement_runs_and_serves_every_job(tmp_path: Path) -> None:
    out = tmp_path / "smoke.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHATQ_")}
    env.pop("REDIS_URL", None)  # the suite starts its own Redis whatever is set
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--out", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=380,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(out.read_text())
    measured = results["measurements"]
    assert list(measured) == list(ORDER)
    assert not [name for name, m in measured.items() if "error" in m]

    def served(run: dict) -> bool:
        return run["states"] == {"SUCCESS": run["jobs"]}

    assert served(measured["overhead"]["chatq"]) and served(measured["overhead"]["baseline"])
    io = measured["io_concurrency"]
    assert io["baseline"]["ok"] == io["baseline"]["jobs"]
    assert all(served(io[k]) for k in ("chatq", "chatq_cold", "stock_celery"))
    rate = measured["rate_limit"]
    assert rate["chatq"]["failed"] == rate["chatq"]["unfinished"] == 0
    assert rate["chatq"]["upstream_calls"] >= 40
    assert measured["enqueue"]["chatq"]["jobs_per_s"] > 0
    assert served(measured["memory"]["chatq"]) and measured["memory"]["chatq"]["peak_rss_mb"] > 0
    batch = measured["batch"]
    assert batch["run_exit"] == 0 and batch["run_peak_rss_mb"] > 0
    # The printed table has a row for every measurement, and no error row.
    printed = table(results)
    assert printed.count("\n") == len(ORDER) + 1 and "error" not in printed


def test_smoke_refuses_to_overwrite_the_results_folder() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke"], cwd=ROOT, capture_output=True, text=True
    )
    assert proc.returncode == 2 and "--smoke needs --out" in proc.stderr
