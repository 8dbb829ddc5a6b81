"""Clusters of pair values carried by groups of marks: the count study A's claims are decided on.

A pairwise statistic over n marks (covariance or MI of their hidden states) has n(n-1)/2 values; a cluster of
those values can be a group of marks (pairs within a group, pairs between two groups) or one odd mark, whose n - 1
pairs make a streak of their own (249 pairs of 250 marks). Study A's "3 clusters at layer 1" is a claim about the
first kind. :func:`cluster_marks` counts the clusters that groups of at least ``min_support`` marks carry, lists the
single marks that alone carry a streak apart (``outlier_marks``), and gives the pair-type table: which two groups
make which cluster.

Validation (``python -m benchmarks mark-clusters``; N = 250 marks, D = 1024, 20 seeds per case, the
cases in ``tests/oracles/mark_cases.py``): wrong 0 times in 200 against 42 for the literal count; every
atypical mark flagged; power over the separation of two groups 0 up to delta = 0.2, 0.80 at 0.25, 1.0 from 0.275.
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.linalg import lapack
from threadpoolctl import ThreadpoolController

from layerclaims.errors import UsageError
from layerclaims.metrics.clusters import density_modes, robust_scale
from layerclaims.metrics.order import median, percentiles

_SIGNAL_SV = 1.5  # a row-profile component is signal when its singular value is 1.5x the noise's
_THREADS = ThreadpoolController()  # found once: building one per call reads /proc (~3 ms)


def one_blas_thread() -> Any:
    """A context in which BLAS uses one thread: the n x n products of refitting mark groups are small, and one
    thread is faster than several (10-40x measured on the 2-core workstation under load)."""
    return _THREADS.limit(limits=1)


_WIDTH_SAMPLE = 8192  # values used for the robust sd of a pair type inside the outlier test (a strided sample)
MIN_SUPPORT = 8  # distinct marks a group needs to carry a cluster (simulation: benchmarks/mark_clusters.py)
STREAK_Z = 5.0  # a mark is atypical when its row departs from its group's by this many robust sd of the marks ...
STREAK_WIDTH = 1.0  # ... and by at least this many robust sd of the pair values themselves (a visible streak)
SPREAD_RATIO = 2.0  # ... or when its row is this many times as spread as its group's rows (a direction of its own)
_STREAK_MIN = 30  # a mark's values with a group h are compared only when h has this many marks (a visible streak)


@dataclass(frozen=True)
class PairType:
    """One pair type: the pairs between a mark of group ``a`` and one of group ``b`` (``a <= b``); ``n_pairs``,
    ``centre`` (median pair value) and ``scale`` (robust sd, IQR/1.349), both in the matrix's units, and the pair
    ``cluster`` it falls in."""

    a: int
    b: int
    n_pairs: int
    centre: float
    scale: float
    cluster: int


@dataclass(frozen=True)
class MarkClusters:
    """What :func:`cluster_marks` finds. ``mark_labels`` ``(n,)``: each mark's group 0..n_groups-1 (ordered by the
    group's median pair value), ``-1`` for an outlier mark. ``boot_counts``: ``n_clusters`` refit on bootstrap
    resamples of the marks; ``stability``: the fraction equal to ``n_clusters`` (NaN without resamples)."""

    n_clusters: int
    mark_labels: NDArray[np.int64]
    outlier_marks: tuple[int, ...]
    pair_types: tuple[PairType, ...]
    stability: float
    boot_counts: tuple[int, ...]
    min_support: int
    diagnostics: dict[str, Any] = field(default_factory=dict)

    @property
    def n_groups(self) -> int:
        return int(self.mark_labels.max()) + 1 if self.mark_labels.size and self.mark_labels.max() >= 0 else 0

    def pair_labels(self) -> NDArray[np.int64]:
        """The pair cluster of every pair ``i < j`` (``np.triu_indices(n, 1)`` order) from the marks' groups and the
        pair-type table; -1 when a mark is an outlier."""
        lab = self.mark_labels
        g = max([int(lab.max(initial=0)), *(t.b for t in self.pair_types)]) + 1
        table = np.full((g, g), -1, dtype=np.int64)
        for t in self.pair_types:
            table[t.a, t.b] = table[t.b, t.a] = t.cluster
        i, j = upper_pairs(lab.size)
        li, lj = lab[i], lab[j]
        ok = (li >= 0) & (lj >= 0)
        out = np.full(i.size, -1, dtype=np.int64)
        out[ok] = table[li[ok], lj[ok]]
        return out

    def count_interval(self, level: float = 0.95) -> tuple[int, int]:
        """Percentile interval of the resampled counts (``(n_clusters, n_clusters)`` without resamples)."""
        if not self.boot_counts:
            return (self.n_clusters, self.n_clusters)
        lo, hi = np.percentile(np.asarray(self.boot_counts), [50 * (1 - level), 50 * (1 + level)])
        return (int(np.floor(lo)), int(np.ceil(hi)))


def _check_matrix(matrix: ArrayLike) -> NDArray[np.float64]:
    """A pair matrix as float64: square, n >= 4, finite off the diagonal, symmetric (UsageError naming the fix)."""
    a = np.asarray(matrix, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] != a.shape[1]:
        raise UsageError(f"a pair matrix must be square n x n, got shape {a.shape}: pass the full symmetric matrix")
    off = a[~np.eye(a.shape[0], dtype=bool)]
    if not np.all(np.isfinite(off)):
        raise UsageError("a pair matrix has NaN or infinite off-diagonal entries: fix them before counting")
    if not np.allclose(a, a.T, rtol=1e-7, atol=1e-12 * max(float(np.max(np.abs(off), initial=0.0)), 1e-300)):
        raise UsageError("a pair matrix is not symmetric: pass the full symmetric n x n matrix")
    if a.shape[0] < 4:
        raise UsageError(f"need at least 4 marks (n x n with n >= 4), got n = {a.shape[0]}")
    return a


def _robust_z(
    sub: NDArray[np.float64], copies: NDArray[np.bool_] | None, key: NDArray[np.intp] | None
) -> tuple[NDArray[np.float64], float, float, NDArray[np.float64]]:
    """Off-diagonal values robustly standardised (median, IQR/1.349); the diagonal is the row median. Returns
    ``(z, median, scale, pairs)``: ``sub = median + scale * z`` off the diagonal; ``pairs``, the values of ``z`` at
    the pairs ``i < j`` (``upper_pairs`` order) that are pairs of marks. ``copies`` (``n x n`` bool, a bootstrap
    resample; None: none): pairs of two copies of one mark, which are no pair of marks; they are left out of the
    median, the scale and ``pairs`` and, like the diagonal, set to their row's median. ``key``: :func:`_mark_key`
    of ``copies``."""
    n = sub.shape[0]
    iu = upper_pairs(n)
    excl = np.eye(n, dtype=bool)
    pairs = sub[iu]
    if copies is not None:
        excl |= copies
        pairs = pairs[~copies[iu]]
    first, back = _rows_once(n, key)  # the copies of a mark share their row and exclusions: sorted once
    valid = n - excl[first].sum(axis=1)
    lo, hi = np.maximum((valid - 1) // 2, 0), np.maximum(valid // 2, 0)
    # a row's excluded entries sort last (a row-wise sort: faster than numpy's partition at two ranks)
    row = np.sort(np.where(excl[first], np.inf, sub[first]), axis=1)
    q25, med, q75 = percentiles(pairs, [25.0, 50.0, 75.0])
    r = np.arange(first.size)
    row_med = (0.5 * (row[r, lo] + row[r, hi]))[back]
    sc = float(q75 - q25) / 1.349
    if not sc > 0:
        sc = float(np.std(pairs))
    sc = sc if sc > 0 else 1.0
    z = (sub - med) / sc
    rr, cc = np.nonzero(excl)
    z[rr, cc] = (row_med[rr] - med) / sc
    return z, float(med), sc, (pairs - med) / sc  # the same arithmetic as z's, on the same values


def _mark_key(copies: NDArray[np.bool_] | None) -> NDArray[np.intp] | None:
    """Each row's mark, as the index of the mark's first copy (None without ``copies``): rows with one key are
    copies of one mark."""
    if copies is None or not copies.any():
        return None
    return np.argmax(copies | np.eye(copies.shape[0], dtype=bool), axis=1)


def _rows_once(n: int, key: NDArray[np.intp] | None) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """``(first, back)``: one row per mark (the first of its rows), and for every row its mark's place in
    ``first``: ``v[first][back]`` repeats what was computed per mark to every row (all ``n`` rows without ``key``)."""
    if key is None:
        every = np.arange(n)
        return every, every
    _, first, back = np.unique(key, return_index=True, return_inverse=True)
    return first, back


_UPPER_PAIRS: dict[int, tuple[NDArray[np.intp], NDArray[np.intp]]] = {}


def upper_pairs(n: int) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """``np.triu_indices(n, 1)``, kept per ``n`` (every refit has the same ``n``)."""
    if n not in _UPPER_PAIRS:
        _UPPER_PAIRS[n] = np.triu_indices(n, 1)
    return _UPPER_PAIRS[n]


def _group_marks(z: NDArray[np.float64], *, max_groups: int, min_support: int, min_depth: float) -> NDArray[np.int64]:
    """Groups of marks from their row profiles (their pair values with every other mark): the signal principal
    components (singular value > 1.5x the ``max_groups``-th), kde-modes on their scores (no resamples, no mass
    gate, a 3-sigma counting-noise gate, a narrower bandwidth, an empty gap between groups counts as evidence), a
    group needs ``min_support`` marks. Groups are numbered by increasing median pair value."""
    n = z.shape[0]
    prof = z - z.mean(axis=0)
    u, sv = _top_singular(prof, max_groups)
    ref = sv[max_groups - 1] if sv.size >= max_groups else 0.0
    ncomp = min(int(np.sum(sv[: max_groups - 1] > _SIGNAL_SV * ref)), 2)
    if ncomp == 0 or sv[0] <= 1e-12 or n < 2 * min_support:
        return np.zeros(n, dtype=np.int64)
    res = density_modes(
        u[:, :ncomp] * sv[:ncomp],
        max_k=max_groups,
        seed=0,
        n_boot=0,
        min_depth=min_depth,
        min_mass=0.0,
        min_z=3.0,
        bw_factor=0.6,
        min_points=min_support,
        gap_is_evidence=True,
        with_curve=False,
    )
    raw = np.asarray(res.labels, dtype=np.int64)
    k = int(raw.max()) + 1
    if k == 1:
        return raw
    level = np.array([median(z[raw == g].ravel()) for g in range(k)])
    rank = np.empty(k, dtype=np.int64)
    rank[np.argsort(level, kind="stable")] = np.arange(k)
    return rank[raw]


def _top_singular(a: NDArray[np.float64], k: int, n_iter: int = 6) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """The ``k`` leading left singular vectors and values of ``a`` by subspace iteration (Halko, Martinsson & Tropp
    2011, algorithm 4.4) with ``k + 8`` columns and a fixed start: matrix products instead of a full SVD."""
    width = min(k + 8, a.shape[0])
    q = _orthonormal(a @ _start(a.shape[1], width))
    for _ in range(n_iter):
        q = _orthonormal(a @ _orthonormal(a.T @ q))
    ub, sv, _ = np.linalg.svd(q.T @ a, full_matrices=False)
    return (q @ ub)[:, :k], sv[:k]


@functools.lru_cache(maxsize=8)
def _start(rows: int, cols: int) -> NDArray[np.float64]:
    """The fixed start of :func:`_top_singular`: standard normal, seed 0 (read-only: it is shared)."""
    g = np.random.default_rng(0).normal(size=(rows, cols))
    g.flags.writeable = False
    return g


def _orthonormal(y: NDArray[np.float64]) -> NDArray[np.float64]:
    """``np.linalg.qr(y)[0]`` (the reduced Q of a tall ``y``), by the same LAPACK routines (dgeqrf, dorgqr) called
    directly: equal bit for bit here, without numpy's wrapper and its unused R (20 us against 53 us at 250 x 11)."""
    qr, tau, _, info = lapack.dgeqrf(y)
    q, _, info2 = lapack.dorgqr(qr, tau)
    if info or info2:
        raise np.linalg.LinAlgError(f"QR failed (LAPACK info {info}, {info2})")
    return np.asarray(q)


def _mad(v: NDArray[np.float64]) -> NDArray[np.float64]:
    return 1.4826 * median(np.abs(v - median(v)))


def _atypical(
    z: NDArray[np.float64], groups: NDArray[np.int64], key: NDArray[np.intp] | None = None
) -> NDArray[np.bool_]:
    """Marks whose pair values form a streak apart from their group's (step 2 of :func:`cluster_marks`), read
    against groups h of _STREAK_MIN marks or more only: a mark's 9 values with a group of 10 are no visible streak,
    and too noisy to single a mark out. ``key``: the rows' marks (:func:`_mark_key`), when ``z`` has copies of
    marks (:func:`_robust_z`: the rows of a mark's copies are equal)."""
    n = z.shape[0]
    flag = np.zeros(n, dtype=bool)
    k = int(groups.max()) + 1
    for h in range(k):
        if (groups == h).sum() < _STREAK_MIN:
            continue
        members = np.flatnonzero(groups == h)
        cols = z if members.size == n else z[:, members]  # one group: every column, no copy
        loc, spread = _row_summaries(cols, members, key)
        for g in range(k):
            mine = groups == g
            n_mine = int(mine.sum())
            if n_mine < 3:
                continue
            vals = cols.ravel() if n_mine == n else cols[mine].ravel()
            width = robust_scale(vals[:: max(1, vals.size // _WIDTH_SAMPLE)])
            dev = np.abs(loc[mine] - median(loc[mine]))
            far = (dev > STREAK_Z * _mad(loc[mine])) & (dev > STREAK_WIDTH * width)
            sdev = spread[mine] - median(spread[mine])
            wide = (sdev > np.log(SPREAD_RATIO)) & (sdev > STREAK_Z * _mad(spread[mine]))
            flag[np.flatnonzero(mine)[far | wide]] = True
    return flag


def _row_summaries(
    cols: NDArray[np.float64], members: NDArray[np.int64], key: NDArray[np.intp] | None = None
) -> tuple[NDArray[np.float64], ...]:
    """Median and log robust spread of each mark's values with the marks ``members`` (the columns ``cols``),
    leaving out a mark's entry with itself (the rows of ``members`` lose their diagonal: an ``m x (m - 1)`` block).
    The rows of one mark's copies (one ``key``: equal rows of ``cols``, and in the block equal but for where their
    own entry sits) are summarised once."""

    def summarise(v: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        q25, q50, q75 = percentiles(v, [25.0, 50.0, 75.0])
        return q50, np.log(np.maximum((q75 - q25) / 1.349, 1e-12))

    n, m = cols.shape[0], members.size
    if m == n:  # every mark is a member: only the m x (m - 1) block is needed
        loc, spread = np.zeros(m), np.zeros(m)
    else:
        first, back = _rows_once(n, key)
        loc, spread = (v[back] for v in summarise(cols[first]))
    if m >= 2:
        block = cols if m == n else cols[members]
        first, back = _rows_once(m, None if key is None else key[members])
        loc[members], spread[members] = (v[back] for v in summarise(_off_diagonal(block)[first]))
    return loc, spread


def _off_diagonal(a: NDArray[np.float64]) -> NDArray[np.float64]:
    """The ``n x (n - 1)`` entries of a square ``a`` off its diagonal, row by row (``a[~eye].reshape(n, n - 1)``):
    the flat entries after each diagonal one up to the next, read as rows of ``n + 1``, without the last column."""
    n = a.shape[0]
    return np.ascontiguousarray(a).ravel()[1:].reshape(n - 1, n + 1)[:, :n].reshape(n, n - 1)


def _type_table(
    vals: NDArray[np.float64], groups: NDArray[np.int64], min_depth: float, copies: NDArray[np.bool_] | None = None
) -> tuple[list[tuple[int, int, int, float, float]], NDArray[np.int64], list[float]]:
    """Pair types of the groups (code, size, median, robust sd; z units) and the pair cluster of each: the modes
    of the mixture of the types' Gaussian summaries (:func:`_mixture_modes`), each type in the basin of its
    centre. ``vals``: the pair values (:func:`_robust_z`'s ``pairs``: two copies of one mark make no pair).
    Returns ``(rows, cluster of each type, depths of the kept valleys)``."""
    g = int(groups.max()) + 1
    if g == 1:  # one group: one pair type
        present, ptype = np.zeros(1, dtype=np.int64), np.zeros(vals.size, dtype=np.int64)
    else:
        i, j = upper_pairs(groups.size)
        if copies is not None and copies.any():
            pair = ~copies[i, j]
            i, j = i[pair], j[pair]
        code = np.minimum(groups[i], groups[j]) * g + np.maximum(groups[i], groups[j])
        present = np.flatnonzero(np.bincount(code, minlength=g * g))  # codes are small: no sort needed
        lookup = np.zeros(g * g, dtype=np.int64)
        lookup[present] = np.arange(present.size)
        ptype = lookup[code]
    nt = present.size
    rows, mus, scs = [], np.zeros(nt), np.zeros(nt)
    w = np.bincount(ptype, minlength=nt) / ptype.size
    for t in range(nt):
        v = vals if nt == 1 else vals[ptype == t]
        q25, q50, q75 = percentiles(v, [25.0, 50.0, 75.0])
        mus[t] = q50
        iqr = float(q75 - q25) / 1.349
        scs[t] = 0.0 if v.size < 2 else (iqr if iqr > 0 else float(np.std(v)))  # robust_scale, one partition
        rows.append((int(present[t] // g), int(present[t] % g), int(v.size), float(mus[t]), float(scs[t])))
    positive = scs[scs > 0]
    floor = 0.1 * float(np.min(positive)) if positive.size else 1.0  # a type of one pair: a narrow bump
    cl, valleys = _mixture_modes(mus, np.maximum(scs, floor), w, min_depth)
    return rows, cl, valleys


def _mixture_modes(
    mus: NDArray[np.float64], scs: NDArray[np.float64], w: NDArray[np.float64], min_depth: float, n_grid: int = 4096
) -> tuple[NDArray[np.int64], list[float]]:
    """Clusters of pair types: the modes of ``f(x) = sum_t w_t N(x; mu_t, s_t)`` on a grid; two neighbouring modes
    merge (the lower into the higher) while the valley between them is shallower than ``min_depth`` of the lower
    peak, shallowest first (1-D persistence). Each type joins the mode whose basin holds its centre (numbered from
    the left): a broad type cannot chain two levels that a deep valley separates."""
    x = np.linspace(float(np.min(mus - 5 * scs)), float(np.max(mus + 5 * scs)), n_grid)
    f = np.sum(w[:, None] * np.exp(-0.5 * ((x[None, :] - mus[:, None]) / scs[:, None]) ** 2) / scs[:, None], axis=0)
    inner = (f[1:-1] >= f[:-2]) & (f[1:-1] > f[2:])
    peaks = [int(p) for p in np.flatnonzero(inner) + 1] or [int(np.argmax(f))]
    valleys: list[float] = []
    while len(peaks) > 1:
        lows = [int(p + np.argmin(f[p:q])) for p, q in itertools.pairwise(peaks)]
        depth = [1.0 - f[v] / min(f[p], f[q]) for v, p, q in zip(lows, peaks, peaks[1:], strict=False)]
        k = int(np.argmin(depth))
        if depth[k] >= min_depth:
            valleys = [float(d) for d in depth]
            break
        peaks.pop(k if f[peaks[k]] < f[peaks[k + 1]] else k + 1)
    bounds = [x[int(p + np.argmin(f[p:q]))] for p, q in itertools.pairwise(peaks)]
    return np.searchsorted(np.asarray(bounds), mus).astype(np.int64), valleys


@dataclass(frozen=True)
class _MarkFit:
    n_clusters: int
    labels: NDArray[np.int64]  # -1 = outlier
    types: list[tuple[int, int, int, float, float]]
    type_cluster: NDArray[np.int64]
    valleys: list[float]


def _fit_marks(
    m: NDArray[np.float64],
    *,
    max_groups: int,
    min_support: int,
    min_depth: float,
    copies: NDArray[np.bool_] | None = None,
) -> _MarkFit:
    """Group, flag atypical marks, regroup without them, and merge the pair types into clusters. ``copies``: the
    pairs of two copies of one mark in a bootstrap resample (:func:`_robust_z`), never counted as pairs."""
    n = m.shape[0]
    keep = np.arange(n)
    flagged = np.zeros(n, dtype=bool)
    cp, key = copies, _mark_key(copies)
    z, med, sc, pairs = _robust_z(m, cp, key)
    groups = _group_marks(z, max_groups=max_groups, min_support=min_support, min_depth=min_depth)
    for _ in range(2):  # flag against the groups of all marks, then once more against the regrouped typical ones
        new = _atypical(z, groups, key)
        if not new.any() or keep.size - new.sum() < 4:
            break
        flagged[keep[new]] = True
        keep = np.flatnonzero(~flagged)
        cp = None if copies is None else copies[np.ix_(keep, keep)]
        key = _mark_key(cp)
        z, med, sc, pairs = _robust_z(m[np.ix_(keep, keep)], cp, key)
        groups = _group_marks(z, max_groups=max_groups, min_support=min_support, min_depth=min_depth)
    types, tcl, valleys = _type_table(pairs, groups, min_depth, cp)
    labels = np.full(n, -1, dtype=np.int64)
    labels[keep] = groups
    raw = [(a, b, k, med + sc * c, sc * w) for a, b, k, c, w in types]  # medians and IQRs are affine-equivariant
    return _MarkFit(int(tcl.max()) + 1, labels, raw, tcl, valleys)


def _fit_options(max_k: int, min_support: int, min_depth: float) -> dict[str, Any]:
    """The checked options of :func:`_fit_marks` (UsageError naming a bad one)."""
    if int(min_support) != min_support or min_support < 2:
        raise UsageError(f"min_support must be an integer >= 2, got {min_support!r}")
    if not 0.0 < min_depth < 1.0:
        raise UsageError(f"min_depth must lie in (0, 1), got {min_depth!r}")
    max_groups = max(g for g in range(1, max(max_k, 1) + 1) if g * (g + 1) // 2 <= max_k)
    return {"max_groups": max_groups, "min_support": int(min_support), "min_depth": min_depth}


def refit_resamples(
    matrix: ArrayLike, counts: ArrayLike, *, max_k: int = 6, min_support: int = MIN_SUPPORT, min_depth: float = 0.5
) -> tuple[MarkClusters, ...]:
    """:func:`cluster_marks` refit on bootstrap resamples of the marks: ``counts`` ``[B, n]`` gives each mark's
    multiplicity in each resample (e.g. :func:`~layerclaims.metrics.bootstrap.block_counts`). A resample is the
    matrix of its marks WITH their copies (a group's support counts copies, as the resample is the sample); the
    pairs of two copies of one mark are no pairs (:func:`_robust_z`, :func:`_type_table`). One
    :class:`MarkClusters` per resample, in the marks' original numbering: ``mark_labels`` is the group of each
    mark's first copy (-1 an outlier mark, -2 a mark not drawn); no resamples of its own. A resample with fewer
    than 4 distinct marks is one cluster."""
    m = _check_matrix(matrix)
    c = np.atleast_2d(np.asarray(counts))
    if c.ndim != 2 or c.shape[1] != m.shape[0] or (c < 0).any() or not np.all(c == np.round(c)):
        raise UsageError(f"counts must be [B, {m.shape[0]}] non-negative integer multiplicities, got {c.shape}")
    c = c.astype(np.int64)
    opts = _fit_options(max_k, min_support, min_depth)
    order = np.lexsort((np.diag(m), m.sum(axis=1)))
    back = np.argsort(order)
    m, c = m[np.ix_(order, order)], c[:, order]
    out = []
    with one_blas_thread():
        for b in range(c.shape[0]):
            fit, idx = _refit(m, c[b], opts)
            labels = np.full(m.shape[0], -2, dtype=np.int64)
            if fit is None:
                labels[idx] = 0
                out.append(MarkClusters(1, labels[back], (), (), float("nan"), (), int(min_support)))
                continue
            first = np.r_[True, idx[1:] != idx[:-1]]
            labels[idx[first]] = fit.labels[first]
            labels = labels[back]
            outliers = tuple(int(i) for i in np.flatnonzero(labels == -1))
            out.append(
                MarkClusters(fit.n_clusters, labels, outliers, _pair_types(fit), float("nan"), (), int(min_support))
            )
    return tuple(out)


def _refit(m: NDArray[np.float64], counts: NDArray[np.int64], opts: dict[str, Any]) -> tuple[_MarkFit | None, Any]:
    """:func:`_fit_marks` on the resample that draws mark ``i`` ``counts[i]`` times (copies adjacent), and the
    resample's marks; None for a resample of fewer than 4 distinct marks (one cluster)."""
    idx = np.repeat(np.arange(m.shape[0]), counts)
    if np.unique(idx).size < 4:
        return None, idx
    copies = idx[:, None] == idx[None, :]
    np.fill_diagonal(copies, False)
    return _fit_marks(m[np.ix_(idx, idx)], copies=copies, **opts), idx


def _pair_types(fit: _MarkFit) -> tuple[PairType, ...]:
    return tuple(
        PairType(a, b, k, float(c), float(w), int(fit.type_cluster[t])) for t, (a, b, k, c, w) in enumerate(fit.types)
    )


def cluster_marks(
    matrix: ArrayLike,
    *,
    seed: int | np.random.SeedSequence = 0,
    n_boot: int = 20,
    max_k: int = 6,
    min_support: int = MIN_SUPPORT,
    min_depth: float = 0.5,
) -> MarkClusters:
    """Count the clusters of the pair values of an n x n pairwise statistic (covariance or MI over n marks) that
    GROUPS of marks carry, and list the single marks that alone carry a streak.

    Procedure (on the off-diagonal values, robustly standardised; the diagonal is ignored):

    1. Group the marks by their row profiles (a mark's values with every other mark): signal principal components,
       then kde-modes on the scores (:func:`~layerclaims.metrics.clusters.density_modes`); a group needs ``min_support``
       distinct marks (default 8. A smaller set of marks is indistinguishable from a few atypical marks; the
       simulation ``python -m benchmarks mark-clusters`` (20 seeds per one-population case, grouping
       allowed down to 2 marks) found spurious groups of up to 5 marks under per-mark lognormal scales (sigma 1)
       and 2 under heavy-tailed loadings, none without; 8 leaves a margin and still finds a group of 10 of 250).
    2. Flag atypical marks: a mark whose median pair value with some group departs from its own group's typical
       row by more than 5 robust sd of the group's marks and 1 robust sd of the pair values (its n - 1 pairs form
       a visible streak), or whose values are twice as spread as its group's (a direction of its own). Flagged
       marks are set apart (``outlier_marks``, label -1) and the grouping is redone without them (twice at most).
    3. Pair types: the pairs between two groups, each summarised by a Gaussian (median, robust sd, share of the
       pairs). The pair clusters are the modes of the mixture of these summaries separated by valleys deeper than
       ``min_depth`` of the lower peak (:func:`_mixture_modes`); each type joins the mode of its centre.
       ``n_clusters`` is their number, at most ``max_k`` (so at most 3 groups).
    4. Stability: ``n_boot`` bootstrap resamples of all n marks, each refit from step 1 (:func:`refit_resamples`);
       ``boot_counts``.

    The literal reading (clusters of the pair values themselves, single marks included) is
    :func:`count_clusters` on ``matrix[np.triu_indices(n, 1)]``; report it beside this count.
    """
    m = _check_matrix(matrix)
    if int(n_boot) != n_boot or n_boot < 0:
        raise UsageError(f"n_boot must be an integer >= 0, got {n_boot!r}")
    fit_opts = _fit_options(max_k, min_support, min_depth)
    # The marks in a canonical order (row sums, then diagonal): the grouping's numerical ties break the same way
    # whatever order the marks came in (a property test found a 33-mark count that moved); labels are mapped back.
    order = np.lexsort((np.diag(m), m.sum(axis=1)))
    m = m[np.ix_(order, order)]
    n = m.shape[0]
    with one_blas_thread():
        if np.ptp(m[~np.eye(n, dtype=bool)]) <= 1e-9 * max(float(np.abs(m).max()), 1e-300):
            one = [(0, 0, n * (n - 1) // 2, float(m[0, 1]), 0.0)]
            fit = _MarkFit(1, np.zeros(n, dtype=np.int64), one, np.zeros(1, dtype=np.int64), [])
        else:
            fit = _fit_marks(m, **fit_opts)
        rng = np.random.default_rng(seed)
        boot = []
        for _ in range(int(n_boot)):
            refit, _ = _refit(m, np.bincount(rng.integers(0, n, n), minlength=n), fit_opts)
            boot.append(1 if refit is None else refit.n_clusters)
    labels = fit.labels[np.argsort(order)]
    sizes = np.bincount(labels[labels >= 0], minlength=max(int(labels.max()) + 1, 1))
    return MarkClusters(
        n_clusters=fit.n_clusters,
        mark_labels=labels,
        outlier_marks=tuple(int(i) for i in np.flatnonzero(labels < 0)),
        pair_types=_pair_types(fit),
        stability=float(np.mean(np.asarray(boot) == fit.n_clusters)) if boot else float("nan"),
        boot_counts=tuple(int(b) for b in boot),
        min_support=int(min_support),
        diagnostics={"group_sizes": sizes.tolist(), "valley_depths": fit.valleys},
    )
