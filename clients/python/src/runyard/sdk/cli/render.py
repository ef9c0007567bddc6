"""Plain-text output for the terminal: aligned tables, numbers, sparklines."""

from __future__ import annotations

import csv
import io
import json
import shutil
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

BARS = "▁▂▃▄▅▆▇█"
COLUMN_METRICS = ("train_loss", "val_loss", "train_accuracy", "val_accuracy", "learning_rate")


def number(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        if value != 0 and (abs(value) >= 1e6 or abs(value) < 1e-3):
            return f"{value:.4g}"
        return f"{value:.4f}".rstrip("0").rstrip(".") if value != int(value) else f"{value:.1f}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], max_width: int = 40) -> str:
    cells = [[clip(number(c), max_width) for c in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip()]
    for row in cells:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
    return "\n".join(lines)


def clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def sparkline(values: Sequence[float], width: int = 40) -> str:
    values = list(values)[-width:]
    if not values:
        return ""
    low, high = min(values), max(values)
    if high == low:
        return BARS[len(BARS) // 2] * len(values)
    scale = (len(BARS) - 1) / (high - low)
    return "".join(BARS[round((v - low) * scale)] for v in values)


def run_values(run: Mapping[str, Any]) -> dict[str, float]:
    """An epoch's metrics as one flat mapping: the column ones and the extra ones."""
    values = {k: run[k] for k in COLUMN_METRICS if run.get(k) is not None}
    values.update(run.get("metrics") or {})
    return values


def metric_names(runs: Sequence[Mapping[str, Any]]) -> list[str]:
    seen: dict[str, None] = {}
    for run in runs:
        for name in run_values(run):
            seen.setdefault(name, None)
    known = [n for n in COLUMN_METRICS if n in seen]
    return known + sorted(n for n in seen if n not in COLUMN_METRICS)


def runs_csv(runs: Sequence[Mapping[str, Any]]) -> str:
    names = metric_names(runs)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["epoch", *names])
    for run in runs:
        values = run_values(run)
        writer.writerow([run["epoch"], *(repr_float(values.get(n)) for n in names)])
    return out.getvalue()


def repr_float(value: Any) -> str:
    return "" if value is None else repr(float(value))


def epoch_line(run: Mapping[str, Any], names: Sequence[str], spark: str | None = None) -> str:
    values = run_values(run)
    parts = [f"epoch {run['epoch']:>5}"]
    parts += [f"{n}={number(values[n])}" for n in names if n in values]
    line = "  ".join(parts)
    if spark:
        line += "  " + spark
    return line


def terminal_width() -> int:
    return shutil.get_terminal_size((120, 24)).columns
