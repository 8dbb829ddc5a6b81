"""Hypothesis properties of the similarity metrics: symmetry, bounds, invariances (repsim-style helpers)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from hypothesis import assume, given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from layerclaims.metrics.similarity import (
    cosine_matrix,
    mantel_test,
    rsa,
    selectivity_index,
    selectivity_permutation_test,
)

finite = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False)
seeds = st.integers(0, 2**32 - 1)


@st.composite
def item_vectors(draw: st.DrawFn, min_items: int = 2, max_items: int = 8) -> np.ndarray:
    n = draw(st.integers(min_items, max_items))
    d = draw(st.integers(1, 5))
    X = draw(arrays(np.float64, (n, d), elements=finite))
    assume(np.all(np.linalg.norm(X, axis=1) > 1e-6))
    return X


def _pair(seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Two related cosine matrices of the same n items (continuous values: no ties)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 6))
    return cosine_matrix(X), cosine_matrix(X + rng.normal(size=X.shape))


def _assert_invariant(f: Callable[..., float], args: tuple, transformed: tuple, tol: float = 1e-9) -> None:
    a, b = f(*args), f(*transformed)
    assert (np.isnan(a) and np.isnan(b)) or abs(a - b) <= tol * max(1.0, abs(a)), (a, b)


@given(item_vectors())
def test_cosine_symmetric_bounded_unit_diagonal(X: np.ndarray) -> None:
    S = cosine_matrix(X)
    assert np.array_equal(S, S.T)
    assert np.all((S >= -1) & (S <= 1))
    assert np.all(np.diag(S) == 1.0)


@given(item_vectors(), st.data())
def test_cosine_invariant_to_positive_row_scaling(X: np.ndarray, data: st.DataObject) -> None:
    scale = data.draw(arrays(np.float64, X.shape[0], elements=st.floats(1e-2, 1e2)))
    np.testing.assert_allclose(cosine_matrix(X * scale[:, None]), cosine_matrix(X), atol=1e-9)


@given(seeds, st.integers(4, 12), st.sampled_from(["pearson", "spearman"]))
def test_rsa_invariant_to_the_same_item_permutation(seed: int, n: int, method: str) -> None:
    S1, S2 = _pair(seed, n)
    p = np.random.default_rng(seed + 1).permutation(n)
    _assert_invariant(rsa, (S1, S2, method), (S1[np.ix_(p, p)], S2[np.ix_(p, p)], method))
    _assert_invariant(rsa, (S1, S2, method), (S2, S1, method))  # symmetric in its arguments
    r = rsa(S1, S2, method)  # type: ignore[arg-type]
    assert -1.0 <= r <= 1.0


@given(seeds, st.integers(4, 12), st.sampled_from([np.exp, np.arctan, lambda s: s**3, lambda s: 5 * s - 2]))
def test_spearman_rsa_invariant_to_monotone_transforms(seed: int, n: int, g: Callable) -> None:
    S1, S2 = _pair(seed, n)
    _assert_invariant(rsa, (S1, S2, "spearman"), (S1, g(S2), "spearman"))


@st.composite
def labelled(draw: st.DrawFn) -> tuple[np.ndarray, list[int]]:
    k = draw(st.integers(2, 4))
    sizes = draw(st.lists(st.integers(2, 4), min_size=k, max_size=k))
    rng = np.random.default_rng(draw(seeds))
    X = np.repeat(rng.normal(size=(k, 5)) + 2.0, sizes, axis=0) + rng.normal(size=(sum(sizes), 5))
    labels = [c for c, s in enumerate(sizes) for _ in range(s)]
    return cosine_matrix(X), labels


@given(labelled(), seeds, st.sampled_from(["str", "perm-int", "neg"]))
def test_selectivity_unchanged_by_relabelling_and_reordering(case: tuple, seed: int, kind: str) -> None:
    S, labels = case
    rng = np.random.default_rng(seed)
    cats = sorted(set(labels))
    new_names = {
        "str": [f"cat{c}" for c in cats],
        "perm-int": list(rng.permutation(cats)),
        "neg": [-10 * c - 1 for c in cats],
    }[kind]
    rename = dict(zip(cats, new_names, strict=True))
    p = rng.permutation(len(labels))
    renamed = [rename[labels[i]] for i in p]
    _assert_invariant(selectivity_index, (S, labels), (S[np.ix_(p, p)], renamed))


@given(seeds, st.integers(3, 9), st.integers(1, 60), st.sampled_from(["greater", "less", "two-sided"]))
def test_mantel_p_in_unit_interval_and_deterministic(seed: int, n: int, n_perm: int, alt: str) -> None:
    S1, S2 = _pair(seed, n)
    res = mantel_test(S1, S2, n_perm=n_perm, seed=seed, alternative=alt)  # type: ignore[arg-type]
    assert 0.0 < res.p_value <= 1.0
    assert res.p_value >= 1.0 / (n_perm + 1)
    assert res == mantel_test(S1, S2, n_perm=n_perm, seed=seed, alternative=alt)  # type: ignore[arg-type]


@given(labelled(), st.integers(1, 60), seeds)
def test_selectivity_permutation_p_in_unit_interval_and_deterministic(case: tuple, n_perm: int, seed: int) -> None:
    S, labels = case
    res = selectivity_permutation_test(S, labels, n_perm=n_perm, seed=seed)
    assert 0.0 < res.p_value <= 1.0
    assert res == selectivity_permutation_test(S, labels, n_perm=n_perm, seed=seed)
