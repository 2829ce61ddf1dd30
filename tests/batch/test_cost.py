"""What calls cost: the price table, each answer's cost, a batch's total, the dry-run
estimate and --max-cost, through real workers against the fake upstream."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from config import SettingsError, load_settings
from config.prices import DEFAULT_OUTPUT_BOUND, PriceTable, load_prices
from tests.cli.test_chat import chatq
from tests.fake_upstream import Answer
from worker.chat.types import ChatRequest
from worker.limits import estimate_prompt_tokens

PRICES = """
[[price]]
model = "openrouter/acme/*"
input = 2.0
output = 8.0

[[price]]
model = "ollama/*"
input = 0
output = 0
"""


def _prices(tmp_path: Path) -> Path:
    path = tmp_path / "prices.toml"
    path.write_text(PRICES)
    return path


def _lines(path: Path, n: int, model: str = "openrouter/acme/m1", **extra) -> Path:
    with path.open("w") as out:
        for i in range(n):
            out.write(json.dumps({"custom_id": f"c{i}", "model": model, **extra,
                                  "messages": [{"role": "user", "content": f"q {i} " * 20}]})
                      + "\n")  # fmt: skip
    return path


def test_the_first_matching_row_prices_a_model(tmp_path):
    table = load_prices(_prices(tmp_path))
    assert table.cost("openrouter/acme/m1", 1_000_000, 500_000) == 6.0
    assert table.cost("ollama/llama3", 5000, 5000) == 0.0
    assert table.cost("kimi/k2", 10, 10) is None
    as_json = tmp_path / "prices.json"
    as_json.write_text(json.dumps({"price": [{"model": "mock/*", "input": 1, "output": 3}]}))
    assert load_prices(as_json).cost("mock/echo", 1000, 1000) == 0.004


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ('[[price]]\nmodel = "x/*"\ninput = -1\noutput = 1\n', "price row 1: input"),
        ("[[price]]\ninput = 1\noutput = 1\n", "price row 1: needs a model"),
        ('[[price]]\nmodel = "x"\ninput = 1\noutput = 1\nfee = 2\n', "unknown field 'fee'"),
        ("not toml [", "not valid TOML or JSON"),
        ("x = 1\n", "no [[price]] rows"),
    ],
)
def test_a_bad_price_file_is_refused_naming_the_row(tmp_path, text, named):
    path = tmp_path / "prices.toml"
    path.write_text(text)
    with pytest.raises(SettingsError, match="CHATQ_PRICES") as caught:
        load_settings({"CHATQ_PRICES": str(path)}, directory=tmp_path)
    assert named in str(caught.value)
    assert load_settings({}, directory=tmp_path).prices == PriceTable()


def test_a_batch_costs_exactly_the_sum_of_its_answers(env, upstream, start_worker, tmp_path):
    env["CHATQ_PRICES"] = str(_prices(tmp_path))
    start_worker(env)
    # One answer reports its own cost (as OpenRouter does): that figure is kept.
    reported = {"id": "x", "object": "chat.completion", "model": "acme/m1",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"},
                             "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 7, "completion_tokens": 3, "cost": 0.125}}  # fmt: skip
    upstream.push(Answer(kind="json", body=reported))
    source = _lines(tmp_path / "in.jsonl", 12)
    out = tmp_path / "out.jsonl"
    done = chatq("batch", "run", str(source), "-o", str(out), env=env)
    assert done.returncode == 0, done.stderr
    answers = [json.loads(line)["response"] for line in out.read_text().splitlines()]
    expected = sum(a["cost"] for a in answers)
    assert sum(a["cost"] == 0.125 for a in answers) == 1
    for a in answers:
        if a["cost"] != 0.125:
            assert a["cost"] == pytest.approx(
                (a["input_tokens"] * 2 + a["output_tokens"] * 8) / 1e6
            )
    assert f"cost       ${expected:,.4f}" in done.stdout
    batch_id = done.stderr.split("batch ")[1].split(":")[0]
    status = json.loads(chatq("batch", "status", batch_id, "--json", env=env).stdout)
    assert status["cost"] == pytest.approx(expected) and status["unpriced"] == 0


def test_answers_with_no_price_are_counted_apart(env, upstream, start_worker, tmp_path):
    env["CHATQ_PRICES"] = str(_prices(tmp_path))
    start_worker(env)
    done = chatq("batch", "run", str(_lines(tmp_path / "in.jsonl", 3, model="kimi/k2")),
                 "-o", str(tmp_path / "out.jsonl"), env=env)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "cost       unknown (no price for these models" in done.stdout


def test_dry_run_estimates_from_the_file_and_queues_nothing(env, tmp_path):
    env["CHATQ_PRICES"] = str(_prices(tmp_path))
    source = _lines(tmp_path / "in.jsonl", 10, max_tokens=100)
    with source.open("a") as out:
        out.write(
            json.dumps(
                {
                    "custom_id": "k",
                    "model": "kimi/k2",
                    "messages": [{"role": "user", "content": "hello"}],
                }
            )
            + "\n"
        )
        out.write("not json\n")
    done = chatq("batch", "run", str(source), "-o", str(tmp_path / "o.jsonl"), "--dry-run",
                 env={k: v for k, v in env.items() if k != "REDIS_URL"})  # fmt: skip
    assert done.returncode == 0, done.stderr
    requests = [ChatRequest.parse({k: v for k, v in json.loads(line).items() if k != "custom_id"})
                for line in source.read_text().splitlines()[:10]]  # fmt: skip
    prompt = sum(estimate_prompt_tokens(r) for r in requests)
    low, high = prompt * 2 / 1e6, (prompt * 2 + 10 * 100 * 8) / 1e6
    assert "lines      12 (1 bad" in done.stdout
    hello = [{"role": "user", "content": "hello"}]
    kimi = ChatRequest.parse({"model": "kimi/k2", "messages": hello})
    assert f"about {prompt + estimate_prompt_tokens(kimi):,} in" in done.stdout
    assert f"at most {10 * 100 + DEFAULT_OUTPUT_BOUND:,} out" in done.stdout
    assert f"${low:,.4f} to ${high:,.4f} for the 10 priced" in done.stdout
    assert "no price   kimi/k2: 1 line(s)" in done.stdout
    assert "nothing was queued" in done.stdout
    assert not (Path(env["CHATQ_HOME"]) / "redis").exists()  # no Redis was even started


def test_max_cost_queues_what_fits_and_a_higher_limit_queues_the_rest(
    env, upstream, start_worker, tmp_path
):
    env["CHATQ_PRICES"] = str(_prices(tmp_path))
    start_worker(env)
    source = _lines(tmp_path / "in.jsonl", 10, max_tokens=1000)
    worst = (estimate_prompt_tokens(ChatRequest.parse({
        "model": "openrouter/acme/m1", "max_tokens": 1000,
        "messages": [{"role": "user", "content": "q 0 " * 20}]})) * 2 + 1000 * 8) / 1e6  # fmt: skip
    limit = worst * 3.5  # room for three lines at their worst
    out = tmp_path / "out.jsonl"
    first = chatq("batch", "run", str(source), "-o", str(out), "--max-cost", f"{limit}",
                  env=env)  # fmt: skip
    assert first.returncode == 4, first.stderr  # some lines did not run
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    held = [r for r in rows if r["error"] and r["error"]["type"] == "BudgetExceeded"]
    assert len(held) == 7 and sum(r["response"] is not None for r in rows) == 3
    assert "--max-cost" in held[0]["error"]["message"]
    assert "7 held back by --max-cost" in first.stderr
    calls = upstream.calls
    assert calls == 3
    second = chatq("batch", "run", str(source), "-o", str(out), "--max-cost", "10", env=env)
    assert second.returncode == 0, second.stderr
    assert upstream.calls == 10  # the three answered lines were not paid again
    assert all(json.loads(line)["response"] for line in out.read_text().splitlines())
