"""Properties of the massive-activation, anisotropy and sink statistics on generated arrays."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from layerclaims.metrics.massive_activations import massive_mask, top_ratio
from layerclaims.metrics.sink import sink_share
from layerclaims.studies.anisotropy.analysis import mean_cross_window_cosine, window_sums

finite = st.floats(min_value=-1e4, max_value=1e4, allow_nan=False, width=64)
# a hidden state's entries: 0 or of a size a float64 norm keeps exact enough (no subnormal squares)
representation = st.one_of(st.just(0.0), st.floats(1e-3, 1e4), st.floats(-1e4, -1e-3))


@st.composite
def states(draw: st.DrawFn) -> np.ndarray:
    shape = (draw(st.integers(1, 6)), draw(st.integers(1, 8)))
    h = draw(arrays(np.float64, shape, elements=st.floats(-1, 1, allow_nan=False, width=64)))
    n_big = draw(st.integers(0, 3))
    for _ in range(n_big):  # plant some large entries
        i, j = draw(st.integers(0, shape[0] - 1)), draw(st.integers(0, shape[1] - 1))
        h[i, j] = draw(st.floats(50, 1e5))
    return h


@given(states(), st.floats(0.01, 100.0))
@settings(max_examples=80, deadline=None)
def test_massive_mask_sign_and_scale(h: np.ndarray, scale: float) -> None:
    mask = massive_mask(h)
    np.testing.assert_array_equal(massive_mask(-h), mask)
    # the ratio rule is scale-free; the absolute floor scales with the data
    np.testing.assert_array_equal(massive_mask(h * scale, abs_threshold=100 * scale), mask)
    assert (top_ratio(h) >= 1.0) or np.isinf(top_ratio(h))


@given(states())
@settings(max_examples=60, deadline=None)
def test_massive_mask_is_permutation_equivariant(h: np.ndarray) -> None:
    rng = np.random.default_rng(0)
    rows, cols = rng.permutation(h.shape[0]), rng.permutation(h.shape[1])
    np.testing.assert_array_equal(massive_mask(h[rows][:, cols]), massive_mask(h)[rows][:, cols])


@given(
    arrays(
        np.float64,
        st.tuples(st.integers(1, 2), st.integers(2, 6), st.integers(1, 3), st.integers(2, 5)),
        elements=representation,
    ),
    st.integers(0, 2**31 - 1),
)
@settings(max_examples=80, deadline=None)
def test_cross_window_cosine_bounds_and_row_scaling(x: np.ndarray, seed: int) -> None:
    """The anisotropy study's mean cosine between windows: within [-1, 1], unchanged when any representation is
    rescaled, and the mean over every resample equal to the all-windows value when each window is drawn once."""
    x = x + np.where(np.linalg.norm(x, axis=-1, keepdims=True) == 0, 1.0, 0.0)  # no zero rows
    n, k = x.shape[1], x.shape[2]
    counts = np.random.default_rng(seed).integers(0, 3, size=(4, n)).astype(np.float64)
    counts[0] = 1.0
    value = mean_cross_window_cosine(window_sums(x), k, counts)
    finite = value[np.isfinite(value)]
    assert finite.size and (np.abs(finite) <= 1 + 1e-9).all()
    scales = np.random.default_rng(seed).uniform(0.1, 10, size=(*x.shape[:-1], 1))
    scaled = mean_cross_window_cosine(window_sums(x * scales), k, counts)
    np.testing.assert_allclose(scaled, value, atol=1e-9, equal_nan=True)


@given(
    arrays(np.float64, st.tuples(st.integers(1, 4), st.integers(1, 4), st.integers(1, 4)), elements=st.floats(0, 1)),
    st.floats(0, 0.99),
    st.floats(0, 0.99),
)
@settings(max_examples=80, deadline=None)
def test_sink_share_is_monotone_in_epsilon(alpha: np.ndarray, e1: float, e2: float) -> None:
    lo, hi = min(e1, e2), max(e1, e2)
    assert 0 <= sink_share(alpha, hi) <= sink_share(alpha, lo) <= 1
