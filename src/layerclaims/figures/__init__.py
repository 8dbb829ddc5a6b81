"""Figures for each study (matplotlib, Agg backend, PNG): each study's module has a ``figures(result)`` table
(file name -> drawing function) and a ``plot_all(result, out_dir)`` that draws it with :func:`draw_table`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path


def draw_table(table: Mapping[str, Callable[[Path], Path]], out_dir: str | Path) -> list[Path]:
    """Draw every figure of ``table`` (file name -> drawing function) into ``out_dir`` (created); the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return [draw(out / name) for name, draw in table.items()]
