"""Study A: internal vs terminal punctuation, pairwise MI and covariance across layers (``../shared/docs/claims.md``).

Method (the original notebook ``part5_layer_CCpunctuationMI``, kept exactly; write-up variants as options):

1. Tokenize the whole corpus with the model's tokenizer, ``tokenizer.encode(text, add_special_tokens=False)``: no
   BOS/EOS is added, for any tokenizer (GPT-2 adds none anyway; for Llama-family tokenizers that would add a BOS the
   31-token windows are raw text, exactly as GPT-2 saw them in the original). Recorded in the provenance.
2. Flags (:func:`find_marks`), from token ``start=400``: ``decode(tok).strip() == ","`` is internal; ``== "."`` is
   terminal when the decoded previous token does not end with a digit and the decoded next token does not start
   with one (decimal points excluded; a missing neighbour at the text's ends counts as "no digit"). ``marks=
   "extended"`` uses the write-up's sets (internal ``, ; :``, terminal ``. ? !``; the digit rule applies to ``.``).
3. Contexts: 20 tokens before and 10 after, 31 tokens, the mark at index 20; marks too close to either end of the
   text are skipped and counted. Selection: the first ``n`` usable marks (the notebook) or ``n`` drawn at random
   without replacement with ``seed`` (the write-up), kept in text order.
4. One batched forward pass per kind that keeps only position 20 at the requested hidden states (never every
   position of every layer). The last block's output is taken BEFORE the final norm (``final="pre_norm"``); where
   the architecture's last Hugging Face ``hidden_states`` entry is post-norm (GPT-2 ``ln_f``, Llama ``norm``), that
   entry is analysed as well, as a separate entry with ``post_norm=True``.
5. Per entry (layer) and kind, on the N x N pair matrices of the original estimator
   (:func:`layerclaims.metrics.information.pairwise_mi_cov`, upper triangle ``i < j``): mean MI and covariance,
   pooled Pearson r(cov, MI), cluster counts of covariance, MI and the 2-D (cov, MI) scatter
   (:func:`layerclaims.metrics.clusters.count_clusters`), the Simpson analysis of MI on covariance within the
   covariance clusters (:func:`layerclaims.metrics.simpson.simpson`), and the merge layer.

Bootstrap over marks. Resampling the N marks with replacement gives each mark a multiplicity ``w``; the pairs are the
ordered pairs of distinct resampled copies whose marks differ (a mark paired with its own copy is not a pair between
two marks). Any sum over those pairs is a quadratic form ``w^T A w`` with a zero-diagonal matrix ``A``, so the pooled
r and the per-layer means (A7's Spearman interval) are bootstrapped exactly and cheaply at every layer
(:func:`boot_pair_stats`); the within-cluster slopes use the same resampling through
``simpson(..., pairs=...)`` with the cluster labels fixed at the full-sample fit, at the detail layers. Cluster-count
intervals re-run the cluster procedure on the pairs among the distinct marks of each resample (a duplicated pair
would be an exact duplicate point, which a density-based count must not see), at the detail layers only (default:
the layers the claims read on this model), to bound the cost.

Layers. An entry is a hidden-state index ``L`` (0 = embeddings, ``L`` = output of block ``L``) plus a ``post_norm``
flag; ``measure(layer=L)`` reads ``hidden_states[L]`` as Hugging Face defines it (so ``L = n_blocks`` is the
post-norm entry where the architecture applies the final norm there); statistics over depth (A7) read the pre-norm
block outputs ``1..n_blocks``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np
from scipy.stats import spearmanr

from layerclaims import results
from layerclaims.errors import UsageError
from layerclaims.results import Measurement

STUDY = "punctuation"
KINDS: tuple[str, ...] = ("internal", "terminal")
BEFORE = 20
AFTER = 10
CONTEXT = BEFORE + 1 + AFTER
MARK_INDEX = BEFORE
MARK_SETS: dict[str, dict[str, tuple[str, ...]]] = {
    "original": {"internal": (",",), "terminal": (".",)},
    "extended": {"internal": (",", ";", ":"), "terminal": (".", "?", "!")},
}
N_HIST_BINS = 40
N_DRAW = 3000  # pairs kept per entry and kind for drawing the all-layers grid
STATISTICS: tuple[str, ...] = (
    "cov_clusters",
    "mi_clusters",
    "joint_clusters",
    "pooled_r",
    "min_within_cluster_slope",
    "mean_mi",
    "mean_cov",
    "spearman_mean_mi_vs_depth",
    "spearman_mean_cov_vs_depth",
)


# --------------------------------------------------------------------------------------------------- marks


def _decoded_table(token_ids: np.ndarray, tokenizer: Any) -> tuple[np.ndarray, list[str]]:
    """``(inverse, decoded)``: each distinct id decoded once; ``decoded[inverse[t]]`` is token ``t`` decoded."""
    uniq, inverse = np.unique(token_ids, return_inverse=True)
    decoded = [tokenizer.decode([int(u)]) for u in uniq]
    return inverse.reshape(-1), decoded


def find_marks(
    token_ids: Any,
    tokenizer: Any,
    *,
    start: int = 400,
    marks: Literal["original", "extended"] = "original",
) -> tuple[np.ndarray, np.ndarray]:
    """Token indices of internal and terminal punctuation, the notebook's flag rule vectorised.

    ``token_ids``: 1-D ids of the whole text. From index ``start`` on, a token whose decoded text, stripped, is in the
    internal set (``","``; extended ``, ; :``) is internal; one in the terminal set (``"."``; extended ``. ? !``) is
    terminal, except a ``"."`` whose previous decoded token ends with a digit or whose next decoded token starts
    with one (``str.isdigit`` on the unstripped decoded text, as the original; no neighbour = no digit). Each distinct
    id is decoded once (a lookup table over the unique ids). Returns two sorted int64 arrays.
    """
    if marks not in MARK_SETS:
        raise UsageError(f"unknown marks {marks!r}: use 'original' (',' and '.') or 'extended' (', ; :' and '. ? !')")
    ids = np.asarray(token_ids, dtype=np.int64).reshape(-1)
    if ids.size == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty
    inverse, decoded = _decoded_table(ids, tokenizer)
    stripped = np.array([d.strip() for d in decoded], dtype=object)
    internal_u = np.isin(stripped, MARK_SETS[marks]["internal"])
    terminal_u = np.isin(stripped, MARK_SETS[marks]["terminal"])
    period_u = stripped == "."
    ends_digit_u = np.array([bool(d) and d[-1].isdigit() for d in decoded])
    starts_digit_u = np.array([bool(d) and d[0].isdigit() for d in decoded])

    prev_digit = np.r_[False, ends_digit_u[inverse][:-1]]
    next_digit = np.r_[starts_digit_u[inverse][1:], False]
    in_range = np.arange(ids.size) >= start
    internal = internal_u[inverse] & in_range
    terminal = terminal_u[inverse] & in_range & ~(period_u[inverse] & (prev_digit | next_digit))
    return np.flatnonzero(internal).astype(np.int64), np.flatnonzero(terminal).astype(np.int64)


def usable_marks(mark_idx: np.ndarray, n_tokens: int) -> tuple[np.ndarray, int, int]:
    """Marks with a full 20-before / 10-after window: ``(kept, n_skipped_start, n_skipped_end)``."""
    mark_idx = np.asarray(mark_idx, dtype=np.int64)
    too_early = mark_idx < BEFORE
    too_late = mark_idx + AFTER > n_tokens - 1
    return mark_idx[~too_early & ~too_late], int(too_early.sum()), int(too_late.sum())


def select_marks(
    usable: np.ndarray, n: int, selection: Literal["first", "random"], seed: int, *, kind: str = "marks"
) -> np.ndarray:
    """``n`` marks from ``usable``: the first ``n`` (notebook) or ``n`` at random without replacement (write-up),
    seeded, returned in text order. Raises UsageError stating how many exist when ``n`` is too large."""
    if n < 3:
        raise UsageError(f"n={n}: at least 3 marks are needed for pairs and a correlation; use n >= 3")
    if n > usable.size:
        raise UsageError(
            f"asked for {n} {kind} marks but only {usable.size} usable ones exist (with a full 20-before/10-after "
            f"context): use n <= {usable.size}"
        )
    if selection == "first":
        return usable[:n].copy()
    if selection == "random":
        rng = np.random.default_rng(seed)
        return np.sort(rng.choice(usable, size=n, replace=False))
    raise UsageError(f"unknown selection {selection!r}: use 'first' (the notebook) or 'random' (the write-up)")


def contexts(token_ids: np.ndarray, marks: np.ndarray) -> np.ndarray:
    """``[n_marks, 31]`` windows, the mark at index 20."""
    offsets = np.arange(-BEFORE, AFTER + 1)
    return np.asarray(token_ids, dtype=np.int64)[np.asarray(marks)[:, None] + offsets[None, :]]


def tokenize(tokenizer: Any, text: str) -> np.ndarray:
    """The whole text as ids, no special tokens (see the module docstring)."""
    try:
        ids = tokenizer.encode(text, add_special_tokens=False, verbose=False)
    except TypeError:
        ids = tokenizer.encode(text, add_special_tokens=False)
    return np.asarray(ids, dtype=np.int64)


# --------------------------------------------------------------------------------------------------- config


@dataclass(frozen=True)
class Config:
    """Study A settings; the defaults are the original notebook's method.

    ``corpus``: a registry name or a file path. ``n`` marks per kind, ``selection`` ``"first"`` (notebook) or
    ``"random"`` (write-up, with ``seed``). ``marks``: ``"original"`` (``,`` / ``.``) or ``"extended"``.
    ``layers``: hidden-state indices to analyse (None = all, 0..n_blocks). ``bins``, ``z_threshold``: the
    estimator's. ``n_boot``: bootstrap resamples over marks for r, slopes and means (every layer).
    ``n_boot_clusters``: resamples for the cluster-count interval at ``detail_layers`` (None = the layers the claims
    read on this model). ``n_perm``: Mantel permutations (marks of the MI matrix permuted) for the p-value of the
    pooled r at the detail layers. ``cluster_n_boot``: the stability resamples inside each cluster count.
    ``cluster_max_points``: pairs handed to the cluster procedure (a seeded subsample when there are more; None =
    all). ``batch_size``: forward-pass batch. ``start``: first token index searched for marks.
    """

    corpus: str = "heart-of-darkness"
    n: int = 250
    selection: Literal["first", "random"] = "first"
    seed: int = 0
    marks: Literal["original", "extended"] = "original"
    layers: tuple[int, ...] | None = None
    bins: int = 15
    z_threshold: float = 5.0
    n_boot: int = 1000
    n_boot_clusters: int = 20
    n_perm: int = 1000
    cluster_n_boot: int = 20
    cluster_max_points: int | None = None
    detail_layers: tuple[int, ...] | None = None
    batch_size: int = 64
    start: int = 400
    line_endings: Literal["crlf", "lf"] = "crlf"
    mi_estimator: Literal["plugin", "miller-madow"] = "plugin"

    def __post_init__(self) -> None:
        if self.line_endings not in ("crlf", "lf"):
            raise UsageError(f"line_endings={self.line_endings!r}: use 'crlf' (the text as served) or 'lf' (body)")
        if self.mi_estimator not in ("plugin", "miller-madow"):
            raise UsageError(f"mi_estimator={self.mi_estimator!r}: use 'plugin' (the original) or 'miller-madow'")
        if self.selection not in ("first", "random"):
            raise UsageError(f"selection={self.selection!r}: use 'first' or 'random'")
        if self.marks not in MARK_SETS:
            raise UsageError(f"marks={self.marks!r}: use 'original' or 'extended'")
        if self.bins < 2 or self.n_boot < 0 or self.n_boot_clusters < 0 or self.n_perm < 0:
            raise UsageError("bins must be >= 2 and the bootstrap counts >= 0")
        if self.layers is not None:
            object.__setattr__(self, "layers", tuple(int(x) for x in self.layers))
        if self.detail_layers is not None:
            object.__setattr__(self, "detail_layers", tuple(int(x) for x in self.detail_layers))


# --------------------------------------------------------------------------------------------------- result


@dataclass(frozen=True, eq=False)
class KindResult:
    """Everything measured for one kind (internal or terminal). Axis ``E`` = the result's entries
    (``PunctuationResult.layers`` / ``post_norm``), ``K`` = clusters (padded with NaN), ``D`` = detail entries.

    Counts: ``n_found`` marks flagged, ``n_skipped_start``/``n_skipped_end`` without a full context, ``n_usable``.
    ``marks``: the token indices used (text order). Per entry: ``mean_mi``/``mean_cov`` and their ``*_ci``
    ``[E, 2]``; ``pooled_r``, ``pooled_r_ci``, ``pooled_r_p`` (two-sided Mantel p over marks; detail entries only,
    NaN elsewhere); ``pooled_slope``; ``cov_clusters``/``mi_clusters``/
    ``joint_clusters`` (int) with ``*_stability`` and ``*_ci`` (NaN outside the detail entries);
    ``within_slopes`` ``[E, K]`` (OLS slope of MI on covariance per covariance cluster, ordered by the cluster's mean
    covariance; clusters under 3 pairs left out), ``cluster_sizes`` ``[E, K]``, ``min_within_slope`` and
    ``min_within_slope_ci``; ``paradox`` (every within-cluster slope has the sign opposite to the pooled one, >= 2
    clusters; :func:`layerclaims.metrics.simpson.simpson`) and ``paradox_support`` (fraction of mark resamples in
    which it holds; detail entries only). ``degenerate``: all pairs have (numerically) the same covariance or MI,
    e.g. layer 0 where every mark is the same token at the same position, hence the same vector: r and slopes are
    undefined (NaN) there and every count is 1. ``merge_layer``: the first
    pre-norm layer from which the covariance has one cluster at every later layer (-1: never; degenerate entries
    are skipped).
    Drawing: ``hist_*`` ``[E, B]`` with ``hist_*_edges`` ``[E, B+1]``; ``draw_pairs`` ``[S, 2]`` and
    ``draw_cov``/``draw_mi``/``draw_labels`` ``[E, S]``. Detail entries ``detail_entries`` ``[D]``: all pairs'
    ``detail_cov``/``detail_mi`` ``[D, P]`` (float32) and cluster labels ``detail_*_labels`` ``[D, P]``.
    """

    kind: str
    n_found: int
    n_skipped_start: int
    n_skipped_end: int
    n_usable: int
    marks: np.ndarray
    mean_mi: np.ndarray
    mean_mi_ci: np.ndarray
    mean_cov: np.ndarray
    mean_cov_ci: np.ndarray
    pooled_r: np.ndarray
    pooled_r_ci: np.ndarray
    pooled_r_p: np.ndarray
    pooled_slope: np.ndarray
    cov_clusters: np.ndarray
    cov_stability: np.ndarray
    cov_clusters_ci: np.ndarray
    mi_clusters: np.ndarray
    mi_stability: np.ndarray
    mi_clusters_ci: np.ndarray
    joint_clusters: np.ndarray
    joint_stability: np.ndarray
    joint_clusters_ci: np.ndarray
    within_slopes: np.ndarray
    cluster_sizes: np.ndarray
    min_within_slope: np.ndarray
    min_within_slope_ci: np.ndarray
    paradox: np.ndarray
    paradox_support: np.ndarray
    degenerate: np.ndarray
    merge_layer: int
    hist_cov: np.ndarray
    hist_cov_edges: np.ndarray
    hist_mi: np.ndarray
    hist_mi_edges: np.ndarray
    draw_pairs: np.ndarray
    draw_cov: np.ndarray
    draw_mi: np.ndarray
    draw_labels: np.ndarray
    detail_entries: np.ndarray
    detail_cov: np.ndarray
    detail_mi: np.ndarray
    detail_cov_labels: np.ndarray
    detail_mi_labels: np.ndarray
    detail_joint_labels: np.ndarray
    mean_mi_boot: np.ndarray = field(repr=False, default_factory=lambda: np.zeros((0, 0)))
    mean_cov_boot: np.ndarray = field(repr=False, default_factory=lambda: np.zeros((0, 0)))


@dataclass(frozen=True, eq=False)
class PunctuationResult(results.SavedResult):
    """Study A on one model. ``layers`` ``[E]``: hidden-state index of each entry; ``post_norm`` ``[E]``: whether the
    entry has the final norm applied (only ever the last one, duplicated: the same index appears pre- and post-norm).
    ``internal``/``terminal``: :class:`KindResult`. ``counts``: marks found per kind. ``config``: the Config as a
    dict. ``provenance``: corpus name and sha256, selection, seed, model revision, device, dtype, tokenization,
    timings (``tokenize_s``, ``forward_s``, ``analysis_s``), which entry is pre/post norm, package versions."""

    study: ClassVar[str] = STUDY

    model: str
    n_blocks: int
    layers: np.ndarray
    post_norm: np.ndarray
    internal: KindResult
    terminal: KindResult
    config: dict[str, Any]
    provenance: dict[str, Any]

    # ------------------------------------------------------------------ access

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
        """Entry index of hidden state ``layer``. ``post_norm=None`` reads ``hidden_states[layer]`` as Hugging Face
        defines it (the post-norm entry for the last layer where there is one)."""
        if post_norm is None:
            post_norm = layer == self.n_blocks and self.last_is_post_norm
        hits = np.flatnonzero((self.layers == layer) & (self.post_norm == post_norm))
        if hits.size == 0:
            have = sorted({int(x) for x in self.layers})
            raise UsageError(f"layer {layer} (post_norm={post_norm}) was not analysed; analysed layers: {have}")
        return int(hits[0])

    def depth_entries(self) -> np.ndarray:
        """Entries of the pre-norm block outputs 1..n_blocks, in layer order (what A7 reads)."""
        sel = np.flatnonzero((self.layers >= 1) & (self.layers <= self.n_blocks) & ~self.post_norm)
        return sel[np.argsort(self.layers[sel], kind="stable")]

    # ------------------------------------------------------------------ claims

    def measure(self, statistic: str, *, layer: int | None, kind: str | None) -> Measurement:
        """A statistic the claims name (``docs/architecture.md``). Unknown statistic: KeyError."""
        if statistic not in STATISTICS:
            raise KeyError(f"unknown statistic {statistic!r} for study punctuation; known: {', '.join(STATISTICS)}")
        k = self.kind_result(kind)
        if statistic.startswith("spearman_"):
            return self._spearman(k, "mi" if "_mi_" in statistic else "cov")
        if layer is None:
            raise UsageError(f"{statistic} is a per-layer statistic: give a layer")
        e = self.entry(layer)
        info = {"entry_post_norm": bool(self.post_norm[e]), "n_marks": int(k.marks.size)}
        if statistic in ("cov_clusters", "mi_clusters", "joint_clusters"):
            what = statistic.split("_")[0]
            ci = _ci(getattr(k, f"{what}_clusters_ci")[e])
            return Measurement(
                float(getattr(k, f"{what}_clusters")[e]),
                ci,
                None,
                {
                    **info,
                    "stability": float(getattr(k, f"{what}_stability")[e]),
                    "ci_method": "percentile of the count over bootstrap resamples of marks" if ci else None,
                },
            )
        if statistic == "pooled_r":
            return Measurement(
                float(k.pooled_r[e]),
                _ci(k.pooled_r_ci[e]),
                _f(k.pooled_r_p[e]),
                {
                    **info,
                    "pooled_slope": float(k.pooled_slope[e]),
                    "n_pairs": _n_pairs(k.marks.size),
                    "p_method": "two-sided Mantel test, marks of the MI matrix permuted",
                },
            )
        if statistic == "min_within_cluster_slope":
            slopes = k.within_slopes[e]
            sizes = k.cluster_sizes[e]
            ok = ~np.isnan(slopes)
            return Measurement(
                float(k.min_within_slope[e]),
                _ci(k.min_within_slope_ci[e]),
                None,
                {
                    **info,
                    "n_clusters": int(k.cov_clusters[e]),
                    "slopes": [float(s) for s in slopes[ok]],
                    "cluster_sizes": [int(s) for s in sizes[ok]],
                    "pooled_r": float(k.pooled_r[e]),
                    "paradox": bool(k.paradox[e]),
                    "paradox_support": _f(k.paradox_support[e]),
                    "cov_cluster_stability": float(k.cov_stability[e]),
                },
            )
        what = "mi" if statistic == "mean_mi" else "cov"
        return Measurement(float(getattr(k, f"mean_{what}")[e]), _ci(getattr(k, f"mean_{what}_ci")[e]), None, info)

    def _spearman(self, k: KindResult, what: str) -> Measurement:
        sel = self.depth_entries()
        if sel.size < 3:
            return Measurement(float("nan"), None, None, {"reason": "fewer than 3 block outputs analysed"})
        means = getattr(k, f"mean_{what}")[sel]
        rho = float(spearmanr(self.layers[sel], means).statistic)
        boot = getattr(k, f"mean_{what}_boot")
        ci = None
        if boot.size:
            rhos = _rowwise_spearman(self.layers[sel].astype(float), boot[:, sel])
            rhos = rhos[np.isfinite(rhos)]
            if rhos.size:
                ci = (float(np.percentile(rhos, 2.5)), float(np.percentile(rhos, 97.5)))
        return Measurement(
            rho,
            ci,
            None,
            {
                "layers": [int(x) for x in self.layers[sel]],
                "post_norm_excluded": self.last_is_post_norm,
                "first_mean": float(means[0]),
                "last_mean": float(means[-1]),
                "ratio_last_first": float(means[-1] / means[0]) if means[0] != 0 else None,
            },
        )

    # ------------------------------------------------------------------ persistence


def _f(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def _n_pairs(n: int) -> int:
    return n * (n - 1) // 2


def _ci(row: np.ndarray) -> tuple[float, float] | None:
    row = np.asarray(row, dtype=float)
    if row.size != 2 or not np.all(np.isfinite(row)):
        return None
    return (float(row[0]), float(row[1]))


def _rowwise_spearman(x: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """Spearman rho of ``x`` with each row of ``Y`` (average ranks for ties)."""
    from scipy.stats import rankdata

    rx = rankdata(x)
    ry = rankdata(Y, axis=1)
    rx = rx - rx.mean()
    ry = ry - ry.mean(axis=1, keepdims=True)
    den = np.sqrt((rx**2).sum() * (ry**2).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return (ry @ rx) / den


# --------------------------------------------------------------------------------------------------- bootstrap


def mark_weights(n: int, n_boot: int, seed: int) -> np.ndarray:
    """``[n_boot, n]`` multiplicities of each mark in ``n_boot`` resamples with replacement: the draws of
    :func:`layerclaims.metrics.bootstrap.bootstrap_indices` (same seed, same draws as every other bootstrap here)."""
    from layerclaims.metrics.bootstrap import bootstrap_indices, item_counts

    if n_boot == 0:
        return np.zeros((0, n))
    return item_counts(bootstrap_indices(n, n_boot, seed=seed), n).astype(np.float64)


def boot_pair_stats(
    W: np.ndarray, C: np.ndarray, M: np.ndarray, mask: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """Per resample (rows of multiplicities ``W``): number of pairs, mean cov, mean MI, Pearson r and OLS slope of
    MI on cov over the pairs between distinct marks, optionally restricted to the pairs where the symmetric boolean
    ``mask`` is true (e.g. one covariance cluster). Every sum is ``w^T U w`` with ``U`` the strict upper triangle
    (the construction of :func:`layerclaims.metrics.bootstrap.bootstrap_pair_correlation`); values are centred
    first so the one-pass moments stay accurate when covariances are large."""
    n = C.shape[0]
    U = np.triu(np.ones((n, n)), 1)
    if mask is not None:
        U = U * mask
    total = U.sum()
    c0 = float((C * U).sum() / total) if total else 0.0
    m0 = float((M * U).sum() / total) if total else 0.0
    Cc, Mc = C - c0, M - m0

    def form(A: np.ndarray) -> np.ndarray:
        return np.einsum("bi,bi->b", W @ (A * U), W)

    w = form(np.ones((n, n)))
    with np.errstate(invalid="ignore", divide="ignore"):
        mx, my = form(Cc) / w, form(Mc) / w
        vx = form(Cc * Cc) / w - mx**2
        vy = form(Mc * Mc) / w - my**2
        cxy = form(Cc * Mc) / w - mx * my
        r = np.clip(cxy / np.sqrt(vx * vy), -1.0, 1.0)
        slope = cxy / vx
    r[~((vx > 0) & (vy > 0))] = np.nan
    slope[~(vx > 0) | (w < 3)] = np.nan
    return {"n": w, "mean_cov": mx + c0, "mean_mi": my + m0, "r": r, "slope": slope}


def _percentile_ci(values: np.ndarray, *, discrete: bool = False) -> np.ndarray:
    """95% percentile interval (``layerclaims.metrics.bootstrap.percentile_interval``) as an array."""
    from layerclaims.metrics.bootstrap import percentile_interval

    v = np.asarray(values, dtype=float)
    if v.size == 0:
        return np.array([np.nan, np.nan])
    return np.asarray(percentile_interval(v, discrete=discrete), dtype=float)


# --------------------------------------------------------------------------------------------------- analysis


def _count(points: np.ndarray, seed: int, n_boot: int) -> Any:
    from layerclaims.metrics.clusters import count_clusters

    return count_clusters(points, seed=seed, n_boot=n_boot)


def _cluster_points(
    points: np.ndarray, seed: int, config: Config, *, n_boot: int | None = None
) -> tuple[int, float, np.ndarray]:
    """Cluster count, stability and labels for every point (a subsample, when capped, is labelled by the nearest
    cluster mean of the subsample's labels, in standardised units)."""
    if points.ndim == 2:
        flat = [_degenerate(points[:, i]) for i in range(points.shape[1])]
        if all(flat):
            points = points[:, 0]
        elif any(flat):
            points = points[:, flat.index(False)]
    if points.ndim == 1 and _degenerate(points):
        return 1, 1.0, np.zeros(points.shape[0], dtype=np.int16)
    nb = config.cluster_n_boot if n_boot is None else n_boot
    cap = config.cluster_max_points
    if cap is None or points.shape[0] <= cap:
        res = _count(points, seed, nb)
        return int(res.n_clusters), float(res.stability), np.asarray(res.labels, dtype=np.int16)
    rng = np.random.default_rng(seed)
    sub = np.sort(rng.choice(points.shape[0], size=cap, replace=False))
    res = _count(points[sub], seed, nb)
    lab = np.asarray(res.labels)
    P = points.reshape(points.shape[0], -1)
    scale = P.std(axis=0)
    scale[scale == 0] = 1.0
    ids = np.unique(lab)
    centres = np.stack([P[sub][lab == u].mean(axis=0) for u in ids]) / scale
    d = ((P / scale)[:, None, :] - centres[None, :, :]) ** 2
    full = ids[np.argmin(d.sum(axis=2), axis=1)]
    full[sub] = lab
    return int(res.n_clusters), float(res.stability), full.astype(np.int16)


def _degenerate(v: np.ndarray) -> bool:
    """All values equal up to rounding (spread <= 1e-9 of their magnitude)."""
    v = np.asarray(v, dtype=np.float64)
    return bool(v.size == 0 or np.ptp(v) <= 1e-9 * max(float(np.abs(v).max()), 1e-300))


def _order_labels(labels: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """Relabel clusters 0..K-1 by increasing mean covariance (noise labels < 0 are kept)."""
    out = labels.copy()
    ids = [u for u in np.unique(labels) if u >= 0]
    order = sorted(ids, key=lambda u: float(cov[labels == u].mean()))
    for new, old in enumerate(order):
        out[labels == old] = new
    return out


def _count_ci(
    C: np.ndarray, M: np.ndarray, W: np.ndarray, seed: int, config: Config
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Percentile intervals of the cov, MI and 2-D cluster counts over resamples of marks (distinct marks)."""
    counts = np.full((W.shape[0], 3), np.nan)
    for b in range(W.shape[0]):
        keep = np.flatnonzero(W[b] > 0)
        iu = np.triu_indices(keep.size, 1)
        c = C[np.ix_(keep, keep)][iu]
        m = M[np.ix_(keep, keep)][iu]
        s = seed + 7919 * (b + 1)
        counts[b, 0] = _cluster_points(c, s, config, n_boot=0)[0]  # only the count is needed here
        counts[b, 1] = _cluster_points(m, s, config, n_boot=0)[0]
        counts[b, 2] = _cluster_points(np.c_[c, m], s, config, n_boot=0)[0]
    return tuple(_percentile_ci(counts[:, i], discrete=True) for i in range(3))  # type: ignore[return-value]


def analyse_kind(
    X: np.ndarray,
    config: Config,
    *,
    kind: str,
    layers: np.ndarray,
    post_norm: np.ndarray,
    detail: np.ndarray,
    n_blocks: int,
    counts: dict[str, int],
    marks: np.ndarray,
    timings: dict[str, float] | None = None,
) -> KindResult:
    """All per-entry statistics for one kind. ``X``: ``[E, N, d]`` mark vectors per entry. ``timings``: seconds
    per step are added to it (``mi_cov_s``, ``clusters_s``, ``cluster_ci_s``, ``simpson_s``, ``bootstrap_s``)."""
    tm = timings if timings is not None else {}
    for key in ("mi_cov_s", "clusters_s", "cluster_ci_s", "simpson_s", "bootstrap_s"):
        tm.setdefault(key, 0.0)
    from layerclaims.metrics.information import pairwise_mi_cov
    from layerclaims.metrics.similarity import mantel_test
    from layerclaims.metrics.simpson import simpson

    E, N = X.shape[0], X.shape[1]
    iu = np.triu_indices(N, 1)
    P = iu[0].size
    seed = config.seed + (0 if kind == "internal" else 1_000_003)
    W = mark_weights(N, config.n_boot, seed) if config.n_boot else np.zeros((0, N))
    Wc = mark_weights(N, config.n_boot_clusters, seed + 17) if config.n_boot_clusters else np.zeros((0, N))
    rng = np.random.default_rng(seed + 3)
    draw_sel = np.sort(rng.choice(P, size=min(N_DRAW, P), replace=False))
    draw_pairs = np.c_[iu[0][draw_sel], iu[1][draw_sel]].astype(np.int32)
    D = detail.size

    def nan(*shape: int) -> np.ndarray:
        return np.full(shape, np.nan)

    out: dict[str, Any] = {
        "mean_mi": nan(E),
        "mean_mi_ci": nan(E, 2),
        "mean_cov": nan(E),
        "mean_cov_ci": nan(E, 2),
        "pooled_r": nan(E),
        "pooled_r_ci": nan(E, 2),
        "pooled_r_p": nan(E),
        "pooled_slope": nan(E),
        "cov_clusters": np.zeros(E, dtype=np.int64),
        "cov_stability": nan(E),
        "cov_clusters_ci": nan(E, 2),
        "mi_clusters": np.zeros(E, dtype=np.int64),
        "mi_stability": nan(E),
        "mi_clusters_ci": nan(E, 2),
        "joint_clusters": np.zeros(E, dtype=np.int64),
        "joint_stability": nan(E),
        "joint_clusters_ci": nan(E, 2),
        "min_within_slope": nan(E),
        "min_within_slope_ci": nan(E, 2),
        "paradox": np.zeros(E, dtype=bool),
        "paradox_support": nan(E),
        "degenerate": np.zeros(E, dtype=bool),
        "hist_cov": np.zeros((E, N_HIST_BINS), dtype=np.int64),
        "hist_cov_edges": nan(E, N_HIST_BINS + 1),
        "hist_mi": np.zeros((E, N_HIST_BINS), dtype=np.int64),
        "hist_mi_edges": nan(E, N_HIST_BINS + 1),
        "draw_cov": np.zeros((E, draw_sel.size), dtype=np.float32),
        "draw_mi": np.zeros((E, draw_sel.size), dtype=np.float32),
        "draw_labels": np.zeros((E, draw_sel.size), dtype=np.int16),
        "detail_cov": np.zeros((D, P), dtype=np.float32),
        "detail_mi": np.zeros((D, P), dtype=np.float32),
        "detail_cov_labels": np.zeros((D, P), dtype=np.int16),
        "detail_mi_labels": np.zeros((D, P), dtype=np.int16),
        "detail_joint_labels": np.zeros((D, P), dtype=np.int16),
        "mean_mi_boot": nan(W.shape[0], E),
        "mean_cov_boot": nan(W.shape[0], E),
    }
    slopes_rows: list[np.ndarray] = []
    sizes_rows: list[np.ndarray] = []
    for e in range(E):
        t0 = time.perf_counter()
        MI, COV = pairwise_mi_cov(X[e], bins=config.bins, z_threshold=config.z_threshold, estimator=config.mi_estimator)
        MI = np.asarray(MI, dtype=np.float64)
        COV = np.asarray(COV, dtype=np.float64)
        MI = 0.5 * (MI + MI.T)
        COV = 0.5 * (COV + COV.T)
        cov, mi = COV[iu], MI[iu]
        t1 = time.perf_counter()
        tm["mi_cov_s"] += t1 - t0
        out["mean_mi"][e], out["mean_cov"][e] = mi.mean(), cov.mean()
        flat_cov, flat_mi = _degenerate(cov), _degenerate(mi)
        out["degenerate"][e] = flat_cov or flat_mi
        if not (flat_cov or flat_mi):
            out["pooled_r"][e] = float(np.corrcoef(cov, mi)[0, 1])
            if config.n_perm and np.any(detail == e):
                # Pairs share marks, so pairs are not independent: the null permutes marks (Mantel), not pairs.
                mt = mantel_test(COV, MI, n_perm=config.n_perm, seed=seed + e, alternative="two-sided")
                out["pooled_r_p"][e] = mt.p_value
        if not flat_cov:
            out["pooled_slope"][e] = float(((cov - cov.mean()) * (mi - mi.mean())).mean() / cov.var())

        es = seed + 101 * (e + 1)
        hit = np.flatnonzero(detail == e)
        # Stability resamples only where a claim or figure reads the count in detail; elsewhere the count alone
        # (NaN stability), which keeps the all-layers analysis at seconds.
        nb = None if hit.size else 0
        kc, sc, lc = _cluster_points(cov, es, config, n_boot=nb)
        km, sm, lm = _cluster_points(mi, es, config, n_boot=nb)
        kj, sj, lj = _cluster_points(np.c_[cov, mi], es, config, n_boot=nb)
        lc = _order_labels(lc, cov)
        out["cov_clusters"][e], out["cov_stability"][e] = kc, sc
        out["mi_clusters"][e], out["mi_stability"][e] = km, sm
        out["joint_clusters"][e], out["joint_stability"][e] = kj, sj
        t2 = time.perf_counter()
        tm["clusters_s"] += t2 - t1

        if flat_cov:  # no slope of MI on covariance exists
            slopes_rows.append(np.zeros(0))
            sizes_rows.append(np.zeros(0, dtype=np.int64))
        else:
            sres = simpson(cov, mi, lc, n_boot=config.n_boot if hit.size else 0, seed=es, pairs=iu)
            inc = sres.included
            slopes_rows.append(np.array([c.slope for c in inc]))
            sizes_rows.append(np.array([c.size for c in inc], dtype=np.int64))
            out["min_within_slope"][e] = sres.min_within_slope
            out["paradox"][e] = sres.paradox
            if sres.min_within_slope_ci is not None:
                out["min_within_slope_ci"][e] = sres.min_within_slope_ci
                out["paradox_support"][e] = sres.paradox_support
        t3 = time.perf_counter()
        tm["simpson_s"] += t3 - t2

        if W.shape[0]:
            b_all = boot_pair_stats(W, COV, MI)
            out["pooled_r_ci"][e] = _percentile_ci(b_all["r"])
            out["mean_mi_ci"][e] = _percentile_ci(b_all["mean_mi"])
            out["mean_cov_ci"][e] = _percentile_ci(b_all["mean_cov"])
            out["mean_mi_boot"][:, e] = b_all["mean_mi"]
            out["mean_cov_boot"][:, e] = b_all["mean_cov"]
        tm["bootstrap_s"] += time.perf_counter() - t3

        for name, vals in (("cov", cov), ("mi", mi)):
            centre = float(vals.mean())
            rng_ = (centre - 0.5, centre + 0.5) if _degenerate(vals) else None
            h, edges = np.histogram(vals, bins=N_HIST_BINS, range=rng_)
            out[f"hist_{name}"][e], out[f"hist_{name}_edges"][e] = h, edges
        out["draw_cov"][e], out["draw_mi"][e], out["draw_labels"][e] = cov[draw_sel], mi[draw_sel], lc[draw_sel]

        if hit.size:
            d = int(hit[0])
            out["detail_cov"][d], out["detail_mi"][d] = cov, mi
            out["detail_cov_labels"][d], out["detail_mi_labels"][d] = lc, lm
            out["detail_joint_labels"][d] = lj
            if Wc.shape[0]:
                t4 = time.perf_counter()
                ci_c, ci_m, ci_j = _count_ci(COV, MI, Wc, es, config)
                tm["cluster_ci_s"] += time.perf_counter() - t4
                out["cov_clusters_ci"][e], out["mi_clusters_ci"][e], out["joint_clusters_ci"][e] = ci_c, ci_m, ci_j

    K = max((s.size for s in slopes_rows), default=1)
    within = np.full((E, K), np.nan)
    sizes_arr = np.zeros((E, K), dtype=np.int64)
    for e, (s, z) in enumerate(zip(slopes_rows, sizes_rows, strict=True)):
        within[e, : s.size], sizes_arr[e, : z.size] = s, z

    depth = np.flatnonzero(~post_norm & ~out["degenerate"])  # a degenerate entry (layer 0) says nothing
    merge = -1
    for e in sorted(depth, key=lambda i: layers[i], reverse=True):
        if out["cov_clusters"][e] == 1:
            merge = int(layers[e])
        else:
            break
    return KindResult(
        kind=kind,
        n_found=counts["found"],
        n_skipped_start=counts["skipped_start"],
        n_skipped_end=counts["skipped_end"],
        n_usable=counts["usable"],
        marks=marks.astype(np.int64),
        within_slopes=within,
        cluster_sizes=sizes_arr,
        merge_layer=merge,
        draw_pairs=draw_pairs,
        detail_entries=detail.astype(np.int64),
        **out,
    )


# --------------------------------------------------------------------------------------------------- run


def _entries(handle: Any, requested: tuple[int, ...] | None) -> tuple[np.ndarray, np.ndarray]:
    n = int(handle.n_blocks)
    layers = list(range(n + 1)) if requested is None else sorted(set(requested))
    bad = [x for x in layers if not 0 <= x <= n]
    if bad:
        raise UsageError(f"layers {bad} are outside 0..{n} (hidden states of {handle.name}); fix Config.layers")
    post = [False] * len(layers)
    if n in layers and _last_is_post_norm(handle):
        layers.append(n)
        post.append(True)
    return np.asarray(layers, dtype=np.int64), np.asarray(post, dtype=bool)


def _last_is_post_norm(handle: Any) -> bool:
    """``handle.arch.last_hidden_is_normed`` (GPT-2, Llama: True; BERT: False)."""
    return bool(getattr(handle.arch, "last_hidden_is_normed", False))


def _detail_entries(handle: Any, layers: np.ndarray, post_norm: np.ndarray, config: Config) -> np.ndarray:
    n = int(handle.n_blocks)
    if config.detail_layers is not None:
        wanted = set(config.detail_layers)
    else:
        from layerclaims.claims import claims_for, map_layer

        wanted = {map_layer(c, n) for c in claims_for(STUDY) if c.layer is not None}
    out = []
    for L in sorted(wanted):
        post = L == n and bool(post_norm.any())
        hit = np.flatnonzero((layers == L) & (post_norm == post))
        if hit.size:
            out.append(int(hit[0]))
    return np.asarray(out, dtype=np.int64)


def extract_marks(
    handle: Any, ctx: np.ndarray, layers: np.ndarray, post_norm: np.ndarray, batch_size: int
) -> np.ndarray:
    """``[E, n, d]`` float64 vectors of the mark (index 20) at each entry, from ONE batched forward pass that keeps
    only that position at the pre-norm layers (:func:`layerclaims.extract.hidden_states` with
    ``final="pre_norm"``). The post-norm entry, when asked, is the model's own final norm module
    (``handle.arch.final_norm``) applied to the last block's output at the mark: exactly the last Hugging Face
    ``hidden_states`` entry (the norm acts position by position), without a second pass. In a causal model
    (``handle.arch.causal``) the mark's state depends only on the tokens up to it, so the 10 tokens after the mark
    are not run: the same vectors (to float rounding) for two thirds of the compute; other models see all 31."""
    import torch

    from layerclaims.activations import hidden_states
    from layerclaims.models import base_model

    if getattr(handle.arch, "causal", False):
        ctx = ctx[:, : MARK_INDEX + 1]  # causal: the 10 tokens after the mark cannot change its hidden state
    seqs = [[int(t) for t in row] for row in ctx]
    pre_layers = [int(x) for x in layers[~post_norm]]
    need_post = bool(post_norm.any())
    n = int(handle.n_blocks)
    ask = sorted(set(pre_layers) | ({n} if need_post else set()))
    hs = np.asarray(hidden_states(handle, seqs, MARK_INDEX, ask, batch_size, final="pre_norm"))
    pos = {L: i for i, L in enumerate(ask)}
    parts = [hs[[pos[L] for L in pre_layers]].astype(np.float64)]
    if need_post:
        norm = base_model(handle.model).get_submodule(handle.arch.final_norm)
        param = next(handle.model.parameters())
        with torch.no_grad():
            last = torch.as_tensor(hs[pos[n]], dtype=param.dtype, device=param.device)
            parts.append(norm(last).double().cpu().numpy()[None])
    return np.concatenate(parts, axis=0)


def run(handle: Any, config: Config | None = None) -> PunctuationResult:
    """Run study A on a loaded model (``layerclaims.models.load_model``) with ``config``."""
    from layerclaims.tokens import study_marks

    config = config or Config()
    t0 = time.perf_counter()
    # The text as served (CRLF, header kept) or the LF body, tokenised in chunks until the selection is complete.
    sm = study_marks(
        handle.tokenizer,
        config.corpus,
        line_endings=config.line_endings,
        n=config.n,
        selection=config.selection,
        seed=config.seed,
        start=config.start,
        marks=config.marks,
    )
    t_tok = time.perf_counter() - t0

    layers, post_norm = _entries(handle, config.layers)
    detail = _detail_entries(handle, layers, post_norm, config)
    per_kind: dict[str, KindResult] = {}
    t_fwd = t_an = 0.0
    steps: dict[str, float] = {}
    selections: dict[str, list[int]] = {}
    for kind in KINDS:
        scan = sm.scan.kinds[kind]
        sel = scan.selected
        selections[kind] = [int(x) for x in sel]
        t1 = time.perf_counter()
        X = extract_marks(handle, scan.windows, layers, post_norm, config.batch_size)
        t2 = time.perf_counter()
        per_kind[kind] = analyse_kind(
            X,
            config,
            kind=kind,
            layers=layers,
            post_norm=post_norm,
            detail=detail,
            n_blocks=handle.n_blocks,
            counts={
                "found": scan.found,
                "skipped_start": scan.skipped_start,
                "skipped_end": scan.skipped_end,
                "usable": scan.usable,
            },
            marks=sel,
            timings=steps,
        )
        t_fwd += t2 - t1
        t_an += time.perf_counter() - t2

    cfg = {f: getattr(config, f) for f in config.__dataclass_fields__}
    cfg = {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.items()}
    prov = results.provenance(
        study=STUDY,
        model=handle.name,
        revision=getattr(handle, "revision", None),
        model_source=getattr(handle, "source", None),
        device=str(getattr(handle, "device", "cpu")),
        dtype=str(getattr(handle, "dtype", "float32")),
        corpus=sm.corpus,
        n_tokens=int(sm.scan.n_tokens),
        tokenization="tokenizer.encode(text, add_special_tokens=False): no BOS/EOS added; in chunks (tokens.py), "
        + ("the whole text" if sm.scan.complete else "stopped once the selection was complete: counts cover n_tokens"),
        selection=config.selection,
        seed=config.seed,
        marks=config.marks,
        n=config.n,
        marks_found={kind: int(sm.scan.kinds[kind].found) for kind in KINDS},
        mi_estimator=config.mi_estimator,
        norm_entries={
            "last_hidden_state_post_norm": bool(post_norm.any()),
            "pre_norm_entries": [int(x) for x in layers[~post_norm]],
            "post_norm_entries": [int(x) for x in layers[post_norm]],
            "note": "entry n_blocks with post_norm=False is the last block's output before the final norm",
        },
        timings={"tokenize_s": t_tok, "forward_s": t_fwd, "analysis_s": t_an, "analysis_steps": steps},
        threads=_threads(),
    )
    return PunctuationResult(
        model=handle.name,
        n_blocks=int(handle.n_blocks),
        layers=layers,
        post_norm=post_norm,
        internal=per_kind["internal"],
        terminal=per_kind["terminal"],
        config=cfg,
        provenance=prov,
    )


def _threads() -> int:
    try:
        import torch

        return int(torch.get_num_threads())
    except ImportError:  # pragma: no cover
        return 1
