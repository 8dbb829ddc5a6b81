"""Study A, step 4: the result. What was measured per kind (:class:`KindResult`), the detail of each claim layer
(:class:`LayerDetail`), and ``measure``: a table from statistic name to the function that reads it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import numpy as np

from layerclaims import results
from layerclaims.errors import UsageError
from layerclaims.metrics.bootstrap import percentile_interval
from layerclaims.metrics.mark_clusters import MarkClusters
from layerclaims.metrics.order import average_ranks, spearman_rho
from layerclaims.results import BlockStatistic, Control, Measurement
from layerclaims.studies.punctuation.config import MIN_MARKS_COUNT, MIN_MARKS_R, VARIANTS
from layerclaims.studies.punctuation.marks import KINDS

STUDY = "punctuation"
RESULT_VERSION = 4  # bumped when the saved layout changes
# The parts of a detail layer (``LayerDetail.computed``) and the statistics that read each (the within slopes are
# on the covariance groups); the others are computed at every layer.
SIDES: tuple[str, ...] = ("cov", "mi", "r")
DETAIL_SIDE: dict[str, str] = {
    "cov_clusters": "cov",
    "cov_literal_clusters": "cov",
    "min_within_cluster_slope": "cov",
    "mi_clusters": "mi",
    "mi_literal_clusters": "mi",
    "pooled_r": "r",
}


@dataclass(frozen=True)
class AttributeRow:
    """One attribute of the marks (e.g. ``token before = " and"``) and how often it holds in a group vs outside."""

    attribute: str
    value: str
    n_in: int
    rate_in: float
    rate_out: float


@dataclass(frozen=True)
class GroupExplained:
    """A group of marks: its size and the attributes most over-represented in it against the other marks."""

    group: int
    size: int
    rows: tuple[AttributeRow, ...]


@dataclass(frozen=True)
class OutlierMark:
    """A single mark that carries a streak of pair values, with its window of text (the mark between ``⟦ ⟧``)."""

    mark: int
    token_index: int
    window: str


@dataclass(frozen=True)
class Explanation:
    """What the groups of one statistic (cov or MI) at one layer share, and the outlier marks with their text."""

    groups: tuple[GroupExplained, ...]
    outliers: tuple[OutlierMark, ...]


@dataclass(frozen=True, eq=False)
class LayerDetail:
    """Everything a claim layer needs, kept at the detail layers only (to bound cost).
    ``cov``/``mi``: :class:`~layerclaims.metrics.mark_clusters.MarkClusters` of the covariance and MI matrices
    (``boot_counts``: the count refit on each resample of marks). ``*_literal``/``*_literal_stability``: the literal
    count (clusters of the pair values themselves, single marks included). ``pooled_r_replicates`` ``[n_boot]``;
    ``slope_replicates``/``paradox_replicates`` ``[n_boot_clusters]``: the smallest within-group slope and the
    paradox flag, mark groups REFIT in each resample. ``cov_values``/``mi_values`` ``[P]`` float32, for the
    figures. ``explain``, ``detectability``: per side; ``controls``: statistic -> :class:`Control` (Gaussian
    surrogate of the marks); ``dimensions``: ``analysis.dimensions``. ``computed``: the parts of :data:`SIDES`
    computed (``Config.reads``); one not computed has no replicates, literal count, control, detection limit nor
    variants, ``mi`` None and ``cov`` the point fit."""

    entry: int
    layer: int
    post_norm: bool
    cov: MarkClusters
    mi: MarkClusters | None
    cov_literal: int
    cov_literal_stability: float
    mi_literal: int
    mi_literal_stability: float
    pooled_r_replicates: np.ndarray
    slope_replicates: np.ndarray
    paradox_replicates: np.ndarray
    cov_values: np.ndarray
    mi_values: np.ndarray
    explain: dict[str, Explanation] = field(default_factory=dict)
    controls: dict[str, Control] = field(default_factory=dict)
    detectability: dict[str, dict[str, Any]] = field(default_factory=dict)
    dimensions: dict[str, Any] = field(default_factory=dict)
    computed: tuple[str, ...] = SIDES


@dataclass(frozen=True, eq=False)
class KindResult:
    """Everything measured for one kind. Axis ``E`` = the result's entries, ``N`` = marks, ``K`` = pair clusters.
    Marks: ``n_found`` flagged, ``n_skipped_start``/``n_skipped_end`` without a full window, ``n_usable``, ``marks``
    (token indices, text order). Per entry (:class:`~layerclaims.results.BlockStatistic`, intervals by bootstrap
    over marks): ``mean_mi``, ``mean_cov``, ``pooled_r`` (Mantel p at the detail entries), ``min_within_slope``
    (interval at the detail entries). Arrays ``[E]``: ``pooled_slope``, ``cov_clusters``/``mi_clusters`` (pair
    clusters carried by groups of marks), ``cov_literal``/``mi_literal`` (clusters of the pair values themselves),
    both MI counts and the literal ones at the detail entries only (0 elsewhere); ``paradox``, ``degenerate`` (all
    pairs have the same value, e.g. layer 0: r and slopes undefined, counts 1). ``groups_cov`` ``[E, N]``: each
    mark's covariance group (-1 = outlier). ``within_slopes``/``cluster_sizes`` ``[E, K]``. Drawing: ``hist_*``
    ``[E, B]`` and edges, ``draw_*`` ``[E, S]``. ``mean_*_boot`` ``[n_boot, E]``: A7's replicates (the same block
    resamples at every entry); ``mean_*_variants`` ``[len(VARIANTS), E]``: A7's means on the dimension variants.
    ``blocks`` ``[N]``: each mark's block, what every bootstrap of the kind draws whole."""

    kind: str
    n_found: int
    n_skipped_start: int
    n_skipped_end: int
    n_usable: int
    marks: np.ndarray
    mean_mi: BlockStatistic
    mean_cov: BlockStatistic
    pooled_r: BlockStatistic
    min_within_slope: BlockStatistic
    pooled_slope: np.ndarray
    cov_clusters: np.ndarray
    mi_clusters: np.ndarray
    cov_literal: np.ndarray
    mi_literal: np.ndarray
    groups_cov: np.ndarray
    within_slopes: np.ndarray
    cluster_sizes: np.ndarray
    paradox: np.ndarray
    degenerate: np.ndarray
    merge_layer: int
    hist_cov: np.ndarray
    hist_cov_edges: np.ndarray
    hist_mi: np.ndarray
    hist_mi_edges: np.ndarray
    draw_cov: np.ndarray
    draw_mi: np.ndarray
    draw_labels: np.ndarray
    details: tuple[LayerDetail, ...]
    mean_mi_boot: np.ndarray
    mean_cov_boot: np.ndarray
    blocks: np.ndarray
    mean_cov_variants: np.ndarray
    mean_mi_variants: np.ndarray

    @property
    def n_units(self) -> int:
        """The effective number of independent units the intervals rest on: the blocks of marks resampled together
        (marks whose hidden states read some of the same tokens)."""
        return int(np.unique(self.blocks).size)

    def detail(self, entry: int) -> LayerDetail | None:
        """The :class:`LayerDetail` of ``entry`` (None where the entry is not a detail layer)."""
        return next((d for d in self.details if d.entry == entry), None)


def depth_entries(layers: np.ndarray, post_norm: np.ndarray) -> np.ndarray:
    """Entries of the pre-norm block outputs (hidden states 1..n_blocks), in layer order: what A7 reads."""
    sel = np.flatnonzero((layers >= 1) & ~post_norm)
    return sel[np.argsort(layers[sel], kind="stable")]


@dataclass(frozen=True, eq=False)
class PunctuationResult(results.SavedResult):
    """Study A on one model. ``layers`` ``[E]``: hidden-state index of each entry; ``post_norm`` ``[E]``: whether
    the entry has the final norm applied (only ever the last one, duplicated). ``internal``/``terminal``:
    :class:`KindResult`. ``config``: the Config as a dict. ``provenance``: corpus, selection, seed, model revision,
    device, dtype, tokenization, timings, which entry is pre/post norm, package versions. ``version``: the saved
    layout (:data:`RESULT_VERSION`)."""

    study: ClassVar[str] = STUDY

    model: str
    n_blocks: int
    layers: np.ndarray
    post_norm: np.ndarray
    internal: KindResult
    terminal: KindResult
    config: dict[str, Any]
    provenance: dict[str, Any]
    version: int = RESULT_VERSION

    @classmethod
    def load(cls, directory: Any) -> PunctuationResult:
        """Read a saved result; one of another layout (:data:`RESULT_VERSION`) raises a UsageError that says to
        re-run."""
        out = super().load(directory)
        if out.version != RESULT_VERSION:
            fix = f"re-run it: `layerclaims reproduce --study punctuation --out {directory}`"
            raise UsageError(f"{directory}/{STUDY}.json has result version {out.version}, not {RESULT_VERSION}; {fix}")
        return out

    def kind_result(self, kind: str | None) -> KindResult:
        """The :class:`KindResult` of ``kind`` (None = internal, the kind most claims read)."""
        kind = kind or "internal"
        if kind not in KINDS:
            raise UsageError(f"unknown kind {kind!r}: use 'internal' or 'terminal'")
        return getattr(self, kind)

    @property
    def last_is_post_norm(self) -> bool:
        """Whether ``hidden_states[n_blocks]`` of this model has the final norm applied."""
        return bool(np.any(self.post_norm))

    def entry(self, layer: int, *, post_norm: bool | None = None) -> int:
        """Entry index of hidden state ``layer`` (``post_norm=None``: as Hugging Face numbers hidden states)."""
        if post_norm is None:
            post_norm = layer == self.n_blocks and self.last_is_post_norm
        hits = np.flatnonzero((self.layers == layer) & (self.post_norm == post_norm))
        if hits.size == 0:
            have = sorted({int(x) for x in self.layers})
            raise UsageError(f"layer {layer} (post_norm={post_norm}) was not analysed; analysed layers: {have}")
        return int(hits[0])

    def depth_entries(self) -> np.ndarray:
        """Entries of the pre-norm block outputs 1..n_blocks, in layer order (what A7 reads)."""
        return depth_entries(self.layers, self.post_norm)

    def measure(self, statistic: str, *, layer: int | None, kind: str | None) -> Measurement:
        """A statistic the claims name (``docs/architecture.md``). Unknown statistic: KeyError."""
        if statistic not in MEASURES:
            raise KeyError(f"unknown statistic {statistic!r} for study punctuation; known: {', '.join(MEASURES)}")
        k = self.kind_result(kind)
        if statistic.startswith(("spearman_", "ratio_")):
            return MEASURES[statistic](self, k, -1)
        if layer is None:
            raise UsageError(f"{statistic} is a per-layer statistic: give a layer")
        return MEASURES[statistic](self, k, self.entry(layer))


# --------------------------------------------------------------------------------------------------- measures


def _info(result: PunctuationResult, k: KindResult, e: int) -> dict[str, Any]:
    return {"entry_post_norm": bool(result.post_norm[e]), "n_marks": int(k.marks.size), **_units(result, k)}


def _units(result: PunctuationResult, k: KindResult) -> dict[str, Any]:
    """How the marks were resampled: the effective number of independent units (blocks) beside the marks."""
    window = int(result.config["block_window"])
    how = (
        f"blocks of marks at most {window} tokens apart (their hidden states read some of the same tokens), "
        "resampled whole"
        if window
        else "marks resampled one by one"
    )
    return {"n_units": k.n_units, "resampling": how}


def _dims(d: LayerDetail, statistic: str) -> dict[str, Any]:
    """The statistic on the dimension variants of the marks and the top dimensions, for a measurement's details."""
    top = {k: v for k, v in d.dimensions.items() if k not in ("variants", "massive_activations")}
    return {
        "without_top_dimensions": {v: d.dimensions["variants"][v][statistic] for v in VARIANTS},
        "top_dimensions": top,
    }


def _not_evaluated(reason: str, info: dict[str, Any], value: float = float("nan")) -> Measurement:
    return Measurement(value, None, None, {**info, "not_evaluated": reason})


def _start(
    result: PunctuationResult, k: KindResult, e: int, side: str
) -> tuple[dict[str, Any], LayerDetail | None, Measurement | None]:
    """A per-layer reading's details, the entry's :class:`LayerDetail` (None: not a detail layer), and the "not
    evaluated" of a statistic whose part was not computed (None: it was, or no detail)."""
    info, d = _info(result, k, e), k.detail(e)
    if d is None or side in d.computed:
        return info, d, None
    why = f"not computed in this run: no claim read it; add it with {_with_detail_layer(result, d.layer)}"
    return info, d, _not_evaluated(f"{why} (or run without claims filtering)", info)


def _with_detail_layer(result: PunctuationResult, layer: int) -> str:
    """The ``--set`` that adds ``layer`` to the run's detail layers."""
    layers = sorted({*(result.config.get("detail_layers") or ()), int(layer)})
    return f"--set punctuation.detail_layers=[{','.join(str(x) for x in layers)}]"


def _counts(what: str) -> Callable[[PunctuationResult, KindResult, int], Measurement]:
    def read(result: PunctuationResult, k: KindResult, e: int) -> Measurement:
        info, d, skipped = _start(result, k, e, what)
        if skipped is not None:
            return skipped
        count = float(getattr(k, f"{what}_clusters")[e])
        if k.marks.size < MIN_MARKS_COUNT:
            fix = f"only {k.marks.size} marks: a cluster count needs >= {MIN_MARKS_COUNT}; run with --n 250"
            return _not_evaluated(fix, info, count)
        if d is None and what == "mi":  # the MI groups are fit at the detail layers only
            why = "MI groups are fit at the detail layers only; add this layer with"
            return _not_evaluated(f"{why} {_with_detail_layer(result, result.layers[e])}", info)
        if d is None:
            return Measurement(count, None, None, {**info, "note": "not a detail layer: no interval or control"})
        mc = getattr(d, what)
        reps = np.asarray(mc.boot_counts, dtype=np.int64)
        details = {
            **info,
            "stability": mc.stability,
            "groups": list(mc.diagnostics.get("group_sizes", [])),
            "outlier_marks": list(mc.outlier_marks),
            "pair_types": [(t.a, t.b, t.n_pairs, t.centre, t.cluster) for t in mc.pair_types],
            "literal_count": getattr(d, f"{what}_literal"),
            "literal_stability": getattr(d, f"{what}_literal_stability"),
            "ci_method": "percentile of the count refit on block bootstrap resamples of marks (groups refit)",
        }
        if what in d.detectability:
            details["detectability"] = dict(d.detectability[what])
        details.update(_dims(d, f"{what}_clusters"))
        ci = percentile_interval(reps.astype(float), discrete=True) if reps.size else None
        return Measurement(count, ci, None, details, reps if reps.size else None, d.controls.get(f"{what}_clusters"))

    return read


def _pooled_r(result: PunctuationResult, k: KindResult, e: int) -> Measurement:
    info, d, skipped = _start(result, k, e, "r")
    if skipped is not None:
        return skipped
    if k.marks.size < MIN_MARKS_R:
        return _not_evaluated(f"only {k.marks.size} marks: r over pairs needs >= {MIN_MARKS_R}; use --n 250", info)
    if k.degenerate[e]:
        return _not_evaluated("every mark has the same vector at this layer (r undefined)", info)
    n = k.marks.size
    m = k.pooled_r.at(e, {**info, "pooled_slope": float(k.pooled_slope[e]), "n_pairs": n * (n - 1) // 2})
    if d is None:
        return m
    m.details["p_method"] = "two-sided Mantel test, marks of the MI matrix permuted"
    m.details.update(_dims(d, "pooled_r"))
    reps = d.pooled_r_replicates
    return replace(m, replicates=reps if reps.size else None, control=d.controls.get("pooled_r"))


def _min_within_slope(result: PunctuationResult, k: KindResult, e: int) -> Measurement:
    info, d, skipped = _start(result, k, e, "cov")
    if skipped is not None:
        return skipped
    if k.marks.size < MIN_MARKS_COUNT:
        return _not_evaluated(f"only {k.marks.size} marks: groups need >= {MIN_MARKS_COUNT}; use --n 250", info)
    slopes, sizes = k.within_slopes[e], k.cluster_sizes[e]
    ok = ~np.isnan(slopes)
    if not ok.any():
        return _not_evaluated("no pair cluster with a defined within-group slope at this layer", info)
    details = {
        **info,
        "n_clusters": int(k.cov_clusters[e]),
        "slopes": [float(s) for s in slopes[ok]],
        "cluster_sizes": [int(s) for s in sizes[ok]],
        "pooled_r": float(k.pooled_r.value[e]),
        "paradox": bool(k.paradox[e]),
        "clusters_from": "pair clusters carried by groups of marks (cluster_marks on the covariance); pairs with "
        "an outlier mark left out",
    }
    m = k.min_within_slope.at(e, details)
    if d is None:
        return m
    m.details.update(_dims(d, "min_within_cluster_slope"))
    if d.paradox_replicates.size:
        m.details["paradox_support"] = float(np.mean(d.paradox_replicates))
        m.details["ci_method"] = "percentile over resamples of marks; mark groups refit in each resample"
    reps = d.slope_replicates
    return replace(m, replicates=reps if reps.size else None, control=d.controls.get("slope"))


def _literal(what: str) -> Callable[[PunctuationResult, KindResult, int], Measurement]:
    def read(result: PunctuationResult, k: KindResult, e: int) -> Measurement:
        info, d, skipped = _start(result, k, e, what)
        if d is None:
            return _not_evaluated("counted at the detail layers only: add the layer to Config.detail_layers", info)
        if skipped is not None:
            return skipped
        details = {**info, "stability": getattr(d, f"{what}_literal_stability")}
        return Measurement(float(getattr(d, f"{what}_literal")), None, None, details)

    return read


MEASURES: dict[str, Callable[[PunctuationResult, KindResult, int], Measurement]] = {
    "cov_clusters": _counts("cov"),
    "mi_clusters": _counts("mi"),
    "cov_literal_clusters": _literal("cov"),
    "mi_literal_clusters": _literal("mi"),
    "pooled_r": _pooled_r,
    "min_within_cluster_slope": _min_within_slope,
    "mean_mi": lambda r, k, e: k.mean_mi.at(e, _info(r, k, e)),
    "mean_cov": lambda r, k, e: k.mean_cov.at(e, _info(r, k, e)),
    "spearman_mean_mi_vs_depth": lambda r, k, e: _spearman(r, k, "mi"),
    "spearman_mean_cov_vs_depth": lambda r, k, e: _spearman(r, k, "cov"),
    "ratio_mean_mi_last_first": lambda r, k, e: _ratio(r, k, "mi"),
    "ratio_mean_cov_last_first": lambda r, k, e: _ratio(r, k, "cov"),
}

# A7 has no control, and says so.
_NO_DEPTH_CONTROL = {
    "control": "none exists: any surrogate that keeps a layer's mean and covariance of the marks keeps its mean "
    "pair covariance (and the trend over layers), and one that does not changes the statistic itself",
}


def _spearman(result: PunctuationResult, k: KindResult, what: str) -> Measurement:
    """Spearman rho of the per-layer means against their layers (pre-norm block outputs 1..n_blocks); its interval:
    the rhos of the bootstrap replicates of the means (``mean_*_boot``, the same block resamples at every layer)."""
    sel = result.depth_entries()
    if sel.size < 3:
        return _not_evaluated("fewer than 3 block outputs analysed: analyse every layer (Config.layers=None)", {})
    if k.marks.size < MIN_MARKS_R:  # the per-layer means of a handful of pairs, and their bootstrap, say nothing
        return _not_evaluated(f"only {k.marks.size} marks: per-layer means need >= {MIN_MARKS_R}; use --n 250", {})
    means = getattr(k, f"mean_{what}").value[sel]
    rho = spearman_rho(result.layers[sel].astype(float), means)
    boot = getattr(k, f"mean_{what}_boot")
    rhos = _rowwise_spearman(result.layers[sel].astype(float), boot[:, sel]) if boot.size else np.zeros(0)
    reps = rhos[np.isfinite(rhos)]
    details = {
        **_depth_variants(result, k, what, sel, lambda m: spearman_rho(result.layers[sel].astype(float), m)),
        **_units(result, k),
        "layers": [int(x) for x in result.layers[sel]],
        "post_norm_excluded": result.last_is_post_norm,
        "first_mean": float(means[0]),
        "last_mean": float(means[-1]),
        "ratio_last_first": float(means[-1] / means[0]) if means[0] != 0 else None,
        **_NO_DEPTH_CONTROL,
    }
    return Measurement(rho, _ci95(reps), None, details, reps if reps.size else None)


def _depth_variants(
    result: PunctuationResult, k: KindResult, what: str, sel: np.ndarray, stat: Callable[[np.ndarray], float | None]
) -> dict[str, Any]:
    """A7's statistic ``stat`` of the per-layer mean pair statistic at the entries ``sel`` on the dimension variants
    of the marks; where they were not computed there (``Config.reads``), the ``--set`` that computes them."""
    v = k.mean_cov_variants if what == "cov" else k.mean_mi_variants
    if not np.isfinite(v[:, sel]).all():
        return {
            "without_top_dimensions": "not computed in this run: no claim read it; add it with "
            + _with_detail_layer(result, int(result.layers[sel[0]]))
        }
    return {"without_top_dimensions": {name: stat(v[i, sel]) for i, name in enumerate(VARIANTS)}}


def _ratio(result: PunctuationResult, k: KindResult, what: str) -> Measurement:
    """The last block output's mean pair statistic over the first's, and on every bootstrap resample of the marks.
    Not evaluated when the first layer's mean is not positive (a ratio that changes sign says nothing of growth)."""
    sel = result.depth_entries()
    if sel.size < 2:
        return _not_evaluated("fewer than 2 block outputs analysed: analyse every layer (Config.layers=None)", {})
    if k.marks.size < MIN_MARKS_R:
        return _not_evaluated(f"only {k.marks.size} marks: per-layer means need >= {MIN_MARKS_R}; use --n 250", {})
    first, last = int(sel[0]), int(sel[-1])
    means = getattr(k, f"mean_{what}")
    info = {
        **_units(result, k),
        "first_layer": int(result.layers[first]),
        "last_layer": int(result.layers[last]),
        "first_mean": float(means.value[first]),
        "last_mean": float(means.value[last]),
        **_NO_DEPTH_CONTROL,
        **_depth_variants(result, k, what, sel[[0, -1]], lambda m: float(m[-1] / m[0]) if m[0] > 0 else None),
    }
    if not means.value[first] > 0:
        return _not_evaluated(f"the mean {what} at layer {info['first_layer']} is not positive: no ratio", info)
    value = float(means.value[last] / means.value[first])
    boot = getattr(k, f"mean_{what}_boot")
    if not boot.size:
        return Measurement(value, None, None, info)
    with np.errstate(invalid="ignore", divide="ignore"):
        reps = boot[:, last] / np.where(boot[:, first] > 0, boot[:, first], np.nan)
    return Measurement(value, _ci95(reps), None, info, reps)


def _ci95(reps: np.ndarray) -> tuple[float, float] | None:
    """The 2.5 and 97.5 percentiles of the finite replicates (None: none is finite)."""
    ok = reps[np.isfinite(reps)]
    return (float(np.percentile(ok, 2.5)), float(np.percentile(ok, 97.5))) if ok.size else None


def _rowwise_spearman(x: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """Spearman rho of ``x`` with each row of ``Y`` (average ranks for ties)."""
    rx = average_ranks(x)
    ry = average_ranks(Y)
    rx = rx - rx.mean()
    ry = ry - ry.mean(axis=1, keepdims=True)
    den = np.sqrt((rx**2).sum() * (ry**2).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return (ry @ rx) / den
