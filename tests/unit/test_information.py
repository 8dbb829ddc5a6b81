"""Unit tests for layerclaims.metrics.information (study A, claims.md §8).

The oracle ``naive_pair`` below is written independently of the package from the claims.md recipe, with
``np.histogram2d`` doing the binning; ``naive_matrix`` is the plain per-pair loop the fast code must match.
"""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest

from layerclaims.errors import UsageError
from layerclaims.metrics import information
from layerclaims.metrics.information import keep_mask, pairwise_mi_cov
from tests.oracles.information import mi_cov_pair, miller_madow_mi_pair

# Fast vs naive differ only by summation order (bincount + table vs histogram2d + elementwise log); measured
# worst case on all data here is ~4e-15 for MI and ~1e-14 relative for covariance. The contract is 1e-9.
TOL = 1e-9


def naive_pair(x: np.ndarray, y: np.ndarray, bins: int = 15, thr: float = 5.0) -> tuple[float, float]:
    with np.errstate(invalid="ignore", divide="ignore"):
        zx = (x - x.mean()) / x.std(ddof=1)
        zy = (y - y.mean()) / y.std(ddof=1)
    drop = (np.abs(zx) > thr) | (np.abs(zy) > thr)
    x, y = x[~drop], y[~drop]
    if len(x) < 2:
        return math.nan, math.nan
    counts, _, _ = np.histogram2d(x, y, bins=bins)
    p = counts / counts.sum()
    px, py = p.sum(1), p.sum(0)
    h = lambda q: -np.sum(q * np.log2(q + 1e-12))  # noqa: E731
    cov = np.sum((x - x.mean()) * (y - y.mean())) / (len(x) - 1)
    return h(px) + h(py) - h(p), cov


def naive_matrix(X: np.ndarray, bins: int = 15, thr: float = 5.0) -> tuple[np.ndarray, np.ndarray]:
    n = len(X)
    mi, cov = np.zeros((n, n)), np.zeros((n, n))
    for i in range(n):
        for j in range(i, n):
            mi[i, j], cov[i, j] = naive_pair(X[i], X[j], bins, thr)
            mi[j, i], cov[j, i] = mi[i, j], cov[i, j]
    return mi, cov


# the numba kernel (None) and the torch path on the CPU; the agreement tests below run for each
DEVICES = [None, "cpu"]


def assert_matches_naive(X: np.ndarray, bins: int = 15, thr: float = 5.0, device: str | None = None) -> None:
    mi, cov = pairwise_mi_cov(X, bins=bins, z_threshold=thr, device=device)
    ref_mi, ref_cov = naive_matrix(X, bins, thr)
    np.testing.assert_array_equal(np.isnan(mi), np.isnan(ref_mi))
    np.testing.assert_allclose(mi, ref_mi, rtol=0, atol=TOL, equal_nan=True)
    scale = max(1.0, float(np.nanmax(np.abs(ref_cov))) if np.isfinite(ref_cov).any() else 1.0)
    np.testing.assert_allclose(cov, ref_cov, rtol=0, atol=TOL * scale, equal_nan=True)


# ---------------------------------------------------------------------------------------------- hand-computed


def test_two_by_two_perfect_dependence_is_one_bit() -> None:
    # x and y each take two values, equally often, perfectly coupled: MI = 1 bit (minus the 1e-12 offsets).
    x = np.array([0.0, 0.0, 1.0, 1.0])
    mi, cov = mi_cov_pair(x, x, bins=2)
    assert mi == pytest.approx(1.0, abs=1e-9)
    assert cov == pytest.approx(1 / 3)  # var of [0,0,1,1] with n-1


def test_two_by_two_independent_is_zero() -> None:
    x = np.array([0.0, 0.0, 1.0, 1.0])
    y = np.array([0.0, 1.0, 0.0, 1.0])
    mi, cov = mi_cov_pair(x, y, bins=2)
    assert mi == pytest.approx(0.0, abs=1e-9)
    assert cov == pytest.approx(0.0, abs=1e-15)


def test_hand_computed_three_bins() -> None:
    # bins=3 over [0, 3]: edges 0,1,2,3; x -> bins 0,0,1,2 ; y -> bins 0,1,1,2 (3.0 lands in the closed last bin)
    x = np.array([0.0, 0.5, 1.5, 3.0])
    y = np.array([0.0, 1.0, 1.2, 3.0])
    # joint cells: (0,0) (0,1) (1,1) (2,2), each 1/4 -> Hxy = 2 ; px = (1/2, 1/4, 1/4) -> 1.5 ; py the same
    mi, cov = mi_cov_pair(x, y, bins=3)
    assert mi == pytest.approx(1.5 + 1.5 - 2.0, abs=1e-9)
    assert cov == pytest.approx(np.cov(x, y)[0, 1], rel=1e-12)


def test_base_e_gives_nats() -> None:
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((2, 200))
    bits, _ = mi_cov_pair(x, y)
    nats, _ = mi_cov_pair(x, y, base=math.e)
    assert nats == pytest.approx(bits * math.log(2), rel=1e-12)


def test_reference_equals_independent_oracle_bit_for_bit() -> None:
    rng = np.random.default_rng(4)
    for _ in range(20):
        x, y = rng.standard_t(3, (2, 300))
        assert mi_cov_pair(x, y) == naive_pair(x, y)


def test_trimming_drops_dim_from_both_vectors() -> None:
    rng = np.random.default_rng(5)
    x = rng.standard_normal(500)
    y = rng.standard_normal(500)
    x[7] = 100.0  # |z| far above 5 in x only
    keep = keep_mask(x) & keep_mask(y)
    assert not keep[7] and keep.sum() == 499
    _, cov = mi_cov_pair(x, y)
    assert cov == pytest.approx(np.cov(x[keep], y[keep])[0, 1], rel=1e-12)


def test_row_masks_equal_the_masks_of_each_vector() -> None:
    """keep_mask on a 2-D array (one reduction per row) gives each 1-D vector's mask, the original's computation:
    heavy tails, so that some dims sit near the threshold, and large offsets, where a summation order would show."""
    rng = np.random.default_rng(11)
    X = rng.standard_t(2, (200, 577)) * rng.uniform(0.1, 50, (200, 1)) + rng.uniform(-1e4, 1e4, (200, 1))
    for t in (2.0, 3.0, 5.0):
        rows = keep_mask(X, t)
        assert np.array_equal(rows, np.stack([keep_mask(row, t) for row in X]))
        assert not rows.all()


def test_covariance_is_np_cov_on_trimmed_dims() -> None:
    rng = np.random.default_rng(6)
    X = rng.standard_t(2, (6, 400)) * 3 + 10
    _, cov = pairwise_mi_cov(X)
    masks = [keep_mask(row) for row in X]
    for i in range(6):
        for j in range(6):
            k = masks[i] & masks[j]
            assert cov[i, j] == pytest.approx(np.cov(X[i, k], X[j, k])[0, 1], rel=1e-10, abs=1e-12)


# ---------------------------------------------------------------------------------------------- fast == naive


@pytest.mark.parametrize("device", DEVICES)
def test_fast_matches_naive_random_gaussian(device: str | None) -> None:
    X = np.random.default_rng(10).standard_normal((25, 256))
    assert_matches_naive(X, device=device)


@pytest.mark.parametrize("device", DEVICES)
def test_fast_matches_naive_heavy_tails_and_outliers(device: str | None) -> None:
    rng = np.random.default_rng(11)
    X = rng.standard_t(2, (25, 300))
    X[:, :4] *= 20  # shared outlier dims, like massive activations
    X[3, 100] = 1e4  # an outlier in one vector only: other vectors' ranges change for pairs with it
    assert_matches_naive(X, device=device)


@pytest.mark.parametrize("device", DEVICES)
def test_fast_matches_naive_with_ties(device: str | None) -> None:
    rng = np.random.default_rng(12)
    X = np.round(rng.standard_normal((20, 200)) * 2)  # integers: many ties, values on bin edges
    assert_matches_naive(X, device=device)
    assert_matches_naive(X, bins=4, device=device)
    assert_matches_naive(X, bins=6, thr=1.0, device=device)  # many trimmed dims, tied extremes


@pytest.mark.parametrize("device", DEVICES)
def test_fast_matches_naive_constant_vectors(device: str | None) -> None:
    rng = np.random.default_rng(13)
    X = rng.standard_normal((10, 100))
    X[2] = 0.0
    X[5] = 7.25
    mi, cov = pairwise_mi_cov(X, device=device)
    assert_matches_naive(X, device=device)
    # constant vector: MI 0 (up to the 1e-12 offset, about -1.4e-12 bits), covariance 0
    assert np.all(np.abs(mi[2]) < 1e-9) and np.all(np.abs(cov[5]) < 1e-12)


@pytest.mark.parametrize("device", DEVICES)
def test_fast_matches_naive_collapsing_trimmed_range(device: str | None) -> None:
    # all values equal except one far outlier: trimming removes it and the kept range collapses to one value
    D = 200
    X = np.random.default_rng(14).standard_normal((8, D))
    X[0] = 1.0
    X[0, 17] = 500.0
    X[1] = 0.0
    X[1, [3, 4]] = [-300.0, 300.0]
    # a vector whose min is trimmed only in pairs with vector 2 (vector 2 is an outlier at that dim)
    X[3, 50] = X[3].min() - 0.5
    X[2, 50] = 1e3
    assert not keep_mask(X[0])[17]
    assert_matches_naive(X, device=device)


@pytest.mark.parametrize("device", DEVICES)
def test_fast_matches_naive_small_d_fewer_dims_than_bins(device: str | None) -> None:
    rng = np.random.default_rng(15)
    for d in (2, 3, 7, 14):
        assert_matches_naive(rng.standard_normal((6, d)), device=device)


@pytest.mark.parametrize("device", DEVICES)
def test_fast_matches_naive_other_parameters(device: str | None) -> None:
    rng = np.random.default_rng(16)
    X = rng.standard_t(4, (12, 150))
    assert_matches_naive(X, bins=7, thr=2.0, device=device)  # a low threshold trims many dims, ranges vary
    assert_matches_naive(X, bins=1, thr=5.0, device=device)
    assert_matches_naive(X, bins=40, thr=1.0, device=device)  # > 32 candidates per vector
    assert_matches_naive(X[:4], bins=300, thr=3.0, device=device)  # bin indices past uint8


@pytest.mark.parametrize("device", DEVICES)
def test_fast_miller_madow_matches_per_pair(device: str | None) -> None:
    X = np.random.default_rng(31).standard_t(3, (7, 200))
    mi, _ = pairwise_mi_cov(X, estimator="miller-madow", device=device)
    for i in range(7):
        for j in range(i, 7):
            assert mi[i, j] == pytest.approx(miller_madow_mi_pair(X[i], X[j]), abs=TOL)


def test_fast_matches_naive_across_chunks() -> None:
    X = np.random.default_rng(17).standard_t(3, (15, 120))
    ref = pairwise_mi_cov(X, device="cpu")
    for chunk in (1, 7, 10_000):
        got = pairwise_mi_cov(X, chunk_size=chunk, device="cpu")
        np.testing.assert_array_equal(got[0], ref[0])
        np.testing.assert_allclose(got[1], ref[1], rtol=0, atol=1e-12)


def test_backends_agree_on_larger_heavy_tailed_data() -> None:
    # the benchmark's kind of data (shared heavy-tailed dims: many pairs need a range other than the vector's own)
    from benchmarks.pairwise_mi import make_data

    X = make_data(40, 512, seed=3)
    ref = pairwise_mi_cov(X, device="cpu")
    got = pairwise_mi_cov(X)
    np.testing.assert_allclose(got[0], ref[0], rtol=0, atol=TOL)
    np.testing.assert_allclose(got[1], ref[1], rtol=0, atol=TOL * float(np.abs(ref[1]).max()))
    iu, ju = np.triu_indices(40, 1)
    for p in range(0, len(iu), 37):  # and a sample of pairs against the oracle
        assert got[0][iu[p], ju[p]] == pytest.approx(naive_pair(X[iu[p]], X[ju[p]])[0], abs=TOL)


def test_numba_without_stored_variant_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    # a zero memory budget: every pair side is binned inside the kernel; the numbers must not change
    X = np.random.default_rng(22).standard_t(2, (12, 150))
    ref = pairwise_mi_cov(X)
    monkeypatch.setattr(information, "_VARIANT_BUDGET", 0)
    got = pairwise_mi_cov(X)
    np.testing.assert_array_equal(got[0], ref[0])
    np.testing.assert_array_equal(got[1], ref[1])


def test_numba_edges_and_bins_are_numpys_bit_for_bit() -> None:
    kern = pytest.importorskip("layerclaims.metrics._pairwise_kernel")
    rng = np.random.default_rng(23)
    cases = [(0.0, 1.0), (-3.7, 2.2), (1e6 + 0.1, 1e6 + 0.3), (5.0, 5.0), (0.0, 5e-324), (-1e-300, 1e-300)]
    cases += [tuple(np.sort(rng.standard_normal(2) * 10.0 ** rng.integers(-5, 6))) for _ in range(200)]
    for bins in (1, 2, 15, 40):
        edges = np.empty(bins + 1)
        for lo, hi in cases:
            x = np.concatenate([[lo, hi], rng.uniform(lo, hi, 50)])
            _, ref_edges, _ = np.histogram2d(x, x, bins=bins)
            kern.linspace_edges(lo, hi, bins, edges)
            np.testing.assert_array_equal(edges, ref_edges)
            x = np.concatenate([x, ref_edges])  # values exactly on every edge
            got = np.empty(len(x), np.int32)
            kern.bin_row(x, np.ones(len(x), bool), edges, bins, got)
            ref = np.searchsorted(ref_edges, x, side="right") - 1
            ref[x == ref_edges[-1]] -= 1
            np.testing.assert_array_equal(got, ref)


def test_device_errors_and_missing_numba(monkeypatch: pytest.MonkeyPatch) -> None:
    X = np.random.default_rng(24).standard_normal((4, 30))
    with pytest.raises(UsageError, match="device must be"):
        pairwise_mi_cov(X, device="tpu")
    monkeypatch.setitem(sys.modules, "layerclaims.metrics._pairwise_kernel", None)  # import fails
    with pytest.raises(UsageError, match="pairwise_mi_cov needs numba"):
        pairwise_mi_cov(X)


def test_accepts_torch_tensor() -> None:
    torch = pytest.importorskip("torch")
    X = np.random.default_rng(19).standard_normal((5, 64))
    got = pairwise_mi_cov(torch.from_numpy(X).float())
    ref = pairwise_mi_cov(X.astype(np.float32).astype(np.float64))
    np.testing.assert_array_equal(got[0], ref[0])


def test_diagonal_is_the_pair_x_x() -> None:
    X = np.random.default_rng(20).standard_normal((5, 300))
    mi, cov = pairwise_mi_cov(X)
    for i in range(5):
        ref = naive_pair(X[i], X[i])
        assert mi[i, i] == pytest.approx(ref[0], abs=TOL)
        assert cov[i, i] == pytest.approx(np.var(X[i], ddof=1), rel=1e-12)


def test_matrices_exactly_symmetric() -> None:
    X = np.random.default_rng(21).standard_t(3, (9, 100))
    mi, cov = pairwise_mi_cov(X)
    np.testing.assert_array_equal(mi, mi.T)
    np.testing.assert_array_equal(cov, cov.T)


# ---------------------------------------------------------------------------------------------- edges, errors


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_or_inf_is_a_usage_error(bad: float) -> None:
    X = np.zeros((3, 10))
    X[1, 4] = bad
    with pytest.raises(UsageError, match="NaN"):
        pairwise_mi_cov(X)
    with pytest.raises(UsageError, match="NaN"):
        mi_cov_pair(X[1], X[0])


def test_shape_and_parameter_errors() -> None:
    with pytest.raises(UsageError, match="2-D"):
        pairwise_mi_cov(np.zeros(10))
    with pytest.raises(UsageError, match="at least 2 dims"):
        pairwise_mi_cov(np.zeros((3, 1)))
    with pytest.raises(UsageError, match="bins"):
        pairwise_mi_cov(np.zeros((3, 10)), bins=0)
    with pytest.raises(UsageError, match="base"):
        mi_cov_pair(np.arange(5.0), np.arange(5.0), base=1)
    with pytest.raises(UsageError, match="estimator"):
        pairwise_mi_cov(np.zeros((3, 10)), estimator="ksg")
    with pytest.raises(UsageError, match="same length"):
        mi_cov_pair(np.zeros(4), np.zeros(5))


def test_fewer_than_two_kept_dims_gives_nan() -> None:
    # D = 3, threshold 1: [0, 0, 10] keeps dims 0, 1 (z of the 10 is 1.15); [0, 10, 0] keeps 0, 2; the pair
    # keeps dim 0 only.
    x = np.array([0.0, 0.0, 10.0])
    y = np.array([0.0, 10.0, 0.0])
    z = np.array([1.0, 2.0, 3.0])
    X = np.stack([x, y, z])
    mi, cov = pairwise_mi_cov(X, z_threshold=1.0)
    ref = naive_matrix(X, thr=1.0)
    np.testing.assert_array_equal(np.isnan(mi), np.isnan(ref[0]))
    np.testing.assert_allclose(mi, ref[0], atol=TOL, equal_nan=True)
    assert math.isnan(mi[0, 1]) and math.isnan(cov[0, 1])
    assert np.isfinite(mi[0, 0]) and np.isfinite(cov[2, 2])
    assert all(math.isnan(v) for v in mi_cov_pair(x, y, z_threshold=1.0))


def test_empty_input() -> None:
    mi, cov = pairwise_mi_cov(np.zeros((0, 10)))
    assert mi.shape == cov.shape == (0, 0)


# ---------------------------------------------------------------------------------------------- bias-aware


def _gaussian_pair(rho: float, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(n)
    return x, rho * x + math.sqrt(1 - rho**2) * rng.standard_normal(n)


RHOS = (0.0, 0.3, 0.6, 0.9)
SEEDS = range(8)


@pytest.mark.parametrize("rho", RHOS)
def test_miller_madow_matches_gaussian_closed_form(rho: float) -> None:
    # Measured over 50 seeds at n = 1024, 15 bins (bits): mean error +0.047/+0.041/+0.021/-0.077 (at rho 0.9
    # the 15 equal-width bins lose information: a downward discretisation bias), sd 0.013 to 0.039.
    # Tolerance for the mean over 8 draws: 0.1 bits.
    true = -0.5 * math.log2(1 - rho**2)
    est = np.array([miller_madow_mi_pair(*_gaussian_pair(rho, 1024, s)) for s in SEEDS])
    assert abs(est.mean() - true) < 0.1


def test_plugin_histogram_is_biased_upward_at_independence() -> None:
    # The original estimator reports ~0.12 bits for independent Gaussians at n = 1024 (measured mean over 50
    # seeds 0.123, sd 0.012): roughly (cells - rows - cols + 1) / (2 n ln 2). Miller–Madow removes most of it.
    plugin = np.array([mi_cov_pair(*_gaussian_pair(0.0, 1024, s))[0] for s in SEEDS])
    mm = np.array([miller_madow_mi_pair(*_gaussian_pair(0.0, 1024, s)) for s in SEEDS])
    assert plugin.min() > 0.09
    assert mm.mean() < plugin.mean() / 2
    assert np.all(mm < plugin)


def test_pairwise_miller_madow_matches_per_pair() -> None:
    X = np.random.default_rng(30).standard_t(4, (8, 300))
    mi, _ = pairwise_mi_cov(X, estimator="miller-madow")
    for i in range(8):
        for j in range(i, 8):
            assert mi[i, j] == pytest.approx(miller_madow_mi_pair(X[i], X[j]), abs=TOL)


REAL_TEXT = (
    "I had then, as you remember, just returned to London after a lot of Indian Ocean, Pacific, China Seas, "
    "a regular dose of the East, six years or so, and I was loafing about, hindering you fellows in your work "
    "and invading your homes, just as though I had got a heavenly mission to civilise you. It was very fine "
    "for a time, but after a bit I did get tired of resting. Then I began to look for a ship, I should think "
    "the hardest work on earth. But the ships wouldn't even look at me. And I got tired of that game, too."
)


@pytest.mark.parametrize("model", ["tiny-gpt2", pytest.param("smollm2-135m", marks=pytest.mark.slow)])
@pytest.mark.parametrize("device", DEVICES)
def test_fast_matches_naive_on_real_hidden_states(model: str, device: str | None) -> None:
    """The spec's last agreement case: hidden states of a real model (smollm2-135m: real weights, with the few
    massive-activation dimensions that the 5-SD trimming exists for), at the first block output and at the last
    block output before the final norm, 40 windows of 12 tokens, last position."""
    from layerclaims.extract import hidden_states
    from layerclaims.models import load_model

    handle = load_model(model)
    ids = handle.tokenizer.encode(REAL_TEXT, add_special_tokens=False)
    windows = [ids[i : i + 12] for i in range(0, 40 * 2, 2)]
    H = hidden_states(handle, windows, -1, layers=[1, handle.n_blocks], final="pre_norm")
    for X in H.astype(np.float64):
        assert_matches_naive(X, device=device)
