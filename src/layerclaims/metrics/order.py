"""Order statistics along the last axis, equal bit for bit to numpy's ``percentile``, ``quantile`` and ``median``
(method ``"linear"``) on finite input, and faster where study A's grouping calls them thousands of times.

numpy moves the reduced axis to the front and partitions it there (a strided pass per row, one introselect per
wanted rank); a row-wise ``np.sort`` along the contiguous last axis is 2-3x faster for the ``n x m`` blocks of a
pair matrix. On 1-D input one rank, or two neighbours (the second the smallest value above the first), is
partitioned at one rank; more (the quartiles) are partitioned at all of them at once, which on numpy 2.4 here beats
its sort from about 300 values on (31,125 pair values of study A: six ranks 91-476 us, a sort 1,000-1,070 us; 300
values: both 2.7 us; 200: a sort 1.2 us, six ranks 2.1 us). The values picked are the same order statistics, and the
interpolation repeats numpy's arithmetic (``numpy/lib/_function_base_impl.py``, ``_quantile`` and ``_lerp``, numpy
2.x): the virtual index ``(n - 1) * q``, ``t`` its fractional part, ``a + (b - a) * t``, or ``b - (b - a) * (1 -
t)`` when ``t >= 0.5``; the median of an even count ``(a + b) / 2``. NaN is not handled (numpy propagates it;
callers here pass finite values only).

Ranks too: :func:`average_ranks` and :func:`spearman_rho` equal ``scipy.stats.rankdata`` and ``spearmanr`` bit for bit
without importing ``scipy.stats`` (about 1 s, in the run and again in each worker that draws a trend).
"""

from __future__ import annotations

import functools

import numpy as np
from numpy.typing import ArrayLike, NDArray

_PARTITION_FROM = 400  # 1-D length from which partitioning at several ranks is faster than sorting (module doc)


def _ranked(x: NDArray[np.float64], ranks: list[int]) -> NDArray[np.float64]:
    """A copy of ``x`` whose entries at ``ranks`` (sorted, unique) along the last axis are those order statistics:
    rows sorted; 1-D input partitioned at them (sorted instead when it is shorter than ``_PARTITION_FROM`` and more
    than one rank or two neighbours are wanted)."""
    neighbours = len(ranks) == 1 or (len(ranks) == 2 and ranks[1] == ranks[0] + 1)
    if x.ndim > 1 or (not neighbours and x.size < _PARTITION_FROM):
        return np.sort(x, axis=-1)
    if not neighbours:
        return np.partition(x, ranks)
    r = ranks[0]
    out = np.partition(x, r)
    if len(ranks) == 2:
        out[r + 1] = out[r + 1 :].min()
    return out


@functools.lru_cache(maxsize=256)
def _plan(n: int, q: tuple[float, ...]) -> tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.float64], list[int]]:
    """What the quantiles ``q`` of ``n`` values read, kept per ``(n, q)`` (the grouping asks the same thousands of
    times): the ranks left and right of each virtual index, its fractional part ``t``, the sorted ranks needed."""
    virt = (n - 1) * np.asarray(q, dtype=np.float64)
    lo = np.floor(virt)
    t = virt - lo
    lo_i = np.minimum(lo.astype(np.intp), n - 1)
    hi_i = np.minimum(lo_i + 1, n - 1)
    for v in (lo_i, hi_i, t):
        v.flags.writeable = False  # shared between calls
    return lo_i, hi_i, t, sorted({*lo_i.tolist(), *hi_i.tolist()})


def quantiles(a: ArrayLike, q: ArrayLike) -> NDArray[np.float64]:
    """``np.quantile(a, q, axis=-1)``: the quantiles ``q`` (fractions in [0, 1]) of each row of ``a`` along its last
    axis; shape ``q.shape + a.shape[:-1]``. 1-D input is partitioned, more dimensions sorted row by row."""
    x = np.asarray(a, dtype=np.float64)
    qs = np.asarray(q, dtype=np.float64)
    n = x.shape[-1]
    if n == 0:
        raise ValueError("quantiles of an empty axis are undefined")
    lo_i, hi_i, t, ranks = _plan(n, tuple(qs.ravel().tolist()))
    ranked = _ranked(x, ranks)
    left, right = ranked[..., lo_i], ranked[..., hi_i]
    diff = right - left
    out = np.where(t >= 0.5, right - diff * (1 - t), left + diff * t)
    if x.ndim == 1:
        return out.reshape(qs.shape)
    return np.moveaxis(out, -1, 0).reshape(qs.shape + x.shape[:-1])


def percentiles(a: ArrayLike, p: ArrayLike) -> NDArray[np.float64]:
    """``np.percentile(a, p, axis=-1)``: :func:`quantiles` at ``p / 100`` (divided as numpy divides)."""
    return quantiles(a, np.true_divide(np.asarray(p, dtype=np.float64), 100))


def median(a: ArrayLike) -> NDArray[np.float64]:
    """``np.median(a, axis=-1)``: the middle order statistic of each row, or the mean ``(a + b) / 2`` of the two
    middle ones for an even count."""
    x = np.asarray(a, dtype=np.float64)
    n = x.shape[-1]
    if n == 0:
        raise ValueError("the median of an empty axis is undefined")
    mid = (n - 1) // 2
    wanted = [mid] if n % 2 else [mid, mid + 1]
    ranked = _ranked(x, wanted)
    if n % 2:
        return np.asarray(ranked[..., mid])
    return np.asarray((ranked[..., mid] + ranked[..., mid + 1]) / 2)


def average_ranks(a: ArrayLike) -> NDArray[np.float64]:
    """``scipy.stats.rankdata(a, axis=-1)`` (method ``"average"``, NaN propagated) without importing scipy.stats
    (about 1 s): the 1-based rank of each value in its row along the last axis, tied values sharing the mean of
    their ranks (``(first + last) / 2 + 1``, 0-based ``first`` and ``last`` of the tie run: exact in float64, as
    scipy's ``0.5 * (count[k] + count[k - 1] + 1)``). A row holding a NaN is all NaN. Unitless, in ``[1, n]``."""
    x = np.asarray(a, dtype=np.float64)
    if x.ndim == 0:
        raise ValueError("ranks need at least one axis")
    n = x.shape[-1]
    order = np.argsort(x, axis=-1, kind="stable")
    s = np.take_along_axis(x, order, axis=-1)
    idx = np.broadcast_to(np.arange(n), s.shape)
    starts = np.ones(s.shape, dtype=bool)
    starts[..., 1:] = s[..., 1:] != s[..., :-1]
    ends = np.ones(s.shape, dtype=bool)
    ends[..., :-1] = starts[..., 1:]
    first = np.maximum.accumulate(np.where(starts, idx, 0), axis=-1)
    last = np.flip(np.minimum.accumulate(np.flip(np.where(ends, idx, n - 1), axis=-1), axis=-1), axis=-1)
    out = np.empty(s.shape, dtype=np.float64)
    np.put_along_axis(out, order, (first + last) / 2 + 1, axis=-1)
    out[np.isnan(x).any(axis=-1)] = np.nan
    return out


def spearman_rho(x: ArrayLike, y: ArrayLike) -> float:
    """Spearman's rank correlation of two 1-D samples: ``scipy.stats.spearmanr(x, y).statistic`` bit for bit (the
    Pearson r of :func:`average_ranks` by ``np.corrcoef``, as scipy computes it). NaN when either holds a NaN or is
    constant (scipy warns there; this does not). Unitless, in ``[-1, 1]``."""
    a, b = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if np.isnan(a).any() or np.isnan(b).any() or np.all(a == a[0]) or np.all(b == b[0]):
        return float("nan")
    return float(np.corrcoef(average_ranks(a), average_ranks(b))[1, 0])
