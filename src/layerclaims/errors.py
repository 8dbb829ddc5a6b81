"""Errors a user can fix. Every message names the problem and the fix.

The CLI turns any :class:`LayerclaimsError` into a one-paragraph message and exit code 2; anything else is a bug.
"""


class LayerclaimsError(Exception):
    """Base class: a problem with the input or the environment, with the fix in the message."""


class UsageError(LayerclaimsError, ValueError):
    """Bad arguments: an index out of range, an empty word list, an unknown option value."""


class DataNotFoundError(LayerclaimsError, FileNotFoundError):
    """A corpus, tokenizer or weights could not be found; the message lists where we looked."""


class ModelNotFoundError(LayerclaimsError, LookupError):
    """An unknown model name or an architecture without the table a study needs."""


class DeviceError(LayerclaimsError, RuntimeError):
    """A device was asked for that this machine does not have (e.g. ``--gpu`` without CUDA)."""


class CorruptCacheError(LayerclaimsError, OSError):
    """A cache entry failed its integrity check; it is rebuilt, never used."""
