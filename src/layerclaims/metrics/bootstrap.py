"""Bootstrap over items: seeded percentile intervals, and the similarity-matrix case where an item is drawn twice.

The unit of resampling is the ITEM (a word of study B, a punctuation vector of study A), not the pair: pairs that
share an item are dependent, so resampling pairs would understate the uncertainty. A replicate draws ``n`` item
indices with replacement (``np.random.default_rng(seed)``), recomputes the statistic on those items, and the
interval is the percentile interval of the replicates (the ``level`` central mass).

Building blocks, from general to specific:

* :func:`bootstrap_indices` / :func:`item_counts`: the ``(n_boot, n)`` index draws (optionally stratified, with a
  minimum number of distinct items per stratum) and the per-item multiplicities they imply.
* :func:`overlap_blocks` / :func:`block_counts`: the block bootstrap of dependent items. Items whose inputs overlap
  (study A's marks: two marks whose context windows share tokens share input, so their hidden states are not
  independent) form one block; a resample draws whole blocks with replacement (Kuensch 1989; here the blocks are
  fixed by the data, not by a block length), and every item of a block drawn ``m`` times gets multiplicity ``m``.
  The number of blocks is the effective number of independent units the intervals rest on.
* :func:`bootstrap_replicates` / :func:`bootstrap_ci`: any ``statistic(indices) -> float``.
* :func:`resample_matrix` / :func:`bootstrap_similarity`: statistics of item x item matrices (cosine matrices,
  pairwise covariance or MI). The pair formed by two copies of the same item is set to NaN, i.e. excluded, as
  rsatoolbox does when it bootstraps patterns (``RDMs.subsample_pattern`` marks those entries NaN because they are
  trivially "same item" and would otherwise enter as a perfect within-pair: cosine 1, or an item's MI with itself).
  Keeping them would inflate mean off-diagonal similarity and within-category means, so the interval would not be
  centred on the statistic it is meant to bracket. Every statistic of :mod:`layerclaims.metrics.similarity` skips NaN
  pairs, so they compose directly.

Undefined replicates. A replicate can be NaN (e.g. a resampled category left with one distinct item). NaN and
infinite replicates are dropped; if more than ``max_nan_fraction`` of them are undefined the interval is reported
as ``(nan, nan)``: a percentile interval over the few resamples where the statistic happens to exist would be
biased toward those resamples, and a NaN interval makes the problem visible in the verdict. Use ``strata`` with
``min_distinct`` to keep statistics defined instead (e.g. selectivity: stratify by category, ``min_distinct=2``).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from layerclaims.errors import UsageError
from layerclaims.metrics.similarity import as_array, rsa

__all__ = [
    "BootstrapCI",
    "PairMoments",
    "block_counts",
    "bootstrap_ci",
    "bootstrap_indices",
    "bootstrap_pair_correlation",
    "bootstrap_replicates",
    "bootstrap_similarity",
    "item_counts",
    "overlap_blocks",
    "pair_moments",
    "percentile_interval",
    "resample_matrix",
]

_MAX_REDRAWS = 1000


@dataclass(frozen=True)
class BootstrapCI:
    """A bootstrap result: the statistic on all items, its percentile interval and how it was obtained.

    ``n_valid`` counts the finite replicates the interval is built from (out of ``n_boot``); ``replicates`` holds
    all of them (NaN included) for plots or other interval types.
    """

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
        """``(low, high)``, the shape :class:`layerclaims.results.Measurement` stores."""
        return (self.low, self.high)

    @classmethod
    def from_replicates(
        cls, estimate: float, reps: np.ndarray, *, level: float, n_boot: int, seed: int, max_nan_fraction: float
    ) -> BootstrapCI:
        """The percentile interval of ``reps`` (:func:`percentile_interval`) with how it was obtained."""
        lo, hi = percentile_interval(reps, level, max_nan_fraction=max_nan_fraction)
        return cls(
            estimate=estimate,
            low=lo,
            high=hi,
            level=float(level),
            n_boot=int(n_boot),
            n_valid=int(np.isfinite(reps).sum()),
            seed=int(seed),
            replicates=reps,
        )


def _check(n_items: int, n_boot: int, level: float) -> None:
    if int(n_items) < 1:
        raise UsageError(f"n_items must be at least 1, got {n_items}")
    if int(n_boot) < 1:
        raise UsageError(f"n_boot must be at least 1, got {n_boot}")
    if not 0.0 < level < 1.0:
        raise UsageError(f"level must be in (0, 1), e.g. 0.95; got {level}")


def bootstrap_indices(
    n_items: int,
    n_boot: int = 1000,
    *,
    seed: int = 0,
    strata: Sequence[Hashable] | np.ndarray | None = None,
    min_distinct: int = 1,
) -> np.ndarray:
    """``(n_boot, n_items)`` integer array: each row a resample of ``range(n_items)`` with replacement.

    ``strata`` (one label per item): resample within each stratum, so position ``k`` of every row is drawn from the
    stratum of item ``k``; stratum sizes and the label of every position are preserved (``labels[idx] == labels``).
    ``min_distinct``: a stratum (or, without strata, the whole row) that drew fewer distinct items is redrawn until
    it has enough. This conditions the bootstrap on the statistic being defined (e.g. >= 2 distinct items per
    category for selectivity); with 10+ items per stratum a redraw is rare (< 1e-6 per stratum) and the
    conditioning negligible. :class:`UsageError` if a stratum has fewer than ``min_distinct`` items.
    """
    n_items, n_boot = int(n_items), int(n_boot)
    _check(n_items, n_boot, 0.5)
    rng = np.random.default_rng(seed)
    if strata is None:
        groups = [np.arange(n_items)]
    else:
        strata = list(strata.tolist() if isinstance(strata, np.ndarray) else strata)
        if len(strata) != n_items:
            raise UsageError(f"got {len(strata)} strata labels for {n_items} items: pass one label per item")
        order: dict[Hashable, list[int]] = {}
        for i, s in enumerate(strata):
            order.setdefault(s, []).append(i)
        groups = [np.asarray(v) for v in order.values()]
    out = np.empty((n_boot, n_items), dtype=np.intp)
    for members in groups:
        m = members.size
        if m < min_distinct:
            raise UsageError(
                f"a stratum has {m} item(s) but min_distinct={min_distinct}: merge small strata or lower min_distinct"
            )
        draw = rng.integers(0, m, size=(n_boot, m))
        for _ in range(_MAX_REDRAWS):
            bad = np.flatnonzero(_n_distinct(draw) < min_distinct)
            if bad.size == 0:
                break
            draw[bad] = rng.integers(0, m, size=(bad.size, m))
        else:  # pragma: no cover - needs a stratum where min_distinct is almost impossible
            raise UsageError(f"could not draw {min_distinct} distinct items from a stratum of {m}: lower min_distinct")
        out[:, members] = members[draw]
    return out


def _n_distinct(draw: np.ndarray) -> np.ndarray:
    s = np.sort(draw, axis=1)
    return 1 + np.count_nonzero(np.diff(s, axis=1), axis=1)


def item_counts(indices: np.ndarray, n_items: int) -> np.ndarray:
    """``(n_boot, n_items)`` multiplicities: how many times each item appears in each resample row."""
    indices = np.atleast_2d(np.asarray(indices, dtype=np.intp))
    b = indices.shape[0]
    flat = (indices + n_items * np.arange(b)[:, None]).ravel()
    return np.bincount(flat, minlength=b * n_items).reshape(b, n_items)


def overlap_blocks(positions: Any, window: int) -> np.ndarray:
    """Block label of each item from its position (e.g. a mark's token index): items are sorted by position and two
    neighbours whose positions differ by at most ``window`` join one block (chains join: a, b, c with b - a and
    c - b <= ``window`` are one block). ``window`` 0 gives every item a block of its own unless two share a
    position. Labels ``0..K-1`` in position order, in the items' input order. Study A: ``window`` = the tokens a
    mark's hidden state reads before it (20): two marks at most 20 tokens apart read some of the same tokens."""
    pos = np.asarray(positions, dtype=np.int64).reshape(-1)
    if int(window) < 0:
        raise UsageError(f"window must be >= 0 tokens, got {window}")
    if pos.size == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.argsort(pos, kind="stable")
    new_block = np.r_[True, np.diff(pos[order]) > int(window)]
    labels = np.empty(pos.size, dtype=np.int64)
    labels[order] = np.cumsum(new_block) - 1
    return labels


def block_counts(blocks: Any, n_boot: int, *, seed: int = 0) -> np.ndarray:
    """``(n_boot, n_items)`` multiplicities of the block bootstrap: each row draws as many blocks as there are,
    with replacement, and an item's multiplicity is the number of times its block was drawn (so a resample has
    ``n_items`` items on average, not exactly). ``blocks``: one label per item (:func:`overlap_blocks`); with every
    item its own block this is the ordinary bootstrap of items (the same draws as :func:`bootstrap_indices` with
    the same seed, as multiplicities)."""
    lab = np.asarray(blocks).reshape(-1)
    if lab.size == 0:
        raise UsageError("block_counts needs at least one item")
    _check(lab.size, n_boot, 0.5)
    uniq, inv = np.unique(lab, return_inverse=True)
    k = uniq.size
    draws = np.random.default_rng(seed).integers(0, k, size=(int(n_boot), k))
    per_block = item_counts(draws, k)
    return per_block[:, inv.reshape(-1)]


def percentile_interval(
    replicates: Any, level: float = 0.95, *, max_nan_fraction: float = 0.1, discrete: bool = False
) -> tuple[float, float]:
    """Percentile interval: the ``(1-level)/2`` and ``(1+level)/2`` quantiles (linear interpolation) of the finite
    replicates. ``(nan, nan)`` if more than ``max_nan_fraction`` of them are NaN/inf, or none is finite.

    ``discrete=True`` (counts, e.g. a number of clusters): the ends are replicate values themselves, the lower end
    rounded down and the upper end up (numpy's ``"lower"`` / ``"higher"`` quantile methods), never a fraction
    between two counts."""
    _check(1, 1, level)
    r = as_array(replicates, name="replicates").ravel()
    ok = np.isfinite(r)
    if ok.sum() == 0 or (1.0 - ok.mean()) > max_nan_fraction:
        return (float("nan"), float("nan"))
    q = [(1.0 - level) / 2.0, (1.0 + level) / 2.0]
    if discrete:
        return (float(np.quantile(r[ok], q[0], method="lower")), float(np.quantile(r[ok], q[1], method="higher")))
    lo, hi = np.quantile(r[ok], q)
    return (float(lo), float(hi))


def bootstrap_replicates(
    statistic: Callable[[np.ndarray], float],
    n_items: int,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    strata: Sequence[Hashable] | np.ndarray | None = None,
    min_distinct: int = 1,
) -> np.ndarray:
    """``statistic(idx)`` for each row ``idx`` of :func:`bootstrap_indices`; a float array of length ``n_boot``."""
    idx = bootstrap_indices(n_items, n_boot, seed=seed, strata=strata, min_distinct=min_distinct)
    return np.array([float(statistic(row)) for row in idx], dtype=np.float64)


def bootstrap_ci(
    statistic: Callable[[np.ndarray], float],
    n_items: int,
    *,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    strata: Sequence[Hashable] | np.ndarray | None = None,
    min_distinct: int = 1,
    max_nan_fraction: float = 0.1,
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``statistic`` over items.

    ``statistic`` receives a 1-D array of ``n_items`` item indices (a resample with replacement) and returns a
    float, e.g. ``lambda idx: np.mean(values[idx])``. Seeded (``np.random.default_rng(seed)``): same inputs, same
    interval. NaN/inf replicates are dropped; above ``max_nan_fraction`` of them the result is ``(nan, nan)``
    (module docstring). ``strata``/``min_distinct`` as in :func:`bootstrap_indices`.
    """
    _check(n_items, n_boot, level)
    reps = bootstrap_replicates(statistic, n_items, n_boot=n_boot, seed=seed, strata=strata, min_distinct=min_distinct)
    return percentile_interval(reps, level, max_nan_fraction=max_nan_fraction)


def resample_matrix(S: Any, idx: Any) -> np.ndarray:
    """``S[idx][:, idx]`` with the pairs formed by two copies of the same item set to NaN (excluded).

    Entry ``(a, b)`` of the result is ``S[idx[a], idx[b]]``; where ``a != b`` but ``idx[a] == idx[b]`` it is NaN
    (not a between-item pair; module docstring). The diagonal keeps ``S[i, i]``. ``S`` is any item x item matrix
    (similarity, covariance, MI).
    """
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
    """Bootstrap over items of a statistic of one or more item x item matrices of the same items.

    Each replicate draws item indices ``idx``, builds ``resample_matrix(M, idx)`` for every matrix (the same
    ``idx`` for all, so Q and K stay paired item by item) and calls ``statistic(*submatrices)``, or
    ``statistic(*submatrices, labels=labels_sub)`` when ``labels`` is given (``labels_sub = labels[idx]``). The
    estimate is the statistic on the full matrices. A replicate on which the statistic raises
    :class:`UsageError` (say, selectivity with a category left with a single item) counts as undefined (NaN; see the
    module docstring for the NaN policy); an error on the full matrices propagates.

    ``stratify=True`` resamples within each label (needs ``labels``), keeping every category's size; with
    ``min_distinct`` (default 2 when stratified, else 1) each category keeps that many distinct items, so a
    within-category block always has a pair. Use it for every category statistic: without it a resample can drop
    a whole category and the statistic silently changes meaning (selectivity over 2 categories instead of 3).
    Examples::

        bootstrap_similarity(lambda q, k: mean_offdiagonal(k) - mean_offdiagonal(q), [Sq, Sk])
        bootstrap_similarity(rsa, [Sq, Sk])
        bootstrap_similarity(lambda q, k, labels: min(selectivity_index(q, labels), selectivity_index(k, labels)),
                             [Sq, Sk], labels=words_category, stratify=True)
        bootstrap_similarity(rsa, [cov, mi], n_boot=200)   # pooled r over pairs of 250 vectors

    Cost: one fancy-index per matrix per replicate (~1 ms for 250 x 250), so 200 replicates of a pooled r over two
    250 x 250 matrices take well under a second.
    """
    mats = [as_array(M, name="matrix") for M in matrices]
    if not mats:
        raise UsageError("bootstrap_similarity needs at least one matrix")
    n = mats[0].shape[0]
    for M in mats:
        if M.ndim != 2 or M.shape != (n, n):
            raise UsageError(f"all matrices must be n x n over the same items; got shapes {[m.shape for m in mats]}")
    _check(n, n_boot, level)
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

    estimate = call(mats, None)  # on all items: input errors surface here, not per replicate

    def replicate(row: np.ndarray) -> float:
        try:
            return call([resample_matrix(M, row) for M in mats], row)
        except UsageError:  # e.g. a category left with one item: the statistic is undefined on this resample
            return float("nan")

    reps = np.array([replicate(row) for row in idx], dtype=np.float64)
    return BootstrapCI.from_replicates(
        estimate, reps, level=level, n_boot=n_boot, seed=seed, max_nan_fraction=max_nan_fraction
    )


def bootstrap_pair_correlation(
    A: Any,
    B: Any,
    *,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    strata: Sequence[Hashable] | np.ndarray | None = None,
    min_distinct: int = 1,
    max_nan_fraction: float = 0.1,
) -> BootstrapCI:
    """Fast, exact equivalent of ``bootstrap_similarity(rsa, [A, B])``: Pearson r over the pairs ``i < j`` of two
    symmetric item x item matrices (RSA of study B, pooled covariance-vs-MI r of study A), bootstrapped over items.

    In a resample where item ``i`` appears ``c_i`` times, the distinct-item pair ``{i, j}`` appears ``c_i c_j`` times
    and copy pairs are excluded, so every sum the correlation needs is a quadratic form ``c^T U c`` with ``U`` the
    strict upper triangle of ``A``, ``B``, ``A*A``, ``B*B``, ``A*B`` or ones. All replicates are then a handful of
    ``(n_boot x n) @ (n x n)`` products: milliseconds for 250 items and 200 replicates. Same seed and arguments give
    the same index draws, hence the same replicates (to rounding) as the general :func:`bootstrap_similarity`.
    """
    A, B = as_array(A, name="A"), as_array(B, name="B")
    if A.ndim != 2 or A.shape[0] != A.shape[1] or A.shape != B.shape:
        raise UsageError(f"A and B must be n x n matrices over the same items, got {A.shape} and {B.shape}")
    if not (np.allclose(A, A.T) and np.allclose(B, B.T)) or np.isnan(A).any() or np.isnan(B).any():
        raise UsageError("A and B must be symmetric with no NaN: use bootstrap_similarity for other matrices")
    n = A.shape[0]
    _check(n, n_boot, level)
    estimate = rsa(A, B)
    idx = bootstrap_indices(n, n_boot, seed=seed, strata=strata, min_distinct=min_distinct)
    reps = pair_moments(item_counts(idx, n), A, B).r
    return BootstrapCI.from_replicates(
        estimate, reps, level=level, n_boot=n_boot, seed=seed, max_nan_fraction=max_nan_fraction
    )


@dataclass(frozen=True)
class PairMoments:
    """Weighted moments of two pair statistics ``a``, ``b`` over the pairs of distinct items, one value per row of
    item multiplicities: ``n`` (number of pairs counted with their weights), means, variances, covariance; ``r``
    (Pearson) and ``slope`` (OLS of b on a) are NaN where undefined (zero variance, fewer than 3 pairs)."""

    n: np.ndarray
    mean_a: np.ndarray
    mean_b: np.ndarray
    var_a: np.ndarray
    var_b: np.ndarray
    cov_ab: np.ndarray

    @property
    def r(self) -> np.ndarray:
        ok = (self.var_a > 0) & (self.var_b > 0)
        with np.errstate(invalid="ignore", divide="ignore"):
            r = np.clip(self.cov_ab / np.sqrt(self.var_a * self.var_b), -1.0, 1.0)
        return np.where(ok, r, np.nan)

    @property
    def slope(self) -> np.ndarray:
        ok = (self.var_a > 0) & (self.n >= 3)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(ok, self.cov_ab / self.var_a, np.nan)


def pair_weights(counts: Any, pi: Any, pj: Any) -> np.ndarray:
    """The one resampling rule for pairs of items: in a resample where item ``i`` appears ``c_i`` times, the pair
    of distinct items ``(pi[p], pj[p])`` counts ``c_i c_j`` times (a pair of two copies of one item is no pair).
    ``counts`` ``[n_boot, n_items]``; returns ``[n_boot, n_pairs]``. :func:`pair_moments` is the same rule summed
    over all pairs of two matrices as quadratic forms; :func:`layerclaims.metrics.simpson.simpson` uses it for
    listed pairs."""
    c = np.atleast_2d(np.asarray(counts, dtype=np.float64))
    return c[:, np.asarray(pi, dtype=np.intp)] * c[:, np.asarray(pj, dtype=np.intp)]


def pair_moments(counts: Any, A: Any, B: Any, mask: Any = None) -> PairMoments:
    """THE pair-weighted bootstrap primitive: moments of the pair values of two symmetric item x item matrices
    ``A``, ``B`` under item multiplicities ``counts`` (``[n_boot, n]``, e.g. :func:`item_counts`; a row of ones is
    the full sample).

    In a resample where item ``i`` appears ``c_i`` times, the distinct-item pair ``{i, j}`` appears ``c_i c_j``
    times and the pairs of two copies of one item are excluded (see the module docstring), so every sum is a
    quadratic form ``c^T (M * U) c`` with ``U`` the strict upper triangle (times the symmetric boolean ``mask``
    when given: e.g. one cluster of pairs). All replicates are a handful of ``(n_boot x n) @ (n x n)`` products.
    Values are centred first so the one-pass moments stay accurate when they are large (r and slopes are
    shift-invariant)."""
    W = np.atleast_2d(np.asarray(counts, dtype=np.float64))
    A, B = np.asarray(A, dtype=np.float64), np.asarray(B, dtype=np.float64)
    n = A.shape[0]
    U = np.triu(np.ones((n, n)), 1)
    if mask is not None:
        U = U * np.asarray(mask, dtype=np.float64)
    total = U.sum()
    a0 = float((A * U).sum() / total) if total else 0.0
    b0 = float((B * U).sum() / total) if total else 0.0
    Ac, Bc = A - a0, B - b0

    def form(M: np.ndarray) -> np.ndarray:
        return np.einsum("bi,bi->b", W @ (M * U), W)

    w = form(np.ones((n, n)))
    with np.errstate(invalid="ignore", divide="ignore"):
        ma, mb = form(Ac) / w, form(Bc) / w
        vaa = form(Ac * Ac) / w - ma * ma
        vbb = form(Bc * Bc) / w - mb * mb
        vab = form(Ac * Bc) / w - ma * mb
    return PairMoments(w, ma + a0, mb + b0, vaa, vbb, vab)
