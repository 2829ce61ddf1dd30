"""A judge run's requests: a batch of judge prompts built from a template.

A judge run IS a batch: its id is a digest of the input, the template, the model and
the options, so running the same command again resumes it and pays for nothing twice.

Score mode: one request per line; the score is read from the answer on the scale.
Pairwise mode: two requests per line, answers A and B in both positions
(`<custom_id>#ab`, `<custom_id>#ba`); a verdict that flips with the order is a tie.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path

from chatq.errors import ChatqError, InvalidRequest
from tasks.batch.input import Line, file_digest
from tasks.batch.service import default_batch_id
from tasks.judge.options import JudgeOptions
from worker.chat.types import ChatRequest

__all__ = ["JudgeSource"]


class JudgeSource:
    """The judge requests generated from an input file (a batch Source)."""

    kind = "judge"

    def __init__(self, path: Path, options: JudgeOptions, *, prepare: Callable | None = None):
        self.path = str(Path(path).resolve())
        self.options = options
        self.model = options.model
        self._prepare = prepare
        self._digest: str | None = None

    def digest(self) -> str:
        if self._digest is None:
            inner = file_digest(Path(self.path)) + self.options.fingerprint()
            self._digest = hashlib.sha256(inner.encode()).hexdigest()
        return self._digest

    def batch_id(self) -> str:
        return default_batch_id("judge", self.digest())

    def lines(self) -> Iterator[Line]:
        with open(self.path, encoding="utf-8", errors="replace") as handle:
            for number, text in enumerate(handle, start=1):
                if text.strip():
                    yield from self._lines(number, text)

    def answer_lengths(self) -> dict[str, tuple[int, int]]:
        """custom_id -> lengths in characters of answers A and B, for the pairwise length
        check; lines that are not JSON objects or lack an answer are left out."""
        a_field, b_field = self.options.a_field, self.options.b_field
        lengths: dict[str, tuple[int, int]] = {}
        with open(self.path, encoding="utf-8", errors="replace") as handle:
            for number, text in enumerate(handle, start=1):
                try:
                    data = json.loads(text) if text.strip() else None
                except ValueError:
                    continue
                if isinstance(data, dict) and data.get(a_field) is not None \
                        and data.get(b_field) is not None:  # fmt: skip
                    lengths[_custom_id(data, number)] = (
                        len(_as_text(data[a_field])), len(_as_text(data[b_field])))  # fmt: skip
        return lengths

    def _lines(self, number: int, text: str) -> Iterator[Line]:
        opts = self.options
        try:
            data = json.loads(text)
            if not isinstance(data, dict):
                raise InvalidRequest("a line must be a JSON object")
        except (ValueError, InvalidRequest) as exc:
            error = (
                exc
                if isinstance(exc, InvalidRequest)
                else InvalidRequest(f"not valid JSON ({exc})")
            )
            yield from self._each(number, str(number), lambda _swap: _raise(error))
            return
        custom_id = _custom_id(data, number)

        def build(swap: bool) -> ChatRequest:
            values = data
            if swap:
                values = {**data, opts.a_field: data.get(opts.b_field),
                          opts.b_field: data.get(opts.a_field)}  # fmt: skip
            messages = [{"role": "user", "content": opts.template.fill(values)}]
            if opts.system:
                messages.insert(0, {"role": "system", "content": opts.system})
            request = ChatRequest.parse({
                "model": opts.model, "messages": messages, "temperature": 0,
                "think": False, "max_tokens": opts.tokens,
            })  # fmt: skip
            return self._prepare(request) if self._prepare else request

        yield from self._each(number, custom_id, build)

    def _each(self, number: int, custom_id: str, build: Callable[[bool], ChatRequest]):
        orders = [("", False)] if self.options.mode == "score" else [("#ab", False), ("#ba", True)]
        for suffix, swap in orders:
            try:
                yield Line(number, custom_id + suffix, build(swap))
            except ChatqError as exc:
                yield Line.failed(number, custom_id + suffix, exc)


def _raise(error: Exception):
    raise error


def _custom_id(data: dict, number: int) -> str:
    custom_id = data.get("custom_id", data.get("id"))
    return str(number) if custom_id in (None, "") else str(custom_id)


def _as_text(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
