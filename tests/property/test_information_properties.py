"""Hypothesis properties of the pairwise MI / covariance estimator (layerclaims.metrics.information).

Examples stay small (N ≤ 8 vectors, D ≤ 64 dims) so the suite stays fast. Two kinds of data:
``raw_matrices`` draws the floats themselves (hypothesis shrinks them; ties and repeated values are likely),
``seeded_matrices`` draws a seed and a recipe (Gaussian, Student t, integer-valued, a constant row, outliers) and
lets numpy make realistic data.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from layerclaims.metrics.information import pairwise_mi_cov
from tests.oracles.information import mi_cov_pair

TOL = 1e-9  # fast vs naive, and invariances that hold exactly in real arithmetic (see tests/unit)

finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False, allow_subnormal=False)


@st.composite
def raw_matrices(draw: st.DrawFn) -> np.ndarray:
    n = draw(st.integers(1, 8))
    d = draw(st.integers(2, 64))
    pool = draw(st.lists(finite, min_size=1, max_size=12))  # a small pool of values: ties
    elements = st.one_of(finite, st.sampled_from(pool))
    return draw(arrays(np.float64, (n, d), elements=elements))


@st.composite
def seeded_matrices(draw: st.DrawFn, max_n: int = 8) -> np.ndarray:
    seed = draw(st.integers(0, 2**32 - 1))
    n = draw(st.integers(2, max_n))
    d = draw(st.integers(2, 64))
    kind = draw(st.sampled_from(["normal", "t", "integer", "outliers"]))
    rng = np.random.default_rng(seed)
    if kind == "normal":
        X = rng.standard_normal((n, d)) * rng.uniform(0.1, 10) + rng.uniform(-5, 5)
    elif kind == "t":
        X = rng.standard_t(2, (n, d))
    elif kind == "integer":
        X = np.round(rng.standard_normal((n, d)) * 3)
    else:
        X = rng.standard_normal((n, d))
        X[:, : max(1, d // 16)] *= 50
        X[rng.integers(n), rng.integers(d)] = 1e4
    if draw(st.booleans()):
        X[rng.integers(n)] = rng.standard_normal()  # a constant row
    return X


def _naive(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The per-pair loop over the reference (itself tested against np.histogram2d in tests/unit)."""
    n = len(X)
    mi, cov = np.empty((n, n)), np.empty((n, n))
    for i in range(n):
        for j in range(n):
            mi[i, j], cov[i, j] = mi_cov_pair(X[i], X[j])
    return mi, cov


def _cov_tol(cov: np.ndarray) -> float:
    finite_vals = np.abs(cov[np.isfinite(cov)])
    return TOL * max(1.0, float(finite_vals.max()) if finite_vals.size else 1.0)


@pytest.mark.parametrize("device", [None, "cpu"])
@given(st.one_of(raw_matrices(), seeded_matrices()))
def test_fast_equals_naive(device: str | None, X: np.ndarray) -> None:
    mi, cov = pairwise_mi_cov(X, device=device)
    ref_mi, ref_cov = _naive(X)
    np.testing.assert_array_equal(np.isnan(mi), np.isnan(ref_mi))
    np.testing.assert_allclose(mi, ref_mi, rtol=0, atol=TOL, equal_nan=True)
    np.testing.assert_allclose(cov, ref_cov, rtol=0, atol=_cov_tol(ref_cov), equal_nan=True)


@given(st.one_of(raw_matrices(), seeded_matrices()))
def test_matrices_symmetric_and_mi_non_negative(X: np.ndarray) -> None:
    mi, cov = pairwise_mi_cov(X)
    np.testing.assert_array_equal(mi, mi.T)
    np.testing.assert_array_equal(cov, cov.T)
    ok = ~np.isnan(mi)
    assert np.all(mi[ok] >= -TOL)
    # variance on the diagonal is non-negative too
    d = np.diag(cov)
    assert np.all(d[~np.isnan(d)] >= 0)


@given(seeded_matrices(max_n=2))
def test_pair_mi_and_cov_symmetric_in_x_and_y(X: np.ndarray) -> None:
    mi_xy, cov_xy = mi_cov_pair(X[0], X[1])
    mi_yx, cov_yx = mi_cov_pair(X[1], X[0])
    assert math.isclose(mi_xy, mi_yx, abs_tol=TOL)
    assert math.isclose(cov_xy, cov_yx, rel_tol=1e-12, abs_tol=1e-300)


@given(seeded_matrices(), st.integers(0, 2**32 - 1))
def test_invariant_to_permuting_dims_of_all_vectors_together(X: np.ndarray, seed: int) -> None:
    perm = np.random.default_rng(seed).permutation(X.shape[1])
    mi, cov = pairwise_mi_cov(X)
    mi_p, cov_p = pairwise_mi_cov(X[:, perm])
    np.testing.assert_allclose(mi_p, mi, rtol=0, atol=TOL, equal_nan=True)
    np.testing.assert_allclose(cov_p, cov, rtol=0, atol=_cov_tol(cov), equal_nan=True)


@given(seeded_matrices(), st.sampled_from([0.125, 0.5, 2.0, 8.0]))
def test_cov_scales_and_mi_is_unchanged_when_one_vector_is_scaled(X: np.ndarray, a: float) -> None:
    # Powers of two scale exactly in floating point, so trimming and binning are exactly unchanged.
    Y = X.copy()
    Y[0] *= a
    mi, cov = pairwise_mi_cov(X)
    mi_s, cov_s = pairwise_mi_cov(Y)
    np.testing.assert_allclose(mi_s, mi, rtol=0, atol=TOL, equal_nan=True)
    np.testing.assert_allclose(cov_s[0, 1:], a * cov[0, 1:], rtol=1e-12, atol=1e-300, equal_nan=True)
    np.testing.assert_allclose(cov_s[0, 0], a * a * cov[0, 0], rtol=1e-12, equal_nan=True)


@given(
    st.integers(0, 2**32 - 1),
    st.integers(8, 64),
    st.floats(0.01, 100.0),
    st.floats(-100.0, 100.0),
)
def test_mi_invariant_to_positive_affine_map_of_one_vector(seed: int, d: int, a: float, b: float) -> None:
    # Trimming (z-scores) and equal-width binning over the own range are invariant to x -> a x + b, a > 0, in
    # real arithmetic; with continuous data no value sits within rounding of a bin edge, so MI is unchanged.
    rng = np.random.default_rng(seed)
    x, y = rng.standard_t(3, (2, d))
    y = y + 0.7 * x
    mi, _ = mi_cov_pair(x, y)
    mi_affine, _ = mi_cov_pair(a * x + b, y)
    assert math.isclose(mi_affine, mi, abs_tol=TOL)


# Coefficients of 0 or magnitude ≥ 1e-3: much smaller ones make a vector whose variance underflows to 0, and
# then every dim off its mean has z = ±inf and is trimmed (as in the original; see the module docstring).
coef = st.one_of(st.just(0.0), st.floats(1e-3, 10.0), st.floats(-10.0, -1e-3))


@given(st.integers(0, 2**32 - 1), st.integers(2, 64), coef, coef)
def test_covariance_bilinear_without_trimming(seed: int, d: int, a: float, b: float) -> None:
    # With trimming off (huge threshold) every pair keeps all dims and cov is exactly bilinear in real
    # arithmetic: cov(a x1 + b x2, y) = a cov(x1, y) + b cov(x2, y).
    rng = np.random.default_rng(seed)
    x1, x2, y = rng.standard_normal((3, d))
    X = np.stack([x1, x2, y, a * x1 + b * x2])
    _, cov = pairwise_mi_cov(X, z_threshold=1e12)
    scale = abs(a) * abs(cov[0, 2]) + abs(b) * abs(cov[1, 2]) + 1.0
    assert math.isclose(cov[3, 2], a * cov[0, 2] + b * cov[1, 2], abs_tol=1e-12 * scale)
