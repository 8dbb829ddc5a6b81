"""The activation cache: the hidden states a study reads, computed once and kept on disk (forward passes dominate a
study's time; an analysis choice such as bins or a threshold does not change them).

Only the asked positions and layers are stored, under ``cache_dir()/activations``: one entry per layer and block of
``ROWS_PER_ENTRY`` (64) consecutive sequences, keyed by the model (name, revision, device type, dtype), the sha256 of
the token ids, the position and ``final``. Selections sharing a prefix (the first 150 and the first 250 marks) share its
full blocks; the model runs only for the missing layers and blocks, up to the deepest missing layer.

Entries are written atomically with the sha256 of their payload, checked on every read (a corrupt entry is deleted with
a one-line warning and recomputed). After each write the least recently used entries (mtime, refreshed on every hit) are
deleted until the folder fits ``$LAYERCLAIMS_ACTIVATION_CACHE_MB`` (default 2048; 0 = off). Values come back bit for bit
(float32 ``.npy``); one computed in another batch composition can differ from an uncached run in the last float32 bits
(as changing ``batch_size`` does).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from layerclaims.data import cache_dir
from layerclaims.errors import UsageError
from layerclaims.results import atomic_write

if TYPE_CHECKING:  # extract imports torch: at run time it is imported where a model runs
    from layerclaims.extract import Final
    from layerclaims.models import ModelHandle

BUDGET_ENV = "LAYERCLAIMS_ACTIVATION_CACHE_MB"
DEFAULT_BUDGET_MB = 2048
FORMAT = 1
ROWS_PER_ENTRY = 64


@dataclass
class CacheStats:
    """Counters for this process: ``hits``/``misses`` count entries; ``model_runs`` the calls that ran the model,
    ``runs_saved`` those that read everything from disk; ``rebuilt`` corrupt entries recomputed."""

    hits: int = 0
    misses: int = 0
    model_runs: int = 0
    runs_saved: int = 0
    rebuilt: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(vars(self))

    def reset(self) -> None:
        for key in vars(self):
            setattr(self, key, 0)


STATS = CacheStats()


def budget_mb() -> float:
    """The size bound in MB from ``$LAYERCLAIMS_ACTIVATION_CACHE_MB`` (default 2048; 0 = no cache)."""
    value = os.environ.get(BUDGET_ENV, "").strip()
    if not value:
        return float(DEFAULT_BUDGET_MB)
    try:
        return max(float(value), 0.0)
    except ValueError:
        raise UsageError(f"{BUDGET_ENV}={value!r} is not a number: give a size in MB (0 turns the cache off)") from None


def sequences_digest(sequences: Sequence[Sequence[int]] | np.ndarray) -> str:
    """sha256 over every sequence's int64 ids, with its length, in order."""
    h = hashlib.sha256()
    for seq in sequences:
        arr = np.asarray(seq, dtype=np.int64).reshape(-1)
        h.update(np.int64(arr.size).tobytes())
        h.update(arr.tobytes())
    return h.hexdigest()


class ActivationCache:
    """A folder of entries ``<sha256 of the key>.npyc``: 64 hex digits of the payload's sha256, a newline, then an
    ``.npy`` payload. ``root`` defaults to ``cache_dir()/activations``, ``budget`` (MB) to :func:`budget_mb`."""

    def __init__(self, root: Path | None = None, budget: float | None = None) -> None:
        self.root = Path(root) if root is not None else cache_dir() / "activations"
        self.budget = budget_mb() if budget is None else float(budget)

    @property
    def enabled(self) -> bool:
        return self.budget > 0

    def path(self, key: dict[str, Any]) -> Path:
        digest = hashlib.sha256(json.dumps({"format": FORMAT, **key}, sort_keys=True).encode()).hexdigest()
        return self.root / f"{digest}.npyc"

    def get(self, key: dict[str, Any]) -> np.ndarray | None:
        """The stored array, or None (missing; or corrupt: deleted with a one-line warning)."""
        if not self.enabled:
            return None
        path = self.path(key)
        try:
            blob = path.read_bytes()
        except OSError:
            return None
        head, _, payload = blob.partition(b"\n")
        try:
            if len(head) != 64 or hashlib.sha256(payload).hexdigest() != head.decode("ascii"):
                raise ValueError("checksum mismatch")
            arr = np.load(io.BytesIO(payload), allow_pickle=False)
        except (ValueError, OSError, UnicodeDecodeError) as exc:
            warnings.warn(f"activation cache entry {path.name} is corrupt ({exc}); recomputing it", stacklevel=2)
            path.unlink(missing_ok=True)
            STATS.rebuilt += 1
            return None
        with contextlib.suppress(OSError):
            os.utime(path)  # least recently USED: a hit refreshes the entry
        return arr

    def put(self, key: dict[str, Any], array: np.ndarray) -> None:
        """Store atomically, then evict the least recently used entries beyond the budget."""
        if not self.enabled:
            return
        buf = io.BytesIO()
        np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
        payload = buf.getvalue()
        if len(payload) > self.budget * 2**20:
            return  # larger than the whole budget: not worth keeping
        dest = self.path(key)
        try:
            entry = hashlib.sha256(payload).hexdigest().encode("ascii") + b"\n" + payload
            atomic_write(dest, lambda tmp: Path(tmp).write_bytes(entry), mode=0o600)
        except OSError as exc:
            warnings.warn(f"could not write activation cache entry {dest} ({exc}); continuing without it", stacklevel=2)
        self.evict()

    def entries(self) -> list[tuple[float, int, Path]]:
        """``(mtime, size, path)`` of every entry, oldest first."""
        out = []
        for p in self.root.glob("*.npyc") if self.root.is_dir() else []:
            try:
                st = p.stat()
            except OSError:
                continue
            out.append((st.st_mtime, st.st_size, p))
        return sorted(out)

    def evict(self) -> None:
        """Delete the least recently used entries until the folder fits the budget."""
        entries = self.entries()
        total = sum(size for _, size, _ in entries)
        for _, size, path in entries:
            if total <= self.budget * 2**20:
                break
            path.unlink(missing_ok=True)
            total -= size


def hidden_states(
    handle: ModelHandle,
    sequences: Sequence[Sequence[int]] | np.ndarray,
    position: int | None,
    layers: Sequence[int],
    batch_size: int = 32,
    *,
    final: Final = "post_norm",
    cache: ActivationCache | None = None,
) -> np.ndarray:
    """:func:`layerclaims.extract.hidden_states` through the cache: float32 ``[len(layers), n_seqs, d_model]`` at one
    position of every sequence, or ``[len(layers), n_seqs, T, d_model]`` at every position (``position=None``:
    :func:`hidden_state_maps`), the forward pass run only for the layers and blocks not on disk."""
    from layerclaims import extract

    cache = cache or ActivationCache()
    layers = [int(x) for x in layers]
    if not cache.enabled:
        STATS.model_runs += 1
        return np.asarray(extract.hidden_states(handle, sequences, position, layers, batch_size, final=final))
    seqs = [[int(t) for t in row] for row in sequences]
    spans = [(a, min(a + ROWS_PER_ENTRY, len(seqs))) for a in range(0, len(seqs), ROWS_PER_ENTRY)]
    base = {
        "what": "hidden_states",
        "model": str(handle.name),
        "revision": str(handle.revision or ""),
        "device": str(handle.device).split(":")[0],
        "dtype": str(handle.dtype),
        "positions": "all" if position is None else int(position),
        "final": final,
    }
    digests = [sequences_digest(seqs[a:b]) for a, b in spans]
    keys = {(L, k): {**base, "ids": digest, "item": L} for L in layers for k, digest in enumerate(digests)}
    found = {lk: arr for lk, key in keys.items() if (arr := cache.get(key)) is not None}
    missing = [lk for lk in keys if lk not in found]
    STATS.hits += len(found)
    STATS.misses += len(missing)
    if missing:
        STATS.model_runs += 1
        ls = sorted({L for L, _ in missing})
        ks = sorted({k for _, k in missing})
        rows = [r for k in ks for r in range(*spans[k])]
        hs = np.asarray(extract.hidden_states(handle, [seqs[r] for r in rows], position, ls, batch_size, final=final))
        at = 0
        for k in ks:
            a, b = spans[k]
            for li, L in enumerate(ls):
                if (L, k) not in found:
                    found[(L, k)] = hs[li, at : at + b - a]
                    cache.put(keys[(L, k)], found[(L, k)])
            at += b - a
    else:
        STATS.runs_saved += 1
    return np.stack([np.concatenate([found[(L, k)] for k in range(len(spans))]) for L in layers])


def hidden_state_maps(
    handle: ModelHandle,
    sequences: Sequence[Sequence[int]] | np.ndarray,
    layers: Sequence[int] | None = None,
    batch_size: int = 16,
    *,
    final: Final = "post_norm",
) -> np.ndarray:
    """:func:`layerclaims.extract.hidden_state_maps` (every position of equal-length sequences) through the cache."""
    chosen = handle.check_layers(layers)
    return hidden_states(handle, sequences, None, chosen, batch_size, final=final)
