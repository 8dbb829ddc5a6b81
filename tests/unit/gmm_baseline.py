"""The baseline of the evidence tables of :mod:`layerclaims.metrics.clusters`: Gaussian mixtures k = 1..max_k, the k
with the lowest BIC, no merging (BIC alone over-splits skewed and heavy-tailed data: never used for claims)."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from layerclaims.metrics.clusters import ClusterResult, _as_points, _order_labels, _standardise


def gmm_bic(points: ArrayLike, *, max_k: int = 6, seed: int = 0, n_boot: int = 0) -> ClusterResult:
    return _gmm_bic(_as_points(points), max_k=max_k, seed=seed, n_boot=n_boot)


def _gmm_bic(x: NDArray[np.float64], *, max_k: int, seed: int, n_boot: int, fit_size: int = 5000) -> ClusterResult:
    from sklearn.mixture import GaussianMixture

    n = x.shape[0]
    z, info = _standardise(x)
    if z.shape[1] == 0:
        return ClusterResult(
            1, np.zeros(n, dtype=np.int64), float("nan") if n_boot == 0 else 1.0, (1,) * n_boot, "gmm-bic", info
        )
    rng = np.random.default_rng(seed)

    def best(sample: NDArray[np.float64]) -> tuple[int, Any, list[float]]:
        bics, models = [], []
        for k in range(1, max_k + 1):
            g = GaussianMixture(
                k,
                covariance_type="full",
                random_state=seed,
                n_init=1,
                max_iter=200,
                init_params="k-means++",
                reg_covar=1e-6,
            ).fit(sample)
            bics.append(float(g.bic(sample)))
            models.append(g)
        i = int(np.argmin(bics))
        return i + 1, models[i], bics

    sample = z if n <= fit_size else z[rng.choice(n, fit_size, replace=False)]
    k, model, bics = best(sample)
    raw = model.predict(z)
    _, raw = np.unique(raw, return_inverse=True)
    k = int(raw.max()) + 1
    labels = _order_labels(raw.astype(np.int64), x[:, 0], k)
    boot = [best(z[rng.choice(n, min(n, fit_size), replace=True)])[0] for _ in range(n_boot)]
    stability = float(np.mean(np.asarray(boot) == k)) if boot else float("nan")
    return ClusterResult(k, labels, stability, tuple(boot), "gmm-bic", {**info, "bic": bics})
