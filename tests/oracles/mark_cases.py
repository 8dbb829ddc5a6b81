"""Synthetic marks with a known answer, for validating :func:`layerclaims.metrics.mark_clusters.cluster_marks`
(written from the description of issue 11, not from the procedure's gates), on the one-direction model of
:mod:`layerclaims.metrics.mark_cases`. Every case is a :class:`MarkCase`: the marks ``x [N, D]``, ``truth``, the
number of pair clusters carried by groups of marks, and the marks that must be flagged (atypical single marks).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from layerclaims.metrics.mark_cases import marks

N, D = 250, 1024


@dataclass(frozen=True)
class MarkCase:
    """A generated set of marks: ``x [N, D]``, the true count, the marks that must be flagged, group labels."""

    x: np.ndarray
    truth: int
    flagged: tuple[int, ...] = ()
    labels: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))


def groups(sizes: list[int], amps: list[float], rng: np.random.Generator, truth: int) -> MarkCase:
    """Groups of marks with loadings ``amps`` (shuffled order); the pair types sit at ``a_g a_h``."""
    lab = np.repeat(np.arange(len(sizes)), sizes)
    lab = lab[rng.permutation(lab.size)]
    return MarkCase(marks(np.asarray(amps, dtype=float)[lab], rng, D), truth, (), lab)


def one_population(rng: np.random.Generator) -> MarkCase:
    """One population: every mark draws its vector the same way (1)."""
    return MarkCase(marks(np.full(N, 0.7), rng, D), 1, (), np.zeros(N, dtype=np.int64))


def atypical_marks(rng: np.random.Generator) -> MarkCase:
    """One population plus 3 atypical marks (1, the 3 flagged): two load 3x as much on the shared direction (their
    249 pairs form a streak of their own), one has a direction of its own with 4x the norm of the noise."""
    a = np.full(N, 0.7)
    odd = rng.choice(N, 3, replace=False)
    a[odd[:2]] = 2.1
    x = marks(a, rng, D)
    x[odd[2]] += 4.0 * rng.normal(0, 1, D) + 1.5 * x.mean(axis=0)
    return MarkCase(x, 1, tuple(sorted(int(i) for i in odd)), np.zeros(N, dtype=np.int64))


def heavy_tailed(rng: np.random.Generator) -> MarkCase:
    """Per-mark loadings with heavy tails (Student t, 3 dof, around 0.7): one population (1)."""
    return MarkCase(marks(0.7 + 0.25 * rng.standard_t(3, N), rng, D), 1, (), np.zeros(N, dtype=np.int64))


def lognormal_scales(rng: np.random.Generator, sigma: float = 0.5) -> MarkCase:
    """Each mark's whole vector scaled by a lognormal factor (a continuous per-mark effect, no groups): 1."""
    x = marks(np.full(N, 0.7), rng, D) * rng.lognormal(0, sigma, (N, 1))
    return MarkCase(x, 1, (), np.zeros(N, dtype=np.int64))


CASES: dict[str, Callable[[np.random.Generator], MarkCase]] = {
    "one population": one_population,
    "one population + 3 atypical marks": atypical_marks,
    "heavy-tailed loadings (t3)": heavy_tailed,
    "lognormal scales (sigma 0.5)": lognormal_scales,
    "lognormal scales (sigma 1)": lambda rng: lognormal_scales(rng, 1.0),
    "two groups 125/125": lambda rng: groups([125, 125], [0.5, 1.0], rng, 3),
    "two groups 225/25": lambda rng: groups([225, 25], [0.5, 1.0], rng, 3),
    "two groups 240/10": lambda rng: groups([240, 10], [0.5, 1.0], rng, 3),
    "two groups, types coincide": lambda rng: groups([125, 125], [0.0, 1.0], rng, 2),
    "three groups 100/100/50": lambda rng: groups([100, 100, 50], [0.5, 1.0, 1.5], rng, 6),
}


def power_case(delta: float, rng: np.random.Generator) -> MarkCase:
    """Two groups of 125 with loadings 0.7 and 0.7 + ``delta``: 3 pair types for delta > 0, 1 at delta = 0. The
    power curve is the fraction of seeds with count 3 as ``delta`` grows."""
    return groups([125, 125], [0.7, 0.7 + delta], rng, 3 if delta > 0 else 1)


@dataclass(frozen=True)
class OverlappingMarks:
    """Marks read from overlapping windows of one token stream: ``x [N, D]``, the marks' token ``positions``, and
    ``target``: the population value of the mean pair covariance (what a bootstrap interval should cover)."""

    x: np.ndarray
    positions: np.ndarray
    target: float


def mark_positions(n: int, median_gap: float, rng: np.random.Generator) -> np.ndarray:
    """Token positions of ``n`` marks with geometric gaps (>= 1) of the given median (study A's first 250 internal
    marks: median gap 14 tokens, 66% of consecutive marks within 20 tokens)."""
    p = 1.0 - 0.5 ** (1.0 / max(median_gap - 0.5, 0.5))
    return 20 + np.cumsum(rng.geometric(p, n))


def _window_values(pos: np.ndarray, w: int, rng: np.random.Generator) -> np.ndarray:
    """Per-token values ``z_k ~ N(0, 1)`` summed over the ``w`` tokens ending at each position, over ``sqrt(w)``."""
    csum = np.r_[0.0, np.cumsum(rng.standard_normal(int(pos.max()) + 1))]
    return (csum[pos + 1] - csum[pos + 1 - w]) / np.sqrt(w)


def overlapping_marks(
    positions: np.ndarray,
    rng: np.random.Generator,
    *,
    d: int = 256,
    window: int = 20,
    loading: float = 0.7,
    spread: float = 0.3,
    direction_seed: int = 12345,
) -> OverlappingMarks:
    """Marks whose hidden states share input when their windows overlap: every token ``k`` of the stream carries a
    scalar ``z_k ~ N(0, 1)``; mark ``i`` at position ``p_i`` loads ``a_i = loading + spread * sum(z over the
    window + 1 tokens ending at p_i) / sqrt(window + 1)`` on one fixed direction ``u`` (seeded by
    ``direction_seed``, the same in every draw: the model), ``x_i = a_i u + e_i``, ``e_i ~ N(0, I_D)``. Two marks
    ``g`` tokens apart (``g <= window``) have loadings correlated ``(window + 1 - g) / (window + 1)``. ``target``:
    ``E[mean_{i<j} cov_ij] = s_u^2 mean_{i<j} E[a_i a_j]`` with ``s_u^2`` the variance of ``u`` over its
    dimensions, exactly."""
    pos = np.asarray(positions, dtype=np.int64)
    w = window + 1
    a = loading + spread * _window_values(pos, w, rng)
    u = np.random.default_rng(direction_seed).normal(0, 1, d)
    x = marks(a, rng, d, u)
    gap = np.abs(pos[:, None] - pos[None, :])
    overlap = np.clip(w - gap, 0, None) / w
    iu = np.triu_indices(pos.size, 1)
    e_aa = loading**2 + spread**2 * overlap[iu].mean()
    return OverlappingMarks(x, pos, float(np.var(u, ddof=1) * e_aa))


def grouped_overlapping_marks(
    positions: np.ndarray,
    rng: np.random.Generator,
    *,
    d: int = D,
    separation: float = 0.0,
    loading: float = 0.7,
    spread: float = 0.05,
    window: int = 20,
) -> MarkCase:
    """Two groups of marks (half each, shuffled) with loadings ``loading`` and ``loading + separation`` on one
    shared direction (:func:`power_case`), and marks that read overlapping windows: each mark's loading also moves
    by ``spread`` times the mean of per-token values over its ``window + 1`` tokens (:func:`overlapping_marks`), so
    neighbours within ``window`` tokens are dependent. Truth: 3 pair clusters for ``separation > 0``, else 1."""
    pos = np.asarray(positions, dtype=np.int64)
    n = pos.size
    lab = (rng.permutation(n) >= n // 2).astype(np.int64)
    a = loading + separation * lab + spread * _window_values(pos, window + 1, rng)
    x = marks(a, rng, d)
    return MarkCase(x, 3 if separation > 0 else 1, (), lab if separation > 0 else np.zeros(n, dtype=np.int64))
