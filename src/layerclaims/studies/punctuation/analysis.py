"""Study A, step 3: the statistics of one kind at every entry (layer), from the mark vectors.

Per entry, on the N x N pair matrices (the pairs ``i < j``): mean MI and covariance, the pooled Pearson r(cov, MI)
and OLS slope, the pair clusters carried by groups of marks
(:func:`~layerclaims.metrics.mark_clusters.cluster_marks`), the within-group slopes of MI on covariance, and the
merge layer; at the detail (claim) layers, the rest (:meth:`KindAnalysis.detail`). Every resample draws whole
blocks of marks (two marks at most ``Config.block_window`` tokens apart read some of the same tokens), and a pair
of distinct marks counts ``c_i c_j`` times (:func:`~layerclaims.metrics.bootstrap.pair_moments`). The detail
layers' parts are independent seeded tasks (:func:`submit`): worker processes run them when there are several
cores, and the results do not depend on how many."""

from __future__ import annotations

import concurrent.futures as cf
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from layerclaims.metrics.bootstrap import block_counts, overlap_blocks, pair_moments, percentile_interval
from layerclaims.metrics.clusters import count_clusters
from layerclaims.metrics.mark_clusters import (
    MIN_SUPPORT,
    MarkClusters,
    PairType,
    cluster_marks,
    one_blas_thread,
    refit_resamples,
    upper_pairs,
)
from layerclaims.results import BlockStatistic, Control
from layerclaims.studies.punctuation.config import MIN_MARKS_COUNT, VARIANTS, Config, KindSeeds, entry_seeds
from layerclaims.studies.punctuation.result import DETAIL_SIDE, SIDES, KindResult, LayerDetail, depth_entries
from layerclaims.tasks import submit

N_HIST_BINS = 40
N_DRAW = 3000  # pairs kept per entry and kind for drawing the all-layers grid
MIN_TYPE_PAIRS = 10  # a pair cluster enters the within-group comparison with at least this many pairs
STEPS = ("mi_cov_s", "clusters_s", "detail_s", "mantel_s", "detect_s", "control_s", "bootstrap_s")


@dataclass
class Layer:
    """The pair matrices of one entry and what every entry gets."""

    cov_m: np.ndarray
    mi_m: np.ndarray
    cov: np.ndarray  # upper-triangle values
    mi: np.ndarray
    degenerate: bool


def pair_matrices(x: np.ndarray, config: Config) -> Layer:
    """Covariance and MI of every pair of marks (``x`` ``[N, d]``), symmetrised, and their upper triangles."""
    from layerclaims.metrics.information import pairwise_mi_cov

    mi_m, cov_m = pairwise_mi_cov(x, bins=config.bins, z_threshold=config.z_threshold, estimator=config.mi_estimator)
    mi_m = 0.5 * (np.asarray(mi_m, dtype=np.float64) + np.asarray(mi_m, dtype=np.float64).T)
    cov_m = 0.5 * (np.asarray(cov_m, dtype=np.float64) + np.asarray(cov_m, dtype=np.float64).T)
    iu = np.triu_indices(x.shape[0], 1)
    cov, mi = cov_m[iu], mi_m[iu]
    return Layer(cov_m, mi_m, cov, mi, degenerate(cov) or degenerate(mi))


def _pooled_r(layer: Layer) -> float:
    return float(np.corrcoef(layer.cov, layer.mi)[0, 1]) if not layer.degenerate else float("nan")


def degenerate(v: np.ndarray) -> bool:
    """All values equal up to rounding (spread <= 1e-9 of their magnitude)."""
    v = np.asarray(v, dtype=np.float64)
    return bool(v.size == 0 or np.ptp(v) <= 1e-9 * max(float(np.abs(v).max()), 1e-300))


def groups_of(matrix: np.ndarray, seed: int, n_boot: int) -> MarkClusters:
    """:func:`cluster_marks` on a pair matrix (one group of every mark when there are fewer than 4: no count is
    evaluated on so few, see ``result.MEASURES``)."""
    n = matrix.shape[0]
    if n < 4:
        values = matrix[np.triu_indices(n, 1)]
        centre = float(np.median(values)) if values.size else float("nan")
        one = (PairType(0, 0, int(values.size), centre, 0.0, 0),)
        return MarkClusters(1, np.zeros(n, dtype=np.int64), (), one, float("nan"), (), MIN_SUPPORT)
    return cluster_marks(matrix, seed=seed, n_boot=n_boot)


def within_slopes(layer: Layer, groups: MarkClusters, weights: np.ndarray | None = None) -> tuple[np.ndarray, ...]:
    """OLS slope of MI on covariance inside each pair cluster of ``groups`` (pairs with an outlier mark left out;
    a cluster with fewer than MIN_TYPE_PAIRS pairs or no spread in covariance gives NaN), the sizes, and the pooled
    slope over the same pairs. ``weights``: mark multiplicities ``[B, N]`` (a resample per row); None = all once.
    A pair of distinct marks counts ``c_i c_j`` times, on the pairs ``i < j`` rather than as n x n forms."""
    n = layer.cov_m.shape[0]
    w = np.ones((1, n)) if weights is None else np.atleast_2d(np.asarray(weights, dtype=np.float64))
    iu, ju = upper_pairs(n)
    pair_cluster = groups.pair_labels()
    k = groups.n_clusters
    slopes = np.full((w.shape[0], k), np.nan)
    sizes = np.bincount(pair_cluster[pair_cluster >= 0], minlength=k)[:k].astype(np.int64)
    pw = w[:, iu] * w[:, ju]  # [B, P]: each pair's weight in each resample
    a, b = layer.cov, layer.mi
    for c in range(k):
        if sizes[c] >= MIN_TYPE_PAIRS:
            m = pair_cluster == c
            slopes[:, c] = _weighted_slope(a[m], b[m], pw[:, m])
    kept = pair_cluster >= 0
    pooled = _weighted_slope(a[kept], b[kept], pw[:, kept])
    return slopes, sizes, pooled


def _weighted_slope(a: np.ndarray, b: np.ndarray, w: np.ndarray) -> np.ndarray:
    """OLS slope of ``b`` on ``a`` (pair values ``[P]``) with pair weights ``w`` ``[B, P]``, one per row; NaN
    where the weights sum below 3 or ``a`` has no weighted spread (as :class:`~layerclaims.metrics.bootstrap.
    PairMoments.slope`). Values are centred first (slopes are shift-invariant)."""
    if a.size == 0:
        return np.full(w.shape[0], np.nan)
    a = a - a.mean()
    b = b - b.mean()
    tot = w.sum(axis=1)

    def wsum(v: np.ndarray) -> np.ndarray:  # einsum: no BLAS threads for these small products
        return np.einsum("bp,p->b", w, v)

    with np.errstate(invalid="ignore", divide="ignore"):
        ma, mb = wsum(a) / tot, wsum(b) / tot
        vaa = wsum(a * a) / tot - ma * ma
        vab = wsum(a * b) / tot - ma * mb
        return np.where((vaa > 0) & (tot >= 3), vab / vaa, np.nan)


def paradox(slopes: np.ndarray, pooled: np.ndarray) -> np.ndarray:
    """Every defined within slope has the sign opposite to the pooled one, with >= 2 of them (per row)."""
    ok = np.isfinite(slopes)
    opposite = np.sign(slopes) == -np.sign(pooled)[:, None]
    return (ok.sum(axis=1) >= 2) & np.all(opposite | ~ok, axis=1) & (np.sign(pooled) != 0)


def gaussian_surrogate(x: np.ndarray, seed: int) -> np.ndarray:
    """Marks with the same mean and covariance as ``x`` ``[N, d]`` and no groups: ``mu + Z (x - mu) / sqrt(N-1)``
    with ``Z`` an N x N standard normal matrix (each surrogate mark a Gaussian mix of all the marks)."""
    mu = x.mean(axis=0, keepdims=True)
    z = np.random.default_rng(seed).standard_normal((x.shape[0], x.shape[0]))
    return mu + z @ (x - mu) / np.sqrt(x.shape[0] - 1)


def submit_controls(
    x: np.ndarray, config: Config, seed: int, blocks: np.ndarray, sides: tuple[str, ...] = SIDES
) -> list[cf.Future[Any]]:
    """The control: the Gaussian surrogate through the same steps, over ``config.control_draws`` surrogates
    (independent draws seeded from ``seed``, one task each, :func:`submit`): counts of both matrices, pooled r,
    smallest within slope (those of ``sides``, see ``result.DETAIL_SIDE``: ``"cov"`` the covariance count and the
    slope). Each draw gets ``n_boot_clusters / control_draws`` block resamples of its marks (groups refit), pooled:
    the control is decided on as many resamples as its claim. :func:`combine_controls` reads the tasks."""
    draws = max(int(config.control_draws), 1)
    per = -(-config.n_boot_clusters // draws) if config.n_boot_clusters else 0
    children = np.random.SeedSequence(seed).spawn(draws)
    return [
        submit(control_draw, x, config, int(c.generate_state(1, dtype=np.uint32)[0]), blocks, per, sides)
        for c in children
    ]


def control_draw(
    x: np.ndarray, config: Config, s: int, blocks: np.ndarray, per: int, sides: tuple[str, ...] = SIDES
) -> dict[str, Any]:
    """One surrogate draw of :func:`submit_controls` (seed ``s``, ``per`` block resamples): the point values, replicates
    and outlier marks of the statistics of ``sides``."""
    layer = pair_matrices(gaussian_surrogate(x, s), config)
    counts = _counts(blocks, per, s)
    which = tuple(w for w in ("cov", "mi") if w in sides)
    rr = detail_resamples(layer, counts, which)
    out: dict[str, Any] = {"values": {}, "reps": {}, "outliers": {}}
    for what in which:
        g = groups_of(getattr(layer, f"{what}_m"), s, 0)
        out["values"][f"{what}_clusters"], out["reps"][f"{what}_clusters"] = g.n_clusters, rr[what]
        out["outliers"][f"{what}_clusters"] = len(g.outlier_marks)
        if what == "cov":
            out["values"]["slope"], out["reps"]["slope"] = _min_finite(within_slopes(layer, g)[0][0]), rr["slope"]
    if "r" in sides:
        out["values"]["pooled_r"] = _pooled_r(layer)
        out["reps"]["pooled_r"] = pair_moments(counts, layer.cov_m, layer.mi_m).r if per else np.zeros(0)
    return out


def combine_controls(draws: list[dict[str, Any]]) -> dict[str, Control]:
    """The controls from the draws (:func:`control_draw`), in the draws' order: the value is the median over the
    draws (counts: the lower median, a count)."""
    out = {}
    for k in draws[0]["values"]:
        discrete = k.endswith("_clusters")
        v = np.asarray([d["values"][k] for d in draws], dtype=np.float64)
        ok = v[np.isfinite(v)]
        value = float(np.quantile(ok, 0.5, method="lower") if discrete else np.median(ok)) if ok.size else np.nan
        extra: dict[str, Any] = {"n_draws": len(draws), "draw_values": [float(a) for a in v]}
        if k in draws[0]["outliers"]:
            extra["outlier_marks"] = int(np.median([d["outliers"][k] for d in draws]))
        reps = np.concatenate([d["reps"][k] for d in draws])
        finite = reps[np.isfinite(reps)]
        ci = percentile_interval(finite, discrete=discrete) if finite.size else None
        kept = (finite.astype(np.int64) if discrete else finite) if finite.size else None
        out[k] = Control(_SURROGATE, value, ci, kept, {"absent": _ABSENT, **extra})
    return out


_SURROGATE = "Gaussian surrogate of the marks (same mean and covariance, no groups)"
_ABSENT = "groups of marks, nor anything beyond the marks' mean and covariance"


def _counts(blocks: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """``[n_boot, N]`` mark multiplicities of the block bootstrap (empty without resamples)."""
    if n_boot == 0:
        return np.zeros((0, blocks.size))
    return block_counts(blocks, n_boot, seed=seed).astype(np.float64)


def _chunks(counts: np.ndarray, rows: int = 50) -> list[np.ndarray]:
    """``counts`` split into consecutive chunks of about ``rows`` resamples (at least one chunk)."""
    return np.array_split(counts, max(1, -(-counts.shape[0] // rows)))


def detail_resamples(layer: Layer, counts: np.ndarray, which: tuple[str, ...] = ("cov", "mi")) -> dict[str, np.ndarray]:
    """Resamples of marks that refit the groups, one per row of ``counts`` (mark multiplicities ``[B, N]``): the
    count of each matrix in ``which`` (:func:`~layerclaims.metrics.mark_clusters.refit_resamples`: all resampled
    marks with their copies, the pairs of two copies of one mark left out); with ``"cov"``, the smallest
    within-group slope and the paradox flag (the covariance groups of the resample, pairs of distinct marks
    weighted ``c_i c_j``). What is not computed stays NaN (False)."""
    n_boot = counts.shape[0]
    out = {k: np.full(n_boot, np.nan) for k in ("cov", "mi", "slope")}
    out["paradox"] = np.zeros(n_boot, dtype=bool)
    if n_boot == 0:
        return out
    if layer.cov_m.shape[0] < 4:
        for what in which:
            out[what][:] = 1
        return out
    if "mi" in which:
        out["mi"][:] = [g.n_clusters for g in refit_resamples(layer.mi_m, counts)]
    if "cov" not in which:
        return out
    fits_cov = refit_resamples(layer.cov_m, counts)
    with one_blas_thread():  # small n x n products
        for b, g in enumerate(fits_cov):
            out["cov"][b] = g.n_clusters
            slopes, _, pooled = within_slopes(layer, g, counts[b])
            out["slope"][b] = _min_finite(slopes[0])
            out["paradox"][b] = bool(paradox(slopes, pooled)[0])
    return out


def detectability(layer: Layer, x: np.ndarray, config: Config, seed: int, what: str) -> dict[str, Any]:
    """The detection limit of the count of the ``what`` (``"cov"`` or ``"mi"``) matrix on marks like these
    (:mod:`layerclaims.metrics.detectability`: the one-direction model with N, D and the loading matched to the
    marks' covariance), starting from the meaningful separation of that statistic
    (``Config.meaningful_*_separation``): :meth:`~layerclaims.metrics.detectability.Detectability.to_dict`."""
    from layerclaims.metrics.detectability import detection_limit, matched_loading
    from layerclaims.metrics.mark_cases import covariance

    def mi(v: np.ndarray) -> np.ndarray:
        return pair_matrices(v, config).mi_m

    n, d = x.shape
    make, start = (
        (covariance, config.meaningful_cov_separation) if what == "cov" else (mi, config.meaningful_mi_separation)
    )
    with one_blas_thread():
        lim = detection_limit(n=n, d=d, loading=matched_loading(layer.cov_m), pair_matrix=make,
                              count=lambda m: groups_of(m, 0, 0).n_clusters, start=start,
                              n_sims=config.detect_sims, seed=seed)  # fmt: skip
    return {**lim.to_dict(), "meaningful": float(start)}


def dimension_variant(x: np.ndarray, how: str) -> np.ndarray:
    """The marks ``x`` ``[N, D]`` with their dimensions changed: ``"all"`` as they are; ``"standardised"`` each
    dimension centred and scaled to unit sd over the marks (a constant dimension becomes 0); ``"drop-topK"`` the
    ``K`` dimensions of largest variance over the marks removed (rogue dimensions, massive activations: Timkey &
    van Schijndel 2021; Sun et al. 2024)."""
    if how == "all":
        return x
    if how == "standardised":
        sd = x.std(axis=0)
        return (x - x.mean(axis=0)) / np.where(sd > 0, sd, 1.0)
    if how.startswith("drop-top"):
        k = int(how.removeprefix("drop-top"))
        keep = np.sort(np.argsort(x.var(axis=0), kind="stable")[: max(x.shape[1] - k, 1)])
        return x[:, keep]
    raise ValueError(f"unknown dimension variant {how!r}: use 'all', 'standardised' or 'drop-topK'")


def top_dimensions(x: np.ndarray, k: int = 3) -> dict[str, Any]:
    """The ``k`` dimensions of largest variance over the marks ``x`` ``[N, D]``, with their share of the total
    variance and of the pairwise covariance: the sum over pairs ``i < j`` of ``cov_ij`` (each mark centred over
    its dimensions, as the study's covariance) is a sum over dimensions, ``sum_d ((sum_i xc_id)^2 - sum_i
    xc_id^2) / 2 / (D - 1)``; a dimension's share is its term over the total (negative when it pulls pairs
    apart; shares can exceed 1 in size when terms cancel)."""
    var = x.var(axis=0)
    top = np.argsort(var, kind="stable")[::-1][:k]
    xc = x - x.mean(axis=1, keepdims=True)
    per_dim = (xc.sum(axis=0) ** 2 - (xc**2).sum(axis=0)) / 2.0
    total = float(per_dim.sum())
    return {
        "dims": [int(d) for d in top],
        "variance_share": [float(var[d] / var.sum()) if var.sum() > 0 else float("nan") for d in top],
        "pair_cov_share": [float(per_dim[d] / total) if total != 0 else float("nan") for d in top],
    }


def dimensions(x: np.ndarray, config: Config, sides: tuple[str, ...] = SIDES) -> dict[str, Any]:
    """:func:`top_dimensions` of the marks with the statistics of ``sides`` on their dimension variants
    (:func:`variant_values`) and their massive activations (:func:`massive_dimensions`)."""
    return {
        **top_dimensions(x),
        "variants": variant_values(x, config, sides),
        "massive_activations": massive_dimensions(x),
    }


def massive_dimensions(x: np.ndarray) -> dict[str, Any]:
    """The dimensions holding a massive activation in some mark's hidden state (``x`` ``[N, D]``) by Sun et al.'s
    rule (``rule``; each mark's vector its own reference): ``dims`` (sorted), ``n_marks`` (marks with a massive
    entry in each), and ``top_ratio``, the largest ``max |a| / median |a|`` over the marks (unitless)."""
    from layerclaims.metrics.massive_activations import ABS_THRESHOLD, RATIO, massive_dims, massive_mask, top_ratio

    h = x[:, None, :]  # each mark one hidden state of one position
    mask = massive_mask(h)[:, 0, :]
    dims = massive_dims(mask)
    return {
        "dims": [int(d) for d in dims],
        "n_marks": [int(mask[:, d].sum()) for d in dims],
        "top_ratio": float(top_ratio(h).max()) if x.size else float("nan"),
        "rule": f"|a| > {ABS_THRESHOLD:g} and >= {RATIO:g}x the median |a| of the mark's hidden state",
    }


def _min_finite(v: np.ndarray) -> float:
    finite = v[np.isfinite(v)]
    return float(finite.min()) if finite.size else float("nan")


def variant_values(x: np.ndarray, config: Config, sides: tuple[str, ...] = SIDES) -> dict[str, dict[str, float]]:
    """The detail statistics of ``sides`` (counts of both matrices, pooled r, smallest within slope) on each
    dimension variant of the marks (:data:`VARIANTS`): point values, the same estimator and grouping as the
    data's."""
    out: dict[str, dict[str, float]] = {}
    for how in VARIANTS:
        layer = pair_matrices(dimension_variant(x, how), config)
        out[how] = {}
        if "cov" in sides:
            g_cov = groups_of(layer.cov_m, 0, 0)
            out[how]["cov_clusters"] = float(g_cov.n_clusters)
        if "mi" in sides:
            out[how]["mi_clusters"] = float(groups_of(layer.mi_m, 0, 0).n_clusters)
        if "r" in sides:
            out[how]["pooled_r"] = _pooled_r(layer)
        if "cov" in sides:
            out[how]["min_within_cluster_slope"] = _min_finite(within_slopes(layer, g_cov)[0][0])
    return out


def variant_mean_cov(x: np.ndarray) -> np.ndarray:
    """The mean pair covariance (marks centred over their dimensions, ``D - 1``) of each variant of :data:`VARIANTS`
    (A7's statistic on the variants, the plain estimator: no dimension trimmed)."""
    out = np.full(len(VARIANTS), np.nan)
    for i, how in enumerate(VARIANTS):
        v = dimension_variant(x, how)
        xc = v - v.mean(axis=1, keepdims=True)
        n = v.shape[0]
        s = float(((xc.sum(axis=0) ** 2) - (xc**2).sum(axis=0)).sum() / 2.0)
        out[i] = s / (n * (n - 1) / 2) / max(v.shape[1] - 1, 1)
    return out


def variant_mean_mi(x: np.ndarray, config: Config) -> np.ndarray:
    """The mean pair MI (the study's estimator) of each variant of :data:`VARIANTS`: A7's MI statistics on the
    variants (3 more MI passes at each block output computed, see ``Config.reads``)."""
    return np.array([pair_matrices(dimension_variant(x, how), config).mi.mean() for how in VARIANTS])


def warm() -> None:
    """What the study's first tasks would otherwise load (``Study.warm``): the pair kernels (numba, from their
    cache), the grouping and its refits (scipy.ndimage), on 40 small marks in two groups."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 32)) + 3.0 * (np.arange(40) % 2)[:, None] * rng.normal(size=32)
    config = Config()
    control_draw(x, config, 0, np.arange(40), 2)
    variant_mean_mi(x, config)


def literal(values: np.ndarray, seed: int, n_boot: int) -> tuple[int, float]:
    """The literal count: clusters of the pair values themselves (single marks included), and its stability."""
    if degenerate(values) or values.size < 10:
        return 1, 1.0
    res = count_clusters(values, seed=seed, n_boot=n_boot)
    return res.n_clusters, res.stability


class KindAnalysis:
    """Accumulates the per-entry statistics of one kind (arrays over entries) and builds the :class:`KindResult`."""

    def __init__(
        self,
        config: Config,
        seeds: KindSeeds,
        blocks: np.ndarray,
        layers: np.ndarray,
        post_norm: np.ndarray,
        tm: dict[str, float],
    ) -> None:
        E, N = layers.size, blocks.size
        self.config, self.seeds, self.blocks = config, seeds, blocks
        self.layers, self.post_norm, self.tm = layers, post_norm, tm  # tm: seconds per step (:data:`STEPS`)
        self.stats = {s: np.full((4, E), np.nan) for s in ("mean_mi", "mean_cov", "pooled_r", "min_within_slope")}
        self.arr: dict[str, np.ndarray] = {
            "pooled_slope": np.full(E, np.nan),
            "paradox": np.zeros(E, dtype=bool),
            "degenerate": np.zeros(E, dtype=bool),
            "groups_cov": np.zeros((E, N), dtype=np.int16),
        }
        for w in ("cov", "mi"):
            for name in (f"{w}_clusters", f"{w}_literal"):
                self.arr[name] = np.zeros(E, dtype=np.int64)
            self.arr[f"hist_{w}"] = np.zeros((E, N_HIST_BINS), dtype=np.int64)
            self.arr[f"hist_{w}_edges"] = np.full((E, N_HIST_BINS + 1), np.nan)
        P = N * (N - 1) // 2
        rng = np.random.default_rng(seeds.draw)
        self.draw_sel = np.sort(rng.choice(P, size=min(N_DRAW, P), replace=False))
        for name, dtype in (("draw_cov", np.float32), ("draw_mi", np.float32), ("draw_labels", np.int16)):
            self.arr[name] = np.zeros((E, self.draw_sel.size), dtype=dtype)
        self.slopes: list[np.ndarray] = []
        self.sizes: list[np.ndarray] = []
        self.details: list[LayerDetail] = []
        self.weights = _counts(blocks, config.n_boot, seeds.weights)
        self.mean_boot = {w: np.full((self.weights.shape[0], E), np.nan) for w in ("mi", "cov")}
        self.r_replicates = np.zeros(0)
        self.variant_cov = np.full((len(VARIANTS), E), np.nan)
        self.variant_mi = np.full((len(VARIANTS), E), np.nan)
        self._variant_mi: list[tuple[int, cf.Future[Any]]] = []
        self._pending: list[tuple[Any, ...]] = []

    def submit_mi_variants(self, e: int, x: np.ndarray) -> None:
        """The mean pair MI of the dimension variants at entry ``e`` as a task (:func:`variant_mean_mi`), collected
        by :meth:`build`."""
        self._variant_mi.append((e, submit(variant_mean_mi, x, self.config)))

    def entry(self, e: int, layer: Layer, *, with_mi: bool) -> tuple[MarkClusters, ...]:
        """Everything every entry gets: means, pooled r and slope (+ bootstrap), the covariance groups (and the MI
        groups when ``with_mi``: the detail layers; elsewhere ``mi_clusters`` is 0, not counted), within slopes,
        drawing. Returns the groups found."""
        t0 = time.perf_counter()
        s = entry_seeds(self.seeds.layer, e)
        whats = ("cov", "mi") if with_mi else ("cov",)
        groups = tuple(groups_of(getattr(layer, f"{w}_m"), s["clusters"], 0) for w in whats)
        for w, g in zip(whats, groups, strict=True):
            self.arr[f"{w}_clusters"][e] = g.n_clusters
        g_cov = groups[0]
        self.arr["groups_cov"][e] = g_cov.mark_labels
        t1 = time.perf_counter()
        self.tm["clusters_s"] += t1 - t0
        self.arr["degenerate"][e] = layer.degenerate
        self.stats["mean_mi"][0, e], self.stats["mean_cov"][0, e] = layer.mi.mean(), layer.cov.mean()
        self.stats["pooled_r"][0, e] = _pooled_r(layer)
        if not layer.degenerate:
            c = layer.cov - layer.cov.mean()
            self.arr["pooled_slope"][e] = float((c * (layer.mi - layer.mi.mean())).mean() / (c * c).mean())
        if self.weights.shape[0]:
            pm = pair_moments(self.weights, layer.cov_m, layer.mi_m)
            for name, reps in (("pooled_r", pm.r), ("mean_mi", pm.mean_b), ("mean_cov", pm.mean_a)):
                if name != "pooled_r" or not layer.degenerate:
                    self.stats[name][1:3, e] = percentile_interval(reps)
            self.mean_boot["mi"][:, e], self.mean_boot["cov"][:, e] = pm.mean_b, pm.mean_a
            self.r_replicates = pm.r
        self.tm["bootstrap_s"] += time.perf_counter() - t1
        slopes, sizes = np.zeros((1, 0)), np.zeros(0, dtype=np.int64)
        if not layer.degenerate:
            slopes, sizes, pooled = within_slopes(layer, g_cov)
            self.stats["min_within_slope"][0, e] = _min_finite(slopes[0])
            self.arr["paradox"][e] = bool(paradox(slopes, pooled)[0])
        self.slopes.append(slopes[0])
        self.sizes.append(sizes)
        for name, vals in (("cov", layer.cov), ("mi", layer.mi)):  # the drawings
            centre = float(vals.mean())
            span = (centre - 0.5, centre + 0.5) if degenerate(vals) else None
            h, edges = np.histogram(vals, bins=N_HIST_BINS, range=span)
            self.arr[f"hist_{name}"][e], self.arr[f"hist_{name}_edges"][e] = h, edges
        self.arr["draw_cov"][e], self.arr["draw_mi"][e] = layer.cov[self.draw_sel], layer.mi[self.draw_sel]
        self.arr["draw_labels"][e] = g_cov.pair_labels()[self.draw_sel]
        return groups

    def detail(
        self, e: int, layer: Layer, x: np.ndarray, groups: tuple[MarkClusters, ...], sides: tuple[str, ...]
    ) -> None:
        """The claim layers, the parts ``sides`` only (:func:`sides_read`): ``Config.n_boot_clusters`` resamples that
        REFIT the groups (:func:`detail_resamples`), literal counts, Mantel p, the dimensions (:func:`dimensions`),
        detection limits (:func:`detectability`) and the control (:func:`submit_controls`). The independent parts run as
        tasks (:func:`submit`), each kept with the step its seconds count in; :meth:`build` collects
        them."""
        from layerclaims.metrics.similarity import mantel_test

        s = entry_seeds(self.seeds.layer, e)
        cfg = self.config
        counts = _counts(self.blocks, cfg.n_boot_clusters, s["resamples"])
        wanted = cfg.detect_sims and not layer.degenerate and x.shape[0] >= MIN_MARKS_COUNT  # else: no count read
        tasks: dict[str, tuple[str, list[cf.Future[Any]]]] = {}
        for w, values in (("cov", layer.cov), ("mi", layer.mi)):
            if w in sides:
                # in chunks, so that both workers share a layer's refits (rows are independent: same results)
                tasks[w] = ("detail_s", [submit(detail_resamples, layer, part, (w,)) for part in _chunks(counts)])
                tasks[f"l{w[0]}"] = ("detail_s", [submit(literal, values, s["clusters"], cfg.cluster_n_boot)])
        if sides:
            tasks["dims"] = ("detect_s", [submit(dimensions, x, cfg, sides)])
        for w in ("cov", "mi"):
            if wanted and w in sides:
                tasks[f"detect_{w}"] = ("detect_s", [submit(detectability, layer, x, cfg, s["detect"], w)])
        if cfg.control and sides:
            tasks["controls"] = ("control_s", submit_controls(x, cfg, s["control"], self.blocks, sides))
        t1 = time.perf_counter()
        if cfg.n_perm and not layer.degenerate and "r" in sides:
            # Pairs share marks, so pairs are not independent: the null permutes marks (Mantel), not pairs.
            self.stats["pooled_r"][3, e] = mantel_test(
                layer.cov_m, layer.mi_m, n_perm=cfg.n_perm, seed=s["mantel"], alternative="two-sided"
            ).p_value
        self.tm["mantel_s"] += time.perf_counter() - t1
        self._pending.append((e, layer, groups, self.r_replicates, tasks, sides))

    def _collect(self) -> None:
        """The detail layers' tasks, in order: their results into the stats and a :class:`LayerDetail` each."""
        none = {"cov": np.zeros(0), "mi": np.zeros(0), "slope": np.zeros(0), "paradox": np.zeros(0, dtype=bool)}
        for e, layer, groups, r_reps, tasks, sides in self._pending:
            got: dict[str, list[Any]] = {}
            for name, (step, futures) in tasks.items():
                done = [f.result() for f in futures]  # (value, seconds) each
                got[name] = [value for value, _ in done]
                self.tm[step] += sum(sec for _, sec in done)
            refits = {
                w: {k: np.concatenate([p[k] for p in got[w]]) for k in none} if w in got else none
                for w in ("cov", "mi")
            }
            reps = {**refits["cov"], "mi": refits["mi"]["mi"]}
            lc, lm = (got[n][0] if n in got else (0, float("nan")) for n in ("lc", "lm"))
            self.arr["cov_literal"][e], self.arr["mi_literal"][e] = lc[0], lm[0]
            if reps["slope"].size:
                self.stats["min_within_slope"][1:3, e] = percentile_interval(reps["slope"], max_nan_fraction=0.5)
            self.details.append(
                LayerDetail(
                    entry=e,
                    layer=int(self.layers[e]),
                    post_norm=bool(self.post_norm[e]),
                    cov=_with_boot(groups[0], reps["cov"]) if "cov" in sides else groups[0],
                    mi=_with_boot(groups[1], reps["mi"]) if "mi" in sides else None,
                    cov_literal=lc[0],
                    cov_literal_stability=lc[1],
                    mi_literal=lm[0],
                    mi_literal_stability=lm[1],
                    pooled_r_replicates=r_reps,
                    slope_replicates=reps["slope"],
                    paradox_replicates=reps["paradox"],
                    detectability={w: got[f"detect_{w}"][0] for w in ("cov", "mi") if f"detect_{w}" in got},
                    dimensions=got["dims"][0] if "dims" in got else {},
                    cov_values=layer.cov.astype(np.float32),
                    mi_values=layer.mi.astype(np.float32),
                    controls=combine_controls(got["controls"]) if got.get("controls") else {},
                    computed=sides,
                )
            )
        self._pending.clear()

    def build(self, kind: str, counts: dict[str, int], marks: np.ndarray) -> KindResult:
        """The :class:`KindResult` (within slopes padded with NaN to the largest number of clusters)."""
        self._collect()
        for e, fut in self._variant_mi:
            self.variant_mi[:, e], sec = fut.result()
            self.tm["mi_cov_s"] += sec
        K = max((s.size for s in self.slopes), default=1) or 1
        E = len(self.slopes)
        within = np.full((E, K), np.nan)
        sizes = np.zeros((E, K), dtype=np.int64)
        for e, (s, z) in enumerate(zip(self.slopes, self.sizes, strict=True)):
            within[e, : s.size], sizes[e, : z.size] = s, z
        return KindResult(
            kind=kind,
            n_found=counts["found"],
            n_skipped_start=counts["skipped_start"],
            n_skipped_end=counts["skipped_end"],
            n_usable=counts["usable"],
            marks=marks.astype(np.int64),
            blocks=self.blocks.astype(np.int64),
            within_slopes=within,
            cluster_sizes=sizes,
            merge_layer=merge_layer(self.arr["cov_clusters"], self.arr["degenerate"], self.layers, self.post_norm),
            details=tuple(self.details),
            mean_mi_boot=self.mean_boot["mi"],
            mean_cov_boot=self.mean_boot["cov"],
            mean_cov_variants=self.variant_cov,
            mean_mi_variants=self.variant_mi,
            mean_mi=BlockStatistic(*self.stats["mean_mi"]),
            mean_cov=BlockStatistic(*self.stats["mean_cov"]),
            pooled_r=BlockStatistic(*self.stats["pooled_r"]),
            min_within_slope=BlockStatistic(*self.stats["min_within_slope"]),
            **self.arr,
        )


def _with_boot(g: MarkClusters, counts: np.ndarray) -> MarkClusters:
    """``g`` with the refit counts of the resamples as its replicates and stability."""
    b = tuple(int(c) for c in counts[np.isfinite(counts)])
    return replace(g, boot_counts=b, stability=float(np.mean(np.asarray(b) == g.n_clusters)) if b else float("nan"))


def merge_layer(counts: np.ndarray, degen: np.ndarray, layers: np.ndarray, post_norm: np.ndarray) -> int:
    """The first pre-norm layer from which the covariance has one cluster at every later layer (-1: never)."""
    depth = np.flatnonzero(~post_norm & ~degen)  # a degenerate entry (layer 0) says nothing
    merge = -1
    for e in sorted(depth, key=lambda i: layers[i], reverse=True):
        if counts[e] != 1:
            break
        merge = int(layers[e])
    return merge


def sides_read(config: Config, kind: str, layer: int) -> tuple[str, ...]:
    """The parts of detail layer ``layer`` of ``kind`` to compute: those ``config.reads`` reads there
    (``result.DETAIL_SIDE``), all of them without ``reads``."""
    if config.reads is None:
        return SIDES
    read = {DETAIL_SIDE.get(st) for k, x, st in config.reads if k == kind and x == layer}
    return tuple(w for w in SIDES if w in read)


def start_kind(
    X: np.ndarray,
    config: Config,
    *,
    seeds: KindSeeds,
    layers: np.ndarray,
    post_norm: np.ndarray,
    detail: np.ndarray,
    kind: str,
    counts: dict[str, int],
    marks: np.ndarray,
    timings: dict[str, float] | None = None,
    progress: Callable[[str], None] | None = None,
) -> Callable[[], KindResult]:
    """The per-entry loop of one kind, with the detail layers' tasks submitted (:func:`submit`); the function
    returned collects them into the :class:`KindResult`, so that one kind's tasks run in the workers while the next
    kind's layers are analysed here. ``X`` ``[E, N, d]``: mark vectors per entry. ``timings``: seconds per step are
    added to it (:data:`STEPS`). ``progress``: called once per entry with a short message."""
    tm = timings if timings is not None else {}
    for key in STEPS:
        tm.setdefault(key, 0.0)
    acc = KindAnalysis(config, seeds, overlap_blocks(marks, config.block_window), layers, post_norm, tm)
    depth = depth_entries(layers, post_norm).tolist()
    trend = config.reads is None or (kind, None, "spearman_mean_mi_vs_depth") in config.reads
    # A7's MI trend on the dimension variants reads every block output, its ratio the first and last
    ends = depth[:1] + depth[-1:] if len(depth) >= 2 else []
    mi_variants = set(depth if trend else ends)
    for e in range(X.shape[0]):
        if progress is not None:
            progress(f"punctuation {kind}: layer {int(layers[e])} ({e + 1} of {X.shape[0]})")
        t0 = time.perf_counter()
        xe = dimension_variant(X[e], config.dimensions)
        layer = pair_matrices(xe, config)
        acc.variant_cov[:, e] = variant_mean_cov(xe)
        if e in mi_variants:
            acc.submit_mi_variants(e, xe)
        tm["mi_cov_s"] += time.perf_counter() - t0
        is_detail = bool(np.any(detail == e))
        sides = sides_read(config, kind, int(layers[e])) if is_detail else ()
        groups = acc.entry(e, layer, with_mi="mi" in sides)
        if is_detail:
            acc.detail(e, layer, xe, groups, sides)
    return lambda: acc.build(kind, counts, marks)
