"""Studies: one analysis each, composed of extraction and metrics, returning a saveable result.

Each study module (``qk``, ``punctuation``) exposes ``Config`` (a frozen dataclass whose defaults are the original
notebook's method), ``run(handle, config) -> Result`` and a ``Result`` frozen dataclass with ``model``, ``n_blocks``,
``measure(statistic, *, layer, kind) -> Measurement``, ``save(directory)`` and ``Result.load(directory)``.
The CLI and the findings tests both go through :func:`run`.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

from layerclaims.errors import UsageError

STUDY_NAMES: tuple[str, ...] = ("qk", "punctuation")


def get(name: str) -> ModuleType:
    """The module of study ``name``."""
    if name not in STUDY_NAMES:
        raise UsageError(f"unknown study {name!r}: choose one of {', '.join(STUDY_NAMES)}")
    return importlib.import_module(f"layerclaims.studies.{name}")


def run(name: str, handle: Any, **options: Any) -> Any:
    """Run study ``name`` on a loaded model handle with ``Config`` overrides (e.g. ``seed=1``)."""
    module = get(name)
    try:
        config = module.Config(**options)
    except TypeError as exc:
        raise UsageError(f"bad option for study {name!r}: {exc}") from None
    return module.run(handle, config)
