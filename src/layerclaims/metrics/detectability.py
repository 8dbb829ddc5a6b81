"""What a cluster count could not have seen: the detection limit of :func:`~layerclaims.metrics.mark_clusters.
cluster_marks` on data like a run's own, by simulation.

A count of 1 says "no groups" only if the procedure would have found groups that were there. That depends on the
number of marks ``N``, their dimension ``D``, and how strong the marks' shared direction is against their own noise
(:func:`matched_loading`, from a pair covariance matrix). :func:`detection_limit` simulates the one-direction model
of :mod:`layerclaims.metrics.mark_cases` (``x_i = a_i u + e_i``, ``e_i ~ N(0, I_D)``, ``u ~ N(0, I_D)``): two
groups of ``N/2`` marks with loadings ``a`` and ``a + s r``; the **separation** ``s`` is relative to the loading,
``r = max(a, 0.5)``, so it means the same whatever the scale of the marks (at ``a = 0.7``, ``power_case``'s
``delta = 0.7 s``). A simulation *detects* the groups when the count is not 1; the limit is the smallest separation
on a ladder whose power (fraction detecting) is at least ``target`` (80%). ``loading`` is in noise sd per dimension.
Real hidden states have heavier structure than one direction and Gaussian noise, so the limit is a lower bound on
what the count misses."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from layerclaims.errors import UsageError
from layerclaims.metrics.mark_cases import marks

__all__ = ["Detectability", "detection_limit", "matched_loading", "power_at"]

TARGET_POWER = 0.8


@dataclass(frozen=True)
class Detectability:
    """The detection limit of a count on data like the run's: ``separation`` (None: above every one tried), ``power``
    at it (or at the largest tried), ``tried`` ``((separation, power), ...)`` in the order simulated."""

    separation: float | None
    power: float
    n_sims: int
    tried: tuple[tuple[float, float], ...]
    loading: float
    n: int
    d: int
    target: float = TARGET_POWER

    def detects(self, separation: float) -> bool:
        """Whether groups ``separation`` apart are at or above the limit (detected with the target power)."""
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
    """Fraction of ``n_sims`` simulations of the two groups (module docstring; ``n // 2`` marks and the rest,
    shuffled) whose ``count(pair_matrix(x))`` is not 1."""
    rng = np.random.default_rng(seed)
    step = separation * max(loading, 0.5)
    hits = 0
    for _ in range(n_sims):
        x = marks(np.where(rng.permutation(n) < n // 2, loading, loading + step), rng, d)
        hits += count(pair_matrix(x)) != 1
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
    at = partial(power_at, n=n, d=d, loading=loading, pair_matrix=pair_matrix, count=count, n_sims=n_sims)

    def power(k: int) -> float:
        s = float(start * factor**k)
        tried.append((s, at(s, seed=seed * 1_000 + k + max_steps)))
        return tried[-1][1]

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
