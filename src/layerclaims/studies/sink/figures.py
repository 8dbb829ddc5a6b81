"""Figure of the attention-sink study: ``sink_heads.png``, alpha_1 (attention to the first token, mean over
queries and windows) of every head by block as a heat map, and beside it the share of (window, head) cells above
epsilon per block, with the re-initialised control."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from layerclaims.figures import save
from layerclaims.studies.sink.analysis import SinkResult
from layerclaims.study import ClaimRead


def plot_heads(result: SinkResult, path: Path) -> Path:
    fig, (ax, right) = plt.subplots(1, 2, figsize=(9, 4), layout="constrained", width_ratios=(3, 2))
    im = ax.imshow(result.alpha.mean(axis=0).T, aspect="auto", vmin=0, vmax=1, cmap="viridis", origin="lower")
    ax.set_xlabel("block")
    ax.set_ylabel("head")
    fig.colorbar(im, ax=ax, label="alpha_1 (mean over windows)")
    blocks = np.arange(result.n_blocks)
    right.plot(blocks, (result.alpha > result.epsilon).mean(axis=(0, 2)), "o-", label="model")
    if result.control_alpha.shape[0]:
        right.plot(blocks, (result.control_alpha > result.epsilon).mean(axis=(0, 2)), "--", label="re-initialised")
    right.set_ylim(-0.02, 1.02)
    right.set_xlabel("block")
    right.set_ylabel(f"share of cells with alpha_1 > {result.epsilon:g}")
    right.legend(fontsize=8)
    share = float((result.alpha > result.epsilon).mean())
    fig.suptitle(f"{result.model}: attention to the first token (Sink_1 = {share:.1%})", fontsize=10)
    return save(fig, path)


def figures(result: SinkResult, claims: Sequence[ClaimRead]) -> dict[str, Callable[[Path], Path]]:
    """File name -> drawing function for every figure of the study."""
    return {"sink_heads.png": partial(plot_heads, result)}
