"""Order statistics equal numpy's bit for bit: ``percentiles``, ``quantiles`` and ``median`` of
:mod:`layerclaims.metrics.order` against ``np.percentile``, ``np.quantile`` and ``np.median`` along the last axis;
``average_ranks`` against ``scipy.stats.rankdata`` (NaN included), ``spearman_rho`` against
``scipy.stats.spearmanr``.

Data are generated: 1-D and 2-D, any length from 1 (1-D up to 900, both sides of the length from which several
ranks are partitioned rather than sorted), values from a few distinct levels (ties, so that the two
neighbouring order statistics are often equal) to wide floats over 20 orders of magnitude, percentiles anywhere
in [0, 100] and the quartiles study A asks for.
"""

from __future__ import annotations

import warnings

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from layerclaims.metrics.order import average_ranks, median, percentiles, quantiles, spearman_rho

_values = st.one_of(
    st.sampled_from([-2.5, -1.0, 0.0, 0.1, 3.0]),
    st.floats(min_value=-1e10, max_value=1e10, allow_nan=False, allow_infinity=False, allow_subnormal=False),
)
_shapes = st.one_of(
    st.tuples(st.integers(1, 60)),
    st.tuples(st.integers(1, 5), st.integers(1, 60)),
)
# Long 1-D samples (where several ranks are partitioned at once rather than sorted): drawn from a seed, as
# hypothesis fills most of a long array with one value; rounded to `digits` decimals, so ties come at every level.
_long = st.builds(
    lambda n, seed, digits: np.round(np.random.default_rng(seed).standard_normal(n) * 10, digits),
    st.integers(300, 900),
    st.integers(0, 2**32 - 1),
    st.integers(0, 3),
)
_samples = st.one_of(_shapes.flatmap(lambda s: arrays(np.float64, s, elements=_values)), _long)
_percents = st.one_of(
    st.just([25.0, 50.0, 75.0]),
    st.lists(st.floats(min_value=0.0, max_value=100.0, allow_nan=False), min_size=1, max_size=4),
)


@given(a=_samples, p=_percents)
def test_percentiles_and_quantiles_equal_numpy_bit_for_bit(a: np.ndarray, p: list[float]) -> None:
    want = np.percentile(a, p, axis=-1)
    got = percentiles(a, p)
    assert got.shape == want.shape
    assert np.array_equal(got, want)
    q = np.asarray(p) / 100
    assert np.array_equal(quantiles(a, q), np.quantile(a, q, axis=-1))
    assert np.array_equal(quantiles(a, q[0]), np.quantile(a, q[0], axis=-1))


@given(a=_samples)
def test_median_equals_numpy_bit_for_bit(a: np.ndarray) -> None:
    got, want = median(a), np.median(a, axis=-1)
    assert got.shape == np.shape(want)
    assert np.array_equal(got, want)


def test_an_empty_axis_is_refused() -> None:
    for f in (lambda a: percentiles(a, [50.0]), lambda a: quantiles(a, 0.5), median):
        try:
            f(np.zeros((3, 0)))
        except ValueError as err:
            assert "empty axis" in str(err)
        else:
            raise AssertionError("an empty axis gave a value")


def _with_a_nan_sometimes(a: np.ndarray, where: int | None) -> np.ndarray:
    """``a`` with one entry (flat index ``where`` modulo its size) set to NaN, or as it is when ``where`` is None."""
    if where is not None and a.size:
        a = a.copy()
        a.flat[where % a.size] = np.nan
    return a


_nan_at = st.one_of(st.none(), st.integers(0, 10**6))


@given(a=_shapes.flatmap(lambda s: arrays(np.float64, s, elements=_values)), where=_nan_at)
def test_average_ranks_equal_scipys_rankdata_bit_for_bit(a: np.ndarray, where: int | None) -> None:
    from scipy.stats import rankdata

    a = _with_a_nan_sometimes(a, where)
    got, want = average_ranks(a), rankdata(a, axis=-1)
    assert got.shape == want.shape
    assert np.array_equal(got, want, equal_nan=True)


@given(
    xy=st.integers(2, 40).flatmap(
        lambda n: st.tuples(arrays(np.float64, n, elements=_values), arrays(np.float64, n, elements=_values))
    ),
    where=_nan_at,
)
def test_spearman_rho_equals_scipys_spearmanr_bit_for_bit(xy: tuple[np.ndarray, np.ndarray], where: int | None) -> None:
    from scipy.stats import spearmanr

    x, y = xy[0], _with_a_nan_sometimes(xy[1], where)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns on constant input; both give NaN there
        want = float(spearmanr(x, y).statistic)
    assert np.array_equal(spearman_rho(x, y), want, equal_nan=True)
