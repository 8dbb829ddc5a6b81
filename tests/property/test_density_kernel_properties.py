"""The compiled grid steps of the density count (:mod:`layerclaims.metrics._density_kernel`, through
:func:`layerclaims.metrics.clusters._basins` and ``_saddles``) equal their numpy form (``tests/oracles/density.py``)
on generated grids: 1-D and 2-D, smooth densities and rough ones, with empty (zero) cells and tied values."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from layerclaims.metrics.clusters import _basins, _saddles
from tests.oracles import density


@st.composite
def grids(draw: st.DrawFn) -> tuple[np.ndarray, tuple[int, ...]]:
    shape = draw(st.sampled_from([(1,), (2,), (57,), (300,), (1, 1), (1, 9), (9, 1), (13, 17), (40, 40)]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    kind = draw(st.sampled_from(["smooth", "rough", "levels"]))
    if kind == "smooth":  # a few bumps, as a smoothed histogram
        axes = np.meshgrid(*(np.linspace(-3, 3, s) for s in shape), indexing="ij")
        f = np.zeros(shape)
        for _ in range(int(rng.integers(1, 5))):
            c = rng.uniform(-3, 3, len(shape))
            f += rng.uniform(0.5, 2) * np.exp(
                -sum((a - m) ** 2 for a, m in zip(axes, c, strict=True)) / rng.uniform(0.1, 2)
            )
    elif kind == "rough":
        f = rng.random(shape)
    else:  # few distinct values: many ties between neighbours
        f = rng.integers(0, 4, shape).astype(np.float64)
    f = f.ravel()
    f[rng.random(f.size) < draw(st.sampled_from([0.0, 0.1, 0.5]))] = 0.0  # empty cells (background)
    return f, shape


@given(grids())
def test_basins_and_passes_equal_their_numpy_form(grid: tuple[np.ndarray, tuple[int, ...]]) -> None:
    f, shape = grid
    basin = _basins(f, shape)
    np.testing.assert_array_equal(basin, density.basins(f, shape))
    summits = np.flatnonzero(basin == np.arange(basin.size))
    lut = np.full(basin.size, -1, dtype=np.int64)
    lut[summits] = np.arange(summits.size)
    bid = np.where(basin >= 0, lut[np.maximum(basin, 0)], -1)
    for got, want in zip(_saddles(f, bid, shape), density.saddles(f, bid, shape), strict=True):
        np.testing.assert_array_equal(got, want)
