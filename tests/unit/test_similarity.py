"""Unit tests of layerclaims.metrics.similarity: hand-computed cases, scipy/sklearn oracles, loop oracles."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from scipy import stats
from sklearn.metrics.pairwise import cosine_similarity

from layerclaims.errors import UsageError
from layerclaims.metrics.similarity import (
    PermutationResult,
    cosine_matrix,
    mantel_test,
    mean_offdiagonal,
    rsa,
    rsa_by_category,
    selectivity_index,
    selectivity_permutation_test,
)

SIZES = (10, 13, 11)  # the study's three categories


def _words(seed: int = 0, noise: float = 1.0, d: int = 32) -> tuple[np.ndarray, list[str]]:
    """34 vectors in 3 categories (shared direction + category centre + noise), items in category order.

    The shared direction makes between-category cosines positive, as they are for hidden states.
    """
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(3, d)) + 1.5
    X = np.repeat(centres, SIZES, axis=0) + noise * rng.normal(size=(sum(SIZES), d))
    labels = [c for c, k in zip(("space", "furniture", "fruit"), SIZES, strict=True) for _ in range(k)]
    return X, labels


def _selectivity_original(S: np.ndarray, sizes: tuple[int, ...]) -> float:
    """The notebook's procedure on items sorted by category: loops over blocks, block means, ratio of means."""
    bounds = np.cumsum((0, *sizes))
    idx = [np.arange(bounds[i], bounds[i + 1]) for i in range(len(sizes))]
    within = [S[np.ix_(i, i)][np.triu_indices(len(i), 1)].mean() for i in idx]
    between = [S[np.ix_(a, b)].mean() for a, b in itertools.combinations(idx, 2)]
    return float(np.mean(within) / np.mean(between))


# ------------------------------------------------------------------------------------------------- cosine


def test_cosine_matches_sklearn_and_has_exact_diagonal() -> None:
    X, _ = _words()
    S = cosine_matrix(X)
    np.testing.assert_allclose(S, cosine_similarity(X), atol=1e-12)
    assert np.array_equal(S, S.T)
    assert np.all(np.diag(S) == 1.0)


def test_cosine_hand_case() -> None:
    S = cosine_matrix([[1.0, 0.0], [1.0, 1.0], [-2.0, 0.0]])
    expected = np.array([[1, 1 / np.sqrt(2), -1], [1 / np.sqrt(2), 1, -1 / np.sqrt(2)], [-1, -1 / np.sqrt(2), 1]])
    np.testing.assert_allclose(S, expected, atol=1e-15)


def test_cosine_accepts_torch() -> None:
    X, _ = _words()
    np.testing.assert_allclose(cosine_matrix(torch.from_numpy(X)), cosine_matrix(X), atol=1e-15)


def test_cosine_zero_row_names_row() -> None:
    X = np.ones((4, 3))
    X[2] = 0.0
    with pytest.raises(UsageError, match="row 2"):
        cosine_matrix(X)


@pytest.mark.parametrize("bad", [np.ones(3), np.array([[1.0, np.nan], [1.0, 2.0]]), np.array([[np.inf, 1.0]])])
def test_cosine_rejects_bad_input(bad: np.ndarray) -> None:
    with pytest.raises(UsageError):
        cosine_matrix(bad)


# --------------------------------------------------------------------------------- triangle, off-diagonal


def test_mean_offdiagonal_hand_case_and_missing_pairs() -> None:
    S = np.array([[1.0, 0.2, 0.4], [0.2, 1.0, 0.6], [0.4, 0.6, 1.0]])
    assert mean_offdiagonal(S) == pytest.approx(0.4)
    S[0, 1] = S[1, 0] = np.nan
    assert mean_offdiagonal(S) == pytest.approx(0.5)
    assert np.isnan(mean_offdiagonal(np.ones((1, 1))))


# ---------------------------------------------------------------------------------------------- selectivity


def test_selectivity_hand_case() -> None:
    S = np.array([[1, 0.8, 0.1, 0.2], [0.8, 1, 0.3, 0.0], [0.1, 0.3, 1, 0.6], [0.2, 0.0, 0.6, 1]])
    # within: 0.8 and 0.6 -> 0.7; between: (0.1 + 0.2 + 0.3 + 0.0) / 4 = 0.15
    assert selectivity_index(S, ["a", "a", "b", "b"]) == pytest.approx(0.7 / 0.15)


def test_selectivity_unweighted_mean_of_block_means() -> None:
    # 3 items in A (within pairs 0.9, 0.9, 0.9) and 2 in B (0.1): unweighted (0.9 + 0.1) / 2, not (3*0.9 + 0.1) / 4.
    S = np.full((5, 5), 0.5)
    S[:3, :3] = 0.9
    S[3:, 3:] = 0.1
    np.fill_diagonal(S, 1.0)
    assert selectivity_index(S, [0, 0, 0, 1, 1]) == pytest.approx(0.5 / 0.5)


def test_selectivity_matches_original_loops_for_the_study_layout() -> None:
    X, labels = _words(noise=2.0)
    S = cosine_matrix(X)
    assert selectivity_index(S, labels) == pytest.approx(_selectivity_original(S, SIZES), rel=1e-12)


def test_selectivity_items_in_any_order_and_any_label_type() -> None:
    X, labels = _words(seed=3, noise=2.0)
    S = cosine_matrix(X)
    ref = selectivity_index(S, labels)
    perm = np.random.default_rng(1).permutation(len(labels))
    shuffled = [labels[i] for i in perm]
    assert selectivity_index(S[np.ix_(perm, perm)], shuffled) == pytest.approx(ref, rel=1e-12)
    codes = {"space": 7, "furniture": -1, "fruit": 3}
    assert selectivity_index(S, [codes[v] for v in labels]) == pytest.approx(ref, rel=1e-12)
    assert selectivity_index(S, np.array(labels)) == pytest.approx(ref, rel=1e-12)


def test_selectivity_four_categories() -> None:
    rng = np.random.default_rng(5)
    sizes = (3, 4, 2, 5)
    X = np.repeat(rng.normal(size=(4, 16)), sizes, axis=0) + rng.normal(size=(14, 16))
    S = cosine_matrix(X)
    labels = np.repeat(np.arange(4), sizes)
    assert selectivity_index(S, labels) == pytest.approx(_selectivity_original(S, sizes), rel=1e-12)


@pytest.mark.parametrize(
    ("labels", "match"),
    [(["a"] * 4, "at least 2 categories"), (["a", "a", "a", "b"], "single item"), (["a", "b"], "labels for 4")],
)
def test_selectivity_errors(labels: list[str], match: str) -> None:
    with pytest.raises(UsageError, match=match):
        selectivity_index(np.eye(4), labels)


def test_selectivity_rejects_asymmetric_and_non_square() -> None:
    S = np.eye(4)
    S[0, 1] = 0.5
    with pytest.raises(UsageError, match="symmetric"):
        selectivity_index(S, [0, 0, 1, 1])
    with pytest.raises(UsageError, match="square"):
        selectivity_index(np.ones((4, 3)), [0, 0, 1, 1])


# ------------------------------------------------------------------------------------------------------ RSA


def test_rsa_matches_scipy() -> None:
    X, _ = _words()
    Y = X + np.random.default_rng(9).normal(size=X.shape)
    S1, S2 = cosine_matrix(X), cosine_matrix(Y)
    a, b = S1[np.triu_indices(34, 1)], S2[np.triu_indices(34, 1)]
    assert rsa(S1, S2) == pytest.approx(stats.pearsonr(a, b).statistic, abs=1e-12)
    assert rsa(S1, S2, "spearman") == pytest.approx(stats.spearmanr(a, b).statistic, abs=1e-12)


def test_rsa_edges() -> None:
    S = cosine_matrix(np.random.default_rng(0).normal(size=(5, 3)))
    with pytest.raises(UsageError, match="same items"):
        rsa(S, np.eye(4))
    with pytest.raises(UsageError, match="unknown method"):
        rsa(S, S, method="kendall")  # type: ignore[arg-type]
    assert np.isnan(rsa(S, np.eye(5)))  # constant triangle: r undefined
    T = S.copy()
    T[0, 1] = T[1, 0] = np.nan  # a missing pair is dropped from both triangles
    keep = np.ones(10, dtype=bool)
    keep[0] = False
    upper = S[np.triu_indices(5, 1)]
    expected = stats.pearsonr(upper[keep], upper[keep]).statistic
    assert rsa(S, T) == pytest.approx(expected)


def test_rsa_by_category_matches_scipy_per_block() -> None:
    X, labels = _words(noise=2.0)
    Y = X + np.random.default_rng(2).normal(size=X.shape)
    S1, S2 = cosine_matrix(X), cosine_matrix(Y)
    out = rsa_by_category(S1, S2, labels)
    assert list(out) == ["space", "furniture", "fruit"]
    idx = np.flatnonzero(np.array(labels) == "furniture")
    iu = np.triu_indices(idx.size, 1)
    expected = stats.pearsonr(S1[np.ix_(idx, idx)][iu], S2[np.ix_(idx, idx)][iu]).statistic
    assert out["furniture"] == pytest.approx(expected, abs=1e-12)


def test_rsa_by_category_small_category_is_nan() -> None:
    S = cosine_matrix(np.random.default_rng(0).normal(size=(5, 3)))
    out = rsa_by_category(S, S, ["a", "a", "a", "b", "b"])
    assert out["a"] == pytest.approx(1.0)
    assert np.isnan(out["b"])


# ------------------------------------------------------------------------------------------------- Mantel


def _mantel_loop(S1: np.ndarray, S2: np.ndarray, n_perm: int, seed: int, method: str) -> tuple[float, float]:
    """Oracle: the same permutations (same generator calls), each correlation recomputed from scratch."""
    n = S1.shape[0]
    perms = np.random.default_rng(seed).permuted(np.broadcast_to(np.arange(n), (n_perm, n)), axis=1)
    obs = rsa(S1, S2, method)  # type: ignore[arg-type]
    null = np.array([rsa(S1, S2[np.ix_(p, p)], method) for p in perms])  # type: ignore[arg-type]
    return obs, (1 + np.sum(null >= obs - 1e-12)) / (n_perm + 1)


@pytest.mark.parametrize("method", ["pearson", "spearman"])
def test_mantel_matches_loop_oracle(method: str) -> None:
    rng = np.random.default_rng(4)
    X = rng.normal(size=(9, 4))
    S1 = cosine_matrix(X)
    S2 = cosine_matrix(X + 1.5 * rng.normal(size=X.shape))
    res = mantel_test(S1, S2, n_perm=500, seed=3, method=method)  # type: ignore[arg-type]
    obs, p = _mantel_loop(S1, S2, 500, 3, method)
    assert isinstance(res, PermutationResult)
    assert res.statistic == pytest.approx(obs, abs=1e-12)
    assert res.p_value == pytest.approx(p, abs=1e-12)
    assert res.n_perm == 500


def test_mantel_strong_relation_gets_smallest_p_and_is_deterministic() -> None:
    X, _ = _words()
    S1 = cosine_matrix(X)
    S2 = cosine_matrix(X + 0.3 * np.random.default_rng(1).normal(size=X.shape))
    res = mantel_test(S1, S2, n_perm=999)
    assert res.p_value == pytest.approx(1 / 1000)
    assert mantel_test(S1, S2, n_perm=999) == res


def test_mantel_sidedness() -> None:
    X, _ = _words()
    S1 = cosine_matrix(X)
    S2 = -S1  # perfectly negative: not "greater", but extreme two-sided
    assert mantel_test(S1, S2, n_perm=199).p_value == pytest.approx(1.0)
    assert mantel_test(S1, S2, n_perm=199, alternative="less").p_value == pytest.approx(1 / 200)
    assert mantel_test(S1, S2, n_perm=199, alternative="two-sided").p_value == pytest.approx(1 / 200)


def test_mantel_is_calibrated_under_the_null() -> None:
    rng = np.random.default_rng(11)
    ps = np.array(
        [
            mantel_test(
                cosine_matrix(rng.normal(size=(10, 5))), cosine_matrix(rng.normal(size=(10, 5))), n_perm=199, seed=i
            ).p_value
            for i in range(150)
        ]
    )
    # Uniform p: P(p <= 0.1) = 0.1; 150 draws -> binomial sd 0.024; allow 3 sd.
    assert abs(np.mean(ps <= 0.1) - 0.1) < 0.075
    assert np.all((ps > 0) & (ps <= 1))


def test_mantel_errors() -> None:
    S = cosine_matrix(np.random.default_rng(0).normal(size=(5, 3)))
    A = S.copy()
    A[0, 1] += 0.1
    with pytest.raises(UsageError, match="symmetric"):
        mantel_test(A, S)
    with pytest.raises(UsageError, match="n_perm"):
        mantel_test(S, S, n_perm=0)
    with pytest.raises(UsageError, match="at least 3"):
        mantel_test(np.eye(2), np.eye(2))
    with pytest.raises(UsageError, match="alternative"):
        mantel_test(S, S, n_perm=10, alternative="bigger")  # type: ignore[arg-type]


# ------------------------------------------------------------------------------- selectivity permutation


def test_selectivity_permutation_matches_loop_oracle() -> None:
    X, labels = _words(noise=3.0)
    S = cosine_matrix(X)
    res = selectivity_permutation_test(S, labels, n_perm=300, seed=2)
    perms = np.random.default_rng(2).permuted(np.broadcast_to(np.repeat(np.arange(3), SIZES), (300, 34)), axis=1)
    null = np.array([selectivity_index(S, p) for p in perms])
    obs = selectivity_index(S, labels)
    assert res.statistic == pytest.approx(obs)
    assert res.p_value == pytest.approx((1 + np.sum(null >= obs - 1e-12)) / 301)


def test_selectivity_permutation_structure_vs_none() -> None:
    X, labels = _words(noise=1.0)
    assert selectivity_permutation_test(cosine_matrix(X), labels, n_perm=999).p_value == pytest.approx(1e-3)
    rng = np.random.default_rng(8)
    # positive, unstructured similarities (centred near 1 under the null)
    Z = rng.normal(size=(34, 32)) + 3.0
    res = selectivity_permutation_test(cosine_matrix(Z), labels, n_perm=999)
    assert res.statistic == pytest.approx(1.0, abs=0.05)
    assert res.p_value > 0.01


def test_mantel_null_compiled_equals_the_permuted_matrices_summed() -> None:
    """The compiled Mantel null is sum_ij A[i, j] B[p_i, p_j], checked against B[p][:, p] built per permutation.
    Measured worst absolute difference 4e-16 on 5 random cases of 5-120 items; 1e-12 leaves room for other BLAS."""
    from layerclaims.metrics._pairwise_kernel import permuted_products

    rng = np.random.default_rng(3)
    for n in (3, 17, 60):
        A = rng.normal(size=(n, n))
        B = rng.normal(size=(n, n))
        P = rng.permuted(np.broadcast_to(np.arange(n), (40, n)), axis=1)
        expected = np.array([(A * B[np.ix_(p, p)]).sum() for p in P])
        np.testing.assert_allclose(permuted_products(A, B, P), expected, rtol=0, atol=1e-12 * np.abs(expected).max())
