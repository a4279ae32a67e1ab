"""Markdown previews of tables for the Dagster UI."""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl


def _cell(value: object) -> str:
    text = "" if value is None else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_table(rows: Sequence[dict], columns: Sequence[str] | None = None) -> str:
    """A Markdown table of `rows` (dicts), in `columns` order."""
    if not rows:
        return "_(none)_"
    columns = list(columns or rows[0].keys())
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def frame_preview(frame: pl.DataFrame | None, limit: int = 10) -> str:
    if frame is None or frame.is_empty():
        return "_(no rows)_"
    return markdown_table(frame.head(limit).to_dicts())
