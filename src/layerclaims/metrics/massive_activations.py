"""Massive activations (Sun, Chen, Kolter & Liu 2024, arXiv 2402.17762): a few residual-stream entries that are
orders of magnitude larger than the rest, in fixed dimensions and at fixed positions.

Every function takes NumPy arrays (float, any precision) and returns NumPy values; hidden states are ``[..., T, d]``
(positions by dimensions, leading axes e.g. sequences), read as absolute values. Units: the residual stream's own.
"""

from __future__ import annotations

import numpy as np

from layerclaims.errors import UsageError

ABS_THRESHOLD = 100.0
"""Sun et al.'s absolute floor: a massive activation has ``|a| > 100``."""
RATIO = 1000.0
"""Sun et al.'s relative floor: a massive activation has ``|a| >= 1000 x`` the median ``|a|`` of its hidden state."""


def _hidden(h: np.ndarray) -> np.ndarray:
    """``|h|`` in float64, each hidden state flattened: ``[..., T * d]``."""
    arr = np.asarray(h)
    if arr.ndim < 2:
        raise UsageError(f"a hidden state must be [..., positions, dims] (2-D or more), got shape {arr.shape}")
    if arr.shape[-1] == 0 or arr.shape[-2] == 0:
        raise UsageError(f"a hidden state needs at least one position and one dimension, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise UsageError("the hidden state holds NaN or infinite values: check the model's dtype (overflow)")
    return np.abs(arr.astype(np.float64, copy=False)).reshape(*arr.shape[:-2], -1)


def massive_mask(h: np.ndarray, *, abs_threshold: float = ABS_THRESHOLD, ratio: float = RATIO) -> np.ndarray:
    """Which entries of each hidden state ``[..., T, d]`` are massive activations (bool, same shape).

    Rule (Sun et al. 2024, section 2): ``|a| > abs_threshold`` and ``|a| >= ratio * median(|h|)``, the median over
    that hidden state's every position and dimension (one median per leading index, e.g. per sequence). Both
    thresholds are non-negative; ``abs_threshold=0, ratio=0`` marks every non-zero entry. An all-zero hidden
    state has no massive entry. Invariant to the sign of ``h``; with ``abs_threshold=0`` invariant to scaling."""
    if not (np.isfinite(abs_threshold) and abs_threshold >= 0 and np.isfinite(ratio) and ratio >= 0):
        raise UsageError(f"abs_threshold and ratio must be finite and >= 0, got {abs_threshold!r}, {ratio!r}")
    a = _hidden(h)
    mask = (a > abs_threshold) & (a >= ratio * np.median(a, axis=-1, keepdims=True))
    return mask.reshape(np.shape(h))


def massive_dims(mask: np.ndarray) -> np.ndarray:
    """The dimensions (last axis) holding at least one massive entry anywhere in ``mask`` ``[..., T, d]``: sorted
    int array (empty when there is none)."""
    m = np.asarray(mask, dtype=bool)
    return np.flatnonzero(m.reshape(-1, m.shape[-1]).any(axis=0))


def top_ratio(h: np.ndarray) -> np.ndarray:
    """``max |a| / median |a|`` of each hidden state ``[..., T, d]``: shape ``[...]``, unitless, >= 1 (inf when
    the median is 0, or so small that the ratio overflows, and the maximum is not; 1 for an all-zero state). Sun et
    al.'s figures plot the top activations against this median; a continuous companion of :func:`massive_mask`'s
    ratio rule."""
    a = _hidden(h)
    top, med = a.max(axis=-1), np.median(a, axis=-1)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        out = np.where(top == 0, 1.0, top / med)
    return np.asarray(out, dtype=np.float64)


def onset_layer(present: np.ndarray) -> int | None:
    """The first layer with a massive activation: ``min {L : present[L]}`` over a 1-D bool array indexed by
    layer; None when no layer has one. Sun et al.: they "appear abruptly" in an early layer and stay."""
    p = np.asarray(present, dtype=bool)
    if p.ndim != 1:
        raise UsageError(f"present must be one bool per layer (1-D), got shape {p.shape}")
    hits = np.flatnonzero(p)
    return int(hits[0]) if hits.size else None
