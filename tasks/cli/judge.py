"""`chatq judge`: bulk LLM-as-judge scoring, and comparing two score files.

    chatq judge IN.jsonl --model M --template T.txt -o OUT.jsonl [--mode score|pairwise]
    chatq judge IN.jsonl --model M --preset mt-bench|arena-hard|prometheus -o OUT.jsonl
    chatq judge compare A.jsonl B.jsonl

Exit codes as `chatq batch run`: 0 when every item got an answer (unparseable answers
are counted, not errors), 4 when some failed, 130 when interrupted (run it again).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from chatq.errors import InvalidRequest
from config import Settings
from tasks.batch.output import write_rows
from tasks.batch.session import follow, owns_fresh_redis, restore_answers, runtime_batches
from tasks.cli.common import EXIT_INVALID, EXIT_OK, EXIT_UPSTREAM, command, fail
from tasks.cli.progress import Progress, cost_text, format_duration
from tasks.judge.formats import PARSERS, SCORED, parse_grades, parse_scale
from tasks.judge.options import DEFAULT_MAX_TOKENS, MODES
from tasks.judge.presets import NAMES, resolve
from tasks.judge.rows import judge_rows
from tasks.judge.run import JudgeSource
from tasks.judge.stats import paired_difference
from tasks.judge.summary import Tally, summary_path
from tasks.judge.template import Template

__all__ = ["add_parser", "print_judge_summary"]


def add_parser(sub: Any) -> None:
    judge = sub.add_parser(
        "judge",
        help="score a JSONL file with an LLM judge (or: judge compare A.jsonl B.jsonl)",
        description="chatq judge IN.jsonl --model M --template T.txt -o OUT.jsonl, or "
        "chatq judge compare A.jsonl B.jsonl (the lift of B over A, paired by custom_id)",
    )
    judge.add_argument(
        "files", nargs="+", metavar="FILE", help="IN.jsonl, or: compare A.jsonl B.jsonl"
    )
    judge.add_argument("--model", help="the judge model, e.g. openrouter/openai/gpt-4o-mini")
    judge.add_argument(
        "--template", type=Path, help="prompt template; {field} is filled from each line"
    )
    judge.add_argument("-o", "--output", type=Path, help="output JSONL (one row per line)")
    judge.add_argument(
        "--preset", choices=NAMES, help="template, scale, max_tokens and parsing of a framework"
    )
    judge.add_argument("--mode", choices=MODES, help="score (default) or pairwise")
    judge.add_argument("--scale", help="score scale LOW-HIGH (default 1-10, or the preset's)")
    judge.add_argument("--system", help="a system message for the judge")
    judge.add_argument(
        "--max-tokens", type=int, dest="max_tokens",
        help=f"per judge answer (default {DEFAULT_MAX_TOKENS}, or the preset's)",
    )  # fmt: skip
    judge.add_argument(
        "--parser", choices=PARSERS,
        help="read answers by one framework's rule only (default auto, or the preset's)",
    )  # fmt: skip
    judge.add_argument(
        "--grades", help="letter grades as numbers, e.g. C=1,P=0.5,I=0 (else a letter is no score)"
    )
    judge.add_argument(
        "--a-field", default="answer_a", dest="a_field", help="field holding answer A (pairwise)"
    )
    judge.add_argument(
        "--b-field", default="answer_b", dest="b_field", help="field holding answer B (pairwise)"
    )
    judge.add_argument(
        "--cache", action="store_true", help="reuse stored answers to identical judge prompts"
    )
    judge.add_argument("--retry-failed", action="store_true", dest="retry_failed")
    judge.add_argument("--batch-id", dest="batch_id", help="default: derived from the inputs")
    judge.add_argument("--json", action="store_true", help="print the summary as JSON")  # fmt: skip


@command("judge")
def _judge(args: argparse.Namespace, settings: Settings) -> int:
    if args.files[0] == "compare":
        return _compare(args)
    if len(args.files) != 1:
        return fail("judge takes one input file (or: judge compare A.jsonl B.jsonl)", EXIT_INVALID)
    missing = [f for f in ("model", "output") if not getattr(args, f)]
    if not (args.template or args.preset):
        missing.append("template")
    if missing:
        return fail("judge needs " + ", ".join(f"--{m}" for m in missing), EXIT_INVALID)
    path = Path(args.files[0])
    if not path.is_file():
        return fail(f"no such file: {path}", EXIT_INVALID)
    try:
        scale = parse_scale(args.scale) if args.scale else None
        grades = parse_grades(args.grades) if args.grades else None
    except ValueError as exc:
        return fail(str(exc), EXIT_INVALID)
    options = resolve(
        model=args.model, preset=args.preset, mode=args.mode,
        template=Template.load(args.template) if args.template else None, system=args.system,
        scale=scale, max_tokens=args.max_tokens, parser=args.parser, grades=grades,
        a_field=args.a_field, b_field=args.b_field,
    )  # fmt: skip
    started = time.monotonic()
    with runtime_batches(settings, workers=True) as batches:
        batches.producer.runtime.registry.resolve(args.model)  # refuse before any work
        source = JudgeSource(path, options, prepare=batches.producer.prepare)
        batch_id = args.batch_id or source.batch_id()
        restore_answers(batches, batch_id)
        try:
            report = batches.submit(batch_id, source, retry_failed=args.retry_failed,
                                    use_cache=args.cache, requeue=owns_fresh_redis(batches),
                                    options={"mode": options.mode})  # fmt: skip
            print(f"chatq: judge {batch_id}: {report.lines:,} requests, {report.enqueued:,} "
                  f"queued, {report.already_done:,} already done, {report.cached:,} cached",
                  file=sys.stderr)  # fmt: skip
            snap = follow(batches, batch_id, source, progress=Progress(batch_id))
        except KeyboardInterrupt:
            return fail(f"interrupted; judge run {batch_id} keeps its results: run the same "
                        "command again to resume", 130)  # fmt: skip
        tally = Tally(options)
        lengths = source.answer_lengths() if options.mode == "pairwise" else None

        def rows():
            for row in judge_rows(batches.results(batch_id), options, lengths=lengths):
                tally.add(row)
                yield row

        write_rows(rows(), args.output)
    summary = {**tally.summary(), "batch_id": batch_id,
               "cost": round(snap.cost, 8), "unpriced": snap.unpriced,
               "cost_text": cost_text(snap),
               "wall_seconds": round(time.monotonic() - started, 3)}  # fmt: skip
    summary_path(args.output).write_text(json.dumps(summary, indent=2) + "\n")
    if args.json:
        print(json.dumps(summary))
    else:
        print_judge_summary(summary, output=args.output)
    return EXIT_UPSTREAM if summary["errors"] else EXIT_OK


def print_judge_summary(s: dict[str, Any], *, output: Path) -> None:
    """The summary a person reads at the end of a judge run."""
    print(f"items        {s['items']:,} (rows in {output}; summary in {summary_path(output)})")
    print(f"scored       {s['scored']:,} · unparseable {s['unparseable']:,} · "
          f"out of range {s['out_of_range']:,} · truncated {s['truncated']:,} · "
          f"errors {s['errors']:,}")  # fmt: skip
    if s["truncated"]:
        print(f"truncated    {s['truncated']:,} answers were cut off at max_tokens "
              f"{s['max_tokens']:,} before their verdict, and are not counted: run again "
              f"with a larger --max-tokens")  # fmt: skip
    if s["mode"] == "score":
        _print_scores(s)
    else:
        _print_pairwise(s)
    print(f"cost         {s['cost_text']}")
    print(f"wall time    {format_duration(s['wall_seconds'])}")


def _print_scores(s: dict[str, Any]) -> None:
    if not s["n"]:
        return
    lo, hi = s["ci95"]
    sd = f"{s['sd']:.3f}" if s["sd"] is not None else "n/a"
    print(f"mean         {s['mean']:.3f}  (95% CI {lo:.3f} to {hi:.3f})")
    print(f"median       {s['median']:g} · sd {sd}")
    peak = max(s["histogram"].values()) or 1
    for level, count in s["histogram"].items():
        print(f"  {level!s:>5} {'#' * round(30 * count / peak):<30} {count:,}")


def _print_pairwise(s: dict[str, Any]) -> None:
    for name in ("win", "loss", "tie"):
        rate, ci = s[f"{name}_rate"], s[f"{name}_ci95"]
        if rate is not None:
            print(f"{name + ' rate':<12} {rate:.3f}  (95% CI {ci[0]:.3f} to {ci[1]:.3f})")
    wins, losses = s["strength"]["wins"], s["strength"]["losses"]
    if any(wins.values()) or any(losses.values()):
        print(f"strength     wins {wins['strong']:,} strong, {wins['weak']:,} weak · "
              f"losses {losses['strong']:,} strong, {losses['weak']:,} weak")  # fmt: skip
    if s["position_consistency"] is not None:
        print(f"consistency  {s['position_consistency']:.3f} (same verdict in both orders)")
    arena = s["arena"]
    if arena["games"]:
        cells = "  ".join(f"{k} {arena[k]:,}" for k in ("A>>B", "A>B", "A=B", "B>A", "B>>A"))
        print(f"games        {arena['games']:,}: {cells}  (A's score {arena['score']:.3f}, "
              f"a strong verdict counted 3 times)")  # fmt: skip
    check = s["length_check"]
    if check["share"] is not None:
        lo, hi = check["ci95"]
        print(f"length check {check['share']:.3f} of {check['wins']:,} wins went to the longer "
              f"answer (95% CI {lo:.3f} to {hi:.3f})")  # fmt: skip


def _compare(args: argparse.Namespace) -> int:
    if len(args.files) != 3:
        return fail("usage: chatq judge compare A.jsonl B.jsonl", EXIT_INVALID)
    first, second = (_scores(Path(f)) for f in args.files[1:])
    result = {"a": args.files[1], "b": args.files[2], **paired_difference(first, second)}
    if args.json:
        print(json.dumps(result))
        return EXIT_OK
    if not result["n"]:
        return fail("no custom_id is scored in both files", EXIT_INVALID)
    lo, hi = result["ci95"]
    print(f"paired items     {result['n']:,} (only in A {result['only_a']:,}, "
          f"only in B {result['only_b']:,})")  # fmt: skip
    print(f"mean A           {result['mean_a']:.3f}")
    print(f"mean B           {result['mean_b']:.3f}")
    print(f"B - A            {result['mean_difference']:+.3f}  (95% CI {lo:+.3f} to {hi:+.3f})")
    return EXIT_OK


def _scores(path: Path) -> dict[str, float]:
    """custom_id → score of every scored row of a judge output file."""
    if not path.is_file():
        raise InvalidRequest(f"no such file: {path}")
    scores = {}
    with open(path, encoding="utf-8") as handle:
        for text in handle:
            if text.strip():
                row = json.loads(text)
                if row.get("status") == SCORED and row.get("score") is not None:
                    scores[str(row["custom_id"])] = float(row["score"])
    return scores
