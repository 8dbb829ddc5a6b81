"""Figures (matplotlib, Agg backend, PNG): each study's ``figures(result, claims)`` is a table (file name -> drawing
function) that :func:`draw_table` draws; :func:`margins` fixes a figure's margins in inches (``tight_layout`` and
``constrained_layout`` measure every label, most of the drawing time, for labels whose room is known); :func:`save`
writes and closes it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any


def draw_table(table: Mapping[str, Callable[[Path], Path]], out_dir: str | Path) -> list[Path]:
    """Draw every figure of ``table`` (file name -> drawing function) into ``out_dir`` (created); the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return [draw(out / name) for name, draw in table.items()]


def draw_saved(
    result: Callable[[], Any],
    figures: Callable[[Any, Any], Mapping[str, Callable[[Path], Path]]],
    folder: Path,
    claims: Any,
    out_dir: Path,
) -> list[Path]:
    """A study's figures drawn from its saved result (``result().load(folder)``; ``figures(result, claims)``, the
    study's table): what a worker process runs while the next study runs here. The paths, as :func:`draw_table`."""
    return draw_table(figures(result().load(folder), claims), out_dir)


def margins(fig: Any, *, left: float, right: float, top: float, bottom: float, **space: float) -> None:
    """Set ``fig``'s subplot margins to fixed widths in inches; ``space`` passes ``wspace``/``hspace`` (fractions of
    the mean axes size, as matplotlib's ``subplots_adjust`` takes them)."""
    w, h = fig.get_figwidth(), fig.get_figheight()
    fig.subplots_adjust(left=left / w, right=1 - right / w, top=1 - top / h, bottom=bottom / h, **space)


def save(fig: Any, path: Path, dpi: int = 130) -> Path:
    """Write ``fig`` to ``path`` (PNG) at ``dpi`` and close it; the path."""
    import matplotlib.pyplot as plt

    fig.savefig(path, dpi=dpi, pil_kwargs={"compress_level": 3})  # 0.6x the encoding time of 6, 2% larger
    plt.close(fig)
    return path
