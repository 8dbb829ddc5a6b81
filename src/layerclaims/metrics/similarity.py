"""Similarity structure of item vectors (study B, claims.md §4-7): cosine matrices, selectivity, RSA and their
permutation tests. Inputs are NumPy arrays or torch tensors (converted on the CPU); values are ``float64``.

An off-diagonal ``NaN`` means "no such pair" and is skipped by every statistic (a bootstrap over items marks so
the pair of two copies of one item). The statistics read only the upper triangle (``i < j``), as the original
did; the permutation tests and :func:`selectivity_index` require a symmetric matrix (within ``1e-8``), since
permuting the items of an asymmetric one moves entries between the triangles.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Any, Literal, NamedTuple

import numpy as np

from layerclaims.errors import UsageError
from layerclaims.metrics.order import average_ranks

Method = Literal["pearson", "spearman"]
Alternative = Literal["greater", "less", "two-sided"]

_SYM_TOL = 1e-8
_CHUNK = 1024  # permutations evaluated per batch: bounds memory to ~_CHUNK x n_pairs floats


class PermutationResult(NamedTuple):
    """A permutation test: the observed ``statistic``, its ``p_value`` and the number of permutations drawn.
    ``p_value = (1 + #{null as or more extreme}) / (n_perm + 1)`` is never zero (the observed arrangement counts as
    one member of the null distribution)."""

    statistic: float
    p_value: float
    n_perm: int
    alternative: str = "greater"


def as_array(x: Any, *, name: str = "array") -> np.ndarray:
    """``x`` as a float64 NumPy array; torch tensors (any device) are detached and copied to the CPU."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        x = x.detach().cpu().numpy()
    try:
        return np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"{name} must be numeric (got {type(x).__name__}): pass a NumPy array or tensor") from exc


def _square(S: Any, name: str = "S") -> np.ndarray:
    S = as_array(S, name=name)
    if S.ndim != 2 or S.shape[0] != S.shape[1]:
        raise UsageError(f"{name} must be a square matrix, got shape {S.shape}: pass an n x n similarity matrix")
    return S


def _check_symmetric(S: np.ndarray, name: str) -> None:
    a, b = np.nan_to_num(S, nan=0.0), np.nan_to_num(S.T, nan=0.0)
    if not np.allclose(a, b, atol=_SYM_TOL, rtol=0.0) or not np.array_equal(np.isnan(S), np.isnan(S.T)):
        raise UsageError(f"{name} is not symmetric: pass a similarity matrix (e.g. from cosine_matrix)")


def _square_pair(S1: Any, S2: Any) -> tuple[np.ndarray, np.ndarray]:
    S1, S2 = _square(S1, "S1"), _square(S2, "S2")
    if S1.shape != S2.shape:
        raise UsageError(f"S1 and S2 must describe the same items: shapes {S1.shape} and {S2.shape} differ")
    return S1, S2


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson r of two 1-D arrays; NaN when either is constant or has fewer than 2 values."""
    if a.size < 2:
        return float("nan")
    a, b = a - a.mean(), b - b.mean()
    den = np.sqrt((a @ a) * (b @ b))
    if den == 0.0 or not np.isfinite(den):
        return float("nan")
    return float(np.clip((a @ b) / den, -1.0, 1.0))


def _correlate(a: np.ndarray, b: np.ndarray, method: str) -> float:
    keep = ~(np.isnan(a) | np.isnan(b))
    a, b = a[keep], b[keep]
    if method == "pearson":
        return _pearson(a, b)
    if method == "spearman":
        return _pearson(average_ranks(a), average_ranks(b)) if a.size else float("nan")
    raise UsageError(f"unknown method {method!r}: use 'pearson' or 'spearman'")


def _encode_labels(labels: Sequence[Hashable] | np.ndarray, n: int) -> tuple[list[Hashable], np.ndarray]:
    """Categories in order of first appearance and the integer code of each item."""
    labels = list(labels.tolist() if isinstance(labels, np.ndarray) else labels)
    if len(labels) != n:
        raise UsageError(f"got {len(labels)} labels for {n} items: pass one category label per row of S")
    cats: dict[Hashable, int] = {}
    codes = np.array([cats.setdefault(lab, len(cats)) for lab in labels], dtype=np.intp)
    return list(cats), codes


def _p_value(null: np.ndarray, observed: float, alternative: str) -> float:
    """(1 + #extreme) / (n + 1), with a relative tolerance so the identity permutation ties with the observation."""
    tol = 1e-12 * max(1.0, abs(observed))
    null = null[~np.isnan(null)]
    if alternative == "greater":
        extreme = null >= observed - tol
    elif alternative == "less":
        extreme = null <= observed + tol
    elif alternative == "two-sided":
        extreme = np.abs(null) >= abs(observed) - tol
    else:
        raise UsageError(f"unknown alternative {alternative!r}: use 'greater', 'less' or 'two-sided'")
    return float((1 + np.count_nonzero(extreme)) / (null.size + 1))


def _permutation_test(
    observed: float,
    row: np.ndarray,
    stat: Callable[[np.ndarray], np.ndarray],
    n_perm: int,
    seed: int,
    alternative: str,
) -> PermutationResult:
    """The null of ``stat`` over ``n_perm`` seeded shuffles of ``row``, passed as (at most ``_CHUNK``, n) batches."""
    rng = np.random.default_rng(seed)
    null = np.empty(n_perm)
    for start in range(0, n_perm, _CHUNK):
        b = min(_CHUNK, n_perm - start)
        # permuted() returns a Fortran-ordered array: the kernels read a permutation's row 4x faster in C order
        null[start : start + b] = stat(np.ascontiguousarray(rng.permuted(np.broadcast_to(row, (b, row.size)), axis=1)))
    return PermutationResult(observed, _p_value(null, observed, alternative), int(n_perm), alternative)


def _check_n_perm(n_perm: int) -> None:
    if int(n_perm) < 1:
        raise UsageError(f"n_perm must be at least 1, got {n_perm}")


# ------------------------------------------------------------------------------------------------ the matrices


def cosine_matrix(X: Any) -> np.ndarray:
    """Cosine similarity of every pair of rows of ``X`` (n x d): ``S[i, j] = x_i . x_j / (|x_i| |x_j|)``, as the
    original (L2-normalise the rows, then ``A @ A.T``). In ``[-1, 1]`` (clipped against rounding), symmetric, an
    exact 1 on the diagonal. UsageError for a row of zeros (cosine undefined), NaN/inf, or ``X`` not 2-D."""
    X = as_array(X, name="X")
    if X.ndim != 2:
        raise UsageError(f"X must be 2-D (items x dimensions), got shape {X.shape}")
    if not np.all(np.isfinite(X)):
        bad = int(np.flatnonzero(~np.all(np.isfinite(X), axis=1))[0])
        raise UsageError(f"row {bad} of X contains NaN or inf: clean the vectors before computing cosines")
    norms = np.linalg.norm(X, axis=1)
    zero = np.flatnonzero(norms == 0.0)
    if zero.size:
        raise UsageError(f"row {int(zero[0])} of X is all zeros, so its cosine similarity is undefined: drop that item")
    A = X / norms[:, None]
    S = np.clip(A @ A.T, -1.0, 1.0)
    S = (S + S.T) / 2.0  # exact symmetry despite BLAS rounding
    np.fill_diagonal(S, 1.0)
    return S


def mean_offdiagonal(S: Any) -> float:
    """Mean of the off-diagonal entries, ``sum_{i != j} S_ij / (n (n - 1))``, skipping NaN (missing) pairs. Same
    units as ``S``. NaN when ``n < 2`` or every off-diagonal pair is missing."""
    S = _square(S)
    vals = S[~np.eye(S.shape[0], dtype=bool)]
    vals = vals[~np.isnan(vals)]
    return float(vals.mean()) if vals.size else float("nan")


# ---------------------------------------------------------------------------------------------- selectivity


def _selectivity_setup(
    S: Any, labels: Sequence[Hashable] | np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Checks; S0 (S with missing pairs and the diagonal at 0), V (1 at valid off-diagonal pairs), codes, C."""
    S = _square(S)
    _check_symmetric(S, "S")
    cats, codes = _encode_labels(labels, S.shape[0])
    if len(cats) < 2:
        raise UsageError(f"selectivity needs at least 2 categories, got {len(cats)}: check the labels")
    sizes = np.bincount(codes, minlength=len(cats))
    single = [cats[i] for i in np.flatnonzero(sizes < 2)]
    if single:
        raise UsageError(
            f"categories {single!r} have a single item, so they have no within-category pair: "
            "give each category at least 2 items or drop it"
        )
    valid = ~np.isnan(S)
    np.fill_diagonal(valid, False)
    return np.where(valid, S, 0.0), valid.astype(np.float64), codes, len(cats)


def _selectivity(S0: np.ndarray, V: np.ndarray, codes: np.ndarray, C: int) -> np.ndarray:
    """Selectivity for each row of ``codes`` (..., n): with one-hot labels L the C x C block means are
    ``L^T S0 L / L^T V L``; then mean(diagonal) / mean(strict upper triangle)."""
    L = (codes[..., None] == np.arange(C)).astype(np.float64)
    Lt = np.swapaxes(L, -1, -2)
    iu = np.triu_indices(C, 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        blocks = (Lt @ S0 @ L) / (Lt @ V @ L)
        within = np.diagonal(blocks, axis1=-2, axis2=-1).mean(axis=-1)
        return within / blocks[..., iu[0], iu[1]].mean(axis=-1)


def selectivity_index(S: Any, labels: Sequence[Hashable] | np.ndarray) -> float:
    """Within- over between-category similarity, exactly as the original notebook.

    ``selectivity = mean_c W_c / mean_{a<b} B_ab``, ``W_c`` the mean of the upper triangle (diagonal excluded) of
    category ``c``'s block and ``B_ab`` the mean of the block of categories ``a`` and ``b``: unweighted means of
    block means, so a category of 13 items weighs as much as one of 10. Unitless; 1 is "no category structure".

    UsageError for fewer than 2 categories, a single-item category, a label count other than ``len(S)``, or an
    asymmetric ``S``. NaN pairs are skipped; a block with no valid pair gives NaN. A between mean of 0 gives
    ``inf`` (NaN for 0/0), a negative one a negative ratio: the index needs positive between-category similarity.
    """
    return float(_selectivity(*_selectivity_setup(S, labels)))


def selectivity_permutation_test(
    S: Any,
    labels: Sequence[Hashable] | np.ndarray,
    *,
    n_perm: int = 10_000,
    seed: int = 0,
    alternative: Alternative = "greater",
) -> PermutationResult:
    """Label-permutation test of :func:`selectivity_index`. Null: category labels are exchangeable across items
    (sizes kept; the null centres near 1). ``n_perm`` shuffles seeded by ``seed``; one-sided ``"greater"`` by
    default, as the claim "selectivity > 1"."""
    _check_n_perm(n_perm)
    S0, V, codes, C = _selectivity_setup(S, labels)
    observed = float(_selectivity(S0, V, codes, C))
    return _permutation_test(observed, codes, lambda P: _selectivity(S0, V, P, C), n_perm, seed, alternative)


# ------------------------------------------------------------------------------------------------------ RSA


def rsa(S1: Any, S2: Any, method: Method = "pearson") -> float:
    """Representational similarity: correlation of the upper triangles (k=1) of two similarity matrices.
    ``"pearson"`` is the original; ``"spearman"`` ranks each triangle first (average ranks for ties). Pairs missing
    (NaN) in either matrix are dropped. NaN when either triangle is constant or fewer than 2 pairs remain.
    UsageError for different shapes or an unknown method."""
    S1, S2 = _square_pair(S1, S2)
    iu = np.triu_indices(S1.shape[0], 1)
    return _correlate(S1[iu], S2[iu], method)


def rsa_by_category(
    S1: Any, S2: Any, labels: Sequence[Hashable] | np.ndarray, method: Method = "pearson"
) -> dict[Hashable, float]:
    """RSA restricted to each category's within-category pairs (``i < j`` both in it): ``{category: r}`` in order
    of first appearance. NaN for a category with fewer than 3 items (fewer than 2 pairs) or a constant block."""
    S1, S2 = _square_pair(S1, S2)
    cats, codes = _encode_labels(labels, S1.shape[0])
    out: dict[Hashable, float] = {}
    for c, cat in enumerate(cats):
        idx = np.flatnonzero(codes == c)
        iu = np.triu_indices(idx.size, 1)
        out[cat] = _correlate(S1[np.ix_(idx, idx)][iu], S2[np.ix_(idx, idx)][iu], method)
    return out


def mantel_test(
    S1: Any,
    S2: Any,
    *,
    n_perm: int = 10_000,
    method: Method = "pearson",
    seed: int = 0,
    alternative: Alternative = "greater",
) -> PermutationResult:
    """Mantel permutation test of :func:`rsa`: permute the items of ``S2`` (rows and columns together). Null: the
    item correspondence between the two matrices is arbitrary. Seeded by ``seed``; the default one-sided
    ``"greater"`` is what a claim "RSA > threshold" needs. Both matrices must be symmetric and complete. With
    ``n!`` near or below ``n_perm`` permutations repeat; the p-value stays valid."""
    _check_n_perm(n_perm)
    S1, S2 = _square_pair(S1, S2)
    _check_symmetric(S1, "S1")
    _check_symmetric(S2, "S2")
    if method not in ("pearson", "spearman"):
        raise UsageError(f"unknown method {method!r}: use 'pearson' or 'spearman'")
    if np.isnan(S1).any() or np.isnan(S2).any():
        raise UsageError("mantel_test needs complete matrices: S1 or S2 has NaN (missing) pairs")
    n = S1.shape[0]
    if n < 3:
        raise UsageError(f"mantel_test needs at least 3 items (2 pairs), got {n}")
    observed = rsa(S1, S2, method)
    iu, ju = np.triu_indices(n, 1)
    a = S1[iu, ju]
    R2 = S2.copy()
    if method == "spearman":
        a = average_ranks(a)
        R2[iu, ju] = average_ranks(S2[iu, ju])
        R2[ju, iu] = R2[iu, ju]
    b = R2[iu, ju]
    a_c = a - a.mean()
    den = np.sqrt((a_c @ a_c) * ((b - b.mean()) @ (b - b.mean())))
    if den == 0.0:
        return PermutationResult(observed, float("nan"), int(n_perm), alternative)
    from layerclaims.metrics._pairwise_kernel import permuted_products  # compiled: each permuted entry read once

    # permuting items maps the set of pairs onto itself: ranks, mean and norm of the permuted triangle are those
    # of b; with a_c as a zero-diagonal symmetric A, sum_{i<j} a_c[i,j] R2[p_i, p_j] = 1/2 sum_{i,j} A[i,j] R2[p_i, p_j]
    A = np.zeros((n, n))
    A[iu, ju] = a_c
    A[ju, iu] = a_c
    return _permutation_test(
        observed, np.arange(n), lambda P: permuted_products(A, R2, P) / (2.0 * den), n_perm, seed, alternative
    )
