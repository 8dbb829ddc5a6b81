"""The general bootstrap over items of statistics of item x item matrices: the reference for the batched intervals
of study B (``layerclaims.studies.qk.analysis``) and for :func:`~layerclaims.metrics.bootstrap.pair_moments`. The
pair formed by two copies of one item is set to NaN (excluded), as rsatoolbox does when it bootstraps patterns;
every statistic of :mod:`layerclaims.metrics.similarity` skips NaN pairs."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from layerclaims.errors import UsageError
from layerclaims.metrics.bootstrap import bootstrap_indices, percentile_interval
from layerclaims.metrics.similarity import as_array


@dataclass(frozen=True)
class BootstrapCI:
    """A bootstrap result: the statistic on all items, its percentile interval and how it was obtained. ``n_valid``
    counts the finite replicates the interval is built from; ``replicates`` holds all of them (NaN included)."""

    estimate: float
    low: float
    high: float
    level: float
    n_boot: int
    n_valid: int
    seed: int
    replicates: np.ndarray

    @property
    def ci(self) -> tuple[float, float]:
        return (self.low, self.high)


def resample_matrix(S: Any, idx: Any) -> np.ndarray:
    """``S[idx][:, idx]`` with the pairs of two copies of one item (``a != b``, ``idx[a] == idx[b]``) set to NaN;
    the diagonal keeps ``S[i, i]``."""
    S = as_array(S, name="S")
    if S.ndim != 2 or S.shape[0] != S.shape[1]:
        raise UsageError(f"S must be a square item x item matrix, got shape {S.shape}")
    idx = np.asarray(idx, dtype=np.intp)
    sub = S[np.ix_(idx, idx)]
    dup = idx[:, None] == idx[None, :]
    np.fill_diagonal(dup, False)
    sub[dup] = np.nan
    return sub


def bootstrap_similarity(
    statistic: Callable[..., float],
    matrices: Sequence[Any],
    *,
    labels: Sequence[Hashable] | np.ndarray | None = None,
    stratify: bool = False,
    min_distinct: int | None = None,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    max_nan_fraction: float = 0.1,
) -> BootstrapCI:
    """``statistic(*submatrices)`` (``labels=labels[idx]`` passed when ``labels`` is given) on
    :func:`resample_matrix` of every matrix with the same draws ``idx`` of :func:`bootstrap_indices`; the estimate
    is the statistic on the full matrices. A replicate where the statistic raises :class:`UsageError` is NaN.
    ``stratify=True`` resamples within each label, keeping ``min_distinct`` (default 2) distinct items each."""
    mats = [as_array(M, name="matrix") for M in matrices]
    if not mats:
        raise UsageError("bootstrap_similarity needs at least one matrix")
    n = mats[0].shape[0]
    for M in mats:
        if M.ndim != 2 or M.shape != (n, n):
            raise UsageError(f"all matrices must be n x n over the same items; got shapes {[m.shape for m in mats]}")
    if stratify and labels is None:
        raise UsageError("stratify=True needs labels: pass one category label per item")
    lab = None
    if labels is not None:
        lab = np.asarray(list(labels.tolist() if isinstance(labels, np.ndarray) else labels), dtype=object)
        if lab.size != n:
            raise UsageError(f"got {lab.size} labels for {n} items: pass one label per item")
    if min_distinct is None:
        min_distinct = 2 if stratify else 1
    idx = bootstrap_indices(n, n_boot, seed=seed, strata=lab if stratify else None, min_distinct=min_distinct)

    def call(subs: list[np.ndarray], rows: np.ndarray | None) -> float:
        if lab is None:
            return float(statistic(*subs))
        return float(statistic(*subs, labels=list(lab if rows is None else lab[rows])))

    estimate = call(mats, None)

    def replicate(row: np.ndarray) -> float:
        try:
            return call([resample_matrix(M, row) for M in mats], row)
        except UsageError:
            return float("nan")

    reps = np.array([replicate(row) for row in idx], dtype=np.float64)
    lo, hi = percentile_interval(reps, level, max_nan_fraction=max_nan_fraction)
    return BootstrapCI(estimate, lo, hi, float(level), int(n_boot), int(np.isfinite(reps).sum()), int(seed), reps)
