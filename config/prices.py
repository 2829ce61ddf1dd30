"""What calls cost: a price table the user gives (`CHATQ_PRICES`), per model pattern.

chatq ships no prices (they change, and differ by account); a file names them:

    # prices.toml: US dollars per million tokens; the first matching row wins
    [[price]]
    model = "openrouter/openai/gpt-4o-mini*"   # a glob over the model name as sent to chatq
    input = 0.15
    output = 0.60

    [[price]]
    model = "ollama/*"                          # local: free
    input = 0
    output = 0

The same rows as JSON (`{"price": [{"model": ..., "input": ..., "output": ...}]}`) work
too. An answer whose provider reports its own cost (OpenRouter's `usage.cost`) keeps
that figure; otherwise the cost is computed from the table, or unknown.
"""

from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chatq.errors import SettingsError

__all__ = ["Price", "PriceTable", "load_prices"]

#: Output tokens a line without max_tokens is assumed to need at most, for estimates.
DEFAULT_OUTPUT_BOUND = 1024


@dataclass(frozen=True)
class Price:
    """US dollars per million input and output tokens of the models matching `model`."""

    model: str
    input: float
    output: float

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        return (input_tokens * self.input + output_tokens * self.output) / 1_000_000


@dataclass(frozen=True)
class PriceTable:
    """Prices in order; the first row whose pattern matches a model name applies."""

    rows: tuple[Price, ...] = ()

    def price_for(self, model: str) -> Price | None:
        return next((p for p in self.rows if fnmatch.fnmatchcase(model, p.model)), None)

    def cost(self, model: str, input_tokens: int, output_tokens: int) -> float | None:
        """What a call of `model` with these token counts cost, or None (no price)."""
        price = self.price_for(model)
        return None if price is None else round(price.cost(input_tokens, output_tokens), 10)


def load_prices(path: Path) -> PriceTable:
    """The price table in `path` (TOML, or JSON by its `.json` suffix).

    Raises:
        SettingsError: the file cannot be read or a row is malformed (named).
    """
    try:
        text = Path(path).read_text("utf-8")
    except OSError as exc:
        raise SettingsError(f"CHATQ_PRICES: cannot read {path} ({exc.strerror})") from None
    try:
        if str(path).endswith(".json"):
            data = json.loads(text)
        else:
            try:
                import tomllib
            except ModuleNotFoundError:  # Python 3.10
                import tomli as tomllib

            data = tomllib.loads(text)
    except ValueError as exc:
        raise SettingsError(f"CHATQ_PRICES: {path} is not valid TOML or JSON ({exc})") from None
    rows = data.get("price") if isinstance(data, dict) else None
    if not isinstance(rows, list):
        raise SettingsError(f"CHATQ_PRICES: {path} has no [[price]] rows")
    return PriceTable(tuple(_row(path, i, row) for i, row in enumerate(rows, 1)))


def _row(path: Path, number: int, row: Any) -> Price:
    where = f"CHATQ_PRICES: {path}, price row {number}"
    if not isinstance(row, dict) or not isinstance(row.get("model"), str) or not row["model"]:
        raise SettingsError(f"{where}: needs a model pattern (a string)")
    unknown = sorted(set(row) - {"model", "input", "output"})
    if unknown:
        raise SettingsError(f"{where}: unknown field {unknown[0]!r}")
    values = {}
    for field in ("input", "output"):
        value = row.get(field)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise SettingsError(f"{where}: {field} must be a price per million tokens (>= 0)")
        values[field] = float(value)
    return Price(row["model"], values["input"], values["output"])
