"""The grouping fit reads the rows of one mark's copies once (:func:`layerclaims.metrics.mark_clusters._robust_z`
and ``_row_summaries`` with the rows' marks): on generated bootstrap resamples of pair matrices, with one to three
groups of members, the results equal the plain row-by-row form (``tests/oracles/mark_rows.py``) bit for bit, and
so do the pair values handed to the pair-type table."""

from __future__ import annotations

import numpy as np
from hypothesis import assume, given
from hypothesis import strategies as st

from layerclaims.metrics.bootstrap import block_counts
from layerclaims.metrics.mark_clusters import _mark_key, _robust_z, _row_summaries, upper_pairs
from tests.oracles import mark_rows


@given(
    n=st.integers(4, 60),
    block=st.integers(1, 5),
    n_groups=st.integers(1, 3),
    ties=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_rows_of_copies_read_once_equal_every_row_read(
    n: int, block: int, n_groups: int, ties: bool, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 12))
    m = np.round(x @ x.T) if ties else x @ x.T  # rounded: many equal pair values
    idx = np.repeat(np.arange(n), block_counts(np.arange(n) // block, 1, seed=seed)[0])
    assume(np.unique(idx).size >= 4)  # the fit's own condition: fewer distinct marks are one cluster, not refit
    sub = m[np.ix_(idx, idx)]
    copies = idx[:, None] == idx[None, :]
    np.fill_diagonal(copies, False)
    z, med, sc, pairs = _robust_z(sub, copies, _mark_key(copies))
    want_z, want_med, want_sc = mark_rows.robust_z(sub, copies)
    np.testing.assert_array_equal(z, want_z)
    assert (med, sc) == (want_med, want_sc)
    i, j = upper_pairs(idx.size)
    np.testing.assert_array_equal(pairs, z[i, j][~copies[i, j]])
    groups = rng.integers(0, n_groups, size=n)[idx]  # the copies of a mark in one group, as the fit groups them
    for h in range(n_groups):
        members = np.flatnonzero(groups == h)
        if members.size:
            cols = z[:, members]
            got = _row_summaries(cols, members, _mark_key(copies))
            for g, w in zip(got, mark_rows.row_summaries(cols, members), strict=True):
                np.testing.assert_array_equal(g, w)
