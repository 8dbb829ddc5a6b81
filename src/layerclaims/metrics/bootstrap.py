"""Bootstrap over items: seeded index draws, block resampling of dependent items, percentile intervals, and the
pair-weighted moments of item x item matrices.

The unit of resampling is the ITEM (a word of study B, a mark of study A), not the pair: pairs that share an item
are dependent, so resampling pairs would understate the uncertainty. In a resample where item ``i`` appears
``c_i`` times, the pair of distinct items ``{i, j}`` counts ``c_i c_j`` times and the pair of two copies of one
item is no pair (it would enter as a perfect within-pair: cosine 1, an item's MI with itself), as rsatoolbox does
when it bootstraps patterns.

Dependent items (study A's marks whose context windows share tokens) form one block (:func:`overlap_blocks`);
the block bootstrap (:func:`block_counts`) draws whole blocks with replacement (Kuensch 1989; blocks fixed by the
data, not by a block length), so the intervals rest on the number of blocks.

Undefined replicates (NaN or inf) are dropped; if more than ``max_nan_fraction`` of them are undefined the
interval is ``(nan, nan)``: an interval over the few resamples where the statistic exists would be biased toward
them. Use ``strata`` with ``min_distinct`` to keep a statistic defined (selectivity: by category, 2 distinct).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from layerclaims.errors import UsageError
from layerclaims.metrics.similarity import as_array

_MAX_REDRAWS = 1000


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

    ``strata`` (one label per item): position ``k`` of every row is drawn from the stratum of item ``k``, so
    ``labels[idx] == labels``. ``min_distinct``: a stratum (or, without strata, the whole row) that drew fewer
    distinct items is redrawn, conditioning the bootstrap on the statistic being defined (e.g. >= 2 per category
    for selectivity; with 10+ items per stratum a redraw is rare, < 1e-6). UsageError for a smaller stratum."""
    n_items, n_boot = int(n_items), int(n_boot)
    _check(n_items, n_boot, 0.5)
    rng = np.random.default_rng(seed)
    groups = [np.arange(n_items)]
    if strata is not None:
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
            n_distinct = 1 + np.count_nonzero(np.diff(np.sort(draw, axis=1), axis=1), axis=1)
            bad = np.flatnonzero(n_distinct < min_distinct)
            if bad.size == 0:
                break
            draw[bad] = rng.integers(0, m, size=(bad.size, m))
        else:  # pragma: no cover - needs a stratum where min_distinct is almost impossible
            raise UsageError(f"could not draw {min_distinct} distinct items from a stratum of {m}: lower min_distinct")
        out[:, members] = members[draw]
    return out


def item_counts(indices: np.ndarray, n_items: int) -> np.ndarray:
    """``(n_boot, n_items)`` multiplicities: how many times each item appears in each resample row."""
    indices = np.atleast_2d(np.asarray(indices, dtype=np.intp))
    b = indices.shape[0]
    return np.bincount((indices + n_items * np.arange(b)[:, None]).ravel(), minlength=b * n_items).reshape(b, n_items)


def overlap_blocks(positions: Any, window: int) -> np.ndarray:
    """Block label of each item from its position (e.g. a mark's token index): two neighbours in position order at
    most ``window`` apart join one block, and chains join. Labels ``0..K-1`` in position order, in the items' input
    order. Study A: ``window`` = the 20 tokens a mark's hidden state reads before it."""
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
    """``(n_boot, n_items)`` multiplicities of the block bootstrap: each row draws as many blocks as there are, with
    replacement; an item counts as often as its block was drawn (``n_items`` items per resample on average).
    ``blocks``: one label per item; with every item its own block, the same draws as :func:`bootstrap_indices`."""
    lab = np.asarray(blocks).reshape(-1)
    if lab.size == 0:
        raise UsageError("block_counts needs at least one item")
    _check(lab.size, n_boot, 0.5)
    uniq, inv = np.unique(lab, return_inverse=True)
    draws = np.random.default_rng(seed).integers(0, uniq.size, size=(int(n_boot), uniq.size))
    return item_counts(draws, uniq.size)[:, inv.reshape(-1)]


def percentile_interval(
    replicates: Any, level: float = 0.95, *, max_nan_fraction: float = 0.1, discrete: bool = False
) -> tuple[float, float]:
    """Percentile interval: the ``(1-level)/2`` and ``(1+level)/2`` quantiles (linear interpolation) of the finite
    replicates; ``(nan, nan)`` if more than ``max_nan_fraction`` of them are NaN/inf, or none is finite.
    ``discrete=True`` (counts): the ends are replicate values, the lower rounded down and the upper up."""
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


def pair_moments(counts: Any, A: Any, B: Any, mask: Any = None) -> PairMoments:
    """THE pair-weighted bootstrap primitive: moments of the pair values of two symmetric item x item matrices
    ``A``, ``B`` under item multiplicities ``counts`` (``[n_boot, n]``; a row of ones is the full sample). With the
    pair rule of the module docstring every sum is a quadratic form ``c^T (M * U) c``, ``U`` the strict upper
    triangle (times the symmetric boolean ``mask`` when given). Values are centred first so the one-pass moments
    stay accurate when they are large (r and slopes are shift-invariant)."""
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
