"""The original estimator one pair at a time: the reference :func:`layerclaims.metrics.information.pairwise_mi_cov`
is tested against (and the naive loop the ``pairwise-mi`` and ``punctuation`` benchmarks time)."""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray

from layerclaims.errors import UsageError
from layerclaims.metrics.information import _EPS, _as_float_array, _check_params, keep_mask


def _entropy_bits(p: NDArray[np.float64]) -> float:
    return float(-np.sum(p * np.log2(p + _EPS)))


def mi_cov_pair(
    x: ArrayLike, y: ArrayLike, *, bins: int = 15, z_threshold: float = 5.0, base: float = 2.0
) -> tuple[float, float]:
    """The original ``mutInfo_and_cov(x, y, 5)``, operation by operation: trim dims with ``|z| > z_threshold`` in
    either vector, ``Z = np.histogram2d(x, y, bins)`` on the kept dims, ``pZ = Z / Z.sum()``, marginals by summing,
    ``H = -sum p log2(p + 1e-12) / log2(base)``, ``MI = Hx + Hy - Hxy``; ``cov = sum((x - x̄)(y - ȳ)) / (n - 1)``
    on the same n kept dims. ``(mi, cov)``; fewer than 2 kept dims: ``(nan, nan)``; NaN/inf: UsageError."""
    _check_params(bins, z_threshold, base)
    x = _as_float_array(x, "x", 1)
    y = _as_float_array(y, "y", 1)
    if x.shape != y.shape:
        raise UsageError(f"x and y must have the same length, got {x.shape[0]} and {y.shape[0]}.")
    if x.shape[0] < 2:
        raise UsageError(f"need at least 2 dims per vector to z-score with ddof=1, got {x.shape[0]}.")
    keep = keep_mask(x, z_threshold) & keep_mask(y, z_threshold)
    x = x[keep]
    y = y[keep]
    if x.shape[0] < 2:
        return math.nan, math.nan
    z, _, _ = np.histogram2d(x, y, bins=bins)
    pz = z / z.sum()
    px = np.sum(pz, axis=1)
    py = np.sum(pz, axis=0)
    scale = math.log2(base)
    hx = _entropy_bits(px) / scale
    hy = _entropy_bits(py) / scale
    hxy = _entropy_bits(pz) / scale
    mi = hx + hy - hxy
    cov = float(np.sum((x - np.mean(x)) * (y - np.mean(y))) / (len(x) - 1))
    return mi, cov


def miller_madow_mi_pair(
    x: ArrayLike, y: ArrayLike, *, bins: int = 15, z_threshold: float = 5.0, base: float = 2.0
) -> float:
    """:func:`mi_cov_pair`'s MI plus the Miller–Madow correction ``(mx + my - mxy - 1) / (2 n ln(base))`` (m: the
    non-empty cells of each histogram, n: the kept dims). Fewer than 2 kept dims: NaN."""
    _check_params(bins, z_threshold, base)
    x = _as_float_array(x, "x", 1)
    y = _as_float_array(y, "y", 1)
    if x.shape != y.shape or x.shape[0] < 2:
        raise UsageError(f"x and y must have the same length ≥ 2, got {x.shape[0]} and {y.shape[0]}.")
    mi, _ = mi_cov_pair(x, y, bins=bins, z_threshold=z_threshold, base=base)
    if math.isnan(mi):
        return math.nan
    keep = keep_mask(x, z_threshold) & keep_mask(y, z_threshold)
    z, _, _ = np.histogram2d(x[keep], y[keep], bins=bins)
    n = z.sum()
    m_xy = np.count_nonzero(z)
    m_x = np.count_nonzero(z.sum(axis=1))
    m_y = np.count_nonzero(z.sum(axis=0))
    return mi + (m_x + m_y - m_xy - 1) / (2.0 * n * math.log(base))
