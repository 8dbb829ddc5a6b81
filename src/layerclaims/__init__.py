"""layerclaims: published claims about language-model layers as executable, reproducible tests.

Data flows one way: text/words -> tokenizer -> model (``models``) -> ``extract`` -> ``studies`` ->
result (saved) -> ``claims`` -> verdicts. ``metrics`` are pure functions over arrays.

Python API (imported on first use, so that ``import layerclaims`` stays cheap and never imports torch):
:func:`reproduce` (run the studies on a model and evaluate the claims; :mod:`layerclaims.api`),
:func:`load_claims` (a TOML claims file or folder), :class:`Claim`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["Claim", "Reproduction", "__version__", "load_claims", "reproduce"]

_LAZY = {
    "reproduce": "layerclaims.api",
    "Reproduction": "layerclaims.api",
    "load_claims": "layerclaims.claims",
    "Claim": "layerclaims.claims",
}

if TYPE_CHECKING:
    from layerclaims.api import Reproduction, reproduce
    from layerclaims.claims import Claim, load_claims


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'layerclaims' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
