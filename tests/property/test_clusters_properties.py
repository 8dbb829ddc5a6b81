"""Properties of the cluster count: invariance to shifting and positive scaling, valid labels, k <= max_k.

Data are generated, not fixed: mixtures of 1-4 normal, uniform or heavy-tailed clusters at random places and
sizes, in 1-D and 2-D, so the properties are checked on easy and on borderline cases alike.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from layerclaims.metrics.clusters import count_clusters
from layerclaims.metrics.mark_clusters import cluster_marks


@st.composite
def point_sets(draw: st.DrawFn) -> np.ndarray:
    dim = draw(st.sampled_from([1, 2]))
    n = draw(st.integers(min_value=30, max_value=600))
    k = draw(st.integers(min_value=1, max_value=4))
    seed = draw(st.integers(min_value=0, max_value=2**32 - 1))
    kind = draw(st.sampled_from(["normal", "uniform", "t3", "lognormal"]))
    spread = draw(st.floats(min_value=1.0, max_value=12.0))
    rng = np.random.default_rng(seed)
    centers = rng.uniform(-spread, spread, (k, dim))
    lab = rng.integers(0, k, n)
    if kind == "normal":
        noise = rng.normal(0, 1, (n, dim))
    elif kind == "uniform":
        noise = rng.uniform(-1, 1, (n, dim))
    elif kind == "t3":
        noise = rng.standard_t(3, (n, dim))
    else:
        noise = rng.lognormal(0, 1, (n, dim))
    x = centers[lab] + noise
    return x[:, 0] if dim == 1 else x


transforms = st.tuples(
    st.floats(min_value=-1e3, max_value=1e3),  # shift
    st.floats(min_value=1e-3, max_value=1e3),  # scale of the first axis
    st.floats(min_value=1e-3, max_value=1e3),  # scale of the second axis (2-D)
)


@given(point_sets(), transforms)
def test_count_and_labels_invariant_to_shift_and_positive_scale(x: np.ndarray, t: tuple[float, float, float]) -> None:
    shift, s1, s2 = t
    scale = s1 if x.ndim == 1 else np.array([s1, s2])
    y = x * scale + shift
    a = count_clusters(x, n_boot=0)
    b = count_clusters(y, n_boot=0)
    assert a.n_clusters == b.n_clusters
    assert np.array_equal(a.labels, b.labels)


@given(point_sets(), st.integers(min_value=1, max_value=6), st.integers(min_value=0, max_value=3))
def test_labels_are_a_partition_and_k_at_most_max_k(x: np.ndarray, max_k: int, n_boot: int) -> None:
    res = count_clusters(x, max_k=max_k, n_boot=n_boot, seed=1)
    assert 1 <= res.n_clusters <= max_k
    assert res.labels.shape == (x.shape[0],)
    assert res.labels.min() == 0 and res.labels.max() == res.n_clusters - 1
    assert np.all(np.bincount(res.labels) > 0)  # every label 0..k-1 is used
    assert len(res.boot_counts) == n_boot and all(1 <= c <= max_k for c in res.boot_counts)
    if n_boot:
        assert 0.0 <= res.stability <= 1.0
    first = x if x.ndim == 1 else x[:, 0]
    means = [float(first[res.labels == j].mean()) for j in range(res.n_clusters)]
    assert means == sorted(means)


@st.composite
def mark_matrices(draw: st.DrawFn) -> np.ndarray:
    """Covariance matrices of 20-80 marks of 128 dimensions from 1-3 groups with random loadings and sizes."""
    n = draw(st.integers(min_value=20, max_value=80))
    g = draw(st.integers(min_value=1, max_value=3))
    rng = np.random.default_rng(draw(st.integers(min_value=0, max_value=2**32 - 1)))
    loadings = rng.uniform(0.0, 1.5, g)[rng.integers(0, g, n)]
    x = loadings[:, None] * rng.normal(0, 1, 128) + rng.normal(0, 1, (n, 128))
    return np.cov(x)


@given(mark_matrices(), st.floats(min_value=-10, max_value=10), st.floats(min_value=1e-2, max_value=1e2))
def test_cluster_marks_invariant_to_shift_scale_and_order_of_marks(m: np.ndarray, shift: float, scale: float) -> None:
    a = cluster_marks(m, n_boot=0)
    assert a.n_clusters == cluster_marks(m * scale + shift, n_boot=0).n_clusters
    perm = np.random.default_rng(0).permutation(m.shape[0])
    b = cluster_marks(m[np.ix_(perm, perm)], n_boot=0)
    assert b.n_clusters == a.n_clusters
    assert sorted(b.outlier_marks) == sorted(perm.argsort()[list(a.outlier_marks)].tolist())


@given(mark_matrices(), st.integers(min_value=0, max_value=3))
def test_cluster_marks_labels_types_and_counts_are_consistent(m: np.ndarray, n_boot: int) -> None:
    res = cluster_marks(m, n_boot=n_boot, seed=2)
    n = m.shape[0]
    lab = res.mark_labels
    assert lab.shape == (n,) and set(np.flatnonzero(lab < 0)) == set(res.outlier_marks)
    typical = lab[lab >= 0]
    assert all(np.sum(typical == g) >= res.min_support for g in range(res.n_groups)) or res.n_groups == 1
    assert sum(t.n_pairs for t in res.pair_types) == typical.size * (typical.size - 1) // 2
    assert 1 <= res.n_clusters <= 6 and {t.cluster for t in res.pair_types} == set(range(res.n_clusters))
    assert len(res.boot_counts) == n_boot and all(1 <= c <= 6 for c in res.boot_counts)
