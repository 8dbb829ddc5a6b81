"""The one-direction model of marks (issue 11): N marks, each a vector of D dimensions, ``x_i = a_i u + e_i`` with
``u`` one shared direction (``N(0, I_D)``) and ``e_i ~ N(0, I_D)`` the mark's own noise. The covariance of two marks
over the D dimensions is then ``~ a_i a_j`` (plus noise of sd ``~ 1/sqrt(D)``), so a group of marks sharing a
loading ``a_g`` makes the pair types ``(g, h)`` sit at ``a_g a_h``. :mod:`layerclaims.metrics.detectability`
simulates it; the validation cases with a known answer built on it are in ``tests/oracles/mark_cases.py``.
"""

from __future__ import annotations

import numpy as np


def covariance(x: np.ndarray) -> np.ndarray:
    """The N x N covariance of the marks over their D dimensions (the study's pairwise covariance)."""
    xc = x - x.mean(axis=1, keepdims=True)
    return xc @ xc.T / (x.shape[1] - 1)


def marks(loadings: np.ndarray, rng: np.random.Generator, d: int, u: np.ndarray | None = None) -> np.ndarray:
    """``x_i = a_i u + e_i`` for the ``loadings`` ``a``: ``u`` drawn from ``rng`` unless given, then the noise."""
    u = rng.normal(0, 1, d) if u is None else u
    return loadings[:, None] * u[None, :] + rng.normal(0, 1, (loadings.size, d))
