"""Figures (matplotlib, Agg backend, PNG): each study's ``figures(result, claims)`` is a table (file name -> drawing
function) that :func:`draw_table` draws."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path


def draw_table(table: Mapping[str, Callable[[Path], Path]], out_dir: str | Path) -> list[Path]:
    """Draw every figure of ``table`` (file name -> drawing function) into ``out_dir`` (created); the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return [draw(out / name) for name, draw in table.items()]
