"""`chatq batch ...`: run, submit, watch, read, cancel and list batches.

    chatq batch run IN.jsonl -o OUT.jsonl [--model M] [--cache] [--retry-failed]
    chatq batch submit IN.jsonl            → prints the batch id
    chatq batch status ID | results ID -o OUT [--partial] | cancel ID | list

`batch run` exits 0 when every line succeeded, 4 when some failed (OUT is complete
either way), 2 when --strict refused the file, 130 when interrupted (run it again to
resume).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from config import Settings
from config.prices import DEFAULT_OUTPUT_BOUND
from tasks.batch.cancel import cancel_batch
from tasks.batch.estimate import estimate_lines
from tasks.batch.output import FORMATS, write_results
from tasks.batch.service import Batches, FileSource, SubmitReport, default_batch_id
from tasks.batch.session import follow, owns_fresh_redis, restore_answers, runtime_batches
from tasks.batch.snapshot import Snapshot
from tasks.batch.store import BatchRecord
from tasks.cli.common import EXIT_INVALID, EXIT_OK, EXIT_UPSTREAM, command, fail
from tasks.cli.progress import Progress, cost_text, format_duration
from worker.chat.types import ChatRequest

__all__ = ["add_parser", "print_summary"]


def add_parser(sub: Any) -> None:
    """Add `batch` and its subcommands to the chatq parser."""
    batch = sub.add_parser("batch", help="run JSONL batches of chat requests")
    cmds = batch.add_subparsers(dest="batch_command", required=True, metavar="SUBCOMMAND")

    def inputs(p: argparse.ArgumentParser) -> None:
        p.add_argument("input", type=Path, help="JSONL file (OpenAI Batch or plain form)")
        p.add_argument("--model", help="model for lines that name none")
        p.add_argument(
            "--batch-id",
            dest="batch_id",
            help="default: derived from the file's digest and --model",
        )
        p.add_argument(
            "--retry-failed",
            action="store_true",
            dest="retry_failed",
            help="queue lines that failed before, too",
        )
        p.add_argument(
            "--cache",
            action="store_true",
            help="reuse stored answers to identical temperature-0 requests",
        )
        p.add_argument("--strict", action="store_true",
                       help="refuse the whole file if any line is bad")  # fmt: skip
        p.add_argument(
            "--dry-run",
            action="store_true",
            dest="dry_run",
            help="read the file and estimate its tokens and cost; queue nothing",
        )
        p.add_argument("--max-cost", type=_dollars, dest="max_cost", metavar="DOLLARS",
                       help="queue no line that could take the batch's cost past this")  # fmt: skip

    def output(p: argparse.ArgumentParser) -> None:
        p.add_argument("-o", "--output", type=Path, required=True, help="output JSONL")
        p.add_argument("--format", choices=FORMATS, default="chatq",
                       help="chatq (default) or the OpenAI Batch output form")  # fmt: skip

    run = cmds.add_parser("run", help="submit, follow and collect a batch")
    inputs(run)
    output(run)
    submit = cmds.add_parser("submit", help="submit a batch, print its id and return")
    inputs(submit)
    status = cmds.add_parser("status", help="a batch's counts, tokens, elapsed and ETA")
    status.add_argument("batch_id")
    status.add_argument("--json", action="store_true")
    results = cmds.add_parser("results", help="write a batch's results in input order")
    results.add_argument("batch_id")
    output(results)
    results.add_argument("--partial", action="store_true",
                         help="write now, without waiting for unfinished lines")  # fmt: skip
    cancel = cmds.add_parser("cancel", help="revoke a batch's waiting jobs")
    cancel.add_argument("batch_id")
    listing = cmds.add_parser("list", help="the batches on record")
    listing.add_argument("--json", action="store_true")


@command("batch")
def _batch(args: argparse.Namespace, settings: Settings) -> int:
    return _SUB[args.batch_command](args, settings)


def _dollars(raw: str) -> float:
    try:
        value = float(raw.lstrip("$"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an amount of dollars: {raw!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {raw!r}")
    return value


def _dry_run(args: argparse.Namespace, settings: Settings) -> int:
    """What the file would cost: read and checked as a submit would, nothing queued (no
    Redis, no worker)."""
    from worker.chat.builder import build_registry

    registry = build_registry(settings)

    def prepare(request: ChatRequest) -> ChatRequest:
        registry.prepare(request)
        return request

    source = FileSource(args.input, model=args.model, prepare=prepare)
    est = estimate_lines(source.lines(), settings.prices)
    good = est.lines - est.bad
    print(f"lines      {est.lines:,} ({est.bad:,} bad: they would not be queued)")
    print(f"tokens     about {est.input_tokens:,} in · at most {est.output_bound:,} out "
          f"(max_tokens, or {DEFAULT_OUTPUT_BOUND:,} for a line without it)")  # fmt: skip
    priced = good - sum(est.unpriced.values())
    if priced:
        print(f"cost       ${est.low:,.4f} to ${est.high:,.4f} for the {priced:,} priced "
              "line(s) (empty answers to answers of max_tokens)")  # fmt: skip
    for model, count in est.unpriced.most_common():
        print(f"no price   {model}: {count:,} line(s) (add it to CHATQ_PRICES)")
    if args.max_cost is not None and est.high > args.max_cost:
        print(f"max cost   ${args.max_cost:g} may stop the batch short: lines past it are "
              "not queued (run again with a higher --max-cost to queue them)")  # fmt: skip
    print("nothing was queued (--dry-run)")
    return EXIT_OK


def _run(args: argparse.Namespace, settings: Settings) -> int:
    if not args.input.is_file():
        return fail(f"no such file: {args.input}", EXIT_INVALID)
    if args.dry_run:
        return _dry_run(args, settings)
    started = time.monotonic()
    with runtime_batches(settings, workers=True) as batches:
        source = FileSource(args.input, model=args.model, prepare=batches.producer.prepare)
        batch_id = args.batch_id or default_batch_id("batch", source.digest(), args.model or "")
        refused = _strict(batches, source, batch_id) if args.strict else None
        if refused is not None:
            return refused
        kept = restore_answers(batches, batch_id)
        if kept:
            print(f"chatq: {kept:,} answer(s) this machine had already read were put back "
                  "(Redis had lost them): not paid for again", file=sys.stderr)  # fmt: skip
        try:
            report = batches.submit(
                batch_id, source, retry_failed=args.retry_failed, use_cache=args.cache,
                requeue=owns_fresh_redis(batches), max_cost=args.max_cost,
            )  # fmt: skip
            _say_submitted(report)
            snap = follow(batches, batch_id, source, progress=Progress(batch_id))
        except KeyboardInterrupt:
            return fail(f"interrupted; batch {batch_id} keeps its results: run the same "
                        "command again to resume", 130)  # fmt: skip
        written = write_results(batches.results(batch_id), args.output, form=args.format)
    print_summary(snap, written=written, output=args.output, seconds=time.monotonic() - started)
    return EXIT_OK if snap.failed == 0 and snap.cancelled == 0 else EXIT_UPSTREAM


def _strict(batches: Batches, source: FileSource, batch_id: str) -> int | None:
    lines, bad, errors = batches.check(source, batch_id=batch_id)
    if not bad:
        return None
    for error in errors:
        print(f"chatq: {error['type']}: {error['message']}", file=sys.stderr)
    return fail(f"--strict: {bad} of {lines} lines are bad; nothing was queued", EXIT_INVALID)


def _say_submitted(report: SubmitReport) -> None:
    print(
        f"chatq: batch {report.batch_id}: {report.lines:,} lines, {report.enqueued:,} queued "
        f"({report.enqueued / report.seconds if report.seconds else 0:,.0f}/s), "
        f"{report.already_done:,} already done, {report.already_queued:,} already queued, "
        f"{report.cached:,} cached, {report.invalid:,} bad"
        + (f", {report.held:,} held back by --max-cost" if report.held else ""),
        file=sys.stderr,
    )


def errors_text(errors: dict[str, int]) -> str:
    """`AuthenticationFailed 401: 6, UpstreamUnavailable 500: 12`: failures by class and
    status, since a revoked key and a provider outage call for different action."""
    return ", ".join(f"{k}: {v:,}" for k, v in sorted(errors.items()))


def print_summary(snap: Snapshot, *, written: int, output: Path, seconds: float) -> None:
    """The end-of-run summary on stdout."""
    errors = errors_text(snap.errors)
    print(f"lines      {snap.total:,} (written to {output}: {written:,})")
    print(f"succeeded  {snap.succeeded:,}" + (f" ({snap.cached:,} cached)" if snap.cached else ""))
    print(f"failed     {snap.failed + snap.cancelled:,}" + (f" ({errors})" if errors else ""))
    print(f"tokens     {snap.input_tokens:,} in, {snap.output_tokens:,} out")
    print(f"cost       {cost_text(snap)}")
    print(f"wall time  {format_duration(seconds)}")


def _submit(args: argparse.Namespace, settings: Settings) -> int:
    if not args.input.is_file():
        return fail(f"no such file: {args.input}", EXIT_INVALID)
    if args.dry_run:
        return _dry_run(args, settings)
    with runtime_batches(settings, workers=False) as batches:
        source = FileSource(args.input, model=args.model, prepare=batches.producer.prepare)
        batch_id = args.batch_id or default_batch_id("batch", source.digest(), args.model or "")
        refused = _strict(batches, source, batch_id) if args.strict else None
        if refused is not None:
            return refused
        report = batches.submit(batch_id, source, retry_failed=args.retry_failed,
                                use_cache=args.cache, max_cost=args.max_cost)  # fmt: skip
        _say_submitted(report)
        if batches.producer.runtime.is_embedded:
            print("chatq: REDIS_URL is not set: on the embedded Redis jobs run only while a "
                  f"chatq command runs; `chatq batch results {batch_id} -o OUT` runs them",
                  file=sys.stderr)  # fmt: skip
    print(batch_id)
    return EXIT_OK


def _status(args: argparse.Namespace, settings: Settings) -> int:
    with runtime_batches(settings, workers=False) as batches:
        record, snap = batches.snapshot(args.batch_id)
    now = time.time()
    elapsed = (record.finished or now) - record.created
    progress = record.progress
    live = progress and now - float(progress.get("at", 0)) < 30 and record.state == "running"
    snap.rate = float(progress.get("rate", 0.0)) if live else 0.0
    info = {
        "id": record.id, "kind": record.kind, "state": record.state, "source": record.source,
        "model": record.model, "lines": snap.total, "succeeded": snap.succeeded,
        "failed": snap.failed, "cancelled": snap.cancelled, "running": snap.running,
        "pending": snap.pending - snap.running, "errors": snap.errors,
        "input_tokens": snap.input_tokens, "output_tokens": snap.output_tokens,
        "cached": snap.cached, "retried": snap.retried, "created": record.created,
        "cost": round(snap.cost, 8), "unpriced": snap.unpriced,
        "elapsed": round(elapsed, 1), "eta": snap.eta if live or not snap.pending else None,
    }  # fmt: skip
    if args.json:
        print(json.dumps(info))
        return EXIT_OK
    created = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record.created))
    print(f"batch    {record.id} ({record.kind}) {record.state}")
    print(f"source   {record.source}" + (f"  model {record.model}" if record.model else ""))
    print(f"lines    {snap.total:,}: succeeded {snap.succeeded:,} · failed {snap.failed:,} · "
          f"cancelled {snap.cancelled:,} · running {snap.running:,} · "
          f"pending {info['pending']:,}")  # fmt: skip
    if snap.errors:
        print("errors   " + errors_text(snap.errors))
    print(f"tokens   {snap.input_tokens:,} in · {snap.output_tokens:,} out · "
          f"cached {snap.cached:,} · retried {snap.retried:,}")  # fmt: skip
    print(f"cost     {cost_text(snap)}")
    eta = format_duration(info["eta"]) if info["eta"] is not None else "unknown (not followed)"
    print(f"time     created {created} · elapsed {format_duration(elapsed)} · ETA {eta}")
    return EXIT_OK


def _results(args: argparse.Namespace, settings: Settings) -> int:
    with runtime_batches(settings, workers=not args.partial) as batches:
        record = batches.record(args.batch_id)
        snap = None
        if not args.partial:
            snap = follow(
                batches, record.id, _source_of(record, batches), progress=Progress(record.id)
            )
        written = write_results(batches.results(record.id), args.output, form=args.format)
    print(f"chatq: wrote {written:,} lines to {args.output}", file=sys.stderr)
    if snap is not None and (snap.failed or snap.cancelled):
        return EXIT_UPSTREAM
    return EXIT_OK


def _source_of(record: BatchRecord, batches: Batches) -> FileSource | None:
    """The batch's input file, when it is still there unchanged (to requeue lost lines)."""
    if record.kind != "batch" or not Path(record.source).is_file():
        return None
    source = FileSource(Path(record.source), model=record.model or None,
                        prepare=batches.producer.prepare)  # fmt: skip
    return source if source.digest() == record.digest else None


def _cancel(args: argparse.Namespace, settings: Settings) -> int:
    with runtime_batches(settings, workers=False) as batches:
        batches.record(args.batch_id)
        report = cancel_batch(batches.store, batches.producer.app, args.batch_id)
    print(f"cancelled batch {report.batch_id}: {report.revoked:,} unfinished job(s) revoked "
          f"({report.removed_messages:,} message(s) taken off the queues); "
          f"{report.running:,} running will finish")  # fmt: skip
    return EXIT_OK


def _list(args: argparse.Namespace, settings: Settings) -> int:
    with runtime_batches(settings, workers=False) as batches:
        records = batches.list()
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "id": r.id,
                        "kind": r.kind,
                        "state": r.state,
                        "lines": r.lines,
                        "created": r.created,
                        "source": r.source,
                    }
                    for r in records
                ]
            )
        )
        return EXIT_OK  # fmt: skip
    for r in records:
        created = time.strftime("%Y-%m-%d %H:%M", time.localtime(r.created))
        print(f"{r.id}  {r.kind:<5}  {r.state:<10}  {r.lines:>9,} lines  {created}  {r.source}")
    return EXIT_OK


_SUB = {
    "run": _run,
    "submit": _submit,
    "status": _status,
    "results": _results,
    "cancel": _cancel,
    "list": _list,
}
