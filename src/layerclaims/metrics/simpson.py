"""Simpson's paradox: a pooled association whose sign is opposite to the association inside every cluster.

Claim A6 (``../shared/docs/claims.md``): over all pairs of comma vectors at layer 1, MI falls with covariance
(pooled r < 0), yet within each covariance cluster the slope of MI on covariance is positive. :func:`simpson`
measures both sides and their uncertainty:

* pooled: Pearson ``r = cov(x, y) / (sd(x) sd(y))`` and the OLS slope of y on x, ``b = cov(x, y) / var(x)`` (units:
  y per unit x), intercept ``mean(y) - b mean(x)``; the same numbers as ``scipy.stats.linregress``.
* per cluster: r, slope, intercept and size. A cluster with fewer than ``min_cluster_size`` points or with zero
  variance in x (slope undefined) is reported with the reason and excluded from everything below.
* ``weighted_slope = sum_k n_k b_k / sum_k n_k`` over the included clusters (size-weighted within slope).
* ``paradox``: at least 2 clusters are included and the sign of the pooled slope is opposite to the sign of EVERY
  included within slope (a zero slope, ``|r| < 1e-9``, has no sign and breaks the paradox). ``paradox_weighted``:
  the pooled sign is opposite to the sign of ``weighted_slope``. Both are invariant to positive affine maps of x
  and of y (signs of slopes are).
* bootstrap percentile intervals (seeded) for the pooled r and slope, each included cluster's r and slope, the
  weighted slope and the smallest within slope, plus ``paradox_support``: the fraction of replicates in which
  ``paradox`` holds (a replicate where a slope is undefined counts as "no paradox").

Cluster labels are FIXED: a replicate re-weights points, it does not re-cluster. The resampling unit is one of

* points (default): points drawn with replacement;
* ``units``: one unit id per point; units are drawn with replacement and carry all their points (cluster bootstrap,
  for points that come in dependent groups);
* ``pairs``: the point ``p`` is the pair of items ``(pairs[0][p], pairs[1][p])`` (study A: a point is a pair of
  vectors and its x, y are the pair's covariance and MI). Items are drawn with replacement; a pair of distinct
  items drawn ``c_i`` and ``c_j`` times counts ``c_i c_j`` times, and pairs of two copies of one item are excluded
  (the same rule as :func:`layerclaims.metrics.bootstrap.resample_matrix`).

All three are weighted regressions with integer weights, computed for a batch of replicates as one matrix product
(no Python loop over replicates or points): 1000 replicates over 31,125 pairs take about a second.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from layerclaims.errors import UsageError
from layerclaims.metrics.bootstrap import item_counts, pair_weights, percentile_interval
from layerclaims.metrics.similarity import as_array

__all__ = ["ClusterFit", "SimpsonResult", "simpson"]

_ZERO_R = 1e-9  # |r| below this is "no sign"
_BATCH_ELEMENTS = 4_000_000  # replicate weights held at once (floats): ~32 MB


@dataclass(frozen=True)
class ClusterFit:
    """One cluster: its label, size and fit; ``included=False`` with ``reason`` when left out of the comparison."""

    label: Any
    size: int
    r: float
    slope: float
    intercept: float
    included: bool
    reason: str = ""
    r_ci: tuple[float, float] | None = None
    slope_ci: tuple[float, float] | None = None


@dataclass(frozen=True)
class SimpsonResult:
    """Pooled vs within-cluster association of y on x; see the module docstring for every field's definition."""

    n: int
    pooled_r: float
    pooled_slope: float
    pooled_intercept: float
    clusters: tuple[ClusterFit, ...]
    weighted_slope: float
    min_within_slope: float
    paradox: bool
    paradox_weighted: bool
    pooled_r_ci: tuple[float, float] | None = None
    pooled_slope_ci: tuple[float, float] | None = None
    weighted_slope_ci: tuple[float, float] | None = None
    min_within_slope_ci: tuple[float, float] | None = None
    paradox_support: float = float("nan")
    n_boot: int = 0
    level: float = 0.95
    seed: int = 0
    resampling: str = "points"

    @property
    def included(self) -> tuple[ClusterFit, ...]:
        """The clusters that enter the comparison."""
        return tuple(c for c in self.clusters if c.included)

    @property
    def excluded(self) -> dict[str, str]:
        """``{str(label): reason}`` for every cluster left out."""
        return {str(c.label): c.reason for c in self.clusters if not c.included}


def _fit(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """(r, slope, intercept) of OLS y on x; r NaN when y (or x) is constant, slope NaN when x is constant."""
    mx, my = x.mean(), y.mean()
    dx, dy = x - mx, y - my
    sxx, syy, sxy = dx @ dx, dy @ dy, dx @ dy
    slope = sxy / sxx if sxx > 0 else float("nan")
    r = float(np.clip(sxy / np.sqrt(sxx * syy), -1.0, 1.0)) if sxx > 0 and syy > 0 else float("nan")
    intercept = my - slope * mx if sxx > 0 else float("nan")
    return r, float(slope), float(intercept)


def _sign(r: float | np.ndarray) -> np.ndarray:
    r = np.asarray(r, dtype=np.float64)
    return np.where(np.isfinite(r) & (np.abs(r) >= _ZERO_R), np.sign(np.nan_to_num(r)), 0.0)


def _paradox(pooled_sign: np.ndarray, within_signs: np.ndarray) -> np.ndarray:
    """within_signs: (..., K). True where pooled sign != 0 and every within sign is its opposite (K >= 2)."""
    if within_signs.shape[-1] < 2:
        return np.zeros(np.shape(pooled_sign), dtype=bool)
    return (pooled_sign != 0) & np.all(within_signs == -pooled_sign[..., None], axis=-1)


def _cluster_order(labels: list[Hashable]) -> list[Hashable]:
    # sorted when the labels compare with each other (str, int), else in first-seen order: sorted() is tried and
    # its TypeError caught, so the list holds any hashables (Any: Hashable alone promises no ordering)
    uniq: list[Any] = list(dict.fromkeys(labels))
    try:
        return sorted(uniq)
    except TypeError:
        return uniq


def simpson(
    x: Any,
    y: Any,
    labels: Sequence[Hashable] | np.ndarray,
    *,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    min_cluster_size: int = 3,
    units: Sequence[Hashable] | np.ndarray | None = None,
    pairs: tuple[Any, Any] | None = None,
) -> SimpsonResult:
    """Pooled vs within-cluster Pearson r and OLS slope of ``y`` on ``x``, the paradox flags and bootstrap intervals.

    ``x``, ``y``: 1-D, same length, finite. ``labels``: the cluster of each point (any hashable). ``n_boot=0``
    skips the bootstrap (intervals None). ``units`` / ``pairs`` choose the resampling unit (module docstring); at
    most one. Clusters are listed in sorted label order (first appearance if labels do not sort).

    :class:`UsageError` for mismatched lengths, NaN/inf, fewer than 3 points, zero variance of x over all points,
    or both ``units`` and ``pairs``.
    """
    x, y = as_array(x, name="x").ravel(), as_array(y, name="y").ravel()
    n = x.size
    lab = list(labels.tolist() if isinstance(labels, np.ndarray) else labels)
    if y.size != n or len(lab) != n:
        raise UsageError(f"x, y and labels must have one entry per point; got {n}, {y.size}, {len(lab)}")
    if n < 3:
        raise UsageError(f"simpson needs at least 3 points, got {n}")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise UsageError("x or y contains NaN or inf: drop those points first")
    if units is not None and pairs is not None:
        raise UsageError("pass units or pairs, not both: they are two different resampling units")
    if not 0.0 < level < 1.0:
        raise UsageError(f"level must be in (0, 1), got {level}")
    pooled_r, pooled_slope, pooled_intercept = _fit(x, y)
    if not np.isfinite(pooled_slope):
        raise UsageError("x is constant over all points, so no slope of y on x exists")

    order = _cluster_order(lab)
    code_of = {c: k for k, c in enumerate(order)}
    codes = np.array([code_of[v] for v in lab], dtype=np.intp)
    fits: list[dict[str, Any]] = []
    for k, c in enumerate(order):
        m = codes == k
        size = int(m.sum())
        r, b, a = _fit(x[m], y[m])
        reason = ""
        if size < min_cluster_size:
            reason = f"size {size} < min_cluster_size {min_cluster_size}"
        elif not np.isfinite(b):
            reason = "zero variance in x (slope undefined)"
        fits.append(dict(label=c, size=size, r=r, slope=b, intercept=a, included=not reason, reason=reason))
    inc = [k for k, f in enumerate(fits) if f["included"]]
    sizes = np.array([fits[k]["size"] for k in inc], dtype=np.float64)
    slopes = np.array([fits[k]["slope"] for k in inc])
    weighted = float(sizes @ slopes / sizes.sum()) if inc else float("nan")
    min_within = float(slopes.min()) if inc else float("nan")
    pooled_sign = _sign(pooled_r)
    paradox = bool(_paradox(pooled_sign, _sign(np.array([fits[k]["r"] for k in inc]))))
    w_scale = float(sizes @ np.abs(slopes) / sizes.sum()) if inc else 0.0
    paradox_weighted = bool(
        inc and pooled_sign != 0 and abs(weighted) > _ZERO_R * w_scale and np.sign(weighted) == -pooled_sign
    )

    boot: dict[str, Any] = {}
    resampling = "points" if units is None and pairs is None else ("units" if units is not None else "pairs")
    if n_boot > 0:
        boot = _bootstrap(x, y, codes, inc, n_boot, level, seed, units, pairs)
    clusters = tuple(
        ClusterFit(
            **f,
            r_ci=boot["cluster_r"][inc.index(k)] if boot and k in inc else None,
            slope_ci=boot["cluster_slope"][inc.index(k)] if boot and k in inc else None,
        )
        for k, f in enumerate(fits)
    )
    return SimpsonResult(
        n=n,
        pooled_r=pooled_r,
        pooled_slope=pooled_slope,
        pooled_intercept=pooled_intercept,
        clusters=clusters,
        weighted_slope=weighted,
        min_within_slope=min_within,
        paradox=paradox,
        paradox_weighted=paradox_weighted,
        pooled_r_ci=boot.get("pooled_r"),
        pooled_slope_ci=boot.get("pooled_slope"),
        weighted_slope_ci=boot.get("weighted"),
        min_within_slope_ci=boot.get("min_within"),
        paradox_support=boot.get("support", float("nan")),
        n_boot=int(n_boot),
        level=float(level),
        seed=int(seed),
        resampling=resampling,
    )


def _bootstrap(
    x: np.ndarray,
    y: np.ndarray,
    codes: np.ndarray,
    inc: list[int],
    n_boot: int,
    level: float,
    seed: int,
    units: Any,
    pairs: Any,
) -> dict[str, Any]:
    """Weighted-moment bootstrap: replicate weights W (b x n points), all sums as W @ F in one product per batch.

    Clusters stay as decided on the full sample: a replicate never re-includes or drops one; a cluster whose
    replicate weight falls below 2 points or whose x variance vanishes gives NaN for that replicate.
    """
    n = x.size
    if pairs is not None:
        pi, pj = (np.asarray(p, dtype=np.intp).ravel() for p in pairs)
        if pi.size != n or pj.size != n:
            raise UsageError(f"pairs must give two item indices per point: got {pi.size} and {pj.size} for {n}")
        if np.any(pi == pj) or np.any(pi < 0) or np.any(pj < 0):
            raise UsageError("pairs must join two different items with non-negative indices")
        n_units = int(max(pi.max(), pj.max())) + 1
    elif units is not None:
        u = list(units.tolist() if isinstance(units, np.ndarray) else units)
        if len(u) != n:
            raise UsageError(f"got {len(u)} units for {n} points: pass one unit id per point")
        uid: dict[Hashable, int] = {}
        unit_of = np.array([uid.setdefault(v, len(uid)) for v in u], dtype=np.intp)
        n_units = len(uid)
    else:
        unit_of = np.arange(n)
        n_units = n

    # Moments per group (pooled + each included cluster), on centred data (r and slope are shift-invariant).
    xc, yc = x - x.mean(), y - y.mean()
    groups = [np.ones(n, dtype=bool)] + [codes == k for k in inc]
    F = np.column_stack(
        [col for m in groups for col in (m * 1.0, m * xc, m * yc, m * xc * xc, m * yc * yc, m * xc * yc)]
    )
    G = len(groups)
    rng = np.random.default_rng(seed)
    batch = max(1, _BATCH_ELEMENTS // max(n, n_units))
    r_all = np.empty((n_boot, G))
    b_all = np.empty((n_boot, G))
    w_all = np.empty((n_boot, G))
    for start in range(0, n_boot, batch):
        bsz = min(batch, n_boot - start)
        counts = item_counts(rng.integers(0, n_units, size=(bsz, n_units)), n_units).astype(np.float64)
        W = pair_weights(counts, pi, pj) if pairs is not None else counts[:, unit_of]
        mom = (W @ F).reshape(bsz, G, 6)
        sw, sx, sy, sxx, syy, sxy = (mom[..., i] for i in range(6))
        with np.errstate(invalid="ignore", divide="ignore"):
            vxx = sxx - sx * sx / sw
            vyy = syy - sy * sy / sw
            vxy = sxy - sx * sy / sw
            tiny = 1e-12 * (sxx + 1e-300)
            ok_x = (sw >= 2) & (vxx > tiny)
            slope = np.where(ok_x, vxy / vxx, np.nan)
            r = np.where(ok_x & (vyy > 1e-12 * (syy + 1e-300)), vxy / np.sqrt(vxx * vyy), np.nan)
        r_all[start : start + bsz] = np.clip(r, -1.0, 1.0)
        b_all[start : start + bsz] = slope
        w_all[start : start + bsz] = sw

    out: dict[str, Any] = {
        "pooled_r": percentile_interval(r_all[:, 0], level),
        "pooled_slope": percentile_interval(b_all[:, 0], level),
        "cluster_r": [percentile_interval(r_all[:, g], level) for g in range(1, G)],
        "cluster_slope": [percentile_interval(b_all[:, g], level) for g in range(1, G)],
    }
    if G > 1:
        within_b, within_w = b_all[:, 1:], w_all[:, 1:]
        with np.errstate(invalid="ignore"):
            weighted = np.sum(within_w * within_b, axis=1) / np.sum(within_w, axis=1)
        out["weighted"] = percentile_interval(weighted, level)
        out["min_within"] = percentile_interval(np.min(within_b, axis=1), level)  # NaN if any slope undefined
        support = _paradox(_sign(r_all[:, 0]), _sign(r_all[:, 1:]))
        out["support"] = float(support.mean())
    else:
        out["weighted"] = out["min_within"] = (float("nan"), float("nan"))
        out["support"] = 0.0
    return out
