"""Cluster counting: validation on synthetic data with a known count, the pair-aware evidence table, edge cases.

Every case here is a row of the evidence in the module docstring of ``layerclaims.metrics.clusters``; if a row
changes, the docstring must change with it. Sizes are those of the requirement ("n of a few thousand"): n = 3000
points, three seeds each; the pair cases use N = 250 vectors of 1024 dimensions (31,125 pairs), the study's size.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np
import pytest

from layerclaims.errors import UsageError
from layerclaims.metrics.clusters import (
    ClusterResult,
    MarkClusters,
    cluster_marks,
    count_clusters,
    count_pair_clusters,
    pair_cluster_labels,
)
from layerclaims.metrics.mark_cases import CASES, covariance, power_case

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
    assert count_clusters(x, n_boot=0, method="gmm-bic", max_k=6).n_clusters > 1
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
    assert a.stability == 1.0 and a.count_interval() == (3, 3)
    assert a.boot_counts == b.boot_counts and np.array_equal(a.labels, b.labels)
    assert a.method == "kde-modes"
    none = count_clusters(x, n_boot=0)
    assert np.isnan(none.stability) and none.boot_counts == () and none.count_interval() == (3, 3)


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
        (np.arange(10.0), {"method": "dbscan"}, "unknown method"),
        (["a", "b"], {}, "numeric"),
    ],
)
def test_bad_input_is_a_usage_error(points: object, kwargs: dict, match: str) -> None:
    with pytest.raises(UsageError, match=match):
        count_clusters(points, **kwargs)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------------------------
# Pair-aware counting and the evidence table
# ---------------------------------------------------------------------------------------------------------------


def pair_matrices(
    sizes: list[int], amps: list[float], rng: np.random.Generator, *, scale_sd: float = 0.0, dims: int = 1024
) -> tuple[np.ndarray, np.ndarray]:
    """Covariance and correlation matrices of N vectors from g groups: x_i = a_g u + e_i (u shared, e_i ~ N(0, I)).

    cov(x_i, x_j) ~ a_g a_h var(u): the pair types (g, h) sit at distinct levels when the a_g a_h are distinct.
    ``scale_sd`` multiplies each vector by a lognormal factor (a continuous per-vector effect, no groups).
    """
    u = rng.normal(0, 1, dims)
    x = np.concatenate([a * u + rng.normal(0, 1, (s, dims)) for s, a in zip(sizes, amps, strict=True)])
    if scale_sd:
        x = x * rng.lognormal(0, scale_sd, (x.shape[0], 1))
    x = x[rng.permutation(x.shape[0])]
    xc = x - x.mean(axis=1, keepdims=True)
    cov = xc @ xc.T / (dims - 1)
    sd = np.sqrt(np.diag(cov))
    return cov, cov / np.outer(sd, sd)


def iid_pair_mixture(rng: np.random.Generator, n: int = 250) -> np.ndarray:
    """Pair values in 2 clusters (70 % N(0, 1), 30 % N(8, 1)) drawn pair by pair: no vector grouping explains them."""
    m = np.zeros((n, n))
    iu = np.triu_indices(n, 1)
    m[iu] = np.where(rng.random(iu[0].size) < 0.7, rng.normal(0, 1, iu[0].size), rng.normal(8, 1, iu[0].size))
    return m + m.T


# name: (sizes, amplitudes, per-vector scale sd, truth, kde on values, gmm-bic on values, pair-aware)
EVIDENCE = {
    "g=1": ([250], [0.7], 0.0, 1, 1, 1, 1),
    "g=1, lognormal vector scales": ([250], [0.7], 0.5, 1, 1, ">1", 1),
    "g=2, 125/125": ([125, 125], [0.5, 1.0], 0.0, 3, 3, 3, 3),
    "g=2, 225/25": ([225, 25], [0.5, 1.0], 0.0, 3, 3, 3, 3),
    "g=2, 240/10": ([240, 10], [0.5, 1.0], 0.0, 3, 2, ">3", 3),
    "g=2, types (1,1)=(1,2)": ([125, 125], [0.0, 1.0], 0.0, 2, 2, 2, 2),
    "g=3, 100/100/50": ([100, 100, 50], [0.5, 1.0, 1.5], 0.0, 6, 6, 6, 6),
}


def _matches(got: int, expected: int | str) -> bool:
    return got > int(expected[1:]) if isinstance(expected, str) else got == expected


@pytest.mark.parametrize("name", list(EVIDENCE))
def test_evidence_table_pair_data(name: str) -> None:
    sizes, amps, ssd, truth, kde, gmm, pair = EVIDENCE[name]
    cov, cor = pair_matrices(sizes, amps, np.random.default_rng(0), scale_sd=ssd)
    values = cov[np.triu_indices(cov.shape[0], 1)]
    assert _matches(count_clusters(values, n_boot=0).n_clusters, kde)
    assert _matches(count_clusters(values, n_boot=0, method="gmm-bic").n_clusters, gmm)
    res = count_pair_clusters(cov, n_boot=0)
    assert res.n_clusters == pair
    assert res.n_clusters == truth  # the pair-aware procedure gets every vector-group case right
    # and 2-D (covariance, correlation) agrees with 1-D for both procedures
    assert count_pair_clusters([cov, cor], n_boot=0).n_clusters == pair


def test_evidence_pair_level_mixture_is_invisible_to_pair_aware() -> None:
    """The documented blind spot: clusters of pair values that no grouping of the vectors explains."""
    m = iid_pair_mixture(np.random.default_rng(0))
    values = m[np.triu_indices(250, 1)]
    assert count_clusters(values, n_boot=0).n_clusters == 2
    assert count_pair_clusters(m, n_boot=0).n_clusters == 1


def test_pair_labels_groups_and_types() -> None:
    cov, _ = pair_matrices([200, 50], [0.5, 1.0], np.random.default_rng(1))
    res = count_pair_clusters(cov, n_boot=5, seed=3)
    n = cov.shape[0]
    assert res.method == "pair-groups"
    assert res.labels.shape == (n * (n - 1) // 2,)
    assert sorted(res.diagnostics["group_sizes"]) == [50, 200]
    assert sorted(res.diagnostics["pair_types"]) == [(0, 0), (0, 1), (1, 1)]
    values = cov[np.triu_indices(n, 1)]
    means = [values[res.labels == j].mean() for j in range(res.n_clusters)]
    assert means == sorted(means)  # ordered by the first statistic
    assert len(res.boot_counts) == 5 and res.stability == 1.0
    again = count_pair_clusters(cov, n_boot=5, seed=3)
    assert again.boot_counts == res.boot_counts and np.array_equal(again.labels, res.labels)


def test_pair_input_checks() -> None:
    good = np.eye(6) + 0.1
    with pytest.raises(UsageError, match="square"):
        count_pair_clusters(np.ones((4, 5)))
    with pytest.raises(UsageError, match="symmetric"):
        count_pair_clusters(np.triu(np.arange(36.0).reshape(6, 6)))
    with pytest.raises(UsageError, match="N >= 4"):
        count_pair_clusters(np.ones((3, 3)))
    with pytest.raises(UsageError, match="share one shape"):
        count_pair_clusters([good, np.eye(5)])
    bad = good.copy()
    bad[0, 1] = bad[1, 0] = np.nan
    with pytest.raises(UsageError, match="NaN"):
        count_pair_clusters(bad)


# ---------------------------------------------------------------------------------------------------------------
# cluster_marks: pair clusters carried by groups of marks (validation cases of issue 11: N = 250, D = 1024)
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cluster_marks_validation_cases(name: str, seed: int) -> None:
    """Every case of the issue gets its known count, and the atypical marks of a case are all flagged
    (error rates over 20 seeds: `python -m layerclaims.benchmarks mark-clusters`)."""
    case = CASES[name](np.random.default_rng(seed))
    res = cluster_marks(covariance(case.x), n_boot=0)
    assert res.n_clusters == case.truth
    assert set(case.flagged) <= set(res.outlier_marks)
    if case.truth > 1:  # group cases: no mark flagged, and the groups are the true groups
        assert res.outlier_marks == ()
        assert _agreement(res.mark_labels, case.labels) == 1.0


def test_literal_count_is_fooled_where_cluster_marks_is_not() -> None:
    """The reason for cluster_marks: the literal count of the pair values counts single atypical marks."""
    case = CASES["one population + 3 atypical marks"](np.random.default_rng(0))
    cov = covariance(case.x)
    assert count_clusters(cov[np.triu_indices(250, 1)], n_boot=0).n_clusters > 1
    assert cluster_marks(cov, n_boot=0).n_clusters == 1


def test_power_at_the_ends_of_the_separation_curve() -> None:
    """No separation: 1 cluster; a separation of 0.3 in loading (pair-type centres ~0.2 apart, 4x their spread):
    3. The curve in between is in the benchmark and in the slow test below."""
    assert cluster_marks(covariance(power_case(0.0, np.random.default_rng(0)).x), n_boot=0).n_clusters == 1
    assert cluster_marks(covariance(power_case(0.3, np.random.default_rng(0)).x), n_boot=0).n_clusters == 3


@pytest.mark.slow
def test_power_curve_is_monotone_enough() -> None:
    """Fraction of 5 seeds with count 3 rises with the separation; measured: 0 at 0, 1 from 0.2 on."""
    power = []
    for delta in (0.0, 0.1, 0.2, 0.3):
        hits = [
            cluster_marks(covariance(power_case(delta, np.random.default_rng(s)).x), n_boot=0).n_clusters == 3
            for s in range(5)
        ]
        power.append(np.mean(hits))
    assert power[0] == 0.0 and power[-1] == 1.0
    assert all(b >= a - 0.2 for a, b in itertools.pairwise(power))


def test_cluster_marks_result_fields_and_pair_labels() -> None:
    case = CASES["two groups 225/25"](np.random.default_rng(0))
    cov = covariance(case.x)
    res = cluster_marks(cov, n_boot=4, seed=1)
    assert isinstance(res, MarkClusters) and res.n_groups == 2 and res.min_support == 8
    assert sorted(res.diagnostics["group_sizes"]) == [25, 225]
    assert [(t.a, t.b) for t in res.pair_types] == [(0, 0), (0, 1), (1, 1)]
    assert sum(t.n_pairs for t in res.pair_types) == 250 * 249 // 2
    # the centre of a pair type is the median of its pair values, in the matrix's units
    lab = res.mark_labels
    i, j = np.triu_indices(250, 1)
    both0 = (lab[i] == 0) & (lab[j] == 0)
    assert res.pair_types[0].centre == pytest.approx(float(np.median(cov[i[both0], j[both0]])))
    pl = res.pair_labels()
    assert pl.shape == (250 * 249 // 2,) and set(np.unique(pl)) == {0, 1, 2}
    np.testing.assert_array_equal(pl, pair_cluster_labels(lab, res.pair_types))
    assert len(res.boot_counts) == 4 and res.stability == np.mean(np.asarray(res.boot_counts) == 3)
    again = cluster_marks(cov, n_boot=4, seed=1)
    assert again.boot_counts == res.boot_counts and again.n_clusters == res.n_clusters


def test_outlier_pairs_have_label_minus_one() -> None:
    case = CASES["one population + 3 atypical marks"](np.random.default_rng(1))
    res = cluster_marks(covariance(case.x), n_boot=0)
    pl = res.pair_labels()
    i, j = np.triu_indices(250, 1)
    odd = np.isin(i, res.outlier_marks) | np.isin(j, res.outlier_marks)
    assert np.all(pl[odd] == -1) and np.all(pl[~odd] == 0)


def test_cluster_marks_constant_and_bad_input() -> None:
    res = cluster_marks(np.full((6, 6), 2.0), n_boot=2)
    assert res.n_clusters == 1 and res.outlier_marks == ()
    with pytest.raises(UsageError, match="square"):
        cluster_marks(np.ones((4, 5)))
    with pytest.raises(UsageError, match="symmetric"):
        cluster_marks(np.triu(np.arange(36.0).reshape(6, 6)))
    with pytest.raises(UsageError, match="at least 4 marks"):
        cluster_marks(np.ones((3, 3)))
    bad = np.ones((5, 5))
    bad[0, 1] = bad[1, 0] = np.nan
    with pytest.raises(UsageError, match="NaN"):
        cluster_marks(bad)
    with pytest.raises(UsageError, match="min_support"):
        cluster_marks(np.eye(5), min_support=1)
