"""Errors a user can fix. Every error names the problem (``message``) and, where one is known, the fix (``fix``).

The CLI turns any :class:`LayerclaimsError` into ``error: <message>`` and ``fix: <fix>`` on stderr and exit code 2;
anything else is a bug. ``str(error)`` is the message followed by ``Fix: <fix>`` (so a log line or a test failure
shows both); code that needs the parts reads the fields.
"""

from __future__ import annotations


class LayerclaimsError(Exception):
    """Base class: a problem with the input or the environment. ``message`` says what is wrong; ``fix`` (keyword
    only, None when the message already says it) what to do about it, e.g. the command to run instead."""

    def __init__(self, message: str = "", *, fix: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix

    def __str__(self) -> str:
        return f"{self.message}\nFix: {self.fix}" if self.fix else self.message

    def __reduce__(self) -> tuple[object, ...]:  # keep ``fix`` across pickling (multiprocessing, pytest-xdist)
        return (_rebuild, (type(self), self.message, self.fix))


def _rebuild(cls: type[LayerclaimsError], message: str, fix: str | None) -> LayerclaimsError:
    return cls(message, fix=fix)


class UsageError(LayerclaimsError, ValueError):
    """Bad arguments: an index out of range, an empty word list, an unknown option value."""


class EncodingError(UsageError):
    """A text file in another encoding than UTF-8. ``converted``: the file its fix's ``iconv`` command writes, so that
    a re-run command in the fix can name it (the converted file, not the one refused)."""

    def __init__(self, message: str = "", *, fix: str | None = None, converted: str | None = None) -> None:
        super().__init__(message, fix=fix)
        self.converted = converted

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild_encoding, (self.message, self.fix, self.converted))


def _rebuild_encoding(message: str, fix: str | None, converted: str | None) -> EncodingError:
    return EncodingError(message, fix=fix, converted=converted)


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
