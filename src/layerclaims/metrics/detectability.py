"""What a cluster count could not have seen: the detection limit of :func:`~layerclaims.metrics.mark_clusters.
cluster_marks` on data like a run's own, by simulation.

A count of 1 says "no groups" only if the procedure would have found groups that were there. The limit depends on
the data: the number of marks ``N``, their dimension ``D``, and how strong the marks' shared direction is against
their own noise. :func:`matched_loading` reads that from a pair covariance matrix of the marks;
:func:`detection_limit` then simulates marks of the one-direction model of :mod:`layerclaims.metrics.mark_cases`
(``x_i = a_i u + e_i``, ``e_i ~ N(0, I_D)``, ``u ~ N(0, I_D)``): two groups of ``N/2`` marks with loadings ``a`` and
``a + s r``, where ``s``, the **separation**, is relative to the shared loading: ``r = max(a, 0.5)`` (so the
separation means the same whatever the scale of the marks; a loading below half the noise sd counts as 0.5). At ``a
= 0.7`` a separation ``s`` is :func:`~layerclaims.metrics.mark_cases.power_case`'s ``delta = 0.7 s``. A simulation
*detects* the groups when the count is not 1. The detection limit is the smallest separation on a ladder whose power
(fraction of simulations detecting) is at least ``target`` (80%).

Units and edge cases: ``separation`` is relative to the loading (``r`` above), ``loading`` in noise sd per
dimension; a matrix whose mean pair covariance is not positive gives loading 0 (groups at 0 and ``0.5 s``);
``separation`` None: no separation on the ladder reached the target power (the limit lies above the largest tried).
The model has one shared direction and Gaussian noise; real hidden states have heavier structure (a few dimensions
that dominate, heavy tails), so the limit is a lower bound on what the count misses, not an exact one."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from layerclaims.errors import UsageError

__all__ = ["Detectability", "detection_limit", "matched_loading", "power_at"]

TARGET_POWER = 0.8


@dataclass(frozen=True)
class Detectability:
    """The detection limit of a count on data like the run's: ``separation`` (None: above every separation tried),
    ``power`` at it (or at the largest tried), ``n_sims`` per separation, ``tried`` ``((separation, power), ...)``
    in the order simulated, ``loading``, ``n``, ``d`` of the matched model, ``target`` power."""

    separation: float | None
    power: float
    n_sims: int
    tried: tuple[tuple[float, float], ...]
    loading: float
    n: int
    d: int
    target: float = TARGET_POWER

    def detects(self, separation: float) -> bool:
        """Whether groups ``separation`` apart are detected with at least the target power (measured on the ladder:
        a separation at or above the limit)."""
        return self.separation is not None and self.separation <= separation + 1e-12

    def to_dict(self) -> dict[str, Any]:
        return {
            "separation": self.separation,
            "power": self.power,
            "n_sims": self.n_sims,
            "target_power": self.target,
            "tried": [list(t) for t in self.tried],
            "loading": self.loading,
            "n": self.n,
            "d": self.d,
            "units": "loading difference between two groups of marks on their shared direction, relative to the "
            "loading (at least 0.5 noise sd)",
        }


def matched_loading(cov: np.ndarray) -> float:
    """The loading ``a`` (noise units) of the one-direction model whose marks have the pair covariances ``cov``
    (``N x N``, the diagonal = each mark's variance over dimensions): mean pair covariance ``a^2`` over mean
    variance minus mean pair covariance (the noise variance), ``a = sqrt(c / (v - c))``; 0 when ``c <= 0``."""
    c = np.asarray(cov, dtype=np.float64)
    if c.ndim != 2 or c.shape[0] != c.shape[1] or c.shape[0] < 2:
        raise UsageError(f"matched_loading needs an N x N covariance matrix with N >= 2, got shape {c.shape}")
    n = c.shape[0]
    off = float((c.sum() - np.trace(c)) / (n * (n - 1)))
    noise = float(np.trace(c) / n) - off
    if not off > 0 or not noise > 0:
        return 0.0
    return float(np.sqrt(off / noise))


MIN_REFERENCE = 0.5
"""The loading a separation is relative to is at least this (noise sd): ``r = max(a, 0.5)``."""


def simulate_groups(n: int, d: int, loading: float, separation: float, rng: np.random.Generator) -> np.ndarray:
    """``[n, d]`` marks of two groups (``n // 2`` and the rest, shuffled) with loadings ``loading`` and
    ``loading + separation * max(loading, 0.5)`` on one shared direction, unit noise."""
    step = separation * max(loading, MIN_REFERENCE)
    a = np.where(rng.permutation(n) < n // 2, loading, loading + step)
    u = rng.normal(0, 1, d)
    return a[:, None] * u[None, :] + rng.normal(0, 1, (n, d))


def power_at(
    separation: float,
    *,
    n: int,
    d: int,
    loading: float,
    pair_matrix: Callable[[np.ndarray], np.ndarray],
    count: Callable[[np.ndarray], int],
    n_sims: int,
    seed: int,
) -> float:
    """Fraction of ``n_sims`` simulations (:func:`simulate_groups`) whose ``count(pair_matrix(x))`` is not 1."""
    rng = np.random.default_rng(seed)
    hits = sum(count(pair_matrix(simulate_groups(n, d, loading, separation, rng))) != 1 for _ in range(n_sims))
    return hits / n_sims


def detection_limit(
    *,
    n: int,
    d: int,
    loading: float,
    pair_matrix: Callable[[np.ndarray], np.ndarray],
    count: Callable[[np.ndarray], int],
    start: float,
    n_sims: int = 10,
    seed: int = 0,
    target: float = TARGET_POWER,
    factor: float = 1.5,
    max_steps: int = 3,
) -> Detectability:
    """The smallest separation on the ladder ``start * factor**k`` (``k`` from ``-max_steps`` to ``max_steps``)
    detected with power >= ``target``: from ``start`` (say, the separation a claim calls meaningful) up while the
    power falls short, or down while it reaches the target; ``n_sims`` simulations per rung (seeded per rung).
    ``pair_matrix``: marks ``[n, d]`` -> the ``n x n`` matrix the count reads (covariance, MI); ``count``: that
    matrix -> number of clusters."""
    if n_sims < 1 or not start > 0 or not factor > 1 or n < 4 or d < 1:
        raise UsageError("detection_limit needs n_sims >= 1, start > 0, factor > 1, n >= 4 and d >= 1")
    tried: list[tuple[float, float]] = []

    def power(k: int) -> float:
        s = float(start * factor**k)
        p = power_at(s, n=n, d=d, loading=loading, pair_matrix=pair_matrix, count=count, n_sims=n_sims,
                     seed=seed * 1_000 + k + max_steps)  # fmt: skip
        tried.append((s, p))
        return p

    k = 0
    p = power(0)
    if p >= target:
        best = (start, p)
        while k > -max_steps:
            k -= 1
            q = power(k)
            if q < target:
                break
            best = (float(start * factor**k), q)
        return Detectability(best[0], best[1], n_sims, tuple(tried), loading, n, d, target)
    while k < max_steps:
        k += 1
        p = power(k)
        if p >= target:
            return Detectability(float(start * factor**k), p, n_sims, tuple(tried), loading, n, d, target)
    return Detectability(None, p, n_sims, tuple(tried), loading, n, d, target)
