"""Calibration of the decision rules (:mod:`layerclaims.decision`) by simulation with a known truth.

``python -m benchmarks calibration [--sims N] [--boot B] [--figures DIR]`` prints, for each kind of
claim, how often each verdict comes out when the truth is known, and (with ``--figures``) draws
``calibration_*.png``. The same functions run in ``tests/unit/test_decision_calibration.py`` (a few hundred seeded
simulations in the default tier, the full size under ``@pytest.mark.slow``). Numbers are in ``docs/verdicts.md``.

Kinds and generators (each at the sample size the claims use):

- **threshold**: a correlation-type statistic over N = 34 items (the study-B word count): Pearson r between two
  item variables drawn bivariate normal with true correlation ``rho``; the claim is ``r > 0.8``. The rule is
  bootstrap-over-items, as in study B. ``rho = 0.8`` (the boundary) is the worst case for a false "holds".
- **rsa**: RSA itself: 34 items in 3 categories (10/13/11), latent item vectors, Q and K two random linear maps of
  them plus independent noise; the noise level is set so that the population RSA (over 100,000 random pairs of
  items) equals the target. Bootstrap over items as study B's: :func:`~layerclaims.metrics.bootstrap.pair_moments`.
- **count**: N = 250 marks (study A) drawn from ``g`` well-separated 1-D Gaussian groups of unequal sizes; the
  count is the number of modes of a Gaussian kernel density (Silverman bandwidth, modes below 5% of the highest
  ignored), on the data and on each bootstrap resample of the marks. The claims ``== 3`` and ``== 1``; a wrong
  count is any ``g`` other than the claimed one. (Study A's own cluster procedure belongs to its study; this checks
  the rule that reads any integer count distribution.)
- **conjunction**: two threshold statistics (as above), one at its boundary and one clearly true: the
  intersection-union rule must not say "holds" more than 5% of the time.
- **band**: 30 correlated blocks (shared item effects, correlation 0.6 between blocks), a Pearson r per block over
  34 items, the claim ``r_b > 0.84 at every block``; worst case: every block exactly at 0.84.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from layerclaims.decision import LEVEL, decide_band, decide_count, decide_threshold, intersection_union
from layerclaims.metrics.bootstrap import bootstrap_indices, item_counts, pair_moments
from layerclaims.metrics.similarity import cosine_matrix

N_WORDS = 34
N_MARKS = 250
STRATA = np.repeat([0, 1, 2], [10, 13, 11])


@dataclass(frozen=True)
class Rates:
    """Fractions of the simulations that came out holds / fails / inconclusive (``n`` simulations)."""

    holds: float
    fails: float
    inconclusive: float
    n: int

    @classmethod
    def of(cls, words: Sequence[str]) -> Rates:
        w = np.asarray(words)
        return cls(float((w == "holds").mean()), float((w == "fails").mean()), float((w == "inconclusive").mean()),
                   len(w))  # fmt: skip

    def __str__(self) -> str:
        return f"holds {self.holds:.3f}, fails {self.fails:.3f}, inconclusive {self.inconclusive:.3f} (n={self.n})"


# ------------------------------------------------------------------------------------------------- helpers


def weighted_pearson(x: np.ndarray, y: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Pearson r of ``x``, ``y`` (``[..., n]``) in each bootstrap resample given by ``counts [B, n]``: ``[B, ...]``."""
    w = counts / counts.sum(axis=1, keepdims=True)
    mx, my = x @ w.T, y @ w.T  # [..., B]
    sxx = (x * x) @ w.T - mx * mx
    syy = (y * y) @ w.T - my * my
    sxy = (x * y) @ w.T - mx * my
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.moveaxis(sxy / np.sqrt(sxx * syy), -1, 0)


def _boot_counts(n: int, n_boot: int, seed: int, strata: np.ndarray | None = None) -> np.ndarray:
    idx = bootstrap_indices(n, n_boot, seed=seed, strata=strata)
    return item_counts(idx, n).astype(np.float64)


# ------------------------------------------------------------------------------------------------- threshold


def simulate_threshold(rho: float, threshold: float = 0.8, n_sims: int = 200, n_boot: int = 1000, seed: int = 0,
                       n: int = N_WORDS, alpha: float = LEVEL) -> Rates:  # fmt: skip
    """Verdicts of ``r > threshold`` when the true correlation is ``rho`` (module docstring)."""
    rng = np.random.default_rng(seed)
    words = []
    for s in range(n_sims):
        x = rng.standard_normal(n)
        y = rho * x + np.sqrt(1 - rho**2) * rng.standard_normal(n)
        reps = weighted_pearson(x, y, _boot_counts(n, n_boot, seed * 100_003 + s))
        words.append(decide_threshold(reps[np.isfinite(reps)], ">", threshold, alpha).verdict)
    return Rates.of(words)


def _rsa_population(noise: float, a: np.ndarray, b: np.ndarray, means: np.ndarray, rng: np.random.Generator) -> float:
    m = 100_000
    cat_i, cat_j = rng.integers(0, 3, m), rng.integers(0, 3, m)
    d = a.shape[0]
    zi = means[cat_i] + rng.standard_normal((m, d))
    zj = means[cat_j] + rng.standard_normal((m, d))

    def cos(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        return (u * v).sum(1) / np.linalg.norm(u, axis=1) / np.linalg.norm(v, axis=1)

    qi, qj = (
        zi @ a + noise * rng.standard_normal((m, a.shape[1])),
        zj @ a + noise * rng.standard_normal((m, a.shape[1])),
    )
    ki, kj = (
        zi @ b + noise * rng.standard_normal((m, b.shape[1])),
        zj @ b + noise * rng.standard_normal((m, b.shape[1])),
    )
    return float(np.corrcoef(cos(qi, qj), cos(ki, kj))[0, 1])


def rsa_world(target: float, seed: int = 0, d: int = 16) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
    """A generator whose population RSA is ``target`` (to about 0.005; at most about 0.9, the RSA of the two maps
    without noise): ``(noise, A, B, category means)``."""
    rng = np.random.default_rng(seed)
    a, b = rng.standard_normal((d, 128)) / np.sqrt(d), rng.standard_normal((d, 64)) / np.sqrt(d)
    means = 1.2 * rng.standard_normal((3, d))
    lo, hi = 0.0, 3.0
    for _ in range(12):
        mid = (lo + hi) / 2
        if _rsa_population(mid, a, b, means, np.random.default_rng(seed + 1)) > target:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2, a, b, means


def simulate_rsa(target: float, threshold: float = 0.8, n_sims: int = 200, n_boot: int = 1000, seed: int = 0,
                 alpha: float = LEVEL) -> Rates:  # fmt: skip
    """Verdicts of ``RSA > threshold`` on 34 words when the population RSA is ``target``."""
    noise, a, b, means = rsa_world(target, seed)
    rng = np.random.default_rng(seed + 2)
    words = []
    for s in range(n_sims):
        z = means[STRATA] + rng.standard_normal((N_WORDS, a.shape[0]))
        q = z @ a + noise * rng.standard_normal((N_WORDS, a.shape[1]))
        k = z @ b + noise * rng.standard_normal((N_WORDS, b.shape[1]))
        counts = item_counts(bootstrap_indices(N_WORDS, n_boot, seed=s, strata=STRATA, min_distinct=2), N_WORDS)
        reps = pair_moments(counts, cosine_matrix(q), cosine_matrix(k)).r
        reps = reps[np.isfinite(reps)]
        words.append(decide_threshold(reps, ">", threshold, alpha).verdict)
    return Rates.of(words)


# ------------------------------------------------------------------------------------------------- count


def count_modes(samples: np.ndarray, bandwidth: float, lo: float, hi: float, grid: int = 512,
                prominence: float = 0.3, min_height: float = 0.1) -> np.ndarray:  # fmt: skip
    """Modes of a binned Gaussian kernel density of each row of ``samples [R, n]`` on ``[lo, hi]``: ``[R]``
    integers. A local maximum counts when the density between it and every higher mode dips below
    ``1 - prominence`` of its height (shoulders and ripples are not modes)."""
    x = np.atleast_2d(samples)
    edges = np.linspace(lo, hi, grid + 1)
    step = edges[1] - edges[0]
    pos = np.clip(((x - lo) / step).astype(np.int64), 0, grid - 1)
    hist = np.zeros((x.shape[0], grid))
    np.add.at(hist, (np.arange(x.shape[0])[:, None], pos), 1.0)
    half = int(np.ceil(4 * bandwidth / step))
    kernel = np.exp(-0.5 * (np.arange(-half, half + 1) * step / bandwidth) ** 2)
    size = grid + kernel.size - 1
    dens = np.fft.irfft(np.fft.rfft(hist, size) * np.fft.rfft(kernel, size), size)[:, half : half + grid]
    out = np.empty(x.shape[0], dtype=np.int64)
    for i, d in enumerate(dens):
        peaks = np.flatnonzero((d[1:-1] > d[:-2]) & (d[1:-1] >= d[2:])) + 1
        peaks = peaks[d[peaks] > min_height * d.max()]
        kept = 0
        for p in peaks:
            higher = peaks[d[peaks] > d[p]]
            if higher.size == 0:
                kept += 1
                continue
            dips = [d[min(p, q) : max(p, q) + 1].min() for q in higher]
            if max(dips) < (1 - prominence) * d[p]:
                kept += 1
        out[i] = kept
    return out


def bandwidth(x: np.ndarray) -> float:
    """Silverman's rule of thumb."""
    iqr = np.subtract(*np.percentile(x, [75, 25]))
    return float(0.9 * min(x.std(ddof=1), iqr / 1.34) * x.size ** (-0.2))


def _count(x: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The count of :func:`count_modes` on ``rows``, with the bandwidth and the range of ``x``."""
    h = bandwidth(x)
    return count_modes(rows, h, x.min() - 4 * h, x.max() + 4 * h)


def mixture(g: int, rng: np.random.Generator, n: int = N_MARKS, separation: float = 8.0) -> np.ndarray:
    """``n`` points from ``g`` unit-variance Gaussian groups ``separation`` apart, unequal sizes (weights 3:2:1...)."""
    w = np.arange(g, 0, -1, dtype=float)
    labels = rng.choice(g, size=n, p=w / w.sum())
    return labels * separation + rng.standard_normal(n)


def simulate_count(truth: int, claimed: int, n_sims: int = 200, n_boot: int = 200, seed: int = 0,
                   separation: float = 8.0, alpha: float = LEVEL) -> Rates:  # fmt: skip
    """Verdicts of ``count == claimed`` when the data have ``truth`` groups."""
    rng = np.random.default_rng(seed)
    words = []
    for _ in range(n_sims):
        x = mixture(truth, rng, separation=separation)
        value = float(_count(x, x[None, :])[0])
        idx = rng.integers(0, x.size, size=(n_boot, x.size))
        reps = _count(x, x[idx]).astype(float)
        words.append(decide_count(value, reps, float(claimed), alpha).verdict)
    return Rates.of(words)


# ------------------------------------------------------------------------------------------------- conjunction


def simulate_conjunction(rho_a: float, rho_b: float, threshold: float = 0.8, n_sims: int = 200, n_boot: int = 1000,
                         seed: int = 0, alpha: float = LEVEL) -> Rates:  # fmt: skip
    """Verdicts of ``r_a > t and r_b > t`` (intersection-union) over the same 34 items."""
    rng = np.random.default_rng(seed)
    words = []
    for s in range(n_sims):
        x = rng.standard_normal(N_WORDS)
        ya = rho_a * x + np.sqrt(1 - rho_a**2) * rng.standard_normal(N_WORDS)
        yb = rho_b * x + np.sqrt(1 - rho_b**2) * rng.standard_normal(N_WORDS)
        counts = _boot_counts(N_WORDS, n_boot, seed * 100_003 + s)
        parts = [decide_threshold(weighted_pearson(x, y, counts), ">", threshold, alpha).verdict for y in (ya, yb)]
        words.append(intersection_union(parts))
    return Rates.of(words)


# ------------------------------------------------------------------------------------------------- band


def simulate_band(rhos: np.ndarray, threshold: float = 0.84, n_sims: int = 200, n_boot: int = 1000, seed: int = 0,
                  shared: float = 0.6, alpha: float = LEVEL) -> Rates:  # fmt: skip
    """Verdicts of ``r_b > threshold at every block`` with true per-block correlations ``rhos`` over 34 items;
    blocks share item effects (correlation ``shared`` between blocks), as the layers of one model do."""
    rng = np.random.default_rng(seed)
    rhos = np.asarray(rhos, dtype=float)[:, None]
    nb = rhos.shape[0]
    words = []
    for s in range(n_sims):
        u = np.sqrt(shared) * rng.standard_normal(N_WORDS) + np.sqrt(1 - shared) * rng.standard_normal((nb, N_WORDS))
        w = np.sqrt(shared) * rng.standard_normal(N_WORDS) + np.sqrt(1 - shared) * rng.standard_normal((nb, N_WORDS))
        v = rhos * u + np.sqrt(1 - rhos**2) * w
        values = np.array([np.corrcoef(a, b)[0, 1] for a, b in zip(u, v, strict=True)])
        reps = weighted_pearson(u, v, _boot_counts(N_WORDS, n_boot, seed * 100_003 + s)).T  # [nb, B]
        words.append(decide_band(values, reps, ">", threshold, alpha).verdict)
    return Rates.of(words)


# ------------------------------------------------------------------------------------------------- CLI


def table(n_sims: int = 200, n_boot: int = 1000) -> dict[str, Rates]:
    """Every scenario of the calibration (``docs/verdicts.md``)."""
    blocks = 30
    return {
        "threshold r > 0.8, rho = 0.80 (boundary)": simulate_threshold(0.8, n_sims=n_sims, n_boot=n_boot),
        "threshold r > 0.8, rho = 0.70": simulate_threshold(0.7, n_sims=n_sims, n_boot=n_boot, seed=1),
        "threshold r > 0.8, rho = 0.95": simulate_threshold(0.95, n_sims=n_sims, n_boot=n_boot, seed=2),
        "rsa > 0.8, population RSA 0.80 (boundary)": simulate_rsa(0.8, n_sims=n_sims, n_boot=n_boot),
        "rsa > 0.8, population RSA 0.90": simulate_rsa(0.9, n_sims=n_sims, n_boot=n_boot, seed=3),
        "count == 3, truth 3": simulate_count(3, 3, n_sims=n_sims),
        "count == 3, truth 2": simulate_count(2, 3, n_sims=n_sims, seed=1),
        "count == 3, truth 1": simulate_count(1, 3, n_sims=n_sims, seed=2),
        "count == 1, truth 1": simulate_count(1, 1, n_sims=n_sims, seed=3),
        "count == 1, truth 2": simulate_count(2, 1, n_sims=n_sims, seed=4),
        "count == 2, truth 2": simulate_count(2, 2, n_sims=n_sims, seed=5),
        "count == 3, truth 3, groups 4 sd apart (hard)": simulate_count(3, 3, n_sims=n_sims, seed=6, separation=4.0),
        "count == 3, truth 2, groups 4 sd apart (hard)": simulate_count(2, 3, n_sims=n_sims, seed=7, separation=4.0),
        "conjunction, one part at its boundary (0.8), one true (0.95)": simulate_conjunction(
            0.8, 0.95, n_sims=n_sims, n_boot=n_boot
        ),
        "conjunction, both true (0.95, 0.95)": simulate_conjunction(0.95, 0.95, n_sims=n_sims, n_boot=n_boot, seed=1),
        f"band > 0.84 over {blocks} blocks, all at 0.84 (boundary)": simulate_band(
            np.full(blocks, 0.84), n_sims=n_sims, n_boot=n_boot
        ),
        f"band > 0.84 over {blocks} blocks, one at 0.84, rest 0.95": simulate_band(
            np.r_[0.84, np.full(blocks - 1, 0.95)], n_sims=n_sims, n_boot=n_boot, seed=1
        ),
        f"band > 0.84 over {blocks} blocks, all at 0.95": simulate_band(
            np.full(blocks, 0.95), n_sims=n_sims, n_boot=n_boot, seed=2
        ),
        f"band > 0.84 over {blocks} blocks, all at 0.98": simulate_band(
            np.full(blocks, 0.98), n_sims=n_sims, n_boot=n_boot, seed=4
        ),
    }


def draw(out: Path, n_sims: int = 200, n_boot: int = 1000) -> list[Path]:
    """``calibration_threshold.png`` (verdict rates against the true correlation for ``r > 0.8``),
    ``calibration_count.png`` (rates per true and claimed count), ``calibration_band.png`` (rates against the
    common true correlation of 30 blocks for ``> 0.84 at every block``). Rasterised PNGs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    paths = []

    def curve(xs: np.ndarray, rates: list[Rates], t: float, xlabel: str, title: str, name: str) -> None:
        fig, ax = plt.subplots(figsize=(6.4, 4.0), constrained_layout=True)
        for key, color in (("holds", "tab:green"), ("fails", "tab:red"), ("inconclusive", "tab:orange")):
            ax.plot(xs, [getattr(r, key) for r in rates], "o-", color=color, label=key, ms=4)
        ax.axvline(t, color="k", lw=0.8, ls=":", label=f"threshold {t:g}")
        ax.axhline(LEVEL, color="grey", lw=0.8, ls="--", label=f"{LEVEL:g}")
        ax.axhline(0.9, color="grey", lw=0.8, ls="-.", label="0.9")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(f"fraction of {rates[0].n} simulations")
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=8)
        fig.savefig(out / name, dpi=110)
        plt.close(fig)
        paths.append(out / name)

    xs = np.array([0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95])
    rates = [simulate_threshold(r, n_sims=n_sims, n_boot=n_boot, seed=i) for i, r in enumerate(xs)]
    curve(xs, rates, 0.8, "true correlation", "claim r > 0.8, N = 34 items, rule at 0.05", "calibration_threshold.png")
    xs = np.array([0.8, 0.84, 0.9, 0.95, 0.97, 0.98, 0.99])
    curve(xs, [simulate_band(np.full(30, r), n_sims=n_sims, n_boot=n_boot, seed=i) for i, r in enumerate(xs)], 0.84,
          "true correlation at every block", "claim > 0.84 at every one of 30 correlated blocks (band)",
          "calibration_band.png")  # fmt: skip
    fig, ax = plt.subplots(figsize=(6.4, 4.0), constrained_layout=True)
    cases = [(3, 3), (2, 3), (1, 3), (1, 1), (2, 1), (3, 1)]
    rates = [simulate_count(t, c, n_sims=n_sims, seed=i) for i, (t, c) in enumerate(cases)]
    x = np.arange(len(cases))
    bottom = np.zeros(len(cases))
    for key, color in (("holds", "tab:green"), ("inconclusive", "tab:orange"), ("fails", "tab:red")):
        vals = np.array([getattr(r, key) for r in rates])
        ax.bar(x, vals, bottom=bottom, color=color, label=key)
        bottom += vals
    ax.set_xticks(x, [f"claim {c}\ntruth {t}" for t, c in cases], fontsize=8)
    ax.set_ylabel(f"fraction of {n_sims} simulations")
    ax.set_title("count claims, N = 250 marks, 200 resamples", fontsize=10)
    ax.legend(fontsize=8)
    fig.savefig(out / "calibration_count.png", dpi=110)
    plt.close(fig)
    paths.append(out / "calibration_count.png")
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks calibration")
    parser.add_argument("--sims", type=int, default=1000, help="simulations per scenario")
    parser.add_argument("--boot", type=int, default=1000, help="bootstrap resamples per simulation")
    parser.add_argument("--figures", type=Path, default=None, help="folder for calibration_*.png")
    args = parser.parse_args(list(argv or []))
    t0 = time.perf_counter()
    for name, rates in table(args.sims, args.boot).items():
        print(f"{name:<66} {rates}")
    if args.figures is not None:
        for p in draw(args.figures, n_sims=max(args.sims // 4, 50), n_boot=args.boot):
            print(f"figure: {p}")
    print(f"calibration: {args.sims} simulations per scenario, {args.boot} resamples, {time.perf_counter() - t0:.0f} s")
    return 0


# ------------------------------------------------------------------------------------------------- dependent marks


@dataclass(frozen=True)
class Coverage:
    """How often a 95% percentile interval of the mean pair covariance covered the population value, with the
    marks resampled one by one (``marks``) and in blocks of overlapping windows (``blocks``); ``n_units``: the
    mean number of blocks (the effective number of independent units); ``n`` simulations."""

    marks: float
    blocks: float
    n_units: float
    n: int

    def __str__(self) -> str:
        return (
            f"coverage of 95% intervals: marks one by one {self.marks:.3f}, blocks {self.blocks:.3f} "
            f"({self.n_units:.0f} blocks of {N_MARKS} marks on average; n={self.n})"
        )


def simulate_block_coverage(
    n_sims: int = 200,
    n_boot: int = 200,
    seed: int = 0,
    *,
    median_gap: float = 14.0,
    window: int = 20,
    d: int = 256,
    n: int = N_MARKS,
) -> Coverage:
    """Coverage of the mean pair covariance's interval when marks read overlapping windows
    (:func:`~tests.oracles.mark_cases.overlapping_marks`, token positions with geometric gaps of median
    ``median_gap``): the percentile interval of :func:`~layerclaims.metrics.bootstrap.pair_moments` over the
    ordinary bootstrap of marks and over the block bootstrap (:func:`~layerclaims.metrics.bootstrap.overlap_blocks`
    with ``window``). Each simulation draws new positions, token values and noise; the direction the marks load on
    is the same in all (the model)."""
    from layerclaims.metrics.bootstrap import block_counts, overlap_blocks
    from layerclaims.metrics.mark_cases import covariance
    from tests.oracles.mark_cases import mark_positions, overlapping_marks

    upper = np.triu(np.ones((n, n)), 1)

    rng = np.random.default_rng(seed)
    hit_marks: list[bool] = []
    hit_blocks: list[bool] = []
    units: list[int] = []
    for s in range(n_sims):
        pos = mark_positions(n, median_gap, rng)
        case = overlapping_marks(pos, rng, d=d, window=window)
        cov = covariance(case.x)
        blocks = overlap_blocks(pos, window)
        units.append(int(blocks.max()) + 1)
        for scheme, hits in ((np.arange(n), hit_marks), (blocks, hit_blocks)):
            w = block_counts(scheme, n_boot, seed=seed * 1_000_003 + s).astype(np.float64)
            # the pair-weighted mean of pair_moments (pairs of distinct marks weighted c_i c_j), its one form needed
            reps = np.einsum("bi,bi->b", w @ (cov * upper), w) / np.einsum("bi,bi->b", w @ upper, w)
            lo, hi = np.quantile(reps, [0.025, 0.975])
            hits.append(lo <= case.target <= hi)
    return Coverage(float(np.mean(hit_marks)), float(np.mean(hit_blocks)), float(np.mean(units)), n_sims)


# ------------------------------------------------------------------------------------------------- study A's counts

FAMILY_SIZE = 11
HOLM_LEVELS: tuple[float, ...] = tuple(LEVEL / (FAMILY_SIZE - i) for i in range(FAMILY_SIZE))
"""The levels of Holm's step-down over an 11-claim family at 0.05: 0.05/11 (the first claim) ... 0.05 (the last)."""


@dataclass(frozen=True)
class CountCalibration:
    """Verdicts of ``count == claimed`` from :func:`~layerclaims.metrics.mark_clusters.cluster_marks` and its block
    bootstrap refits on simulated marks, at one level: ``rates`` (holds / fails / inconclusive), ``coverage`` (the
    decision interval holds the true count), ``detected`` (the count on all marks is not 1), ``truth``."""

    separation: float
    d: int
    claimed: int
    truth: int
    alpha: float
    rates: Rates
    coverage: float
    detected: float

    def __str__(self) -> str:
        return (
            f"sep {self.separation:g}, D {self.d}, claim == {self.claimed} (truth {self.truth}), alpha "
            f"{self.alpha:.4f}: {self.rates}; coverage {self.coverage:.3f}; count != 1 in {self.detected:.3f}"
        )


def simulate_counts(
    separation: float,
    *,
    d: int = 576,
    claimed: tuple[int, ...] = (1, 3),
    alphas: Sequence[float] = (HOLM_LEVELS[0], LEVEL),
    n_sims: int = 20,
    n_boot: int = 200,
    seed: int = 0,
    n: int = N_MARKS,
    median_gap: float = 14.0,
) -> list[CountCalibration]:
    """Study A's count procedure end to end on simulated marks: two groups ``separation`` apart (noise sd units;
    0: one population) whose loadings also depend on overlapping 20-token windows
    (:func:`~tests.oracles.mark_cases.grouped_overlapping_marks`, geometric gaps of median ``median_gap``),
    the covariance pair matrix, ``cluster_marks`` on all marks, ``n_boot`` refits on block bootstrap resamples
    (:func:`~layerclaims.metrics.mark_clusters.refit_resamples`, blocks of marks within 20 tokens), and
    :func:`~layerclaims.decision.decide_count` for each claimed count at each level (default: the first and last
    Holm levels of an 11-claim family). The detection-limit gate of "== 1" is not applied here (it depends on the
    scenario, not the simulation: see :func:`layerclaims.metrics.detectability.detection_limit`)."""
    from layerclaims.metrics.bootstrap import block_counts, overlap_blocks
    from layerclaims.metrics.mark_cases import covariance
    from layerclaims.metrics.mark_clusters import cluster_marks, refit_resamples
    from tests.oracles.mark_cases import grouped_overlapping_marks, mark_positions

    rng = np.random.default_rng(seed)
    truth = 3 if separation > 0 else 1
    words: dict[tuple[int, float], list[str]] = {(k, a): [] for k in claimed for a in alphas}
    covered: dict[tuple[int, float], list[bool]] = {(k, a): [] for k in claimed for a in alphas}
    detected: list[bool] = []
    for s in range(n_sims):
        pos = mark_positions(n, median_gap, rng)
        case = grouped_overlapping_marks(pos, rng, d=d, separation=separation)
        cov = covariance(case.x)
        value = cluster_marks(cov, n_boot=0).n_clusters
        detected.append(value != 1)
        counts = block_counts(overlap_blocks(pos, 20), n_boot, seed=seed * 1_000_003 + s)
        reps = np.array([g.n_clusters for g in refit_resamples(cov, counts)], dtype=np.float64)
        for k in claimed:
            for a in alphas:
                dec = decide_count(float(value), reps, k, a)
                words[(k, a)].append(dec.verdict)
                lo, hi = dec.interval or (np.nan, np.nan)
                covered[(k, a)].append(bool(lo <= truth <= hi))
    return [
        CountCalibration(
            separation,
            d,
            k,
            truth,
            a,
            Rates.of(words[(k, a)]),
            float(np.mean(covered[(k, a)])),
            float(np.mean(detected)),
        )
        for k in claimed
        for a in alphas
    ]
