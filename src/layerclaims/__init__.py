"""layerclaims: published claims about language-model layers as executable, reproducible tests.

The Python API, imported on first use (``import layerclaims`` never imports torch): :func:`reproduce`
(:mod:`layerclaims.api`), :func:`load_claims` (a TOML claims file or folder), :class:`Claim`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {"reproduce": "api", "Reproduction": "pipeline", "load_claims": "claims", "Claim": "claims"}
__all__ = ["Claim", "Reproduction", "__version__", "load_claims", "reproduce"]

if TYPE_CHECKING:
    from layerclaims.api import reproduce
    from layerclaims.claims import Claim, load_claims
    from layerclaims.pipeline import Reproduction


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'layerclaims' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"layerclaims.{_LAZY[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
