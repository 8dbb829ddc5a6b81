"""The row steps of :func:`layerclaims.metrics.mark_clusters.cluster_marks`'s fit in their plain form, every row on
its own (as they were before rows of one mark's copies were summarised once): the reference the fit's robust z and
row summaries are tested against."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray


def robust_z(sub: NDArray[np.float64], copies: NDArray[np.bool_]) -> tuple[NDArray[np.float64], float, float]:
    """Off-diagonal values standardised by the median and IQR/1.349 of the pairs of marks (copies left out); the
    diagonal and the copies' entries set to the row's median over its pairs of marks."""
    n = sub.shape[0]
    iu = np.triu_indices(n, 1)
    pairs = sub[iu][~copies[iu]]
    excl = copies | np.eye(n, dtype=bool)
    valid = n - excl.sum(axis=1)
    lo, hi = np.maximum((valid - 1) // 2, 0), np.maximum(valid // 2, 0)
    row = np.sort(np.where(excl, np.inf, sub), axis=1)
    q25, med, q75 = np.percentile(pairs, [25.0, 50.0, 75.0])
    row_med = 0.5 * (row[np.arange(n), lo] + row[np.arange(n), hi])
    sc = float(q75 - q25) / 1.349
    if not sc > 0:
        sc = float(np.std(pairs))
    sc = sc if sc > 0 else 1.0
    z = (sub - med) / sc
    z[np.diag_indices(n)] = (row_med - med) / sc
    rr, cc = np.nonzero(copies)
    z[rr, cc] = (row_med[rr] - med) / sc
    return z, float(med), sc


def row_summaries(cols: NDArray[np.float64], members: NDArray[np.int64]) -> tuple[NDArray[np.float64], ...]:
    """Median and log robust spread of each row of ``cols``; the rows of ``members`` without their own entry."""

    def summarise(v: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        q25, q50, q75 = np.percentile(v, [25.0, 50.0, 75.0], axis=-1)
        return q50, np.log(np.maximum((q75 - q25) / 1.349, 1e-12))

    m = members.size
    loc, spread = summarise(cols) if m < cols.shape[0] else (np.zeros(m), np.zeros(m))
    if m >= 2:
        block = cols[members]
        loc[members], spread[members] = summarise(block[~np.eye(m, dtype=bool)].reshape(m, m - 1))
    return loc, spread
