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

import importlib
import math
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from layerclaims.errors import DeviceError, UsageError

__all__ = ["keep_mask", "pairwise_mi_cov"]

_EPS = 1e-12  # the original's offset inside log2
_ESTIMATORS = ("plugin", "miller-madow")


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
    """Dims of a vector (or of each row of a 2-D array) that survive the original's trimming:
    ``not |(x - mean) / std(ddof=1)| > t``.

    Computed as the original (``x.mean()``, ``x.std(ddof=1)`` on the 1-D vector; a row of a C-contiguous array is
    reduced by the same pairwise summation), so masks agree bit for bit. A constant vector gives z = NaN everywhere
    and keeps every dim.
    """
    x = np.ascontiguousarray(x, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        z = (x - x.mean(axis=-1, keepdims=True)) / x.std(ddof=1, axis=-1, keepdims=True)
    return ~(np.abs(z) > z_threshold)


def pairwise_mi_cov(
    X: ArrayLike,
    *,
    bins: int = 15,
    z_threshold: float = 5.0,
    base: float = 2.0,
    estimator: str = "plugin",
    device: str | None = None,
    chunk_size: int = 2048,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """MI and covariance for every pair of rows of ``X`` (N vectors x D dims): two symmetric N x N matrices.

    Entry (i, j) equals the original on ``(X[i], X[j])`` up to floating-point summation order (tested to 1e-9
    against the per-pair ``np.histogram2d`` oracle; measured ~1e-15 for MI). Entry (i, i) is the original on
    (x, x): the plug-in entropy of x and its variance (ddof=1), on its kept dims; claims read only the upper
    triangle, as the original did.

    No Python loop over pairs: only the histogram range depends on the pair, found among the ``max_trimmed + 1``
    smallest/largest kept values of x. The numba kernel (:mod:`~layerclaims.metrics._pairwise_kernel`; its first
    call in a fresh environment compiles it, tens of seconds, then cached on disk) runs on the CPU, on one thread
    below N * N * D of about 4 million; ``device`` ``"cpu"`` or ``"cuda"`` runs the joint counts and covariance
    products on torch instead (integer counts, float64 covariance).

    ``X``: numpy, list or torch tensor, converted to float64. ``bins``, ``z_threshold``, ``base``: histogram bins,
    trimming threshold, log base (15, 5, 2: the original). ``estimator``: ``"plugin"`` (the original) or
    ``"miller-madow"``. ``chunk_size``: pairs counted per torch call; peak extra device memory is about
    ``chunk_size * D * 16`` bytes (two gathered int64 bin rows and the codes), plus the N x N outputs and the int32
    bin rows of the range variants (4 bytes x D each; typically 1 to 10 variants per vector). The numba kernel
    needs about ``N * N * 56`` bytes of per-pair tables plus at most 128 MiB of stored variant bin rows (1 byte x D
    each for bins < 255); beyond that it bins on the fly.

    Returns ``(mi, cov)``, float64 (N, N), NaN for pairs with fewer than 2 kept dims. Raises UsageError (X not 2-D,
    D < 2, NaN/inf in X, bad parameters, numba that cannot be imported), DeviceError (``"cuda"`` without CUDA).
    """
    _check_params(bins, z_threshold, base)
    if estimator not in _ESTIMATORS:
        raise UsageError(f"estimator must be one of {_ESTIMATORS}, got {estimator!r}.")
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int | np.integer) or chunk_size < 1:
        raise UsageError(f"chunk_size must be a positive integer, got {chunk_size!r}.")
    X = _as_float_array(X, "X", 2)
    n_vec, n_dim = X.shape
    if n_dim < 2:
        raise UsageError(f"need at least 2 dims per vector to z-score with ddof=1, got D = {n_dim}.")
    torch_dev = _torch_device(device)
    try:  # imported on first use: numba's import and the cache load take a while
        kern = importlib.import_module("layerclaims.metrics._pairwise_kernel")
    except Exception as err:  # ImportError, or numba failing on this numpy/Python version
        raise UsageError(
            f"pairwise_mi_cov needs numba, which could not be imported ({type(err).__name__}: {err}): install "
            "numba (it is a project dependency)."
        ) from err
    bins = int(bins)
    if n_vec == 0:
        return np.full((0, 0), np.nan), np.full((0, 0), np.nan)
    X = np.ascontiguousarray(X)
    mask = keep_mask(X, z_threshold)
    if torch_dev is not None:
        return _pairwise_torch(kern, X, mask, bins, base, estimator, chunk_size, torch_dev)
    import numba

    threads = numba.get_num_threads()
    # a small input on one thread: waking numba's threads would cost more than the work
    numba.set_num_threads(1 if n_vec * n_vec * n_dim < _SERIAL_BELOW else threads)
    try:
        return kern.pairwise_all(X, mask, bins, estimator == "miller-madow", math.log(base), _VARIANT_BUDGET)
    finally:
        numba.set_num_threads(threads)


_VARIANT_BUDGET = 1 << 27  # bytes of stored variant bin rows in the numba kernel; beyond that, bin on the fly
_SERIAL_BELOW = 1 << 22  # N * N * D below which the numba kernel runs on one thread


def _torch_device(device: str | None) -> Any:
    if device is None:
        return None
    import torch

    if device not in ("cpu", "cuda") and not str(device).startswith("cuda:"):
        raise UsageError(f"device must be None, 'cpu' or 'cuda', got {device!r}.")
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise DeviceError(
            f"device={device!r} was asked for but torch sees no CUDA device: use device='cpu' (or None for numba)."
        )
    return torch.device(device)


def _pairwise_torch(
    kern: Any,
    X: NDArray[np.float64],
    mask: NDArray[np.bool_],
    bins: int,
    base: float,
    estimator: str,
    chunk: int,
    dev: Any,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """The kernel's per-vector and per-pair tables, every variant binned once, the joint counts of a chunk of
    pairs i <= j one ``scatter_add_`` on ``dev``; covariance from three matrix products on ``dev``."""
    import torch

    n_vec, n_dim = X.shape
    asc, desc, _, _, _, _, key, n_pair = kern.vector_pair_tables(X, mask)
    k2 = asc.shape[1] ** 2
    key = np.maximum(key, 0)  # -1: the pair keeps no dim (NaN below); any range will do
    iu, ju = np.triu_indices(n_vec, 0)
    keys = np.concatenate([iu * k2 + key[iu, ju], ju * k2 + key[ju, iu]])
    uniq, inverse = np.unique(keys, return_inverse=True)
    var_bins = np.empty((len(uniq), n_dim), np.int32)
    kern.variant_bin_rows(X, mask, asc, desc, uniq // k2, uniq % k2, bins, var_bins)
    var_i, var_j = inverse[: len(iu)], inverse[len(iu) :]
    n_p = n_pair[iu, ju]
    table, table_row = kern.entropy_table(n_pair, n_dim, math.log(base) / math.log(2.0))
    flat = table.ravel()

    width = bins + 1
    cells = width * width
    tb = torch.from_numpy(var_bins).to(dev).long()
    ones = torch.ones((1, 1), dtype=torch.int32, device=dev).expand(chunk, n_dim)
    mi_pairs = np.empty(len(iu))
    for s in range(0, len(iu), chunk):
        ti = torch.from_numpy(var_i[s : s + chunk]).to(dev)
        tj = torch.from_numpy(var_j[s : s + chunk]).to(dev)
        c = len(ti)
        counts_t = torch.zeros((c, cells), dtype=torch.int32, device=dev)
        counts_t.scatter_add_(1, tb[ti] * width + tb[tj], ones[:c])
        joint = counts_t.reshape(c, width, width).cpu().numpy()[:, :bins, :bins]
        cx = joint.sum(2)
        cy = joint.sum(1)
        row0 = (table_row[n_p[s : s + chunk]] * (n_dim + 1))[:, None]  # start of each pair's table row
        hxy = -flat[row0 + joint.reshape(c, -1)].sum(1)
        hx = -flat[row0 + cx].sum(1)
        hy = -flat[row0 + cy].sum(1)
        mi = hx + hy - hxy
        if estimator == "miller-madow":
            m_xy = np.count_nonzero(joint.reshape(c, -1), axis=1)
            m_x = np.count_nonzero(cx, axis=1)
            m_y = np.count_nonzero(cy, axis=1)
            n = np.maximum(n_p[s : s + chunk], 1).astype(np.float64)
            mi = mi + (m_x + m_y - m_xy - 1) / (2.0 * n * math.log(base))
        mi_pairs[s : s + chunk] = mi
    mi_pairs[n_p < 2] = np.nan
    mi_m = np.empty((n_vec, n_vec))
    mi_m[iu, ju] = mi_pairs
    mi_m[ju, iu] = mi_pairs

    m = mask.astype(np.float64)
    own_mean = (X * m).sum(1, keepdims=True) / np.maximum(m.sum(1, keepdims=True), 1.0)
    mt = torch.from_numpy(m).to(dev)
    xt = torch.from_numpy((X - own_mean) * m).to(dev)
    n = (mt @ mt.T).cpu().numpy()
    sx = (xt @ mt.T).cpu().numpy()  # sx[i, j] = sum over kept(i, j) of the centred x_i
    sxy = (xt @ xt.T).cpu().numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        cov = (sxy - sx * sx.T / n) / (n - 1)
    cov[n < 2] = np.nan
    return mi_m, np.triu(cov) + np.triu(cov, 1).T  # exactly symmetric
