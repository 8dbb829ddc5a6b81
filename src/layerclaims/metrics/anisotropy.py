"""Anisotropy of contextual representations (Ethayarajh 2019, "How Contextual are Contextualized Word
Representations?", EMNLP): the mean cosine similarity between the representations of randomly drawn words; a value
near 1 says that all representations point in nearly the same direction.

Every function takes NumPy arrays (rows = representations) and returns ``float64`` values. Cosine similarity is
unitless, in ``[-1, 1]``.
"""

from __future__ import annotations

import numpy as np

from layerclaims.errors import UsageError


def _rows(x: np.ndarray) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 2:
        raise UsageError(f"representations must be a 2-D array [n, d], got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise UsageError("the representations hold NaN or infinite values")
    return arr


def _unit(x: np.ndarray) -> np.ndarray:
    """Each row divided by its length; each row is first divided by its largest |entry| (the direction is the same)
    so that the squares of very small or very large entries neither underflow nor overflow."""
    peak = np.abs(x).max(axis=1) if x.size else np.zeros(len(x))
    if (peak == 0).any():
        raise UsageError(f"row {int(np.flatnonzero(peak == 0)[0])} is the zero vector: its cosine is undefined")
    scaled = x / peak[:, None]
    return scaled / np.linalg.norm(scaled, axis=1)[:, None]


def random_pairs(n: int, n_pairs: int, rng: np.random.Generator, groups: np.ndarray | None = None) -> np.ndarray:
    """``n_pairs`` random index pairs ``[n_pairs, 2]`` of two different rows of ``0..n-1``, drawn uniformly with
    replacement across pairs; with ``groups`` (one label per row, e.g. the sequence a row comes from) the two rows
    of a pair come from different groups, as Ethayarajh draws each word from a different random sentence so that
    two words never share a context. UsageError when no valid pair exists."""
    if n < 2:
        raise UsageError(f"random pairs need at least 2 representations, got {n}")
    if n_pairs < 1:
        raise UsageError(f"n_pairs must be >= 1, got {n_pairs}")
    g = None if groups is None else np.asarray(groups)
    if g is not None:
        if g.shape != (n,):
            raise UsageError(f"groups must hold one label per row ({n}), got shape {g.shape}")
        if np.unique(g).size < 2:
            raise UsageError("all rows come from one group: pairs from different groups need at least 2 groups")
    out = np.empty((0, 2), dtype=np.int64)
    while len(out) < n_pairs:  # rejection sampling: the accepted share is >= 1/2 unless one group dominates
        need = n_pairs - len(out)
        a = rng.integers(0, n, size=2 * need + 8)
        b = rng.integers(0, n, size=2 * need + 8)
        ok = a != b if g is None else g[a] != g[b]
        out = np.concatenate([out, np.stack([a[ok], b[ok]], axis=1)])
    return out[:n_pairs]


def pair_cosines(x: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """Cosine similarity ``u.v / (|u| |v|)`` of each pair of rows of ``x`` ``[n, d]``: float64 ``[n_pairs]``.
    UsageError for a zero row in a pair (undefined cosine) or an index out of range."""
    arr = _rows(x)
    p = np.asarray(pairs, dtype=np.int64)
    if p.ndim != 2 or p.shape[1] != 2:
        raise UsageError(f"pairs must be [n_pairs, 2], got shape {p.shape}")
    if p.size and (p.min() < 0 or p.max() >= len(arr)):
        raise UsageError(f"pair indices must be in 0..{len(arr) - 1}")
    used = np.unique(p)
    unit = np.zeros_like(arr)
    unit[used] = _unit(arr[used])
    return np.einsum("ij,ij->i", unit[p[:, 0]], unit[p[:, 1]])


def mean_pair_cosine(x: np.ndarray, pairs: np.ndarray) -> float:
    """Mean cosine similarity over ``pairs`` of rows of ``x``: Ethayarajh's anisotropy baseline, ``mean_k
    cos(x[i_k], x[j_k])``. 1.0 when all rows point one way, about 0 for isotropic random directions in high
    dimension. UsageError for no pairs."""
    if len(np.asarray(pairs)) == 0:
        raise UsageError("no pairs given: the mean cosine of zero pairs is undefined")
    return float(pair_cosines(x, pairs).mean())


def centre(x: np.ndarray) -> np.ndarray:
    """``x`` minus its mean row (the control that removes a common direction): float64 ``[n, d]``. After centring
    the rows sum to zero, so for equal norms the mean cosine over all distinct pairs is exactly ``-1/(n-1)``."""
    arr = _rows(x)
    return arr - arr.mean(axis=0, keepdims=True)


def self_similarity(x: np.ndarray, words: np.ndarray) -> float:
    """Ethayarajh's self-similarity: for each word with 2+ occurrences, the mean cosine over all pairs of its
    occurrences' representations (rows of ``x`` with the same label in ``words``); then the mean over those words.
    NaN when no word occurs twice. Falls with depth in contextual models (less context-free)."""
    arr = _rows(x)
    w = np.asarray(words)
    if w.shape != (len(arr),):
        raise UsageError(f"words must hold one label per row ({len(arr)}), got shape {w.shape}")
    means = []
    for word in np.unique(w):
        idx = np.flatnonzero(w == word)
        if len(idx) < 2:
            continue
        u = _unit(arr[idx])
        c = u @ u.T
        k = len(idx)
        means.append((c.sum() - np.trace(c)) / (k * (k - 1)))
    return float(np.mean(means)) if means else float("nan")
