"""Unit tests of layerclaims.metrics.bootstrap (index draws, NaN policy, the fast pair path) and of its oracle."""

from __future__ import annotations

import numpy as np
import pytest

from layerclaims.errors import UsageError
from layerclaims.metrics.bootstrap import bootstrap_indices, item_counts, pair_moments, percentile_interval
from layerclaims.metrics.similarity import cosine_matrix, mean_offdiagonal, rsa, selectivity_index
from tests.oracles.bootstrap import BootstrapCI, bootstrap_similarity, resample_matrix


def test_indices_shape_range_and_determinism() -> None:
    idx = bootstrap_indices(7, 50, seed=3)
    assert idx.shape == (50, 7)
    assert idx.min() >= 0 and idx.max() < 7
    np.testing.assert_array_equal(idx, bootstrap_indices(7, 50, seed=3))
    assert not np.array_equal(idx, bootstrap_indices(7, 50, seed=4))


def test_stratified_indices_keep_every_position_in_its_stratum() -> None:
    labels = np.array(["a", "b", "a", "c", "b", "a", "c"])
    idx = bootstrap_indices(7, 200, seed=0, strata=labels, min_distinct=2)
    assert np.all(labels[idx] == labels)
    for lab in "abc":
        cols = idx[:, labels == lab]
        assert np.all([np.unique(row).size >= 2 for row in cols])  # 2-item strata: both items, every time


def test_stratum_smaller_than_min_distinct_is_an_error() -> None:
    with pytest.raises(UsageError, match="min_distinct"):
        bootstrap_indices(3, 10, strata=["a", "a", "b"], min_distinct=2)


def test_item_counts() -> None:
    idx = np.array([[0, 0, 2], [1, 2, 2]])
    np.testing.assert_array_equal(item_counts(idx, 4), [[2, 0, 1, 0], [0, 1, 2, 0]])


def test_nan_replicates_dropped_or_interval_undefined() -> None:
    reps = np.arange(100.0)
    reps[:5] = np.nan
    assert percentile_interval(reps, 0.9) == pytest.approx(tuple(np.quantile(np.arange(5.0, 100), [0.05, 0.95])))
    reps[:50] = np.nan
    assert all(np.isnan(percentile_interval(reps, 0.9)))
    assert percentile_interval(reps, 0.9, max_nan_fraction=0.6)[0] == pytest.approx(np.quantile(reps[50:], 0.05))


def test_bad_level_or_counts() -> None:
    with pytest.raises(UsageError, match="level"):
        percentile_interval(np.arange(5.0), level=95)
    with pytest.raises(UsageError, match="n_boot"):
        bootstrap_indices(5, 0)


def test_resample_matrix_marks_copy_pairs_missing() -> None:
    S = np.arange(16.0).reshape(4, 4)
    sub = resample_matrix(S, [3, 1, 3])
    assert sub[0, 0] == S[3, 3] and sub[2, 2] == S[3, 3]  # diagonal kept
    assert np.isnan(sub[0, 2]) and np.isnan(sub[2, 0])  # two copies of item 3: not a pair
    assert sub[0, 1] == S[3, 1] and sub[1, 2] == S[1, 3]


def test_copy_pairs_do_not_inflate_similarity() -> None:
    # Every between-item similarity is 0.3; a copy pair kept as similarity 1 would push replicates above 0.3.
    S = np.full((12, 12), 0.3)
    np.fill_diagonal(S, 1.0)
    res = bootstrap_similarity(mean_offdiagonal, [S], n_boot=200)
    assert isinstance(res, BootstrapCI)
    np.testing.assert_allclose(res.replicates, 0.3)
    assert res.ci == pytest.approx((0.3, 0.3))


def test_bootstrap_similarity_qk_statistics() -> None:
    rng = np.random.default_rng(0)
    sizes = (10, 13, 11)
    labels = np.repeat(["space", "furniture", "fruit"], sizes)
    X = np.repeat(rng.normal(size=(3, 32)) + 1.5, sizes, axis=0) + rng.normal(size=(34, 32))
    Sq = cosine_matrix(X + 0.5 * rng.normal(size=X.shape))
    Sk = cosine_matrix(X + 0.5 * rng.normal(size=X.shape) + 1.0)

    diff = bootstrap_similarity(lambda q, k: mean_offdiagonal(k) - mean_offdiagonal(q), [Sq, Sk], n_boot=300)
    assert diff.estimate == pytest.approx(mean_offdiagonal(Sk) - mean_offdiagonal(Sq))
    assert diff.low <= diff.estimate <= diff.high and diff.low > 0

    def min_sel(q: np.ndarray, k: np.ndarray, labels: list[str]) -> float:
        return min(selectivity_index(q, labels), selectivity_index(k, labels))

    sel = bootstrap_similarity(min_sel, [Sq, Sk], labels=labels, stratify=True, n_boot=300, seed=5)
    assert sel.estimate == pytest.approx(min_sel(Sq, Sk, list(labels)))
    assert sel.n_valid == sel.n_boot  # stratified, >= 2 distinct per category: never undefined
    assert sel.low <= sel.estimate <= sel.high
    again = bootstrap_similarity(min_sel, [Sq, Sk], labels=labels, stratify=True, n_boot=300, seed=5)
    np.testing.assert_array_equal(again.replicates, sel.replicates)


def test_unstratified_labels_follow_the_items() -> None:
    seen: list[list[str]] = []
    S = np.eye(4)

    def stat(s: np.ndarray, labels: list[str]) -> float:
        seen.append(labels)
        return 0.0

    bootstrap_similarity(stat, [S], labels=["a", "b", "c", "d"], n_boot=5, seed=1)
    idx = bootstrap_indices(4, 5, seed=1)
    assert seen[0] == ["a", "b", "c", "d"]  # the estimate, on all items
    assert seen[1:] == [[["a", "b", "c", "d"][i] for i in row] for row in idx]


def test_bootstrap_similarity_errors() -> None:
    with pytest.raises(UsageError, match="same items"):
        bootstrap_similarity(rsa, [np.eye(3), np.eye(4)])
    with pytest.raises(UsageError, match="labels"):
        bootstrap_similarity(rsa, [np.eye(3)], stratify=True)


@pytest.mark.parametrize("strata", [None, np.repeat([0, 1], [9, 11])])
def test_pair_correlation_fast_path_equals_general_path(strata: np.ndarray | None) -> None:
    rng = np.random.default_rng(2)
    V = rng.normal(size=(20, 50))
    A = np.cov(V) + 100.0  # large offset: checks the centring of the one-pass moments
    B = np.abs(A - 100.0) + 0.05 * rng.normal(size=A.shape)
    B = (B + B.T) / 2
    idx = bootstrap_indices(20, 150, seed=7, strata=strata)
    fast = pair_moments(item_counts(idx, 20), A, B).r
    if strata is None:
        slow = bootstrap_similarity(rsa, [A, B], n_boot=150, seed=7)
        np.testing.assert_allclose(fast, slow.replicates, atol=1e-10)
        assert percentile_interval(fast) == pytest.approx(slow.ci, abs=1e-10)
    else:
        slow_reps = [rsa(resample_matrix(A, i), resample_matrix(B, i)) for i in idx]
        np.testing.assert_allclose(fast, slow_reps, atol=1e-10)
    assert pair_moments(np.ones(20), A, B).r[0] == pytest.approx(rsa(A, B))


def test_unstratified_selectivity_replicates_may_be_undefined_but_never_crash() -> None:
    rng = np.random.default_rng(1)
    labels = ["a", "a", "b", "b", "b", "c", "c"]
    S = cosine_matrix(rng.normal(size=(7, 4)) + 2.0)
    res = bootstrap_similarity(selectivity_index, [S], labels=labels, n_boot=200)
    assert 0 < res.n_valid < 200  # some resamples leave a category with < 2 items
    assert all(np.isnan(res.ci))  # too many undefined replicates: the interval says so
    strat = bootstrap_similarity(selectivity_index, [S], labels=labels, stratify=True, n_boot=200)
    assert strat.n_valid == 200 and np.all(np.isfinite(strat.ci))


def test_percentile_interval_of_counts_has_count_ends() -> None:
    from layerclaims.metrics.bootstrap import percentile_interval

    counts = np.array([1] * 3 + [3] * 94 + [5] * 3, dtype=float)
    lo, hi = percentile_interval(counts)  # linear interpolation: 1.95 and 4.05, between two counts
    assert (round(lo, 6), round(hi, 6)) == (1.95, 4.05)
    assert percentile_interval(counts, discrete=True) == (1.0, 5.0)
    assert percentile_interval(np.full(50, 3.0), discrete=True) == (3.0, 3.0)


def test_pair_moments_match_explicit_resampling() -> None:
    """The one pair-weighted primitive equals the statistics of the explicitly resampled pair values (copy pairs
    excluded), with and without a mask, for values with a large offset (centred first)."""
    from layerclaims.metrics.bootstrap import item_counts, pair_moments

    rng = np.random.default_rng(1)
    n = 12
    A = rng.normal(size=(n, n)) * 1e4 + 3e5
    B = rng.normal(size=(n, n)) + 0.3 * A / 1e4
    A, B = (A + A.T) / 2, (B + B.T) / 2
    mask = rng.random((n, n)) < 0.6
    mask = mask | mask.T
    idx = bootstrap_indices(n, 5, seed=3)
    got = pair_moments(item_counts(idx, n), A, B)
    got_m = pair_moments(item_counts(idx, n), A, B, mask)
    iu = np.triu_indices(n, 1)
    for b, row in enumerate(idx):
        sa, sb, sm = resample_matrix(A, row), resample_matrix(B, row), resample_matrix(mask.astype(float), row)
        x, y, m = sa[iu], sb[iu], sm[iu]
        ok = ~np.isnan(x)
        x, y, m = x[ok], y[ok], m[ok] > 0
        assert got.mean_a[b] == pytest.approx(x.mean(), rel=1e-10)
        assert got.mean_b[b] == pytest.approx(y.mean(), rel=1e-10)
        assert got.r[b] == pytest.approx(np.corrcoef(x, y)[0, 1], rel=1e-8)
        assert got_m.slope[b] == pytest.approx(np.polyfit(x[m], y[m], 1)[0], rel=1e-7)
    full = pair_moments(np.ones((1, n)), A, B)
    assert full.r[0] == pytest.approx(np.corrcoef(A[iu], B[iu])[0, 1], rel=1e-10)


def test_overlap_blocks_chain_marks_within_the_window() -> None:
    from layerclaims.metrics.bootstrap import overlap_blocks

    pos = np.array([100, 30, 45, 70, 200, 219, 240])  # input order is not position order
    lab = overlap_blocks(pos, 20)
    # 30-45 (15 apart) chain, 70 is 25 from 45: new block; 100 alone; 200-219 chain, 240 is 21 past 219
    assert lab.tolist() == [2, 0, 0, 1, 3, 3, 4]
    assert overlap_blocks(pos, 0).tolist() == [3, 0, 1, 2, 4, 5, 6]
    with pytest.raises(UsageError, match="window"):
        overlap_blocks(pos, -1)


def test_block_counts_draw_whole_blocks() -> None:
    from layerclaims.metrics.bootstrap import block_counts

    blocks = np.array([0, 0, 0, 1, 2, 2])
    c = block_counts(blocks, 500, seed=3)
    assert c.shape == (500, 6)
    # every mark of a block has its block's multiplicity, and 3 blocks are drawn per resample
    assert np.all(c[:, 0] == c[:, 1]) and np.all(c[:, 1] == c[:, 2]) and np.all(c[:, 4] == c[:, 5])
    assert np.all(c[:, [0, 3, 4]].sum(axis=1) == 3)
    # one block per item: the ordinary bootstrap with the same seed
    ordinary = item_counts(bootstrap_indices(6, 50, seed=1), 6)
    np.testing.assert_array_equal(block_counts(np.arange(6), 50, seed=1), ordinary)


def test_block_bootstrap_covers_where_marks_one_by_one_do_not() -> None:
    """Marks reading overlapping 20-token windows (median gap 14 tokens, as study A's first 250 commas): the
    interval of the mean pair covariance over blocks covers the population value about 95% of the time, marks
    resampled one by one less (their intervals are too narrow)."""
    from benchmarks.calibration import simulate_block_coverage

    cov = simulate_block_coverage(n_sims=100, n_boot=200, seed=0)
    assert cov.blocks >= 0.95 - 2.5 * np.sqrt(0.95 * 0.05 / cov.n)
    assert cov.marks < cov.blocks
    assert 60 < cov.n_units < 120  # far fewer independent units than the 250 marks


@pytest.mark.slow
def test_block_bootstrap_coverage_at_scale() -> None:
    from benchmarks.calibration import simulate_block_coverage

    cov = simulate_block_coverage(n_sims=1000, n_boot=400, seed=1)
    se = np.sqrt(0.95 * 0.05 / cov.n)
    assert abs(cov.blocks - 0.95) < 3 * se + 0.02, cov
    assert cov.marks < 0.95 - 3 * se, cov
