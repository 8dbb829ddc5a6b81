"""Cluster counting of points (count_clusters): validation on synthetic data with a known count, edge cases.

Every case here is a row of the evidence in the module docstring of ``layerclaims.metrics.clusters``; if a row
changes, the docstring must change with it. Sizes are those of the requirement ("n of a few thousand"): n = 3000
points, three seeds each. Pair data (N = 250 vectors of 1024 dimensions) are in ``test_mark_clusters.py``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from gmm_baseline import gmm_bic

from layerclaims.errors import UsageError
from layerclaims.metrics.clusters import ClusterResult, count_clusters

Gen = Callable[[int, np.random.Generator], np.ndarray]
N = 3000
SEEDS = (0, 1, 2)


def blobs_1d(sizes: list[float], gap: float = 8.0) -> Gen:
    """Unit-sd normal clusters at 0, gap, 2 gap, ... with the given size fractions."""

    def gen(n: int, rng: np.random.Generator) -> np.ndarray:
        counts = rng.multinomial(n, sizes)
        return np.concatenate([rng.normal(i * gap, 1.0, m) for i, m in enumerate(counts)])

    return gen


def blobs_2d(sizes: list[float], gap: float = 8.0) -> Gen:
    """Unit-sd round clusters on the corners of a square of side gap."""
    corners = np.array([(0, 0), (1, 0), (0, 1), (1, 1)], dtype=float) * gap

    def gen(n: int, rng: np.random.Generator) -> np.ndarray:
        counts = rng.multinomial(n, sizes)
        return np.concatenate([rng.normal(0, 1, (m, 2)) + corners[i] for i, m in enumerate(counts)])

    return gen


def ridges_2d(k: int) -> Gen:
    """k parallel diagonal ridges: sd 6 along (1, 1), sd 0.5 across, 5 apart across (elongated, correlated)."""

    def gen(n: int, rng: np.random.Generator) -> np.ndarray:
        counts = rng.multinomial(n, [1 / k] * k)
        out = []
        for i, m in enumerate(counts):
            a, b = rng.normal(0, 6, m), rng.normal(0, 0.5, m) + 5 * i
            out.append(np.column_stack([a + b, a - b]) / np.sqrt(2))
        return np.concatenate(out)

    return gen


def axis_elongated_2d(n: int, rng: np.random.Generator) -> np.ndarray:
    """Two clusters elongated along x (sd 10 vs 0.5), separated along y by 5."""
    m = n // 2
    a = np.column_stack([rng.normal(0, 10, m), rng.normal(0, 0.5, m)])
    b = np.column_stack([rng.normal(0, 10, n - m), rng.normal(5, 0.5, n - m)])
    return np.concatenate([a, b])


def unequal_spread_1d(n: int, rng: np.random.Generator) -> np.ndarray:
    """A narrow cluster (sd 1) and a wide one (sd 8) 30 apart."""
    return np.concatenate([rng.normal(0, 1, n // 2), rng.normal(30, 8, n - n // 2)])


MULTI: dict[str, tuple[int, Gen]] = {
    "1d: 1 cluster": (1, blobs_1d([1.0])),
    "1d: 2 clusters": (2, blobs_1d([0.5, 0.5])),
    "1d: 3 clusters": (3, blobs_1d([1 / 3] * 3)),
    "1d: 4 clusters": (4, blobs_1d([0.25] * 4)),
    "1d: 80/15/5 %": (3, blobs_1d([0.80, 0.15, 0.05])),
    "1d: sd 1 and sd 8": (2, unequal_spread_1d),
    "2d: 1 cluster": (1, blobs_2d([1.0])),
    "2d: 2 clusters": (2, blobs_2d([0.5, 0.5])),
    "2d: 3 clusters": (3, blobs_2d([1 / 3] * 3)),
    "2d: 4 clusters": (4, blobs_2d([0.25] * 4)),
    "2d: 80/15/5 %": (3, blobs_2d([0.80, 0.15, 0.05])),
    "2d: 2 diagonal ridges": (2, ridges_2d(2)),
    "2d: 3 diagonal ridges": (3, ridges_2d(3)),
    "2d: 2 axis-elongated": (2, axis_elongated_2d),
}

UNIMODAL: dict[str, Gen] = {
    "1d: lognormal sigma 0.5": lambda n, rng: rng.lognormal(0, 0.5, n),
    "1d: lognormal sigma 1": lambda n, rng: rng.lognormal(0, 1.0, n),
    "1d: Student t 3 dof": lambda n, rng: rng.standard_t(3, n),
    "1d: uniform": lambda n, rng: rng.uniform(0, 1, n),
    "1d: exponential": lambda n, rng: rng.exponential(1.0, n),
    "2d: lognormal sigma 1": lambda n, rng: rng.lognormal(0, 1.0, (n, 2)),
    "2d: correlated lognormal": lambda n, rng: np.exp(rng.multivariate_normal([0, 0], [[1, 0.7], [0.7, 1]], n)),
    "2d: Student t 3 dof": lambda n, rng: rng.standard_t(3, (n, 2)),
    "2d: uniform square": lambda n, rng: rng.uniform(0, 1, (n, 2)),
    "2d: correlated normal r=0.95": lambda n, rng: rng.multivariate_normal([0, 0], [[1, 0.95], [0.95, 1]], n),
}


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("name", list(MULTI))
def test_known_number_of_clusters(name: str, seed: int) -> None:
    truth, gen = MULTI[name]
    res = count_clusters(gen(N, np.random.default_rng(seed)), n_boot=0)
    assert res.n_clusters == truth, res.diagnostics


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("name", list(UNIMODAL))
def test_unimodal_skewed_heavy_tailed_uniform_give_one(name: str, seed: int) -> None:
    res = count_clusters(UNIMODAL[name](N, np.random.default_rng(seed)), n_boot=0)
    assert res.n_clusters == 1, res.diagnostics


@pytest.mark.parametrize("name", ["1d: 3 clusters", "1d: 80/15/5 %", "2d: 80/15/5 %", "2d: 3 diagonal ridges"])
def test_study_size_31125_points(name: str) -> None:
    truth, gen = MULTI[name]
    assert count_clusters(gen(31_125, np.random.default_rng(7)), n_boot=0).n_clusters == truth


@pytest.mark.parametrize("name", ["1d: lognormal sigma 1", "1d: Student t 3 dof", "2d: correlated lognormal"])
def test_study_size_31125_points_unimodal(name: str) -> None:
    assert count_clusters(UNIMODAL[name](31_125, np.random.default_rng(7)), n_boot=0).n_clusters == 1


@pytest.mark.parametrize("name", ["1d: lognormal sigma 1", "1d: Student t 3 dof", "2d: lognormal sigma 1"])
def test_bic_alone_over_splits_what_the_procedure_calls_one(name: str) -> None:
    """The reason for the valley criterion: a Gaussian mixture chosen by BIC splits skewed/heavy-tailed data."""
    x = UNIMODAL[name](N, np.random.default_rng(0))
    assert gmm_bic(x, max_k=6).n_clusters > 1
    assert count_clusters(x, n_boot=0).n_clusters == 1


def _agreement(labels: np.ndarray, truth: np.ndarray) -> float:
    """Fraction of points whose label matches after the best one-to-one relabelling (small k: brute force)."""
    from itertools import permutations

    k = int(max(labels.max(), truth.max())) + 1
    return max(float(np.mean(np.asarray(p)[labels] == truth)) for p in permutations(range(k)))


def test_labels_recover_the_clusters_and_are_ordered_by_first_coordinate() -> None:
    rng = np.random.default_rng(3)
    sizes = [1200, 600, 200]
    truth = np.repeat([0, 1, 2], sizes)
    x = np.concatenate([rng.normal(8.0 * i, 1.0, m) for i, m in enumerate(sizes)])
    perm = rng.permutation(x.size)
    res = count_clusters(x[perm], n_boot=0)
    assert res.n_clusters == 3
    assert res.labels.dtype == np.int64 and res.labels.shape == (x.size,)
    assert np.mean(res.labels == truth[perm]) > 0.995  # ordered by mean: label i is the i-th cluster from the left
    means = [x[perm][res.labels == j].mean() for j in range(3)]
    assert means == sorted(means)


def test_labels_2d_unequal_sizes() -> None:
    rng = np.random.default_rng(4)
    sizes = [2400, 450, 150]
    corners = np.array([(0, 0), (8, 0), (0, 8)], dtype=float)
    x = np.concatenate([rng.normal(0, 1, (m, 2)) + corners[i] for i, m in enumerate(sizes)])
    truth = np.repeat([0, 1, 2], sizes)
    res = count_clusters(x, n_boot=0)
    assert res.n_clusters == 3
    assert _agreement(res.labels, truth) > 0.995
    fr = sorted(res.diagnostics["cluster_fractions"])
    assert fr[0] == pytest.approx(0.05, abs=0.01) and fr[2] == pytest.approx(0.80, abs=0.01)


def test_stability_and_determinism() -> None:
    x = blobs_1d([0.5, 0.3, 0.2])(N, np.random.default_rng(5))
    a = count_clusters(x, n_boot=20, seed=11)
    b = count_clusters(x, n_boot=20, seed=11)
    assert a.n_clusters == 3 and len(a.boot_counts) == 20
    assert a.stability == 1.0
    assert a.boot_counts == b.boot_counts and np.array_equal(a.labels, b.labels)
    assert a.method == "kde-modes"
    none = count_clusters(x, n_boot=0)
    assert np.isnan(none.stability) and none.boot_counts == ()


def test_stability_drops_for_a_borderline_valley() -> None:
    """Two clusters whose valley is near the threshold: the replicates disagree, and stability says so."""
    rng = np.random.default_rng(6)
    x = np.concatenate([rng.normal(0, 1, 1500), rng.normal(3.1, 1, 1500)])
    res = count_clusters(x, n_boot=30, seed=0)
    assert 0.0 <= res.stability <= 1.0
    assert set(res.boot_counts) <= {1, 2}


def test_max_k_caps_the_count() -> None:
    x = blobs_1d([0.2] * 5)(N, np.random.default_rng(8))
    assert count_clusters(x, n_boot=0).n_clusters == 5
    capped = count_clusters(x, n_boot=0, max_k=3)
    assert capped.n_clusters <= 3
    assert capped.diagnostics["min_depth_used"] > 0.5
    assert count_clusters(x, n_boot=0, max_k=1).n_clusters == 1


def test_constant_and_tied_data() -> None:
    assert count_clusters(np.full(100, 2.5), n_boot=3).n_clusters == 1
    two_values = np.repeat([0.0, 1.0], 500)
    assert count_clusters(two_values, n_boot=0).n_clusters == 2
    col = np.column_stack([np.random.default_rng(0).normal(size=500), np.ones(500)])  # constant second axis
    res = count_clusters(col, n_boot=0)
    assert res.n_clusters == 1 and res.diagnostics["dropped_axes"] == [1]


def test_diagnostics_are_reported() -> None:
    res = count_clusters(blobs_2d([0.5, 0.5])(N, np.random.default_rng(0)), n_boot=0)
    d = res.diagnostics
    for key in ("bandwidth", "grid_shape", "counts_by_depth", "valley_depths", "cluster_fractions", "robust_corr"):
        assert key in d
    assert d["counts_by_depth"]["0.5"] == 2
    assert len(d["valley_depths"]) == 1 and d["valley_depths"][0] > 0.9
    assert isinstance(res, ClusterResult)


@pytest.mark.parametrize(
    ("points", "kwargs", "match"),
    [
        (np.array([1.0, np.nan, 2.0]), {}, "NaN"),
        (np.ones((10, 3)), {}, "shape"),
        (np.ones((2, 2, 2)), {}, "shape"),
        (np.array([1.0]), {}, "at least 2"),
        (np.arange(10.0), {"max_k": 0}, "max_k"),
        (np.arange(10.0), {"min_depth": 1.5}, "min_depth"),
        (np.arange(10.0), {"n_boot": -1}, "n_boot"),
        (["a", "b"], {}, "numeric"),
    ],
)
def test_bad_input_is_a_usage_error(points: object, kwargs: dict, match: str) -> None:
    with pytest.raises(UsageError, match=match):
        count_clusters(points, **kwargs)  # type: ignore[arg-type]
