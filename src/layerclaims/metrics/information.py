"""Mutual information and covariance between every pair of vectors (study A, claims.md §8): the original
``mutInfo_and_cov(x, y, 5)`` for all N x N pairs at once (:func:`pairwise_mi_cov`; the one-pair original is the
test oracle ``tests/oracles/information.py``).

The *samples* of a pair are the dimensions of two vectors ``x = X[i]``, ``y = X[j]``, each of D dims. Per pair
(logs base 2, bits by default):

1. **Trimming.** ``zx = (x - mean(x)) / std(x, ddof=1)`` over all D dims of x, likewise ``zy``; a dim is kept
   when ``not (|zx| > t or |zy| > t)`` (t = ``z_threshold`` = 5). A vector's mask does not depend on the pair.
2. **Histogram.** ``np.histogram2d(x_kept, y_kept, bins=15)``: equal-width bins from each trimmed vector's own min
   to max (``np.linspace`` edges, last bin closed; when min == max numpy widens the range to ±0.5).
3. **Entropies.** ``pZ = Z / Z.sum()``, marginals by summing, ``H(p) = -sum p log2(p + 1e-12) / log2(base)``;
   ``MI = Hx + Hy - Hxy``. Miller–Madow (``estimator="miller-madow"``) adds ``(mx + my - mxy - 1) / (2 n
   ln(base))``, m the non-empty cells of each histogram, n the kept dims (Miller 1955; Paninski 2003, eq. 3): it
   removes the first-order upward bias of the plug-in MI.
4. **Covariance.** ``sum((x - mean(x)) (y - mean(y))) / (n - 1)`` over the n kept dims (squared input units).

Edge cases:

* NaN or ±inf anywhere → :class:`~layerclaims.errors.UsageError` (the original fails deep in numpy or returns NaN).
* A constant vector: std 0, every z NaN, nothing trimmed; all its samples in one bin, so its MI with anything is 0
  up to the ``1e-12`` offset (about ``-1.4e-12`` bits) and its covariance 0.
* A vector whose variance underflows to 0 (|values| below ~1e-154) is not "constant": every dim off its mean gets
  z = ±inf and is trimmed, as in the original; rescale such data first.
* A trimmed range that collapses: treated as constant on the kept dims, as ``np.histogram2d`` does.
* Fewer kept dims than bins is allowed (a sparse histogram; the plug-in MI badly biased upward).
* Fewer than 2 kept dims in a pair → MI and covariance NaN (cannot happen with t = 5 and D ≥ 2: a vector has at
  most (D - 1) / t² dims with |z| > t). D < 2 → UsageError (z with ddof=1 undefined).
* MI can be negative by ~1e-12 because of the offset inside the log (never by more than ~1e-9 for D ≤ 10⁶).
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from layerclaims.errors import DeviceError, UsageError

__all__ = ["keep_mask", "pairwise_mi_cov"]

_EPS = 1e-12  # the original's offset inside log2
_ESTIMATORS = ("plugin", "miller-madow")


# --------------------------------------------------------------------------------------------------------------
# validation helpers


def _as_float_array(a: Any, name: str, ndim: int) -> NDArray[np.float64]:
    """Numpy float64 copy-or-view of ``a`` (numpy array, list or torch tensor); checks shape and finiteness."""
    if hasattr(a, "detach") and hasattr(a, "cpu"):  # a torch tensor, without importing torch
        a = a.detach().cpu().double().numpy()
    arr = np.asarray(a, dtype=np.float64)
    if arr.ndim != ndim:
        raise UsageError(
            f"{name} must be a {ndim}-D array, got shape {arr.shape}: "
            + ("pass one vector per row (N vectors x D dims)." if ndim == 2 else "pass a 1-D vector.")
        )
    if not np.all(np.isfinite(arr)):
        n_nan = int(np.isnan(arr).sum())
        n_inf = int(np.isinf(arr).sum())
        raise UsageError(
            f"{name} contains {n_nan} NaN and {n_inf} infinite values: MI and covariance are undefined for them; "
            "remove or impute those entries (or the vectors holding them) before calling."
        )
    return arr


def _check_params(bins: int, z_threshold: float, base: float) -> None:
    if isinstance(bins, bool) or not isinstance(bins, int | np.integer) or bins < 1:
        raise UsageError(f"bins must be a positive integer, got {bins!r}: the original uses bins=15.")
    if not (isinstance(z_threshold, int | float | np.floating) and z_threshold > 0):
        raise UsageError(f"z_threshold must be a positive number, got {z_threshold!r}: the original uses 5.")
    if not (isinstance(base, int | float | np.floating) and base > 0 and base != 1 and math.isfinite(base)):
        raise UsageError(f"base must be a positive number other than 1, got {base!r}: use 2 for bits, e for nats.")


def keep_mask(x: ArrayLike, z_threshold: float = 5.0) -> NDArray[np.bool_]:
    """Dims of one vector that survive the original's trimming: ``not |(x - mean) / std(ddof=1)| > t``.

    Computed exactly as the original (``x.mean()``, ``x.std(ddof=1)`` on the 1-D vector), so masks agree bit for
    bit. A constant vector gives z = NaN everywhere and keeps every dim.
    """
    x = np.asarray(x, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        z = (x - x.mean()) / x.std(ddof=1)
    return ~(np.abs(z) > z_threshold)


# --------------------------------------------------------------------------------------------------------------
# all pairs at once


def pairwise_mi_cov(
    X: ArrayLike,
    *,
    bins: int = 15,
    z_threshold: float = 5.0,
    base: float = 2.0,
    estimator: str = "plugin",
    device: str | None = None,
    chunk_size: int = 2048,
    backend: str = "auto",
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """MI and covariance for every pair of rows of ``X`` (N vectors x D dims): two symmetric N x N matrices.

    Entry (i, j) equals the original on the pair ``(X[i], X[j])`` up to floating-point summation order (tested to
    1e-9 against the per-pair ``np.histogram2d`` oracle; measured ~1e-15 for MI).

    **Diagonal:** entry (i, i) is the original on the pair (x, x): MI = the plug-in entropy of x on its kept dims,
    covariance = its variance on its kept dims (ddof=1). Claims read only the upper triangle, as the original did.

    **Exact without a loop over pairs.** Only the histogram range depends on the pair (min/max of x over
    ``mask_i & mask_j``); it is found among the ``max_trimmed + 1`` smallest/largest kept values of x
    (:class:`_PairRanges`). Each distinct (vector, range) variant (about 1 to 10 per vector on heavy-tailed data) is
    binned once with numpy's exact rule; the joint counts of a chunk of pairs are one ``bincount``; entropies read
    a table of ``p log2(p + 1e-12)`` per kept-dim count. Covariance is three matrix products on the data centred by
    each vector's own kept-dim mean (``(Sxy - Sx Sy / n) / (n - 1)``), accurate when means are large.

    **Backends.** ``"numba"`` (the default on CPU): the compiled kernel of
    :mod:`~layerclaims.metrics._pairwise_kernel`, several times faster, the same numbers up to summation order;
    its first call in a fresh environment compiles it (tens of seconds; cached on disk after that); inputs with
    N * N * D below about 4 million run on one thread. ``"numpy"``: the vectorised path (no compiler needed).
    ``"torch"``: the numpy path with the counting and the covariance products on a torch device.

    Parameters
    ----------
    X : (N, D) array (numpy, list, or a torch tensor; converted to float64).
    bins, z_threshold, base : histogram bins, trimming threshold, log base (15, 5, 2: the original).
    estimator : ``"plugin"`` (the original) or ``"miller-madow"``.
    device : ``None`` (CPU: the numba or numpy backend), ``"cpu"`` or ``"cuda"`` (torch, float64 for the
        covariance, integer counts). A device selects the torch backend unless ``backend`` says otherwise.
    backend : ``"auto"`` (default: ``"torch"`` when a device is given, else ``"numba"``, falling back to
        ``"numpy"`` with a RuntimeWarning when numba cannot be imported), ``"numba"``, ``"numpy"`` or ``"torch"``.
    chunk_size : pairs per chunk (numpy and torch backends; the numba kernel needs no chunks). Peak extra memory
        is about ``chunk_size * D * 11`` bytes for bins <= 15 (two gathered uint8 bin rows, the int64 codes
        bincount needs; 23 MB for 2048 x 1024; about twice that for more bins), plus the N x N outputs,
        O(N * D) per-vector tables and the bin rows of the range variants (4 bytes x D each; typically 1 to 10
        variants per vector). The numba backend needs about ``N * N * 56`` bytes of per-pair tables plus at most
        128 MiB of stored variant bin rows (1 byte x D each for bins < 255); beyond that it bins on the fly.

    Returns
    -------
    (mi, cov) : float64 arrays of shape (N, N); NaN for pairs with fewer than 2 kept dims.

    Raises
    ------
    UsageError : X not 2-D, D < 2, NaN/inf in X, bad parameters, ``backend="numba"`` without a working numba.
    DeviceError : ``"cuda"`` without CUDA.
    """
    _check_params(bins, z_threshold, base)
    if estimator not in _ESTIMATORS:
        raise UsageError(f"estimator must be one of {_ESTIMATORS}, got {estimator!r}.")
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int | np.integer) or chunk_size < 1:
        raise UsageError(f"chunk_size must be a positive integer, got {chunk_size!r}.")
    backend, device = _resolve_backend(backend, device)
    X = _as_float_array(X, "X", 2)
    n_vec, n_dim = X.shape
    if n_dim < 2:
        raise UsageError(f"need at least 2 dims per vector to z-score with ddof=1, got D = {n_dim}.")
    torch_dev = _torch_device(device)
    bins = int(bins)

    mask = np.stack([keep_mask(row, z_threshold) for row in X]) if n_vec else np.ones((0, n_dim), bool)
    mi = np.full((n_vec, n_vec), np.nan)
    if n_vec == 0:
        return mi, mi.copy()
    if backend == "numba":
        return _pairwise_numba(X, mask, bins, base, estimator)
    cov = _pairwise_cov(X, mask, torch_dev)

    # pairs i <= j (diagonal included)
    iu, ju = np.triu_indices(n_vec, 0)
    ranges = _PairRanges(X, mask)
    key_i, empty = ranges.keys(iu, ju, chunk_size)
    key_j, _ = ranges.keys(ju, iu, chunk_size)
    # distinct (vector, lo, hi) "variants": each is binned once (usually ~1-10 per vector)
    uniq, inverse = np.unique(np.concatenate([key_i, key_j]), return_inverse=True)
    var_i, var_j = inverse[: len(iu)], inverse[len(iu) :]
    var_vec, var_lo, var_hi = ranges.decode(uniq)
    var_bins = _bin_variants(X, mask, var_vec, var_lo, var_hi, bins, chunk_size)

    n_kept = mask.astype(np.float64) @ mask.astype(np.float64).T
    n_pair = n_kept[iu, ju].astype(np.int64)
    mi_pairs = _mi_from_bins(var_bins, var_i, var_j, n_pair, bins, base, estimator, chunk_size, torch_dev)
    mi_pairs[n_pair < 2] = np.nan
    mi_pairs[empty] = np.nan
    mi[iu, ju] = mi_pairs
    mi[ju, iu] = mi_pairs
    return mi, cov


_BACKENDS = ("auto", "numba", "numpy", "torch")
_kernel_module: Any = None  # layerclaims.metrics._pairwise_kernel once imported
_kernel_error: str | None = None  # why it could not be imported
_warned_fallback = False


def _load_kernel() -> Any:
    """The numba kernel module, or None (with the reason in ``_kernel_error``) when numba cannot be imported."""
    global _kernel_module, _kernel_error
    if _kernel_module is None and _kernel_error is None:
        try:
            from layerclaims.metrics import _pairwise_kernel
        except Exception as err:  # ImportError, or numba failing on this numpy/Python version
            _kernel_error = f"{type(err).__name__}: {err}"
        else:
            _kernel_module = _pairwise_kernel
    return _kernel_module


def _resolve_backend(backend: str, device: str | None) -> tuple[str, str | None]:
    """(backend, torch device) from the user's choice; 'auto' falls back from numba to numpy with a warning."""
    global _warned_fallback
    if backend not in _BACKENDS:
        raise UsageError(f"backend must be one of {_BACKENDS}, got {backend!r}.")
    if backend == "auto":
        if device is not None:
            return "torch", device
        if _load_kernel() is not None:
            return "numba", None
        if not _warned_fallback:
            _warned_fallback = True
            warnings.warn(
                f"numba could not be imported ({_kernel_error}); pairwise_mi_cov uses the numpy backend instead "
                "(same numbers, several times slower). Install numba, or pass backend='numpy' to choose it.",
                RuntimeWarning,
                stacklevel=3,
            )
        return "numpy", None
    if backend == "torch":
        return "torch", "cpu" if device is None else device
    if device not in (None, "cpu"):
        raise UsageError(
            f"backend={backend!r} runs on the CPU, but device={device!r} was given: use backend='torch' (or 'auto') "
            "for a torch device."
        )
    if backend == "numba" and _load_kernel() is None:
        raise UsageError(
            f"backend='numba' needs numba, which could not be imported ({_kernel_error}): install numba "
            "(it is a project dependency) or pass backend='numpy'."
        )
    return backend, None


_VARIANT_BUDGET = 1 << 27  # bytes of stored variant bin rows in the numba backend; beyond that, bin on the fly
_SERIAL_BELOW = 1 << 22  # N * N * D below which the numba backend runs on one thread


def _pairwise_numba(
    X: NDArray[np.float64], mask: NDArray[np.bool_], bins: int, base: float, estimator: str
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """All pairs with the compiled kernel; per-vector and per-variant tables are prepared here.

    A "variant" is (vector, histogram range); its bin row is stored once when two or more pairs use it (the own
    range of each vector, and the ranges left when another vector trims this one's extremes); a variant used by
    a single pair is binned inside the kernel (the same work, no memory).
    """
    kern = _load_kernel()
    X = np.ascontiguousarray(X)
    mask = np.ascontiguousarray(mask)
    n_vec, n_dim = X.shape
    bin_dtype = np.dtype(np.uint8 if bins < 255 else np.int32)
    mi = np.empty((n_vec, n_vec))
    cov = np.empty((n_vec, n_vec))
    args = (X, mask, bins, bin_dtype, estimator == "miller-madow", math.log(base))
    budget_rows = _VARIANT_BUDGET // (n_dim * bin_dtype.itemsize)
    if n_vec * n_vec * n_dim < _SERIAL_BELOW:  # waking numba's threads would cost more than the work
        import numba

        threads = numba.get_num_threads()
        numba.set_num_threads(1)
        try:
            kern.pairwise_all(*args, budget_rows, mi, cov)
        finally:
            numba.set_num_threads(threads)
    else:
        kern.pairwise_all(*args, budget_rows, mi, cov)
    return mi, cov


def _torch_device(device: str | None) -> Any:
    if device is None:
        return None
    import torch

    if device not in ("cpu", "cuda") and not str(device).startswith("cuda:"):
        raise UsageError(f"device must be None, 'cpu' or 'cuda', got {device!r}.")
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise DeviceError(
            f"device={device!r} was asked for but torch sees no CUDA device: use device='cpu' (or None for numpy)."
        )
    return torch.device(device)


def _pairwise_cov(X: NDArray[np.float64], mask: NDArray[np.bool_], torch_dev: Any) -> NDArray[np.float64]:
    """cov over mask_i & mask_j, via products of data centred by each vector's own kept-dim mean."""
    m = mask.astype(np.float64)
    own_n = m.sum(1, keepdims=True)
    own_mean = (X * m).sum(1, keepdims=True) / np.maximum(own_n, 1.0)
    xc = (X - own_mean) * m
    if torch_dev is None:
        n = m @ m.T
        sx = xc @ m.T  # sx[i, j] = sum over kept(i, j) of xc_i
        sxy = xc @ xc.T
    else:
        import torch

        mt = torch.from_numpy(m).to(torch_dev)
        xt = torch.from_numpy(xc).to(torch_dev)
        n = (mt @ mt.T).cpu().numpy()
        sx = (xt @ mt.T).cpu().numpy()
        sxy = (xt @ xt.T).cpu().numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        cov = (sxy - sx * sx.T / n) / (n - 1)
    cov[n < 2] = np.nan
    return np.triu(cov) + np.triu(cov, 1).T  # exactly symmetric


class _PairRanges:
    """min and max of X[a] over mask[a] & mask[b] for ordered pairs (a, b), encoded as integer keys.

    Exact without scanning D per pair: vector b trims at most ``t = max trimmed count`` dims, so among the
    t + 1 smallest kept values of X[a] at least one survives (unless X[a] has fewer kept dims; then all of them
    are candidates and an empty intersection is detected). The key of a pair side is
    ``(a * k + position of the min among a's candidates) * k + position of the max``.
    """

    def __init__(self, X: NDArray[np.float64], mask: NDArray[np.bool_]) -> None:
        n_dim = X.shape[1]
        self.X, self.mask = X, mask
        self.k = k = min(int((~mask).sum(1).max()) + 1, n_dim)
        self.asc = _k_smallest(np.where(mask, X, np.inf), k)  # smallest kept first
        self.desc = _k_smallest(np.where(mask, -X, np.inf), k)  # largest kept first
        self.valid = np.arange(k)[None, :] < mask.sum(1)[:, None]  # slot holds a kept dim of the vector

    def keys(self, a: NDArray[np.intp], b: NDArray[np.intp], chunk: int) -> tuple[NDArray[np.int64], NDArray[np.bool_]]:
        k = self.k
        key = np.empty(len(a), np.int64)
        empty = np.zeros(len(a), bool)
        step = max(1, chunk * 64 // k)
        for s in range(0, len(a), step):
            ia, ib = a[s : s + step], b[s : s + step]
            ok_lo = self.mask[ib[:, None], self.asc[ia]] & self.valid[ia]
            ok_hi = self.mask[ib[:, None], self.desc[ia]] & self.valid[ia]
            key[s : s + step] = (ia.astype(np.int64) * k + ok_lo.argmax(1)) * k + ok_hi.argmax(1)
            empty[s : s + step] = ~ok_lo.any(1)
        return key, empty

    def decode(self, key: NDArray[np.int64]) -> tuple[NDArray[np.int64], NDArray[np.float64], NDArray[np.float64]]:
        k = self.k
        vec, rest = np.divmod(key, k * k)
        p_lo, p_hi = np.divmod(rest, k)
        return vec, self.X[vec, self.asc[vec, p_lo]], self.X[vec, self.desc[vec, p_hi]]


def _k_smallest(v: NDArray[np.float64], k: int) -> NDArray[np.intp]:
    """Indices of the k smallest entries of each row, in ascending order of value."""
    if k >= v.shape[1]:
        return np.argsort(v, axis=1, kind="stable")
    part = np.argpartition(v, k - 1, axis=1)[:, :k]
    order = np.argsort(np.take_along_axis(v, part, 1), axis=1, kind="stable")
    return np.take_along_axis(part, order, 1)


def _edges(lo: NDArray[np.float64], hi: NDArray[np.float64], bins: int) -> NDArray[np.float64]:
    """``np.linspace(lo, hi, bins + 1)`` row by row, bit for bit, after numpy's ±0.5 widening when lo == hi."""
    lo = lo.copy()
    hi = hi.copy()
    same = lo == hi
    lo[same] -= 0.5
    hi[same] += 0.5
    delta = hi - lo
    step = delta / bins
    k = np.arange(bins + 1, dtype=np.float64)[None, :]
    with np.errstate(invalid="ignore"):
        edges = np.where((step == 0)[:, None], (k / bins) * delta[:, None], k * step[:, None])
    edges += lo[:, None]
    edges[:, -1] = hi
    return edges


def _bin_variants(
    X: NDArray[np.float64],
    mask: NDArray[np.bool_],
    var_vec: NDArray[np.int64],
    var_lo: NDArray[np.float64],
    var_hi: NDArray[np.float64],
    bins: int,
    chunk: int,
) -> NDArray[np.int32]:
    """Bin index of every dim of X[var_vec] with edges from (lo, hi); own-trimmed dims get the extra bin ``bins``.

    For a value v in [lo, hi], ``np.histogram2d`` puts it in ``searchsorted(edges, v, 'right') - 1``, moved one
    left when v equals the last edge: clipping to ``bins - 1`` does exactly that.
    """
    edges = _edges(var_lo, var_hi, bins)
    out = np.empty((len(var_vec), X.shape[1]), np.int32)
    # A loop over variants (about N to 10 N of them; never over pairs): one searchsorted per row is the
    # cheapest exact form. Values outside [lo, hi] (dims trimmed for this variant's pairs) are clipped.
    for v in range(len(var_vec)):
        idx = np.searchsorted(edges[v], X[var_vec[v]], side="right") - 1
        np.clip(idx, 0, bins - 1, out=out[v])
    out[~mask[var_vec]] = bins
    return out


def _plogp_table(n: int, max_count: int, base: float) -> NDArray[np.float64]:
    """``(c / n) * log2(c / n + 1e-12) / log2(base)`` for c = 0..max_count: the original's per-cell term."""
    p = np.arange(max_count + 1, dtype=np.float64) / float(n)
    return p * np.log2(p + _EPS) / math.log2(base)


def _mi_from_bins(
    var_bins: NDArray[np.int32],
    var_i: NDArray[np.intp],
    var_j: NDArray[np.intp],
    n_pair: NDArray[np.int64],
    bins: int,
    base: float,
    estimator: str,
    chunk: int,
    torch_dev: Any,
) -> NDArray[np.float64]:
    """Histogram MI for each pair from the two variants' bin rows (one bincount per chunk of pairs)."""
    width = bins + 1
    cells = width * width
    n_dim = var_bins.shape[1]
    out = np.empty(len(var_i))
    # per distinct kept count n: row of the p log p table
    n_values, n_index = np.unique(n_pair, return_inverse=True)
    flat = np.concatenate([_plogp_table(max(int(n), 1), n_dim, base) for n in n_values])
    small = cells <= 256  # codes fit in uint8: the cheapest gathers (bins <= 15)
    if small:
        bins_y8 = var_bins.astype(np.uint8)
        bins_x8 = bins_y8 * np.uint8(width)
    if torch_dev is not None:
        import torch

        tb = torch.from_numpy(var_bins).to(torch_dev).long()
        ones = torch.ones((1, 1), dtype=torch.int32, device=torch_dev).expand(chunk, n_dim)
    for s in range(0, len(var_i), chunk):
        vi, vj = var_i[s : s + chunk], var_j[s : s + chunk]
        c = len(vi)
        if torch_dev is None:
            if small:
                code8 = bins_x8[vi]
                code8 += bins_y8[vj]
                code = code8.astype(np.intp)
            else:
                code = (var_bins[vi] * width + var_bins[vj]).astype(np.intp)
            code += (np.arange(c, dtype=np.intp) * cells)[:, None]
            counts = np.bincount(code.ravel(), minlength=c * cells).reshape(c, width, width)
        else:
            ti = torch.from_numpy(vi).to(torch_dev)
            tj = torch.from_numpy(vj).to(torch_dev)
            code_t = tb[ti] * width + tb[tj]
            counts_t = torch.zeros((c, cells), dtype=torch.int32, device=torch_dev)
            counts_t.scatter_add_(1, code_t, ones[:c])
            counts = counts_t.reshape(c, width, width).cpu().numpy()
        joint = counts[:, :bins, :bins]
        cx = joint.sum(2)
        cy = joint.sum(1)
        row0 = (n_index[s : s + chunk] * (n_dim + 1))[:, None]  # start of each pair's table row
        hxy = -flat[row0 + joint.reshape(c, -1)].sum(1)
        hx = -flat[row0 + cx].sum(1)
        hy = -flat[row0 + cy].sum(1)
        mi = hx + hy - hxy
        if estimator == "miller-madow":
            m_xy = np.count_nonzero(joint.reshape(c, -1), axis=1)
            m_x = np.count_nonzero(cx, axis=1)
            m_y = np.count_nonzero(cy, axis=1)
            n = np.maximum(n_pair[s : s + chunk], 1).astype(np.float64)
            mi = mi + (m_x + m_y - m_xy - 1) / (2.0 * n * math.log(base))
        out[s : s + chunk] = mi
    return out
