"""The norm study's figure: the ratio against depth with its bootstrap band, the control, and the run's claims
(their thresholds and the layers they read on this model, as :class:`layerclaims.study.ClaimRead` gives them)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator

from layerclaims.study import ClaimRead


def plot_ratio(result: Any, claims: Sequence[ClaimRead], path: Path) -> Path:
    x = np.arange(result.ratio.size)
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    if result.replicates.size:
        low, high = np.percentile(result.replicates, [2.5, 97.5], axis=1)
        ax.fill_between(x, low, high, alpha=0.2, lw=0)
    ax.plot(x, result.ratio, marker="o", label="first token")
    ax.plot(x, result.control, ls="--", color="0.4", label="control: second token")
    ax.axhline(1.0, color="k", lw=0.6)
    for c in claims:
        if c.statistic == "first_token_norm_ratio":
            ax.axhline(c.threshold, color="tab:red", ls=":", label=f"{c.id}: {c.comparison} {c.threshold:g}")
            if c.layer is not None:
                ax.axvline(c.layer, color="tab:red", lw=0.6)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("hidden state (0 = embeddings)")
    ax.set_ylabel("|h first| / mean |h other|")
    ax.set_title(f"{result.model}: norm of the first token against the rest ({result.n_sequences} sequences)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def figures(result: Any, claims: Sequence[ClaimRead]) -> dict[str, Callable[[Path], Path]]:
    return {"norm_ratio.png": partial(plot_ratio, result, claims)}
