"""Unit tests of layerclaims.metrics.simpson on constructed data with and without the paradox."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from layerclaims.errors import UsageError
from layerclaims.metrics.bootstrap import bootstrap_pair_correlation
from layerclaims.metrics.simpson import ClusterFit, SimpsonResult, simpson


def _clusters(
    centres: list[tuple[float, float]], slopes: list[float], n: int = 60, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Clusters at ``centres``, each with its own within slope and small noise."""
    rng = np.random.default_rng(seed)
    xs, ys, ls = [], [], []
    for k, ((cx, cy), b) in enumerate(zip(centres, slopes, strict=True)):
        x = cx + rng.normal(size=n)
        xs.append(x)
        ys.append(cy + b * (x - cx) + 0.3 * rng.normal(size=n))
        ls.append(np.full(n, k))
    return np.concatenate(xs), np.concatenate(ys), np.concatenate(ls)


TEXTBOOK = ([(0.0, 8.0), (4.0, 4.0), (8.0, 0.0)], [0.8, 0.8, 0.8])  # positive within, negative diagonal


def test_textbook_paradox() -> None:
    x, y, labels = _clusters(*TEXTBOOK)
    res = simpson(x, y, labels, n_boot=500)
    assert isinstance(res, SimpsonResult)
    lr = stats.linregress(x, y)
    assert res.pooled_r == pytest.approx(stats.pearsonr(x, y).statistic, abs=1e-12)
    assert res.pooled_slope == pytest.approx(lr.slope, abs=1e-12)
    assert res.pooled_intercept == pytest.approx(lr.intercept, abs=1e-12)
    assert res.pooled_slope < 0
    for c in res.clusters:
        assert isinstance(c, ClusterFit) and c.included and c.size == 60
        m = labels == c.label
        lr_k = stats.linregress(x[m], y[m])
        assert c.slope == pytest.approx(lr_k.slope, abs=1e-12)
        assert c.r == pytest.approx(lr_k.rvalue, abs=1e-12)
        assert c.intercept == pytest.approx(lr_k.intercept, abs=1e-12)
        assert c.slope_ci is not None and c.slope_ci[0] <= c.slope <= c.slope_ci[1] and c.slope_ci[0] > 0
    assert res.paradox and res.paradox_weighted
    assert res.weighted_slope == pytest.approx(np.mean([c.slope for c in res.clusters]))
    assert res.min_within_slope == pytest.approx(min(c.slope for c in res.clusters))
    assert res.pooled_r_ci is not None and res.pooled_r_ci[1] < 0
    assert res.min_within_slope_ci is not None and res.min_within_slope_ci[0] > 0
    assert res.paradox_support > 0.99


def test_no_paradox_when_clusters_line_up() -> None:
    x, y, labels = _clusters([(0.0, 0.0), (4.0, 4.0), (8.0, 8.0)], [0.8, 0.8, 0.8])
    res = simpson(x, y, labels, n_boot=100)
    assert res.pooled_slope > 0
    assert not res.paradox and not res.paradox_weighted
    assert res.paradox_support == 0.0


def test_every_vs_weighted_flag() -> None:
    # two big clusters with positive slopes, one small with a negative slope: not "every", but the weighted one
    x1, y1, l1 = _clusters([(0.0, 8.0), (8.0, 0.0)], [0.8, 0.8], n=80)
    x2, y2, _ = _clusters([(4.0, 4.0)], [-0.5], n=20, seed=1)
    x, y = np.concatenate([x1, x2]), np.concatenate([y1, y2])
    labels = np.concatenate([l1, np.full(20, 2)])
    res = simpson(x, y, labels, n_boot=0)
    assert res.pooled_slope < 0
    assert not res.paradox
    assert res.paradox_weighted
    assert res.weighted_slope == pytest.approx(
        (80 * res.clusters[0].slope + 80 * res.clusters[1].slope + 20 * res.clusters[2].slope) / 180
    )


def test_small_and_flat_clusters_are_excluded_with_reason() -> None:
    x, y, labels = _clusters(*TEXTBOOK)
    x = np.concatenate([x, [1.0, 2.0], [5.0, 5.0, 5.0]])
    y = np.concatenate([y, [0.0, 1.0], [1.0, 2.0, 3.0]])
    labels = np.concatenate([labels.astype(object), ["tiny", "tiny", "flat", "flat", "flat"]])
    res = simpson(x, y, labels, n_boot=50, min_cluster_size=3)
    assert res.excluded == {"tiny": "size 2 < min_cluster_size 3", "flat": "zero variance in x (slope undefined)"}
    assert len(res.included) == 3
    assert res.paradox
    flat = next(c for c in res.clusters if c.label == "flat")
    assert flat.slope_ci is None and np.isnan(flat.slope)


def test_one_included_cluster_is_never_a_paradox() -> None:
    x, y, labels = _clusters(*TEXTBOOK)
    res = simpson(x, y, labels, n_boot=0, min_cluster_size=61)
    assert not res.included and not res.paradox and not res.paradox_weighted
    res = simpson(x[:70], y[:70], labels[:70], n_boot=0, min_cluster_size=20)
    assert len(res.included) == 1 and not res.paradox


def test_no_bootstrap_gives_no_intervals() -> None:
    x, y, labels = _clusters(*TEXTBOOK)
    res = simpson(x, y, labels, n_boot=0)
    assert res.pooled_r_ci is None and res.clusters[0].r_ci is None and np.isnan(res.paradox_support)


def test_determinism_and_units_equal_points_when_each_point_is_a_unit() -> None:
    x, y, labels = _clusters(*TEXTBOOK, n=30)
    a = simpson(x, y, labels, n_boot=200, seed=4)
    assert a == simpson(x, y, labels, n_boot=200, seed=4)
    b = simpson(x, y, labels, n_boot=200, seed=4, units=np.arange(x.size))
    assert b.pooled_r_ci == pytest.approx(a.pooled_r_ci) and b.resampling == "units"
    c = simpson(x, y, labels, n_boot=200, seed=4, units=np.arange(x.size) // 10)  # 10 points per unit: wider
    assert c.pooled_r_ci is not None and a.pooled_r_ci is not None
    assert c.pooled_r_ci[1] - c.pooled_r_ci[0] > a.pooled_r_ci[1] - a.pooled_r_ci[0]


def test_pairs_bootstrap_equals_item_bootstrap_of_pair_matrices() -> None:
    rng = np.random.default_rng(3)
    n = 25
    A = np.cov(rng.normal(size=(n, 40)))
    B = -A + 0.05 * rng.normal(size=A.shape)
    B = (B + B.T) / 2
    i, j = np.triu_indices(n, 1)
    x, y = A[i, j], B[i, j]
    labels = (x > np.median(x)).astype(int)
    res = simpson(x, y, labels, n_boot=300, seed=9, pairs=(i, j))
    ref = bootstrap_pair_correlation(A, B, n_boot=300, seed=9)
    assert res.resampling == "pairs"
    assert res.pooled_r == pytest.approx(ref.estimate)
    assert res.pooled_r_ci == pytest.approx(ref.ci, abs=1e-10)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(x=[1, 2, 3], y=[1, 2], labels=[0, 0, 0]), "one entry per point"),
        (dict(x=[1, 2], y=[1, 2], labels=[0, 0]), "at least 3"),
        (dict(x=[1, np.nan, 3], y=[1, 2, 3], labels=[0, 0, 0]), "NaN"),
        (dict(x=[1, 1, 1], y=[1, 2, 3], labels=[0, 0, 0]), "constant"),
        (dict(x=[1, 2, 3], y=[1, 2, 3], labels=[0, 0, 0], units=[0, 1, 2], pairs=([0], [1])), "not both"),
        (dict(x=[1, 2, 3], y=[1, 2, 3], labels=[0, 0, 0], pairs=([0, 1, 2], [0, 2, 1])), "different items"),
    ],
)
def test_errors(kwargs: dict, match: str) -> None:
    with pytest.raises(UsageError, match=match):
        simpson(**kwargs)
