"""Errors a user can fix: each names the problem (``message``) and, where one is known, the fix (``fix``).

The CLI prints any :class:`LayerclaimsError` as ``error:`` and ``fix:`` lines and exits 2; anything else is a bug.
``str(error)`` is the message then ``Fix: <fix>``, so that a log line or a test failure shows both.
"""

from __future__ import annotations

from typing import Any


class LayerclaimsError(Exception):
    """A problem with the input or the environment: ``message``, and ``fix`` (None when the message says it)."""

    def __init__(self, message: str = "", *, fix: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix

    def __str__(self) -> str:
        return f"{self.message}\nFix: {self.fix}" if self.fix else self.message

    def __reduce__(self) -> tuple[Any, ...]:  # keep ``fix`` (and a subclass's fields) across pickling
        return (type(self), (self.message,), self.__dict__)


class UsageError(LayerclaimsError, ValueError):
    """Bad arguments: an index out of range, an empty word list, an unknown option value."""


class EncodingError(UsageError):
    """A text file in another encoding than UTF-8. ``converted``: the file its fix's ``iconv`` command writes, so that
    a re-run command in the fix can name it."""

    def __init__(self, message: str = "", *, fix: str | None = None, converted: str | None = None) -> None:
        super().__init__(message, fix=fix)
        self.converted = converted


class DataNotFoundError(LayerclaimsError, FileNotFoundError):
    """A corpus, tokenizer or weights could not be found; the message lists where we looked."""


class ModelNotFoundError(LayerclaimsError, LookupError):
    """An unknown model name or an architecture without the table a study needs."""


class DeviceError(LayerclaimsError, RuntimeError):
    """A device was asked for that this machine does not have (e.g. ``--gpu`` without CUDA)."""


class CorruptCacheError(LayerclaimsError, OSError):
    """A cache entry failed its integrity check; it is rebuilt, never used."""


class RunLockedError(LayerclaimsError):
    """Another live process is writing the same output folder (its pid is in the message)."""
