"""Compiled (numba) all-pairs kernel of :func:`layerclaims.metrics.information.pairwise_mi_cov` (imported lazily
there; its torch path uses the tables from here too). Per pair i <= j, on the kept dims ``keep_i & keep_j``: each
side's histogram range from its sorted candidate extremes, ``np.histogram2d``'s bins bit for bit, the joint
counts, entropies from a table per kept count; the covariance ``(Sxy - Sx Sy / n) / (n - 1)`` on data centred by
each vector's own kept-dim mean (accurate when means are large). A (vector, range) variant used by two or more
pairs is binned once, one used by a single pair on the fly. ``cache=True``: compiled once, the machine code kept
beside this file.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange


@njit(cache=True)
def linspace_edges(lo: float, hi: float, bins: int, out: np.ndarray) -> None:  # pragma: no cover - compiled
    """``out[:] = np.linspace(lo, hi, bins + 1)`` bit for bit, after ``np.histogram2d``'s widening of lo == hi.

    numpy (2.x, ``_core/function_base.py``): ``delta = stop - start``, ``step = delta / div``; if ``step == 0``
    then ``y = (arange / div) * delta`` else ``y = arange * step``; ``y += start``; ``y[-1] = stop``.
    Separate multiply and add (no fused multiply-add: this function is compiled without fastmath).
    """
    if lo == hi:
        lo = lo - 0.5
        hi = hi + 0.5
    delta = hi - lo
    div = float(bins)
    step = delta / div
    if step == 0.0:
        for k in range(bins + 1):
            out[k] = (float(k) / div) * delta + lo
    else:
        for k in range(bins + 1):
            out[k] = float(k) * step + lo
    out[bins] = hi


@njit(cache=True)
def bin_row(x: np.ndarray, keep: np.ndarray, edges: np.ndarray, bins: int, out: np.ndarray) -> None:  # pragma: no cover
    """Bin of every kept value of x: ``searchsorted(edges, v, 'right') - 1``, clipped to [0, bins - 1] (so
    ``v == edges[-1]`` is in the last bin, numpy's closed right edge; values outside the edges occur only at dims
    the pair drops). Dims not in ``keep`` get the discarded bin ``bins``. The first guess is arithmetic; the two
    loops then make it exactly the count of edges <= v, whatever the guess."""
    lo = edges[0]
    width = edges[bins] - lo
    scale = bins / width if width > 0.0 else 0.0
    for d in range(x.shape[0]):
        if not keep[d]:
            out[d] = bins
            continue
        v = x[d]
        g = (v - lo) * scale
        if g >= 0.0 and g < bins:  # False for NaN
            c = int(g)
        elif g >= bins:
            c = bins
        else:
            c = 0
        # c := number of edges <= v
        while c <= bins and edges[c] <= v:
            c += 1
        while c > 0 and edges[c - 1] > v:
            c -= 1
        c -= 1
        if c > bins - 1:
            c = bins - 1
        elif c < 0:
            c = 0
        out[d] = c


@njit(cache=True)  # serial: cheap, and waking threads costs more
def vector_tables(
    X: np.ndarray,
    mask: np.ndarray,
    asc: np.ndarray,
    desc: np.ndarray,
    trim: np.ndarray,
    n_trim: np.ndarray,
    xc: np.ndarray,
    xc_sum: np.ndarray,
) -> None:  # pragma: no cover - compiled
    """Per vector: the k smallest/largest kept values' dims (asc/desc, sorted, ties by dim), the own-trimmed
    dims (trim[:n_trim]), the data centred by the own kept-dim mean with trimmed dims set to 0 (xc), its sum."""
    n_vec, n_dim = X.shape
    k = asc.shape[1]
    for a in prange(n_vec):
        x = X[a]
        m = mask[a]
        nt = 0
        total = 0.0
        for d in range(n_dim):
            if m[d]:
                total += x[d]
            else:
                trim[a, nt] = d
                nt += 1
        n_trim[a] = nt
        n_own = n_dim - nt
        mean = total / n_own if n_own > 0 else 0.0
        s = 0.0
        for d in range(n_dim):
            v = x[d] - mean if m[d] else 0.0
            xc[a, d] = v
            s += v
        xc_sum[a] = s
        _extremes(x, m, k, 1.0, asc[a])
        _extremes(x, m, k, -1.0, desc[a])


@njit(cache=True)
def _extremes(x: np.ndarray, m: np.ndarray, k: int, sign: float, out: np.ndarray) -> None:  # pragma: no cover
    """``out[:min(k, kept)]``: the kept dims of the ``k`` smallest values of ``sign * x``, in order, ties by dim
    (a stable sort's first ``k``), by insertion into a sorted list of ``k``: ``O(D k)`` with ``k`` the largest
    number of dims a vector trims plus one, a few here, instead of a sort of every kept value."""
    filled = 0
    for d in range(x.shape[0]):
        if not m[d]:
            continue
        v = sign * x[d]
        if filled == k and not v < sign * x[out[k - 1]]:
            continue
        p = min(filled, k - 1)  # a later dim goes after the values it ties with
        while p > 0 and v < sign * x[out[p - 1]]:
            out[p] = out[p - 1]
            p -= 1
        out[p] = d
        filled = min(filled + 1, k)


@njit(cache=True)
def _first_kept(cand: np.ndarray, n_cand: int, other_mask: np.ndarray) -> int:  # pragma: no cover - compiled
    """First slot of a vector's candidate list (kept dims, sorted by value) that the other vector keeps too."""
    for p in range(n_cand):
        if other_mask[cand[p]]:
            return p
    return -1


@njit(cache=True)  # serial: cheap, and waking threads costs more
def pair_tables(
    mask: np.ndarray,
    asc: np.ndarray,
    desc: np.ndarray,
    n_cand: np.ndarray,
    trim: np.ndarray,
    n_trim: np.ndarray,
    key: np.ndarray,
    n_pair: np.ndarray,
) -> None:  # pragma: no cover - compiled
    """For every ordered pair (a, b): kept-dim count and which of a's candidate extremes bound its range.

    ``n_pair[a, b] = D - |T_a| - |T_b| + |T_a ∩ T_b|`` from the (short) lists T of own-trimmed dims.
    ``key[a, b] = p_lo * k + p_hi``: the slots in a's ascending/descending candidate lists of the min/max of a
    over the pair's kept dims (0, 0: a's own range); -1 when the pair keeps no dim.
    """
    n_vec, n_dim = mask.shape
    k = asc.shape[1]
    for a in prange(n_vec):
        for b in range(n_vec):
            common = 0
            for q in range(n_trim[a]):
                if not mask[b, trim[a, q]]:
                    common += 1
            n_pair[a, b] = n_dim - n_trim[a] - n_trim[b] + common
            p_lo = _first_kept(asc[a], n_cand[a], mask[b])
            p_hi = _first_kept(desc[a], n_cand[a], mask[b])
            key[a, b] = -1 if p_lo < 0 or p_hi < 0 else p_lo * k + p_hi


@njit(parallel=True, cache=True)
def variant_bin_rows(
    X: np.ndarray,
    mask: np.ndarray,
    asc: np.ndarray,
    desc: np.ndarray,
    var_vec: np.ndarray,
    var_key: np.ndarray,
    bins: int,
    out: np.ndarray,
) -> None:  # pragma: no cover - compiled
    """Bin row of vector ``var_vec[v]`` over the range given by ``var_key[v]`` (see :func:`pair_tables`)."""
    k = asc.shape[1]
    for v in prange(var_vec.shape[0]):
        edges = np.empty(bins + 1)
        a = var_vec[v]
        linspace_edges(X[a, asc[a, var_key[v] // k]], X[a, desc[a, var_key[v] % k]], bins, edges)
        bin_row(X[a], mask[a], edges, bins, out[v])


@njit(fastmath={"reassoc", "nsz", "arcp", "contract"}, cache=True)
def _dot(xa: np.ndarray, xb: np.ndarray) -> float:  # pragma: no cover - compiled
    """sum xa * xb (reassociation allowed, so it vectorises; the order only moves the last bits)."""
    s = 0.0
    for d in range(xa.shape[0]):
        s += xa[d] * xb[d]
    return s


@njit(cache=True)
def _side_bins(
    a: int | np.integer,  # the compiled caller passes np.int64 indices
    b: int | np.integer,
    X: np.ndarray,
    mask: np.ndarray,
    asc: np.ndarray,
    desc: np.ndarray,
    key: np.ndarray,
    var_id: np.ndarray,
    var_bins: np.ndarray,
    bins: int,
    edges: np.ndarray,
    buf: np.ndarray,
) -> np.ndarray:  # pragma: no cover - compiled
    """Bin row of vector a for the pair (a, b): a stored variant row, or binned now into ``buf``."""
    vid = var_id[a, b]
    if vid >= 0:
        return var_bins[vid]
    k = asc.shape[1]
    linspace_edges(X[a, asc[a, key[a, b] // k]], X[a, desc[a, key[a, b] % k]], bins, edges)
    bin_row(X[a], mask[a], edges, bins, buf)
    return buf


@njit(parallel=True, cache=True)
def pairwise_kernel(
    X: np.ndarray,
    mask: np.ndarray,
    xc: np.ndarray,
    xc_sum: np.ndarray,
    trim: np.ndarray,
    n_trim: np.ndarray,
    asc: np.ndarray,
    desc: np.ndarray,
    key: np.ndarray,
    n_pair: np.ndarray,
    var_id: np.ndarray,
    var_bins: np.ndarray,
    table: np.ndarray,
    table_row: np.ndarray,
    bins: int,
    miller_madow: bool,
    ln_base: float,
    mi: np.ndarray,
    cov: np.ndarray,
) -> None:  # pragma: no cover - compiled
    """Fill ``mi`` and ``cov`` (N x N, both triangles and the diagonal) for every pair i <= j; NaN when n < 2.

    Tables from :func:`vector_tables` and :func:`pair_tables`; var_id[a, b] the row of ``var_bins`` holding a's
    bins for the pair (a, b), or -1 to bin now; table[table_row[n], c] the entropy term for count c out of n.
    Rows ``t`` and ``N - 1 - t`` share a ``prange`` iteration, so that every iteration has about N + 1 pairs.
    """
    n_vec, n_dim = X.shape
    width = bins + 1
    n_iter = (n_vec + 1) // 2
    for t in prange(n_iter):
        counts = np.zeros(width * width, np.int32)
        code = np.empty(n_dim, np.int32)
        cy = np.zeros(bins, np.int32)
        edges = np.empty(bins + 1)
        buf_x = np.empty(n_dim, var_bins.dtype)
        buf_y = np.empty(n_dim, var_bins.dtype)
        tt = np.int64(t)  # the prange index may be unsigned: mixing it with signed ints would give floats
        for side in range(2):
            i = tt if side == 0 else np.int64(n_vec - 1) - tt
            if side == 1 and i == tt:
                break
            for j in range(i, n_vec):
                n = n_pair[i, j]
                if n < 2:
                    mi[i, j] = mi[j, i] = cov[i, j] = cov[j, i] = np.nan
                    continue
                bx = _side_bins(i, j, X, mask, asc, desc, key, var_id, var_bins, bins, edges, buf_x)
                by = _side_bins(j, i, X, mask, asc, desc, key, var_id, var_bins, bins, edges, buf_y)
                for d in range(n_dim):  # vectorised
                    code[d] = np.int32(bx[d]) * width + np.int32(by[d])
                counts[:] = 0
                for d in range(n_dim):
                    counts[code[d]] += 1
                # entropies, branch-free (table[row, 0] is 0: an empty cell adds nothing, as in the original); four
                # accumulators for the joint sum break the chain of dependent additions
                trow = table[table_row[n]]
                cy[:] = 0
                a0 = 0.0
                a1 = 0.0
                a2 = 0.0
                a3 = 0.0
                s_x = 0.0
                m_xy = 0
                m_x = 0
                for u in range(bins):
                    base = u * width
                    r = 0
                    v = 0
                    while v + 4 <= bins:
                        c0 = counts[base + v]
                        c1 = counts[base + v + 1]
                        c2 = counts[base + v + 2]
                        c3 = counts[base + v + 3]
                        a0 += trow[c0]
                        a1 += trow[c1]
                        a2 += trow[c2]
                        a3 += trow[c3]
                        m_xy += (c0 > 0) + (c1 > 0) + (c2 > 0) + (c3 > 0)
                        r += c0 + c1 + c2 + c3
                        cy[v] += c0
                        cy[v + 1] += c1
                        cy[v + 2] += c2
                        cy[v + 3] += c3
                        v += 4
                    while v < bins:
                        c0 = counts[base + v]
                        a0 += trow[c0]
                        m_xy += c0 > 0
                        r += c0
                        cy[v] += c0
                        v += 1
                    s_x += trow[r]
                    m_x += r > 0
                s_xy = (a0 + a1) + (a2 + a3)
                s_y = 0.0
                m_y = 0
                for v in range(bins):
                    s_y += trow[cy[v]]
                    m_y += cy[v] > 0
                val = s_xy - s_x - s_y  # Hx + Hy - Hxy with H = -sum(table terms)
                if miller_madow:
                    val += (m_x + m_y - m_xy - 1) / (2.0 * n * ln_base)
                # covariance over kept(i) & kept(j): xc is 0 at own-trimmed dims, so the cross sum is one dot
                # product, and the kept-dim sums are the row sums minus the dims the other vector trims
                sxy = _dot(xc[i], xc[j])
                sx = xc_sum[i]
                for q in range(n_trim[j]):
                    sx -= xc[i, trim[j, q]]
                sy = xc_sum[j]
                for q in range(n_trim[i]):
                    sy -= xc[j, trim[i, q]]
                mi[i, j] = mi[j, i] = val
                cov[i, j] = cov[j, i] = (sxy - sx * sy / n) / (n - 1)


@njit(cache=True)
def variant_layout(key: np.ndarray, budget_rows: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # pragma: no cover
    """The variants stored as bin rows: per vector a (first vectors first, at most ``budget_rows`` in all), the
    distinct keys of row a used by >= 2 pairs, sorted. Returns var_vec, var_key per row and var_id[a, b], the row
    holding a's bins for the pair (a, b), or -1 (used once, no kept dim or over budget: bin on the fly)."""
    n_vec = key.shape[0]
    var_vec = np.empty(min(budget_rows, n_vec * n_vec), np.int64)
    var_key = np.empty_like(var_vec)
    var_id = np.full((n_vec, n_vec), -1, np.int64)
    n_rows = 0
    for a in range(n_vec):
        start = n_rows
        ks = np.sort(key[a])
        p = 0
        while p < n_vec:
            q = p
            while q < n_vec and ks[q] == ks[p]:
                q += 1
            if ks[p] >= 0 and q - p >= 2 and n_rows < var_vec.shape[0]:
                var_vec[n_rows] = a
                var_key[n_rows] = ks[p]
                n_rows += 1
            p = q
        stored = var_key[start:n_rows]
        for b in range(n_vec):
            r = np.searchsorted(stored, key[a, b])
            if r < stored.shape[0] and stored[r] == key[a, b]:
                var_id[a, b] = start + r
    return var_vec[:n_rows], var_key[:n_rows], var_id


@njit(cache=True)
def entropy_table(
    n_pair: np.ndarray, n_dim: int, log2_base: float
) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover
    """table[table_row[n], c] = (c / n) log2(c / n + 1e-12) / log2(base) for each kept count n that occurs."""
    table_row = np.full(n_dim + 1, -1, np.int64)
    n_rows = 0
    for a in range(n_pair.shape[0]):
        for b in range(n_pair.shape[1]):
            if table_row[n_pair[a, b]] < 0:
                table_row[n_pair[a, b]] = n_rows
                n_rows += 1
    table = np.zeros((n_rows, n_dim + 1))
    for n in range(n_dim + 1):
        row = table_row[n]
        if row >= 0:
            for c in range(n_dim + 1):
                p = c / max(n, 1)
                table[row, c] = p * math.log2(p + 1e-12) / log2_base
    return table, table_row


def vector_pair_tables(X: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, ...]:
    """asc, desc, trim, n_trim, xc, xc_sum of :func:`vector_tables` and key, n_pair of :func:`pair_tables`."""
    n_vec, n_dim = X.shape
    n_trim = (n_dim - mask.sum(1)).astype(np.int64)
    n_trim_max = int(n_trim.max())
    k = min(n_trim_max + 1, n_dim)  # the other vector trims at most k - 1 of the k candidates
    asc = np.zeros((n_vec, k), np.int64)
    desc = np.zeros((n_vec, k), np.int64)
    trim = np.zeros((n_vec, max(n_trim_max, 1)), np.int64)
    xc = np.empty((n_vec, n_dim))
    xc_sum = np.empty(n_vec)
    vector_tables(X, mask, asc, desc, trim, n_trim, xc, xc_sum)
    n_cand = np.minimum(n_dim - n_trim, k)

    key = np.empty((n_vec, n_vec), np.int64)
    n_pair = np.empty((n_vec, n_vec), np.int64)
    pair_tables(mask, asc, desc, n_cand, trim, n_trim, key, n_pair)
    return asc, desc, trim, n_trim, xc, xc_sum, key, n_pair


def pairwise_all(
    X: np.ndarray, mask: np.ndarray, bins: int, miller_madow: bool, ln_base: float, budget_bytes: int
) -> tuple[np.ndarray, np.ndarray]:
    """Everything after the keep masks (C-contiguous float64 X, bool mask): ``(mi, cov)``, storing at most
    ``budget_bytes`` of variant bin rows (uint8 for bins < 255, else int32)."""
    n_vec, n_dim = X.shape
    bin_dtype = np.dtype(np.uint8 if bins < 255 else np.int32)
    asc, desc, trim, n_trim, xc, xc_sum, key, n_pair = vector_pair_tables(X, mask)
    var_vec, var_key, var_id = variant_layout(key, budget_bytes // (n_dim * bin_dtype.itemsize))
    var_bins = np.empty((len(var_vec), n_dim), bin_dtype)
    variant_bin_rows(X, mask, asc, desc, var_vec, var_key, bins, var_bins)
    table, table_row = entropy_table(n_pair, n_dim, ln_base / math.log(2.0))
    mi = np.empty((n_vec, n_vec))
    cov = np.empty((n_vec, n_vec))
    pairwise_kernel(
        X, mask, xc, xc_sum, trim, n_trim, asc, desc, key, n_pair, var_id, var_bins, table, table_row, bins,
        miller_madow, ln_base, mi, cov,
    )  # fmt: skip
    return mi, cov


@njit(cache=True)  # serial: the study's other compiled kernel owns the threads (parallel here slowed it 2x)
def permuted_products(A: np.ndarray, B: np.ndarray, P: np.ndarray) -> np.ndarray:  # pragma: no cover - compiled
    """``out[r] = sum_ij A[i, j] B[P[r, i], P[r, j]]`` (the Mantel null of
    :func:`layerclaims.metrics.similarity.mantel_test`), one permutation at a time."""
    n_perm, n = P.shape
    out = np.empty(n_perm)
    for r in range(n_perm):
        total = 0.0
        for i in range(n):
            pi = P[r, i]
            for j in range(n):
                total += A[i, j] * B[pi, P[r, j]]
        out[r] = total
    return out
