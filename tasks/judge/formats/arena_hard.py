"""Arena-Hard (arena-hard-auto): `[[A>>B]]`, `[[A>B]]`, `[[A=B]]`, `[[B>A]]`, `[[B>>A]]`.

Arena-Hard's own rule, followed here when a label is present: every `[[...]]` of the
characters `A`, `B`, `<`, `>`, `=` is a label; when all found are the same label it is
the verdict, when they differ the judgment has none (Arena-Hard records it as null).
`>>` is a strong preference, `>` a weak one; Arena-Hard counts a strong one three times
when it scores the battles (see `WEIGHT`). The mirrored forms (`A<<B`, `B=A`, ...) read
as Arena-Hard's own table reads them.
"""

from __future__ import annotations

import re

from tasks.judge.formats.readings import STRONG, TIE, WEAK, A, B, Verdict

__all__ = ["LABELS", "WEIGHT", "has_marker", "read_pair"]

RULE = "arena-hard"
WEIGHT = 3
_LABEL = re.compile(r"\[\[([AB<>=]+)\]\]")
#: label -> (winner, strength)
LABELS: dict[str, tuple[str, str | None]] = {
    "A>>B": (A, STRONG), "A>B": (A, WEAK), "A=B": (TIE, None), "B>A": (B, WEAK),
    "B>>A": (B, STRONG), "A<<B": (B, STRONG), "A<B": (B, WEAK), "B=A": (TIE, None),
    "B<A": (A, WEAK), "B<<A": (A, STRONG),
}  # fmt: skip


def has_marker(text: str) -> bool:
    return any(m in LABELS for m in _LABEL.findall(text))


def read_pair(text: str) -> Verdict:
    """The one label the judgment gives (see the module's docstring)."""
    found = set(_LABEL.findall(text))
    if not found:
        return Verdict.none("no [[A>B]]-style label in the answer", RULE)
    if len(found) > 1:
        return Verdict.none("conflicting labels: " + ", ".join(sorted(found)), RULE)
    label = found.pop()
    if label not in LABELS:
        return Verdict.none(f"unknown label [[{label}]]", RULE)
    winner, strength = LABELS[label]
    return Verdict(winner, strength=strength, label=label, rule=RULE)
