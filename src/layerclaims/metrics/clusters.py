"""Counting clusters in pair statistics: the documented procedure that replaces "3 clusters, judged by eye".

Study A says "at layer 1 the pairwise covariance values form 3 clusters; by layer 20 they have merged into 1; MI is
one blob". A cluster here means what the eye means in a histogram or scatter: a region of high density separated
from the others by a clear valley, holding a visible share of the points. :func:`count_clusters` makes that a
procedure (a kernel density, its modes, and a valley/size/noise test for each mode); :func:`count_pair_clusters`
is a second, pair-aware procedure that explains pair clusters by groups of vectors.

count_clusters(points) -- "kde-modes", the default
=================================================
Input: 1-D values ``[n]`` or 2-D points ``[n, 2]`` (e.g. covariance vs MI of the 31,125 pairs).

1. Standardise robustly: subtract the median, divide each axis by IQR/1.349 (the sd of a normal; the sd when more
   than half the values tie; a constant axis is dropped). In 2-D, whiten by the Gnanadesikan-Kettenring robust
   correlation, so that a tilted (correlated) cloud becomes round. Outliers do not set the scale, and the result
   is the same for shifted or rescaled data (each axis separately; values are rounded to 1e-9 robust sd so the
   copies agree to the bit). The count is therefore invariant to shift and positive scaling (property-tested).
2. Density: bin the points on a grid (3 cells per bandwidth in 1-D, 2 in 2-D) and smooth with a Gaussian kernel
   (``scipy.ndimage.gaussian_filter``). Bandwidth ``h = bw_factor * c * min(1, sd) * n^(-1/(d+4))`` with
   c = 0.9 (Silverman) in 1-D and 1 (Scott) in 2-D, and ``bw_factor = 0.6``: the textbook rules assume one
   Gaussian and over-smooth several clusters (parallel elongated ridges merged at the full rule); the noise test
   of step 4 is what keeps the smaller bandwidth from creating modes. The grid covers the central 99.8 % of each
   axis plus 4 h; the 0.1 % of points beyond on either side (far tails) are not in the density (they could not be
   a 0.5 % cluster anyway) and take the label of the nearest cell. A grid wider than 16,384 cells (1-D) or 400
   per axis (2-D) is coarsened (``diagnostics["coarsened"]``): resolution is then lost inside the bulk.
3. Modes and valleys: every grid cell climbs to its highest neighbour until it reaches a summit (a raw mode); for
   every pair of touching basins the highest pass between them is recorded. Basins are then merged from the
   highest pass down (a maximum spanning tree; the persistence / "elder rule" idea of ToMATo, Chazal et al. 2013,
   and the ridgeline idea of Hennig 2010 for merging mixture components into clusters).
4. At a pass of height ``s`` a component with peak ``P`` counts as a cluster of its own only if ALL hold:
   - valley depth: ``P - s >= min_depth * P`` (default 0.5: the valley is at most half the lower peak; two equal
     unit normals are resolved from about 3.5 sd apart, which is where a person sees two humps);
   - mass: it holds ``>= max(min_mass * n, 10)`` points (default min_mass 0.005: 0.5 %, 156 of 31,125 pairs);
   - noise: ``P - s >= min_z * sqrt(kappa * (P + s))`` with ``kappa`` the sum of squared kernel weights, i.e. the
     peak-to-valley drop is ``min_z`` (default 3) Poisson standard errors of the smoothed counts. This is what
     removes the bumps of sparse tails (lognormal, Student t) that the depth test alone would keep.
   Two clusters stay apart; a component that fails is absorbed by its neighbour. Components separated by empty
   space meet last, nearest first (single linkage), with ``s = 0``. If more than ``max_k`` remain, deeper valleys
   are demanded (min_depth + 0.05 steps); at 0.999 the lightest clusters are merged (``min_depth_used``).
5. Labels: each point gets the cluster of its grid cell (cells of a merged basin follow the cluster on the side
   where they touched it); labels are 0..k-1 ordered by the mean of the first coordinate (0 = leftmost).
6. Stability (``n_boot`` replicates, default 20): the binned counts are resampled (multinomial with the same
   total, i.e. a bootstrap of the points binned on the same grid) and the count recomputed. ``stability`` is the
   fraction of replicates that give the same count; ``boot_counts`` holds them. Cost does not grow with n. NOTE:
   this treats the points as independent. Pairs of vectors are not (a vector enters N - 1 pairs), so for pair
   data this stability is optimistic; the study's interval resamples the marks (vectors) instead, and
   :func:`count_pair_clusters` resamples vectors too.

Diagnostics: bandwidth, grid shape, number of raw modes, cluster fractions, the depth of each kept valley, the
count for depth thresholds 0.1..0.9 (``counts_by_depth``: a count that holds over a wide range of thresholds is
robust), the robust correlation used to whiten, points outside the grid.

What it cannot see. Clusters that touch with no valley (two equal normals less than ~3.5 sd apart, a small cluster
sitting on the shoulder of a big one) are one cluster: this procedure counts humps, not mixture components. A
cluster under 0.5 % of the points (or 10 points) is never counted. In 2-D, a cluster of fewer than ~100 points
may be too sparse for the noise test at this bandwidth (80/15/5 % at n = 1,000: the 50-point cluster is found in
4 of 10 seeds; at n = 3,000, 10 of 10). Very different scales in one data set (a 5 % cluster 1000 sd away)
coarsen the 2-D grid. Structure that exists only in higher dimensions is invisible in the 1-D or 2-D view given.

count_pair_clusters(matrices) -- "pair-groups"
==============================================
Pairs of N vectors drawn from g groups fall into g(g+1)/2 pair types. The procedure: (1) describe each vector by
its row of the pair matrix (its values with all other vectors; robustly standardised; the diagonal replaced by
the row median), (2) keep the principal components of these row profiles that stand out of the noise (singular
value > 1.5 x the max_groups-th one), (3) group the vectors with the kde-modes procedure above on those scores
(a group needs ``min_group_size`` = 3 vectors; groups separated by empty space count), (4) label each pair by its
unordered group pair, (5) merge pair types whose Gaussian summaries (median, robust scale) show no valley deeper
than ``min_depth`` on the segment between their centres (single linkage). Stability resamples 80 % of the
vectors without replacement. At most 3 groups (6 types) with max_k = 6.

Evidence: which procedure gets which case right
===============================================
Single samples, 10 seeds each, n = 1,000 / 3,000 / 31,125 (tests/unit/test_clusters.py runs n = 3,000 and
31,125). "gmm-bic" = Gaussian mixtures k = 1..6 chosen by BIC, no merging (sklearn; ``method="gmm-bic"``; n =
3,000, 3 seeds):

| case (truth)                                        | kde-modes (default)        | gmm-bic          |
|-----------------------------------------------------|----------------------------|------------------|
| 1-4 separated clusters, 1-D and 2-D (1..4)          | all right                  | 2-D k=2: 1 of 3 wrong |
| unequal 80/15/5 %, 1-D (3)                          | all right                  | right            |
| unequal 80/15/5 %, 2-D (3)                          | right at 3,000 and 31,125; 4/10 at 1,000 | right |
| 2 or 3 parallel diagonal ridges, 2-D (2, 3)         | all right                  | 3 ridges: 3, 5, 4 |
| narrow + 8x wider cluster, 1-D (2)                  | all right                  | right            |
| lognormal sigma 0.5 / 1, 1-D (1)                    | all 1                      | 3-5              |
| Student t 3 dof, 1-D and 2-D (1)                    | all 1                      | 3-5              |
| uniform, 1-D and 2-D (1)                            | all 1                      | 5-6              |
| lognormal, independent or correlated, 2-D (1)       | all 1                      | 6                |
| correlated normal r = 0.95, 2-D (1)                 | all 1                      | 1                |

Pair data: N = 250 vectors of 1024 dims from g groups, x_i = a_g u + noise (31,125 covariance values; truth =
number of distinct pair-type levels; the same holds for 2-D covariance vs correlation):

| case (truth)                                        | kde-modes on values | gmm-bic on values | pair-groups |
|-----------------------------------------------------|---------------------|-------------------|-------------|
| g=1 (1)                                             | 1                   | 1                 | 1           |
| g=1, lognormal per-vector scales (1)                | 1                   | 5-6               | 1           |
| g=2, 125/125 (3)                                    | 3                   | 3                 | 3           |
| g=2, 225/25: the (2,2) type is 1 % of pairs (3)     | 3                   | 3                 | 3           |
| g=2, 240/10: the (2,2) type is 0.14 % of pairs (3)  | 2 (below min_mass)  | 4-5               | 3           |
| g=2, types (1,1) and (1,2) coincide (2)             | 2                   | 2                 | 2           |
| g=3, 100/100/50 (6)                                 | 6                   | 6                 | 6           |
| pair values in 2 clusters, no vector groups (2)     | 2                   | 2                 | 1 (blind)   |

Choice for the study: ``count_clusters`` (kde-modes) on the pair values is the statistic of the claims
(``cov_clusters``, ``mi_clusters``, joint 2-D). It measures what the claims say (visible clusters of pair values),
assumes nothing about where they come from, and was right in every case above except a pair type smaller than
its stated mass floor (0.5 %). The pair-aware procedure is right on every vector-group case, including that one,
but is blind by construction to pair clusters that no grouping of the vectors explains, so it is the
cross-check: its vector groups and implied pair types say WHY there are 3 clusters (2 groups of marks?) and it
is what to report when the two disagree. Gaussian mixtures with BIC alone are not used for claims.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal, cast

import numpy as np
from numpy.typing import ArrayLike, NDArray
from threadpoolctl import ThreadpoolController

from layerclaims.errors import UsageError

__all__ = ["ClusterResult", "count_clusters", "count_pair_clusters"]

Method = Literal["kde-modes", "gmm-bic"]


@dataclass(frozen=True)
class ClusterResult:
    """A cluster count with its labels and how stable it is.

    ``n_clusters``: the count (1 <= n_clusters <= max_k). ``labels``: int64 array of length n with values
    0..n_clusters-1, ordered by the mean of the first coordinate of each cluster (label 0 = leftmost).
    ``stability``: fraction of the ``n_boot`` replicates whose count equals ``n_clusters`` (NaN when n_boot = 0).
    ``boot_counts``: the replicate counts. ``method``: the procedure. ``diagnostics``: what a reader needs to judge
    the count (bandwidth, per-cluster mass and valley depth, count as a function of the depth threshold, ...).
    """

    n_clusters: int
    labels: NDArray[np.int64]
    stability: float
    boot_counts: tuple[int, ...]
    method: str
    diagnostics: dict[str, Any] = field(default_factory=dict)

    def count_interval(self, level: float = 0.95) -> tuple[int, int]:
        """Percentile interval of the replicate counts (``(n_clusters, n_clusters)`` without replicates)."""
        if not self.boot_counts:
            return (self.n_clusters, self.n_clusters)
        lo, hi = np.percentile(np.asarray(self.boot_counts), [50 * (1 - level), 50 * (1 + level)])
        return (int(np.floor(lo)), int(np.ceil(hi)))


# ----------------------------------------------------------------------------------------------------------------
# Input checks and robust standardisation
# ----------------------------------------------------------------------------------------------------------------

_QTRIM = 0.001  # fraction of points per side and axis left outside the density grid (far tails; see module doc)
_CELLS_PER_H = {1: 3.0, 2: 2.0}  # grid resolution: cells per bandwidth
_MAX_CELLS = {1: 16384, 2: 400}  # grid cap per axis; beyond it the grid is coarsened (diagnostics["coarsened"])
_PAD_H = 4.0  # grid padding beyond the trimmed range, in bandwidths (the Gaussian kernel is truncated at 4 sd)
_MIN_POINTS = 10  # a cluster needs at least this many points, whatever min_mass says
_SIGNAL_SV = 1.5  # pair-aware grouping: a row-profile component is signal when its singular value is 1.5x noise
_DEPTH_GRID = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def _as_points(points: ArrayLike) -> NDArray[np.float64]:
    try:
        x = np.asarray(points, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"points must be numeric, got {type(points).__name__}: pass a float array") from exc
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or x.shape[1] not in (1, 2):
        raise UsageError(
            f"points must have shape [n] (values) or [n, 2] (2-D points), got {np.shape(points)}: "
            "pass one statistic, or stack two as columns"
        )
    if x.shape[0] < 2:
        raise UsageError(f"need at least 2 points to count clusters, got {x.shape[0]}")
    if not np.all(np.isfinite(x)):
        bad = int(np.sum(~np.isfinite(x)))
        raise UsageError(f"points contain {bad} NaN or infinite values: drop or fix them before counting clusters")
    return x


def _check_params(max_k: int, n_boot: int, min_depth: float, min_mass: float) -> None:
    if int(max_k) != max_k or max_k < 1:
        raise UsageError(f"max_k must be an integer >= 1, got {max_k!r}")
    if int(n_boot) != n_boot or n_boot < 0:
        raise UsageError(f"n_boot must be an integer >= 0, got {n_boot!r}")
    if not 0.0 < min_depth < 1.0:
        raise UsageError(f"min_depth must lie in (0, 1), got {min_depth!r} (0.5: the valley is half the lower peak)")
    if not 0.0 <= min_mass < 0.5:
        raise UsageError(f"min_mass must lie in [0, 0.5), got {min_mass!r} (a fraction of the points)")


def _robust_scale(v: NDArray[np.float64]) -> float:
    """IQR / 1.349 (the sd of a normal); the sd when more than half the values tie; 0 for a constant."""
    q25, q75 = np.percentile(v, [25.0, 75.0])
    s = float(q75 - q25) / 1.349
    if s > 0.0:
        return s
    return float(np.std(v))


def _standardise(x: NDArray[np.float64]) -> tuple[NDArray[np.float64], dict[str, Any]]:
    """Median-centre, divide each axis by its robust scale and, in 2-D, whiten by a robust correlation.

    The correlation is Gnanadesikan-Kettenring's: r = (s(u+v)^2 - s(u-v)^2) / (s(u+v)^2 + s(u-v)^2) with s the
    robust scale of the standardised axes u, v. A constant axis is dropped (the data are then 1-D or constant).
    """
    center = np.median(x, axis=0)
    scales = np.array([_robust_scale(x[:, j]) for j in range(x.shape[1])])
    keep = scales > 0.0
    info: dict[str, Any] = {
        "center": center.tolist(),
        "scale": scales.tolist(),
        "dropped_axes": np.flatnonzero(~keep).tolist(),
    }
    z = (x[:, keep] - center[keep]) / scales[keep]
    info["robust_corr"] = 0.0
    if z.shape[1] == 2:
        sp, sm = _robust_scale(z[:, 0] + z[:, 1]), _robust_scale(z[:, 0] - z[:, 1])
        r = (sp**2 - sm**2) / (sp**2 + sm**2) if sp**2 + sm**2 > 0 else 0.0
        r = float(np.clip(r, -0.98, 0.98))
        info["robust_corr"] = r
        # symmetric inverse square root of [[1, r], [r, 1]]: eigenvectors (1, 1)/sqrt2 and (1, -1)/sqrt2
        a, b = 1.0 / np.sqrt(1.0 + r), 1.0 / np.sqrt(1.0 - r)
        w = 0.5 * np.array([[a + b, a - b], [a - b, a + b]])
        z = z @ w
    # Rounding to 1e-9 robust sd makes a shifted or rescaled copy of the data give bit-identical z (the last-bit
    # differences of the arithmetic above vanish), hence the same grid, density, count and labels.
    return np.round(z, 9), info


# ----------------------------------------------------------------------------------------------------------------
# Density on a grid, its basins (modes) and the saddles between them
# ----------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Grid:
    lo: NDArray[np.float64]
    width: NDArray[np.float64]
    shape: tuple[int, ...]
    sigma_cells: NDArray[np.float64]
    bandwidth: float
    coarsened: bool


def _make_grid(z: NDArray[np.float64], n: int, bw_factor: float) -> _Grid:
    d = z.shape[1]
    spread = min(1.0, float(np.min(np.std(z, axis=0))))
    spread = spread if spread > 0 else 1.0
    # Silverman (1-D: 0.9 n^-1/5) and Scott (2-D: n^-1/6) on the robustly standardised data
    h = bw_factor * (0.9 if d == 1 else 1.0) * spread * n ** (-1.0 / (d + 4))
    qlo = np.quantile(z, _QTRIM, axis=0) - _PAD_H * h
    qhi = np.quantile(z, 1.0 - _QTRIM, axis=0) + _PAD_H * h
    width = np.full(d, h / _CELLS_PER_H[d])
    cells = np.ceil((qhi - qlo) / width).astype(np.int64) + 1
    cap = _MAX_CELLS[d]
    coarsened = bool(np.any(cells > cap))
    width = np.where(cells > cap, (qhi - qlo) / (cap - 1), width)
    cells = np.minimum(cells, cap)
    sigma = np.maximum(h / width, 1.0)
    return _Grid(qlo, width, tuple(int(c) for c in cells), sigma, h, coarsened)


def _cell_index(z: NDArray[np.float64], grid: _Grid) -> tuple[NDArray[np.int64], NDArray[np.bool_]]:
    """Flat cell index of every point (clipped to the grid) and whether the point lies inside the grid."""
    idx = np.floor((z - grid.lo) / grid.width).astype(np.int64)
    shape = np.asarray(grid.shape)
    inside = np.all((idx >= 0) & (idx < shape), axis=1)
    idx = np.clip(idx, 0, shape - 1)
    flat = np.ravel_multi_index(tuple(idx.T), grid.shape)
    return flat, inside


def _density(counts: NDArray[np.float64], grid: _Grid) -> NDArray[np.float64]:
    from scipy.ndimage import gaussian_filter

    f = gaussian_filter(counts.reshape(grid.shape), sigma=tuple(grid.sigma_cells), mode="constant", truncate=4.0)
    f = f.ravel()
    f[f < 1e-12 * max(float(f.max()), 1e-300)] = 0.0
    return f


def _neighbour_offsets(d: int) -> list[tuple[int, ...]]:
    if d == 1:
        return [(1,)]
    return [(0, 1), (1, 0), (1, 1), (1, -1)]


def _shifted_pairs(shape: tuple[int, ...], off: tuple[int, ...]) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Flat indices (a, b) of all cell pairs b = a + off inside the grid."""
    idx = np.arange(int(np.prod(shape))).reshape(shape)
    src = tuple(slice(max(0, -o), s - max(0, o)) for o, s in zip(off, shape, strict=True))
    dst = tuple(slice(max(0, o), s - max(0, -o)) for o, s in zip(off, shape, strict=True))
    return idx[src].ravel(), idx[dst].ravel()


def _basins(f: NDArray[np.float64], shape: tuple[int, ...]) -> NDArray[np.int64]:
    """Basin of attraction of every cell under steepest ascent (ties broken by cell order); -1 where f = 0."""
    fg = np.flatnonzero(f > 0.0)
    rank = np.full(f.size, -1, dtype=np.int64)  # background ranks below every foreground cell
    rank[fg[np.argsort(f[fg], kind="stable")]] = np.arange(fg.size)
    best = np.arange(f.size)
    best_rank = rank.copy()
    offs = _neighbour_offsets(len(shape))
    for off in offs:
        a, b = _shifted_pairs(shape, off)
        for u, v in ((a, b), (b, a)):  # both directions
            better = rank[v] > best_rank[u]
            best[u[better]] = v[better]
            best_rank[u[better]] = rank[v[better]]
    ptr = best
    while True:  # pointer jumping: O(log path length) passes
        nxt = ptr[ptr]
        if np.array_equal(nxt, ptr):
            break
        ptr = nxt
    ptr = ptr.copy()
    ptr[f <= 0.0] = -1
    return ptr


def _saddles(
    f: NDArray[np.float64], basin: NDArray[np.int64], shape: tuple[int, ...]
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float64]]:
    """For every pair of touching basins, the highest pass between them: max over touching cells of min(f, f')."""
    ea, eb, es = [], [], []
    for off in _neighbour_offsets(len(shape)):
        a, b = _shifted_pairs(shape, off)
        ba, bb = basin[a], basin[b]
        m = (ba >= 0) & (bb >= 0) & (ba != bb)
        if np.any(m):
            ea.append(np.minimum(ba[m], bb[m]))
            eb.append(np.maximum(ba[m], bb[m]))
            es.append(np.minimum(f[a[m]], f[b[m]]))
    if not ea:
        return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0)
    a_, b_, s_ = np.concatenate(ea), np.concatenate(eb), np.concatenate(es)
    order = np.lexsort((-s_, b_, a_))  # per (a, b) the highest pass first
    a_, b_, s_ = a_[order], b_[order], s_[order]
    first = np.ones(a_.size, dtype=bool)
    first[1:] = (a_[1:] != a_[:-1]) | (b_[1:] != b_[:-1])
    return a_[first], b_[first], s_[first]


@dataclass
class _Modes:
    n: int
    owner: NDArray[np.int64]  # per basin: the final mode (a basin id) it belongs to, -1 if none
    modes: list[int]
    valleys: list[float]  # relative depth of the valley at each merge of two significant components


def _merge_basins(
    peak: NDArray[np.float64],
    mass: NDArray[np.float64],
    pos: NDArray[np.float64],
    edges: tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float64]],
    min_depth: float,
    min_count: float,
    kappa: float,
    min_z: float,
    gap_is_evidence: bool = False,
    max_modes: int | None = None,
) -> _Modes:
    """Merge basins from the highest pass down (a maximum spanning tree, Kruskal order) with the elder rule.

    At a pass of height s, a component is *significant* if its peak P satisfies P - s >= min_depth * P and it
    holds at least ``min_count`` points. Two significant components stay separate clusters; an insignificant one
    is absorbed by the other (its basins join the mode on the side where they touch). Components that never touch
    (separated by empty space) meet at s = 0, largest first.
    """
    nb = peak.size
    parent = list(range(nb))
    cpeak = peak.tolist()
    cpb = list(range(nb))
    cmass = mass.tolist()
    members: list[list[int]] = [[b] for b in range(nb)]
    modes: list[list[int]] = [[] for _ in range(nb)]
    owner = np.full(nb, -1, dtype=np.int64)
    valleys: list[float] = []

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def significant(c: int, s: float) -> bool:
        p = cpeak[c]
        if modes[c]:
            return True
        if cmass[c] < min_count:
            return False
        if s <= 0.0 and gap_is_evidence:  # isolated by empty space: only the mass is asked for
            return True
        return p - s >= min_depth * p and p - s >= min_z * np.sqrt(kappa * (p + s))

    def join(ra: int, rb: int, s: float, ca: int, cb: int) -> None:
        sa, sb = significant(ra, s), significant(rb, s)
        for c, sig in ((ra, sa), (rb, sb)):
            if sig and not modes[c]:
                modes[c] = [cpb[c]]
                owner[members[c]] = cpb[c]
        if sa and sb and max_modes is not None and len(modes[ra]) + len(modes[rb]) > max_modes:
            # hard cap (only after deeper valleys were asked for): the lighter side joins the heavier one
            if cmass[ra] >= cmass[rb]:
                sb, modes[rb] = False, []
            else:
                sa, modes[ra] = False, []
        if sa and sb:
            new = modes[ra] + modes[rb]
            low = min(cpeak[ra], cpeak[rb])
            valleys.append((low - s) / low if low > 0 else 1.0)
        elif sa:
            new = modes[ra]
            owner[members[rb]] = owner[ca]
        elif sb:
            new = modes[rb]
            owner[members[ra]] = owner[cb]
        else:
            new = []
        big, small = (ra, rb) if len(members[ra]) >= len(members[rb]) else (rb, ra)
        parent[small] = big
        if cpeak[small] > cpeak[big]:
            cpeak[big], cpb[big] = cpeak[small], cpb[small]
        cmass[big] += cmass[small]
        members[big].extend(members[small])
        members[small] = []
        modes[big], modes[small] = new, []

    ea, eb, es = edges
    for i in np.argsort(-es, kind="stable"):
        a, b = int(ea[i]), int(eb[i])
        ra, rb = find(a), find(b)
        if ra != rb:
            join(ra, rb, float(es[i]), a, b)
    # Components that never touch are separated by empty space (density exactly 0): they meet at s = 0, nearest
    # first (single linkage on the distance between their basins' peaks), so that the fragments of one sparse
    # cluster join each other before they are compared with anything else.
    rb_of = np.array([find(b) for b in range(nb)], dtype=np.int64)
    roots = np.unique(rb_of)
    if roots.size > 1:
        from scipy.sparse.csgraph import minimum_spanning_tree

        # "dust": a component whose peak is below z^2 kappa can never pass the z test, alone or joined with other
        # dust at s = 0 (the joined peak is the larger peak), so it cannot change the count: it is attached to the
        # nearest other component at the end, and only the rest enter the spanning tree (speed).
        rpeak = np.array([cpeak[r] for r in roots])
        dust = np.array([not gap_is_evidence and not modes[r] and cpeak[r] < min_z**2 * kappa for r in roots])
        if dust.all():
            dust[int(np.argmax(rpeak))] = False
        live = np.isin(rb_of, roots[~dust])
        lb = np.flatnonzero(live)
        if roots[~dust].size > 1:
            dist = np.sqrt(np.sum((pos[lb][:, None, :] - pos[lb][None, :, :]) ** 2, axis=2))
            tiny = 1e-9 * max(float(dist.max()), 1.0)
            dist[rb_of[lb][:, None] == rb_of[lb][None, :]] = tiny  # already joined: free (0 means "no edge")
            np.fill_diagonal(dist, 0.0)
            mst = minimum_spanning_tree(dist).tocoo()
            for i in np.argsort(mst.data, kind="stable"):
                ea_, eb_ = int(lb[mst.row[i]]), int(lb[mst.col[i]])
                ra, rb = find(ea_), find(eb_)
                if ra != rb:
                    join(ra, rb, 0.0, ea_, eb_)
        for r in roots[dust]:
            pr = pos[cpb[r]]
            near = int(lb[np.argmin(np.sum((pos[lb] - pr) ** 2, axis=1))])
            join(find(near), int(r), 0.0, near, cpb[r])
    final = modes[find(0)] if nb else []
    return _Modes(max(1, len(final)), owner, final, valleys)


@dataclass(frozen=True)
class _Fit:
    n_clusters: int
    cell_label: NDArray[np.int64]  # per grid cell, label 0..k-1 (unordered)
    modes: _Modes
    min_depth_used: float
    n_basins: int
    counts_by_depth: dict[float, int]
    mode_mass: list[float]


def _fit_grid(
    counts: NDArray[np.float64],
    grid: _Grid,
    *,
    max_k: int,
    min_depth: float,
    min_count: float,
    min_z: float,
    gap_is_evidence: bool,
    with_labels: bool,
    with_curve: bool,
) -> _Fit:
    f = _density(counts, grid)
    # sum of squared kernel weights: Var(smoothed count) ~ kappa * count for locally constant Poisson counts
    kappa = float(np.prod(1.0 / (2.0 * grid.sigma_cells * np.sqrt(np.pi))))
    basin = _basins(f, grid.shape)
    peaks = np.flatnonzero(basin == np.arange(basin.size))  # cells that are their own summit
    nb = peaks.size
    lut = np.full(basin.size, -1, dtype=np.int64)
    lut[peaks] = np.arange(nb)
    bid = np.where(basin >= 0, lut[np.maximum(basin, 0)], -1)  # basin index 0..nb-1, -1 background
    peak_h = f[peaks]
    # bincount with float weights returns float64 (numpy's stub types every bincount as intp)
    mass = cast("NDArray[np.float64]", np.bincount(bid[bid >= 0], weights=counts[bid >= 0], minlength=nb))
    pos = np.column_stack(np.unravel_index(peaks, grid.shape)).astype(np.float64)
    edges = _saddles(f, bid, grid.shape)
    depth = min_depth
    while True:
        cap = max_k if depth >= 0.999 else None
        modes = _merge_basins(peak_h, mass, pos, edges, depth, min_count, kappa, min_z, gap_is_evidence, cap)
        if modes.n <= max_k:
            break
        # more modes than max_k: demand deeper valleys; at 0.999 the lightest clusters are merged (hard cap)
        depth = min(0.999, depth + 0.05)
    curve: dict[float, int] = {}
    if with_curve:
        for dd in _DEPTH_GRID:
            curve[dd] = _merge_basins(peak_h, mass, pos, edges, dd, min_count, kappa, min_z, gap_is_evidence).n
    cell_label = np.zeros(0, dtype=np.int64)
    mode_mass: list[float] = []
    if with_labels:
        k = modes.n
        if modes.modes:
            code = {m: i for i, m in enumerate(modes.modes)}
            per_basin = np.array([code.get(int(o), 0) for o in modes.owner], dtype=np.int64)
            cell_label = np.where(bid >= 0, per_basin[np.maximum(bid, 0)], -1)
            if np.any(cell_label < 0):
                from scipy.ndimage import distance_transform_edt

                bg = (cell_label < 0).reshape(grid.shape)
                _, near = distance_transform_edt(bg, return_indices=True)
                flat_near = np.ravel_multi_index(tuple(near), grid.shape).ravel()
                cell_label = cell_label[flat_near]
        else:
            cell_label = np.zeros(f.size, dtype=np.int64)
        mode_mass = np.bincount(cell_label, weights=counts, minlength=k).tolist()
    return _Fit(modes.n, cell_label, modes, depth, nb, curve, mode_mass)


def _order_labels(labels: NDArray[np.int64], first: NDArray[np.float64], k: int) -> NDArray[np.int64]:
    sizes = np.bincount(labels, minlength=k)
    sums = np.bincount(labels, weights=first, minlength=k)
    means = np.where(sizes > 0, sums / np.maximum(sizes, 1), np.inf)
    rank = np.empty(k, dtype=np.int64)
    rank[np.argsort(means, kind="stable")] = np.arange(k)
    return rank[labels]


def _kde_modes(
    x: NDArray[np.float64],
    *,
    max_k: int,
    seed: int,
    n_boot: int,
    min_depth: float,
    min_mass: float,
    min_z: float,
    bw_factor: float,
    min_points: float = _MIN_POINTS,
    gap_is_evidence: bool = False,
    with_curve: bool = True,
) -> ClusterResult:
    n = x.shape[0]
    z, info = _standardise(x)
    if z.shape[1] == 0:  # every axis constant
        return ClusterResult(
            1,
            np.zeros(n, dtype=np.int64),
            float("nan") if n_boot == 0 else 1.0,
            (1,) * n_boot,
            "kde-modes",
            {**info, "note": "constant data"},
        )
    grid = _make_grid(z, n, bw_factor)
    flat, inside = _cell_index(z, grid)
    ncell = int(np.prod(grid.shape))
    counts = np.bincount(flat[inside], minlength=ncell).astype(np.float64)
    min_count = max(min_mass * n, float(min_points))
    # The same fit, with the same gates, for the data and for every stability resample of the binned counts.
    fit_counts = partial(
        _fit_grid,
        grid=grid,
        max_k=max_k,
        min_depth=min_depth,
        min_count=min_count,
        min_z=min_z,
        gap_is_evidence=gap_is_evidence,
    )
    fit = fit_counts(counts, with_labels=True, with_curve=with_curve)
    labels = _order_labels(fit.cell_label[flat], x[:, 0], fit.n_clusters)
    boot: list[int] = []
    if n_boot:
        rng = np.random.default_rng(seed)
        n_in = int(counts.sum())
        p = counts / n_in
        for _ in range(n_boot):
            c = rng.multinomial(n_in, p).astype(np.float64)
            rep = fit_counts(c, with_labels=False, with_curve=False)
            boot.append(rep.n_clusters)
    stability = float(np.mean(np.asarray(boot) == fit.n_clusters)) if boot else float("nan")
    sizes = np.bincount(labels, minlength=fit.n_clusters) / n
    diagnostics = {
        **info,
        "bandwidth": grid.bandwidth,
        "grid_shape": list(grid.shape),
        "coarsened": grid.coarsened,
        "outside_grid": int(np.sum(~inside)),
        "n_raw_modes": fit.n_basins,
        "min_depth_used": fit.min_depth_used,
        "min_count": min_count,
        "cluster_fractions": sizes.tolist(),
        "valley_depths": sorted(fit.modes.valleys),
        "counts_by_depth": {str(k): v for k, v in fit.counts_by_depth.items()},
    }
    return ClusterResult(fit.n_clusters, labels, stability, tuple(boot), "kde-modes", diagnostics)


def _gmm_bic(x: NDArray[np.float64], *, max_k: int, seed: int, n_boot: int, fit_size: int = 5000) -> ClusterResult:
    """Baseline for the evidence table: Gaussian mixtures k = 1..max_k, the k with the lowest BIC, no merging."""
    from sklearn.mixture import GaussianMixture

    n = x.shape[0]
    z, info = _standardise(x)
    if z.shape[1] == 0:
        return ClusterResult(
            1, np.zeros(n, dtype=np.int64), float("nan") if n_boot == 0 else 1.0, (1,) * n_boot, "gmm-bic", info
        )
    rng = np.random.default_rng(seed)

    def best(sample: NDArray[np.float64]) -> tuple[int, Any, list[float]]:
        bics, models = [], []
        for k in range(1, max_k + 1):
            g = GaussianMixture(
                k,
                covariance_type="full",
                random_state=seed,
                n_init=1,
                max_iter=200,
                init_params="k-means++",
                reg_covar=1e-6,
            ).fit(sample)
            bics.append(float(g.bic(sample)))
            models.append(g)
        i = int(np.argmin(bics))
        return i + 1, models[i], bics

    sample = z if n <= fit_size else z[rng.choice(n, fit_size, replace=False)]
    k, model, bics = best(sample)
    raw = model.predict(z)
    _, raw = np.unique(raw, return_inverse=True)
    k = int(raw.max()) + 1
    labels = _order_labels(raw.astype(np.int64), x[:, 0], k)
    boot = [best(z[rng.choice(n, min(n, fit_size), replace=True)])[0] for _ in range(n_boot)]
    stability = float(np.mean(np.asarray(boot) == k)) if boot else float("nan")
    return ClusterResult(k, labels, stability, tuple(boot), "gmm-bic", {**info, "bic": bics})


def count_clusters(
    points: ArrayLike,
    *,
    max_k: int = 6,
    seed: int = 0,
    n_boot: int = 20,
    min_depth: float = 0.5,
    min_mass: float = 0.005,
    min_z: float = 3.0,
    bw_factor: float = 0.6,
    method: Method = "kde-modes",
) -> ClusterResult:
    """Count clusters in 1-D values (shape ``[n]``) or 2-D points (shape ``[n, 2]``): modes of a kernel density
    separated by a valley at least ``min_depth`` deep, holding ``min_mass`` of the points, ``min_z`` standard
    errors above the noise (module docstring: the procedure step by step, the defaults and why, the evidence).

    ``max_k``: the count never exceeds it (deeper valleys are demanded first). ``seed``, ``n_boot``: the seeded
    resamples behind ``stability`` (0 = none, NaN stability). ``bw_factor``: multiplies the Silverman/Scott
    bandwidth. ``method="gmm-bic"`` is the Gaussian-mixture baseline of the evidence table (BIC alone
    over-splits skewed and heavy-tailed data: never use it for claims). NaN/inf, a wrong shape or fewer than 2
    points raise :class:`~layerclaims.errors.UsageError`; constant data give 1 cluster.
    """
    _check_params(max_k, n_boot, min_depth, min_mass)
    x = _as_points(points)
    if method == "kde-modes":
        return _kde_modes(
            x,
            max_k=max_k,
            seed=seed,
            n_boot=n_boot,
            min_depth=min_depth,
            min_mass=min_mass,
            min_z=min_z,
            bw_factor=bw_factor,
        )
    if method == "gmm-bic":
        return _gmm_bic(x, max_k=max_k, seed=seed, n_boot=n_boot)
    raise UsageError(f"unknown method {method!r}: use 'kde-modes' (default) or 'gmm-bic'")


def _pair_values(mats: list[NDArray[np.float64]], idx: NDArray[np.int64]) -> NDArray[np.float64]:
    iu = np.triu_indices(idx.size, 1)
    return np.column_stack([m[np.ix_(idx, idx)][iu] for m in mats])


def _vector_groups(
    mats: list[NDArray[np.float64]], idx: NDArray[np.int64], *, max_groups: int, min_group_size: int, min_depth: float
) -> NDArray[np.int64]:
    """Group the vectors by their row profiles: each vector is described by its pair values with all the others."""
    blocks = []
    for m in mats:
        sub = m[np.ix_(idx, idx)].copy()
        off = sub[~np.eye(idx.size, dtype=bool)]
        med, sc = float(np.median(off)), _robust_scale(off)
        sub = (sub - med) / (sc if sc > 0 else 1.0)
        np.fill_diagonal(sub, np.nan)
        rowmed = np.nanmedian(sub, axis=1)
        sub[np.diag_indices(idx.size)] = rowmed  # a vector's pair with itself is not a pair: use its row median
        blocks.append(sub)
    prof = np.hstack(blocks)
    prof -= prof.mean(axis=0)
    u, sv, _ = np.linalg.svd(prof, full_matrices=False)
    # g groups give at most g - 1 informative components; the max_groups-th singular value is noise and sets
    # the reference: a component is kept when it stands out of the noise by a factor _SIGNAL_SV
    ref = sv[max_groups - 1] if sv.size >= max_groups else 0.0
    ncomp = int(np.sum(sv[: max_groups - 1] > _SIGNAL_SV * ref))
    if ncomp == 0 or sv[0] <= 1e-12:
        return np.zeros(idx.size, dtype=np.int64)
    scores = u[:, :ncomp] * sv[:ncomp]
    return _group_modes(scores, max_groups=max_groups, min_depth=min_depth, min_points=min_group_size).labels


def _gauss_density(pts: NDArray[np.float64], mu: NDArray[np.float64], cov: NDArray[np.float64]) -> NDArray[np.float64]:
    d = mu.size
    inv = np.linalg.inv(cov)
    diff = pts - mu
    q = np.einsum("ij,jk,ik->i", diff, inv, diff)
    return np.exp(-0.5 * q) / np.sqrt((2 * np.pi) ** d * np.linalg.det(cov))


def _segment_depth(
    a: int, b: int, mus: NDArray[np.float64], covs: NDArray[np.float64], w: NDArray[np.float64], n_grid: int = 101
) -> float:
    """Relative depth of the deepest valley of the mixture density on the segment from mean a to mean b.

    1 - min / min(max before the minimum, max after it); 0 when the density is monotone along the segment.
    """
    t = np.linspace(0.0, 1.0, n_grid)[:, None]
    pts = mus[a] + t * (mus[b] - mus[a])
    f = sum(w[c] * _gauss_density(pts, mus[c], covs[c]) for c in range(w.size))
    i = int(np.argmin(f))
    left, right = float(f[: i + 1].max()), float(f[i:].max())
    low = min(left, right)
    return 0.0 if low <= 0 else 1.0 - float(f[i]) / low


def _pair_count(
    mats: list[NDArray[np.float64]], idx: NDArray[np.int64], *, max_k: int, min_group_size: int, min_depth: float
) -> tuple[int, NDArray[np.int64], dict[str, Any]]:
    n = idx.size
    max_groups = max(g for g in range(1, max_k + 1) if g * (g + 1) // 2 <= max_k)
    groups = _vector_groups(mats, idx, max_groups=max_groups, min_group_size=min_group_size, min_depth=min_depth)
    g = int(groups.max()) + 1
    iu = np.triu_indices(n, 1)
    gi, gj = np.minimum(groups[iu[0]], groups[iu[1]]), np.maximum(groups[iu[0]], groups[iu[1]])
    tcode = gi * g + gj
    present, ptype = np.unique(tcode, return_inverse=True)
    vals, _ = _standardise(_pair_values(mats, idx))
    nt = present.size
    d = vals.shape[1]
    mus = np.zeros((nt, d))
    covs = np.zeros((nt, d, d))
    w = np.bincount(ptype, minlength=nt) / ptype.size
    pooled = np.zeros((d, d))
    for t in range(nt):
        v = vals[ptype == t]
        mus[t] = np.median(v, axis=0)
        if v.shape[0] >= _MIN_POINTS:
            c = np.atleast_2d(np.cov(v, rowvar=False))
            sc = np.array([_robust_scale(v[:, j]) for j in range(d)])
            sd = np.sqrt(np.maximum(np.diag(c), 1e-300))
            corr = c / np.outer(sd, sd)
            covs[t] = corr * np.outer(sc, sc)  # robust scales, classical correlation
            pooled += w[t] * covs[t]
    pooled_ok = np.all(np.isfinite(pooled)) and np.linalg.det(pooled) > 0
    floor = 1e-6 * np.eye(d)
    for t in range(nt):
        if not np.linalg.det(covs[t]) > 0:
            covs[t] = pooled if pooled_ok else np.eye(d)
        covs[t] = covs[t] + floor
    # single linkage over pair types: two types are one cluster when no deep valley separates their means
    parent = list(range(nt))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    depths = np.zeros((nt, nt))
    for a in range(nt):
        for b in range(a + 1, nt):
            depths[a, b] = depths[b, a] = _segment_depth(a, b, mus, covs, w)
            if depths[a, b] < min_depth:
                parent[find(b)] = find(a)
    roots = np.array([find(t) for t in range(nt)])
    _, tcl = np.unique(roots, return_inverse=True)
    k = int(tcl.max()) + 1
    diag = {
        "n_groups": g,
        "group_sizes": np.bincount(groups, minlength=g).tolist(),
        "vector_groups": groups.tolist(),
        "pair_types": [(int(c // g), int(c % g)) for c in present],
        "pair_type_fractions": w.tolist(),
        "pair_type_cluster": tcl.tolist(),
        "type_valley_depths": depths.tolist(),
    }
    return k, tcl[ptype].astype(np.int64), diag


def count_pair_clusters(
    matrices: ArrayLike | list[ArrayLike],
    *,
    max_k: int = 6,
    seed: int = 0,
    n_boot: int = 20,
    min_depth: float = 0.5,
    min_group_size: int = 3,
    subsample: float = 0.8,
) -> ClusterResult:
    """Count clusters of the pairs of N vectors by grouping the vectors first (pair-aware procedure).

    ``matrices``: one N x N symmetric pair matrix (e.g. covariance), or a list of them (e.g. [covariance, MI]);
    the diagonal is ignored. Returns labels for the pairs ``i < j`` in ``np.triu_indices(N, 1)`` order, i.e. the
    same order as ``M[np.triu_indices(N, 1)]``. Replicates draw ``subsample * N`` vectors without replacement (the
    vectors, not the pairs, are the independent units). See the module docstring.
    """
    _check_params(max_k, n_boot, min_depth, 0.0)
    raw = matrices if isinstance(matrices, list | tuple) else [matrices]
    mats: list[NDArray[np.float64]] = []
    for m in raw:
        a = _check_pair_matrix(m)
        if mats and a.shape != mats[0].shape:
            raise UsageError(f"pair matrices must share one shape, got {mats[0].shape} and {a.shape}")
        mats.append(a)
    if not mats:
        raise UsageError("no pair matrix given: pass one N x N matrix or a list of them")
    if len(mats) > 2:
        raise UsageError(f"at most 2 pair matrices (a 2-D scatter), got {len(mats)}")
    n = mats[0].shape[0]
    if n < 4:
        raise UsageError(f"need at least 4 vectors (N x N with N >= 4), got N = {n}")
    if not 0.0 < subsample <= 1.0:
        raise UsageError(f"subsample must lie in (0, 1], got {subsample!r}")
    allidx = np.arange(n)
    k, labels, diag = _pair_count(mats, allidx, max_k=max_k, min_group_size=min_group_size, min_depth=min_depth)
    first = mats[0][np.triu_indices(n, 1)]
    labels = _order_labels(labels, first, k)
    boot: list[int] = []
    rng = np.random.default_rng(seed)
    m_sub = max(4, round(subsample * n))
    for _ in range(n_boot):
        idx = np.sort(rng.choice(n, m_sub, replace=False))
        boot.append(_pair_count(mats, idx, max_k=max_k, min_group_size=min_group_size, min_depth=min_depth)[0])
    stability = float(np.mean(np.asarray(boot) == k)) if boot else float("nan")
    return ClusterResult(k, labels, stability, tuple(boot), "pair-groups", diag)


# ----------------------------------------------------------------------------------------------------------------
# cluster_marks: pair clusters carried by groups of marks, single marks listed apart
# ----------------------------------------------------------------------------------------------------------------

_THREADS = ThreadpoolController()  # found once: building one per call reads /proc (~3 ms)
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
    """What :func:`cluster_marks` finds. ``n_clusters``: clusters of pair values carried by groups of at least
    ``min_support`` marks. ``mark_labels`` ``(n,)``: each mark's group 0..n_groups-1 (ordered by the group's median
    pair value), ``-1`` for an outlier mark. ``outlier_marks``: marks that alone carry a streak of pair values
    (listed, not counted). ``pair_types``: which two groups make which cluster, with its size and centre.
    ``boot_counts``: ``n_clusters`` refit on bootstrap resamples of the marks (distinct marks of each resample);
    ``stability``: the fraction equal to ``n_clusters`` (NaN without resamples)."""

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
        """The pair cluster of every pair ``i < j`` (``np.triu_indices(n, 1)`` order); -1 when a mark is an outlier."""
        return pair_cluster_labels(self.mark_labels, self.pair_types)

    def count_interval(self, level: float = 0.95) -> tuple[int, int]:
        """Percentile interval of the resampled counts (``(n_clusters, n_clusters)`` without resamples)."""
        if not self.boot_counts:
            return (self.n_clusters, self.n_clusters)
        lo, hi = np.percentile(np.asarray(self.boot_counts), [50 * (1 - level), 50 * (1 + level)])
        return (int(np.floor(lo)), int(np.ceil(hi)))


def pair_cluster_labels(mark_labels: NDArray[np.int64], pair_types: tuple[PairType, ...]) -> NDArray[np.int64]:
    """Pair cluster of each pair ``i < j`` from the marks' groups and the pair-type table (-1: an outlier mark)."""
    lab = np.asarray(mark_labels, dtype=np.int64)
    n = lab.size
    g = max([t.b for t in pair_types], default=0) + 1
    table = np.full((g, g), -1, dtype=np.int64)
    for t in pair_types:
        table[t.a, t.b] = table[t.b, t.a] = t.cluster
    i, j = np.triu_indices(n, 1)
    li, lj = lab[i], lab[j]
    ok = (li >= 0) & (lj >= 0)
    out = np.full(i.size, -1, dtype=np.int64)
    out[ok] = table[li[ok], lj[ok]]
    return out


def _check_pair_matrix(matrix: ArrayLike) -> NDArray[np.float64]:
    """A pair matrix as float64: square, finite off the diagonal, symmetric (UsageError naming the fix)."""
    a = np.asarray(matrix, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] != a.shape[1]:
        raise UsageError(f"a pair matrix must be square n x n, got shape {a.shape}: pass the full symmetric matrix")
    off = a[~np.eye(a.shape[0], dtype=bool)]
    if not np.all(np.isfinite(off)):
        raise UsageError("a pair matrix has NaN or infinite off-diagonal entries: fix them before counting")
    if not np.allclose(a, a.T, rtol=1e-7, atol=1e-12 * max(float(np.max(np.abs(off), initial=0.0)), 1e-300)):
        raise UsageError("a pair matrix is not symmetric: pass the full symmetric n x n matrix")
    return a


def _check_matrix(matrix: ArrayLike) -> NDArray[np.float64]:
    a = _check_pair_matrix(matrix)
    if a.shape[0] < 4:
        raise UsageError(f"need at least 4 marks (n x n with n >= 4), got n = {a.shape[0]}")
    return a


def _robust_z(sub: NDArray[np.float64]) -> tuple[NDArray[np.float64], float, float]:
    """Off-diagonal values robustly standardised (median, IQR/1.349); the diagonal is the row median. Returns
    ``(z, median, scale)``: ``sub = median + scale * z`` off the diagonal."""
    n = sub.shape[0]
    off = sub[~np.eye(n, dtype=bool)].reshape(n, n - 1)  # row i: mark i's values with the n - 1 others
    q25, med, q75 = np.percentile(off, [25.0, 50.0, 75.0])
    sc = float(q75 - q25) / 1.349
    if not sc > 0:
        sc = float(np.std(off))
    sc = sc if sc > 0 else 1.0
    z = (sub - med) / sc
    z[np.diag_indices(n)] = (np.median(off, axis=1) - med) / sc
    return z, float(med), sc


def _group_modes(
    scores: NDArray[np.float64], *, max_groups: int, min_depth: float, min_points: int, **extra: Any
) -> Any:
    """Groups of vectors (marks) from their principal-component scores: the kde-modes settings that both
    :func:`count_pair_clusters` and :func:`cluster_marks` group with (no resamples, no mass gate, a 3-sigma
    counting-noise gate, a narrower bandwidth, an empty gap between groups counts as evidence)."""
    return _kde_modes(
        scores,
        max_k=max_groups,
        seed=0,
        n_boot=0,
        min_depth=min_depth,
        min_mass=0.0,
        min_z=3.0,
        bw_factor=0.6,
        min_points=min_points,
        gap_is_evidence=True,
        **extra,
    )


def _group_marks(z: NDArray[np.float64], *, max_groups: int, min_support: int, min_depth: float) -> NDArray[np.int64]:
    """Groups of marks from their row profiles (their pair values with every other mark): the signal principal
    components (singular value > 1.5x the ``max_groups``-th), kde-modes on their scores, a group needs
    ``min_support`` marks. Groups are numbered by increasing median pair value."""
    n = z.shape[0]
    prof = z - z.mean(axis=0)
    u, sv = _top_singular(prof, max_groups)
    ref = sv[max_groups - 1] if sv.size >= max_groups else 0.0
    ncomp = min(int(np.sum(sv[: max_groups - 1] > _SIGNAL_SV * ref)), 2)
    if ncomp == 0 or sv[0] <= 1e-12 or n < 2 * min_support:
        return np.zeros(n, dtype=np.int64)
    res = _group_modes(
        u[:, :ncomp] * sv[:ncomp], max_groups=max_groups, min_depth=min_depth, min_points=min_support, with_curve=False
    )
    raw = np.asarray(res.labels, dtype=np.int64)
    k = int(raw.max()) + 1
    level = np.array([np.median(z[raw == g]) for g in range(k)])
    rank = np.empty(k, dtype=np.int64)
    rank[np.argsort(level, kind="stable")] = np.arange(k)
    return rank[raw]


def _top_singular(a: NDArray[np.float64], k: int, n_iter: int = 6) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """The ``k`` leading left singular vectors and values of ``a`` by subspace iteration (Halko, Martinsson & Tropp
    2011, algorithm 4.4) with ``k + 8`` columns and a fixed start: matrix products instead of a full SVD."""
    n = a.shape[0]
    width = min(k + 8, n)
    q = np.linalg.qr(a @ np.random.default_rng(0).normal(size=(a.shape[1], width)))[0]
    for _ in range(n_iter):
        q = np.linalg.qr(a @ np.linalg.qr(a.T @ q)[0])[0]
    ub, sv, _ = np.linalg.svd(q.T @ a, full_matrices=False)
    return (q @ ub)[:, :k], sv[:k]


def _mad(v: NDArray[np.float64], axis: int = 0) -> NDArray[np.float64]:
    return 1.4826 * np.median(np.abs(v - np.median(v, axis=axis, keepdims=True)), axis=axis)


def _atypical(z: NDArray[np.float64], groups: NDArray[np.int64]) -> NDArray[np.bool_]:
    """Marks whose pair values form a streak apart from their group's: for some group h, the median of the mark's
    pair values with h departs from its group's typical row by more than STREAK_Z robust sd of the group's marks
    AND STREAK_WIDTH robust sd of the pair values of that type; or the mark's values with h are SPREAD_RATIO times
    as spread as its group's rows (and STREAK_Z robust sd of the log spread apart). Only groups h of _STREAK_MIN
    marks or more are read: a mark's 9 values with a group of 10 are no visible streak, and too noisy to single a
    mark out."""
    n = z.shape[0]
    flag = np.zeros(n, dtype=bool)
    k = int(groups.max()) + 1
    for h in range(k):
        if (groups == h).sum() < _STREAK_MIN:
            continue
        cols = z[:, groups == h]
        loc, spread = _row_summaries(cols, np.flatnonzero(groups == h))
        for g in range(k):
            mine = groups == g
            if mine.sum() < 3:
                continue
            vals = cols[mine].ravel()
            width = _robust_scale(vals[:: max(1, vals.size // _WIDTH_SAMPLE)])
            dev = np.abs(loc[mine] - np.median(loc[mine]))
            far = (dev > STREAK_Z * _mad(loc[mine])) & (dev > STREAK_WIDTH * width)
            sdev = spread[mine] - np.median(spread[mine])
            wide = (sdev > np.log(SPREAD_RATIO)) & (sdev > STREAK_Z * _mad(spread[mine]))
            flag[np.flatnonzero(mine)[far | wide]] = True
    return flag


def _row_summaries(cols: NDArray[np.float64], members: NDArray[np.int64]) -> tuple[NDArray[np.float64], ...]:
    """Median and log robust spread of each mark's values with the marks ``members`` (the columns ``cols``),
    leaving out a mark's entry with itself (the rows of ``members`` lose their diagonal: an ``m x (m - 1)`` block)."""

    def summarise(v: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        q25, q50, q75 = np.percentile(v, [25, 50, 75], axis=1)
        return q50, np.log(np.maximum((q75 - q25) / 1.349, 1e-12))

    m = members.size
    if m == cols.shape[0]:  # every mark is a member: only the m x (m - 1) block is needed
        loc, spread = np.zeros(m), np.zeros(m)
    else:
        loc, spread = summarise(cols)
    if m >= 2:
        block = cols[members]
        loc[members], spread[members] = summarise(block[~np.eye(m, dtype=bool)].reshape(m, m - 1))
    return loc, spread


def _type_table(
    z: NDArray[np.float64], groups: NDArray[np.int64], min_depth: float
) -> tuple[list[tuple[int, int, int, float, float]], NDArray[np.int64], list[float]]:
    """Pair types of the groups (code, size, median, robust sd; z units) and the pair cluster of each: the modes
    of the mixture of the types' Gaussian summaries (:func:`_mixture_modes`), each type in the basin of its
    centre. Returns ``(rows, cluster of each type, depths of the kept valleys)``."""
    n = z.shape[0]
    g = int(groups.max()) + 1
    i, j = np.triu_indices(n, 1)
    code = np.minimum(groups[i], groups[j]) * g + np.maximum(groups[i], groups[j])
    present, ptype = np.unique(code, return_inverse=True)
    vals = z[i, j]
    nt = present.size
    rows, mus, scs = [], np.zeros(nt), np.zeros(nt)
    w = np.bincount(ptype, minlength=nt) / ptype.size
    for t in range(nt):
        v = vals[ptype == t]
        mus[t] = np.median(v)
        scs[t] = _robust_scale(v) if v.size >= 2 else 0.0
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
    peak, shallowest first (1-D persistence). Each type joins the mode whose basin holds its centre; clusters are
    numbered from the left. Clusters are therefore contiguous ranges of pair values, and a broad type cannot chain
    two levels that a deep valley separates."""
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


def _fit_marks(m: NDArray[np.float64], *, max_groups: int, min_support: int, min_depth: float) -> _MarkFit:
    """Group, flag atypical marks, regroup without them, and merge the pair types into clusters."""
    n = m.shape[0]
    keep = np.arange(n)
    flagged = np.zeros(n, dtype=bool)
    z, med, sc = _robust_z(m)
    groups = _group_marks(z, max_groups=max_groups, min_support=min_support, min_depth=min_depth)
    for _ in range(2):  # flag against the groups of all marks, then once more against the regrouped typical ones
        new = _atypical(z, groups)
        if not new.any() or keep.size - new.sum() < 4:
            break
        flagged[keep[new]] = True
        keep = np.flatnonzero(~flagged)
        z, med, sc = _robust_z(m[np.ix_(keep, keep)])
        groups = _group_marks(z, max_groups=max_groups, min_support=min_support, min_depth=min_depth)
    types, tcl, valleys = _type_table(z, groups, min_depth)
    labels = np.full(n, -1, dtype=np.int64)
    labels[keep] = groups
    raw = [(a, b, k, med + sc * c, sc * w) for a, b, k, c, w in types]  # medians and IQRs are affine-equivariant
    return _MarkFit(int(tcl.max()) + 1, labels, raw, tcl, valleys)


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
       then kde-modes on the scores (:func:`count_pair_clusters`'s grouping); a group needs ``min_support``
       distinct marks (default 8. A smaller set of marks is indistinguishable from a few atypical marks; the
       simulation ``python -m layerclaims.benchmarks mark-clusters`` (20 seeds per one-population case, grouping
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
    4. Stability: ``n_boot`` bootstrap resamples of the marks (with replacement; the distinct marks of each
       resample, a duplicated mark would make an exact duplicate row), each refit from step 1; ``boot_counts``.

    The literal reading (clusters of the pair values themselves, single marks included) is
    :func:`count_clusters` on ``matrix[np.triu_indices(n, 1)]``; report it beside this count.
    """
    m = _check_matrix(matrix)
    if int(n_boot) != n_boot or n_boot < 0:
        raise UsageError(f"n_boot must be an integer >= 0, got {n_boot!r}")
    if int(min_support) != min_support or min_support < 2:
        raise UsageError(f"min_support must be an integer >= 2, got {min_support!r}")
    if not 0.0 < min_depth < 1.0:
        raise UsageError(f"min_depth must lie in (0, 1), got {min_depth!r}")
    max_groups = max(g for g in range(1, max(max_k, 1) + 1) if g * (g + 1) // 2 <= max_k)
    fit_opts = {"max_groups": max_groups, "min_support": int(min_support), "min_depth": min_depth}
    # n x n products are small: one BLAS thread is faster than several, by far on shared cores (measured 10-40x
    # on the 2-core workstation under load), and does not fight the caller's threads
    # The marks in a canonical order (by their row sums, then their diagonal), so that the count, the groups and the
    # resamples do not depend on the order the marks were given in (a property test found a 33-mark case whose
    # count moved with a permutation: the grouping's numerical ties broke differently); labels are mapped back.
    order = np.lexsort((np.diag(m), m.sum(axis=1)))
    m = m[np.ix_(order, order)]
    with _THREADS.limit(limits=1):
        fit, boot = _fit_and_resample(m, seed, int(n_boot), fit_opts)
    labels = fit.labels[np.argsort(order)]
    types = tuple(
        PairType(a, b, npairs, float(c), float(w), int(fit.type_cluster[t]))
        for t, (a, b, npairs, c, w) in enumerate(fit.types)
    )
    sizes = np.bincount(labels[labels >= 0], minlength=max(int(labels.max()) + 1, 1))
    return MarkClusters(
        n_clusters=fit.n_clusters,
        mark_labels=labels,
        outlier_marks=tuple(int(i) for i in np.flatnonzero(labels < 0)),
        pair_types=types,
        stability=float(np.mean(np.asarray(boot) == fit.n_clusters)) if boot else float("nan"),
        boot_counts=tuple(int(b) for b in boot),
        min_support=int(min_support),
        diagnostics={"group_sizes": sizes.tolist(), "valley_depths": fit.valleys},
    )


def _fit_and_resample(
    m: NDArray[np.float64], seed: int | np.random.SeedSequence, n_boot: int, fit_opts: dict[str, Any]
) -> tuple[_MarkFit, list[int]]:
    n = m.shape[0]
    if np.ptp(m[~np.eye(n, dtype=bool)]) <= 1e-9 * max(float(np.abs(m).max()), 1e-300):
        one = [(0, 0, n * (n - 1) // 2, float(m[0, 1]), 0.0)]
        fit = _MarkFit(1, np.zeros(n, dtype=np.int64), one, np.zeros(1, dtype=np.int64), [])
    else:
        fit = _fit_marks(m, **fit_opts)
    rng = np.random.default_rng(seed)
    boot = []
    for _ in range(n_boot):
        idx = np.unique(rng.integers(0, n, n))
        boot.append(_fit_marks(m[np.ix_(idx, idx)], **fit_opts).n_clusters if idx.size >= 4 else 1)
    return fit, boot
