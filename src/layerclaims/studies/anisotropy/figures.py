"""Figure of the anisotropy study: ``anisotropy_profile.png``, the mean cosine between tokens of different windows
per hidden state with its 95% bootstrap band, the mean-centred control, and the claims' thresholds at their layers."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from layerclaims.figures import save
from layerclaims.metrics.bootstrap import percentile_interval
from layerclaims.studies.anisotropy.analysis import AnisotropyResult
from layerclaims.study import ClaimRead


def plot_profile(result: AnisotropyResult, claims: Sequence[ClaimRead], path: Path) -> Path:
    layers = np.arange(result.n_blocks + 1)
    fig, ax = plt.subplots(figsize=(7, 4), layout="constrained")
    ax.plot(layers, result.mean_cosine, "o-", color="tab:purple", label="mean cosine, tokens of different windows")
    if result.replicates is not None:
        band = np.array([percentile_interval(r, 0.95) for r in result.replicates])
        ax.fill_between(layers, band[:, 0], band[:, 1], color="tab:purple", alpha=0.2, lw=0)
    ax.plot(layers, result.centred_cosine, "--", color="tab:gray", label="control: mean-centred")
    for c in claims:
        if c.statistic == "mean_cosine" and c.layer is not None:
            ax.plot([c.layer], [c.threshold], marker="_", ms=18, color="k")
            right = c.layer > result.n_blocks / 2  # the label runs inwards from the threshold, above it
            ax.annotate(
                f"{c.id} {c.comparison} {c.threshold:g}",
                (c.layer, c.threshold),
                xytext=(-4 if right else 4, 3),
                textcoords="offset points",
                ha="right" if right else "left",
                va="bottom",
                fontsize=7,
                bbox={"facecolor": "white", "alpha": 0.8, "lw": 0, "pad": 0.5},
            )
    ax.set_xlabel("hidden state (0 = embeddings)")
    ax.set_ylabel("mean cosine similarity")
    ax.set_ylim(min(-0.1, float(np.nanmin(result.centred_cosine)) - 0.05), 1.02)
    ax.set_title(f"{result.model}: anisotropy by depth (95% bootstrap band over windows)", fontsize=10)
    ax.legend(fontsize=8, loc="upper left")
    return save(fig, path)


def figures(result: AnisotropyResult, claims: Sequence[ClaimRead]) -> dict[str, Callable[[Path], Path]]:
    """File name -> drawing function for every figure of the study."""
    return {"anisotropy_profile.png": partial(plot_profile, result, claims)}
