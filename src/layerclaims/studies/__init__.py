"""Studies: one analysis each, composed of extraction and metrics, returning a saveable result.

Each study module (``qk``, ``punctuation``) exposes ``Config`` (a frozen dataclass whose defaults are the original
notebook's method), ``run(handle, config) -> Result`` and a ``Result`` frozen dataclass with ``model``, ``n_blocks``,
``measure(statistic, *, layer, kind) -> Measurement``, ``save(directory)`` and ``Result.load(directory)``.
The CLI and the findings tests both go through :func:`run`.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from types import ModuleType
from typing import Any

from layerclaims.errors import UsageError

STUDY_NAMES: tuple[str, ...] = ("qk", "punctuation")


def get(name: str) -> ModuleType:
    """The module of study ``name``."""
    if name not in STUDY_NAMES:
        raise UsageError(f"unknown study {name!r}: choose one of {', '.join(STUDY_NAMES)}")
    return importlib.import_module(f"layerclaims.studies.{name}")


def accepts_progress(run: Any) -> bool:
    """Whether a study's ``run`` takes a ``progress`` callback (a keyword parameter, or ``**kwargs``)."""
    try:
        params = inspect.signature(run).parameters
    except (TypeError, ValueError):  # pragma: no cover - a builtin without a signature
        return False
    return "progress" in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def run(name: str, handle: Any, *, progress: Callable[[str], None] | None = None, **options: Any) -> Any:
    """Run study ``name`` on a loaded model handle with ``Config`` overrides (e.g. ``seed=1``).

    ``progress``: called with a short line at each step inside the study (e.g. "internal marks: layer 3 of 30"),
    passed on only to a study whose ``run`` accepts it."""
    module = get(name)
    fields = getattr(module.Config, "__dataclass_fields__", {})
    if "detail_layers" in fields and options.get("detail_layers") is None:
        options = {**options, "detail_layers": claim_layers(name, int(handle.n_blocks))}
    try:
        config = module.Config(**options)
    except TypeError as exc:
        raise UsageError(f"bad option for study {name!r}: {exc}") from None
    if progress is not None and accepts_progress(module.run):
        return module.run(handle, config, progress=progress)
    return module.run(handle, config)


def claim_layers(name: str, n_blocks: int) -> tuple[int, ...]:
    """The layers the claims of study ``name`` read on a model of ``n_blocks`` blocks (relative depth mapped): the
    caller's side of ``Config.detail_layers`` (a study never reads the claims itself)."""
    from layerclaims.claims import claims_for, map_layer

    layers = (map_layer(c, n_blocks) for c in claims_for(name))
    return tuple(sorted({layer for layer in layers if layer is not None}))  # None: a claim with no layer
