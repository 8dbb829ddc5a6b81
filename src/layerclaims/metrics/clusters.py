"""Counting clusters of points: the documented procedure that replaces "3 clusters, judged by eye".

A cluster is what the eye means in a histogram or scatter: a region of high density separated from the others by
a clear valley, holding a visible share of the points. :func:`count_clusters` is that procedure (a kernel density,
its modes, a valley/size/noise test for each mode): study A's *literal* count of the pair values, reported beside
the claims' count (:func:`layerclaims.metrics.mark_clusters.cluster_marks`), which groups the marks with
:func:`density_modes`, the procedure below with every setting explicit.

count_clusters(points) -- "kde-modes", the default
=================================================
Input: 1-D values ``[n]`` or 2-D points ``[n, 2]`` (e.g. covariance vs MI of the 31,125 pairs).

1. Standardise robustly: subtract the median, divide each axis by IQR/1.349 (the sd of a normal; the sd when more
   than half the values tie; a constant axis is dropped). In 2-D, whiten by the Gnanadesikan-Kettenring robust
   correlation, so that a tilted (correlated) cloud becomes round. Outliers do not set the scale; values are
   rounded to 1e-9 robust sd, so the count is invariant to shift and positive scaling of each axis, to the bit.
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
   fraction of replicates that give the same count; ``boot_counts`` holds them. Cost does not grow with n. It
   treats the points as independent; pairs of vectors are not (a vector enters N - 1 pairs), so for pair data it
   is optimistic, and the study's interval resamples the marks instead (``cluster_marks``).

Diagnostics: bandwidth, grid shape, number of raw modes, cluster fractions, the depth of each kept valley, the
count for depth thresholds 0.1..0.9 (``counts_by_depth``: a count that holds over a wide range of thresholds is
robust), the robust correlation used to whiten, points outside the grid.

What it cannot see. Clusters that touch with no valley (two equal normals less than ~3.5 sd apart, a small cluster
sitting on the shoulder of a big one) are one cluster: this procedure counts humps, not mixture components. A
cluster under 0.5 % of the points (or 10 points) is never counted. In 2-D, a cluster of fewer than ~100 points
may be too sparse for the noise test at this bandwidth. Very different scales in one data set (a 5 % cluster 1000
sd away) coarsen the 2-D grid. Structure that exists only in higher dimensions is invisible in the 1-D or 2-D view.

Evidence (which procedure gets which case right, against Gaussian mixtures chosen by BIC):
docs/clusters-evidence.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import Any, cast

import numpy as np
from numpy.typing import ArrayLike, NDArray

from layerclaims.errors import UsageError
from layerclaims.metrics.order import median, percentiles, quantiles

__all__ = ["ClusterResult", "count_clusters", "density_modes", "robust_scale"]


@dataclass(frozen=True)
class ClusterResult:
    """A cluster count (1..max_k) with its labels (int64, length n, 0 = leftmost: module docstring, step 5), its
    ``stability`` (fraction of the ``n_boot`` replicates, ``boot_counts``, that give the same count; NaN when
    n_boot = 0), the procedure (``method``) and the ``diagnostics`` a reader needs to judge the count."""

    n_clusters: int
    labels: NDArray[np.int64]
    stability: float
    boot_counts: tuple[int, ...]
    method: str
    diagnostics: dict[str, Any] = field(default_factory=dict)


_QTRIM = 0.001  # fraction of points per side and axis left outside the density grid (far tails; see module doc)
_CELLS_PER_H = {1: 3.0, 2: 2.0}  # grid resolution: cells per bandwidth
_MAX_CELLS = {1: 16384, 2: 400}  # grid cap per axis; beyond it the grid is coarsened (diagnostics["coarsened"])
_PAD_H = 4.0  # grid padding beyond the trimmed range, in bandwidths (the Gaussian kernel is truncated at 4 sd)
_MIN_POINTS = 10  # a cluster needs at least this many points, whatever min_mass says
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


def robust_scale(v: NDArray[np.float64]) -> float:
    """Robust standard deviation of the values ``v``: IQR / 1.349 (the sd of a normal, in ``v``'s units); the plain
    sd when more than half the values tie (IQR 0); 0 for a constant."""
    q25, q75 = percentiles(v, [25.0, 75.0])
    s = float(q75 - q25) / 1.349
    return s if s > 0.0 else float(np.std(v))


def _standardise(x: NDArray[np.float64]) -> tuple[NDArray[np.float64], dict[str, Any]]:
    """Median-centre, divide each axis by its robust scale and, in 2-D, whiten by a robust correlation.

    The correlation is Gnanadesikan-Kettenring's: r = (s(u+v)^2 - s(u-v)^2) / (s(u+v)^2 + s(u-v)^2) with s the
    robust scale of the standardised axes u, v. A constant axis is dropped (the data are then 1-D or constant).
    """
    center = median(x.T)
    scales = np.array([robust_scale(x[:, j]) for j in range(x.shape[1])])
    keep = scales > 0.0
    info: dict[str, Any] = {
        "center": center.tolist(),
        "scale": scales.tolist(),
        "dropped_axes": np.flatnonzero(~keep).tolist(),
        "robust_corr": 0.0,
    }
    z = (x[:, keep] - center[keep]) / scales[keep]
    if z.shape[1] == 2:
        sp, sm = robust_scale(z[:, 0] + z[:, 1]), robust_scale(z[:, 0] - z[:, 1])
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
    qlo = quantiles(z.T, _QTRIM) - _PAD_H * h
    qhi = quantiles(z.T, 1.0 - _QTRIM) + _PAD_H * h
    width = np.full(d, h / _CELLS_PER_H[d])
    cells = np.ceil((qhi - qlo) / width).astype(np.int64) + 1
    cap = _MAX_CELLS[d]
    coarsened = bool(np.any(cells > cap))
    width = np.where(cells > cap, (qhi - qlo) / (cap - 1), width)
    cells = np.minimum(cells, cap)
    sigma = np.maximum(h / width, 1.0)
    return _Grid(qlo, width, tuple(int(c) for c in cells), sigma, h, coarsened)


def _grid_2d(shape: tuple[int, ...]) -> tuple[int, int]:
    """The grid as ``n0 x n1`` (a 1-D grid of n cells is n x 1) for the compiled steps."""
    return (shape[0], shape[1]) if len(shape) == 2 else (shape[0], 1)


def _basins(f: NDArray[np.float64], shape: tuple[int, ...]) -> NDArray[np.int64]:
    """Basin of attraction of every cell under steepest ascent (ties broken by cell order): the flat index of the
    summit it climbs to; -1 where f = 0 (compiled: :func:`layerclaims.metrics._density_kernel.basins`)."""
    from layerclaims.metrics._density_kernel import basins

    return np.asarray(basins(f, *_grid_2d(shape)))


def _saddles(
    f: NDArray[np.float64], basin: NDArray[np.int64], shape: tuple[int, ...]
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float64]]:
    """For every pair of touching basins (``basin``: 0..nb-1, -1 background), the highest pass between them: max
    over touching cells of min(f, f'); sorted by the pair (cells compiled:
    :func:`~layerclaims.metrics._density_kernel.passes`)."""
    from layerclaims.metrics._density_kernel import passes

    a_, b_, s_ = passes(f, basin, *_grid_2d(shape))
    if a_.size == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0)
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
    is absorbed by the other (its basins join the mode on the side where they touch).
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
    point_label: NDArray[np.int64]  # per point (the cells ``at``), label 0..k-1 (unordered)
    modes: _Modes
    min_depth_used: float
    n_basins: int
    counts_by_depth: dict[float, int]


def _fit_grid(
    counts: NDArray[np.float64],
    grid: _Grid,
    *,
    max_k: int,
    min_depth: float,
    min_count: float,
    min_z: float,
    gap_is_evidence: bool,
    at: NDArray[np.int64] | None,
    with_curve: bool,
) -> _Fit:
    from scipy.ndimage import gaussian_filter

    f = gaussian_filter(counts.reshape(grid.shape), sigma=tuple(grid.sigma_cells), mode="constant", truncate=4.0)
    f = f.ravel()
    f[f < 1e-12 * max(float(f.max()), 1e-300)] = 0.0
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
    point_label = np.zeros(0, dtype=np.int64)
    if at is not None:
        if modes.modes:
            code = {m: i for i, m in enumerate(modes.modes)}
            per_basin = np.array([code.get(int(o), 0) for o in modes.owner], dtype=np.int64)
            point_label = np.where(bid[at] >= 0, per_basin[np.maximum(bid[at], 0)], -1)
            if np.any(point_label < 0):  # a point in an empty cell takes the label of the nearest cell with one
                from scipy.ndimage import distance_transform_edt

                cell_label = np.where(bid >= 0, per_basin[np.maximum(bid, 0)], -1)
                _, near = distance_transform_edt((cell_label < 0).reshape(grid.shape), return_indices=True)
                point_label = cell_label[np.ravel_multi_index(tuple(near), grid.shape).ravel()[at]]
        else:
            point_label = np.zeros(at.size, dtype=np.int64)
    return _Fit(modes.n, point_label, modes, depth, nb, curve)


def _order_labels(labels: NDArray[np.int64], first: NDArray[np.float64], k: int) -> NDArray[np.int64]:
    sizes = np.bincount(labels, minlength=k)
    sums = np.bincount(labels, weights=first, minlength=k)
    means = np.where(sizes > 0, sums / np.maximum(sizes, 1), np.inf)
    rank = np.empty(k, dtype=np.int64)
    rank[np.argsort(means, kind="stable")] = np.arange(k)
    return rank[labels]


def density_modes(
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
    """The kde-modes procedure (module docstring, steps 1-6) on points ``x`` ``[n, d]`` (d = 1 or 2) with every
    setting explicit: :func:`count_clusters` calls it with its defaults, and the mark grouping of
    :func:`~layerclaims.metrics.mark_clusters.cluster_marks` with its own. ``min_points``: the least points a
    cluster holds whatever ``min_mass`` says; ``gap_is_evidence``: components separated by empty space count as
    clusters on their mass alone (no valley or noise test); ``with_curve``: compute ``counts_by_depth``. The
    arguments are not checked here (:func:`count_clusters` checks its own)."""
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
    idx = np.floor((z - grid.lo) / grid.width).astype(np.int64)
    inside = np.all((idx >= 0) & (idx < grid.shape), axis=1)  # points outside the grid take the nearest cell
    flat = np.ravel_multi_index(tuple(np.clip(idx, 0, np.asarray(grid.shape) - 1).T), grid.shape)
    counts = np.bincount(flat[inside], minlength=int(np.prod(grid.shape))).astype(np.float64)
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
    fit = fit_counts(counts, at=flat, with_curve=with_curve)
    labels = _order_labels(fit.point_label, x[:, 0], fit.n_clusters)
    rng = np.random.default_rng(seed)
    n_in = int(counts.sum())
    resamples = (rng.multinomial(n_in, counts / n_in).astype(np.float64) for _ in range(n_boot))
    boot = [fit_counts(c, at=None, with_curve=False).n_clusters for c in resamples]
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
) -> ClusterResult:
    """Count clusters in 1-D values (shape ``[n]``) or 2-D points (shape ``[n, 2]``): modes of a kernel density
    separated by a valley at least ``min_depth`` deep, holding ``min_mass`` of the points, ``min_z`` standard
    errors above the noise (module docstring: the procedure step by step, the defaults and why, the evidence).

    ``max_k``: the count never exceeds it (deeper valleys are demanded first). ``seed``, ``n_boot``: the seeded
    resamples behind ``stability`` (0 = none, NaN stability). ``bw_factor``: multiplies the Silverman/Scott
    bandwidth. NaN/inf, a wrong shape or fewer than 2 points raise :class:`~layerclaims.errors.UsageError`;
    constant data give 1 cluster.
    """
    if int(max_k) != max_k or max_k < 1:
        raise UsageError(f"max_k must be an integer >= 1, got {max_k!r}")
    if int(n_boot) != n_boot or n_boot < 0:
        raise UsageError(f"n_boot must be an integer >= 0, got {n_boot!r}")
    if not 0.0 < min_depth < 1.0:
        raise UsageError(f"min_depth must lie in (0, 1), got {min_depth!r} (0.5: the valley is half the lower peak)")
    if not 0.0 <= min_mass < 0.5:
        raise UsageError(f"min_mass must lie in [0, 0.5), got {min_mass!r} (a fraction of the points)")
    return density_modes(
        _as_points(points),
        max_k=max_k,
        seed=seed,
        n_boot=n_boot,
        min_depth=min_depth,
        min_mass=min_mass,
        min_z=min_z,
        bw_factor=bw_factor,
    )
