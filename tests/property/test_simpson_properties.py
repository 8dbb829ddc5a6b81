"""Hypothesis properties of the Simpson's-paradox measurement."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

from layerclaims.metrics.simpson import simpson

seeds = st.integers(0, 2**32 - 1)


@st.composite
def clustered(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """2-4 clusters with random centres, sizes and within slopes: paradox present in some draws, absent in others."""
    k = draw(st.integers(2, 4))
    rng = np.random.default_rng(draw(seeds))
    sizes = rng.integers(3, 20, size=k)
    trend = draw(st.floats(-3, 3))
    xs, ys, ls = [], [], []
    for c in range(k):
        cx = 4.0 * c
        slope = draw(st.floats(-2, 2))
        x = cx + rng.normal(size=sizes[c])
        xs.append(x)
        ys.append(trend * cx + slope * (x - cx) + 0.5 * rng.normal(size=sizes[c]))
        ls.append(np.full(sizes[c], c))
    return np.concatenate(xs), np.concatenate(ys), np.concatenate(ls)


@given(clustered(), st.floats(0.01, 100), st.floats(-1e3, 1e3), st.floats(0.01, 100), st.floats(-1e3, 1e3))
def test_flags_invariant_to_positive_affine_maps(case: tuple, ax: float, bx: float, ay: float, by: float) -> None:
    x, y, labels = case
    a = simpson(x, y, labels, n_boot=0)
    b = simpson(ax * x + bx, ay * y + by, labels, n_boot=0)
    assert a.paradox == b.paradox
    assert a.paradox_weighted == b.paradox_weighted
    assert np.sign(a.pooled_slope) == np.sign(b.pooled_slope)
    np.testing.assert_allclose(b.pooled_r, a.pooled_r, atol=1e-9)


@given(clustered())
def test_pooled_fit_matches_scipy_and_is_bounded(case: tuple) -> None:
    x, y, labels = case
    res = simpson(x, y, labels, n_boot=20)
    lr = stats.linregress(x, y)
    assert -1.0 <= res.pooled_r <= 1.0
    np.testing.assert_allclose([res.pooled_r, res.pooled_slope], [lr.rvalue, lr.slope], atol=1e-9)
    assert 0.0 <= res.paradox_support <= 1.0
    assert res.paradox_weighted or not res.paradox  # "every" implies the weighted version
