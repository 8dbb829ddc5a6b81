"""Figures of the massive-activation study.

- ``massive_profile.png``: per hidden state, the median over windows of the largest ``|a|`` and of the median
  ``|a|`` (log scale), with the rule's floor (100) and the share of windows with a massive activation (right
  axis; the re-initialised control dashed), the onset marked.
- ``massive_intervention.png`` (when the intervention ran): the mean next-token loss unpatched, with the massive
  dimensions zeroed, set to their mean, and with random dimensions zeroed (control), with 95% bootstrap intervals.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from layerclaims.figures import save
from layerclaims.metrics.bootstrap import bootstrap_indices, percentile_interval
from layerclaims.studies.massive.analysis import MassiveResult
from layerclaims.study import ClaimRead


def plot_profile(result: MassiveResult, path: Path) -> Path:
    layers = np.arange(result.n_blocks + 1)
    fig, ax = plt.subplots(figsize=(8, 4.2), layout="constrained")
    ax.semilogy(layers, np.maximum(result.top_value, 1e-6), "o-", color="tab:red", label="largest |a| (median)")
    ax.semilogy(layers, np.maximum(result.median_abs, 1e-6), "s-", color="tab:gray", label="median |a| (median)")
    ax.axhline(100, color="tab:red", lw=0.8, ls=":", label="rule floor |a| = 100")
    ax.set_xlabel("hidden state (0 = embeddings; raw block outputs)")
    ax.set_ylabel("|activation|")
    right = ax.twinx()
    right.plot(layers, result.massive_share, color="tab:blue", lw=1.5, label="share of windows with one")
    if not np.isnan(result.control_share).all():
        right.plot(layers, result.control_share, color="tab:blue", lw=1, ls="--", label="re-initialised control")
    right.set_ylim(-0.02, 1.02)
    right.set_ylabel("share of windows", color="tab:blue")
    onset = result.over["onset_depth"].details.get("onset_layer")
    if onset is not None:
        ax.axvline(onset, color="k", lw=0.8, ls="--")
    dims = ", ".join(str(int(d)) for d in result.dims[:6]) or "none"
    ax.set_title(f"{result.model}: massive activations by depth (dims: {dims}; onset: {onset})", fontsize=10)
    handles = ax.get_legend_handles_labels()[0] + right.get_legend_handles_labels()[0]
    labels = ax.get_legend_handles_labels()[1] + right.get_legend_handles_labels()[1]
    ax.legend(handles, labels, fontsize=7, loc="upper left")
    return save(fig, path)


def plot_intervention(result: MassiveResult, path: Path) -> Path:
    inter = result.intervention
    assert inter is not None
    rows = [
        ("unpatched", inter.clean),
        ("zero", inter.zero),
        ("mean", inter.mean),
        ("random dims zeroed", inter.random),
    ]
    idx = bootstrap_indices(len(inter.clean), 500, seed=0)
    fig, ax = plt.subplots(figsize=(6, 3.4), layout="constrained")
    for i, (_name, losses) in enumerate(rows):
        lo, hi = percentile_interval(losses[idx].mean(axis=1), 0.95)
        m = float(losses.mean())
        ax.errorbar([i], [m], yerr=[[m - lo], [hi - m]], fmt="o", capsize=4)
    ax.set_xticks(range(len(rows)), [r[0] for r in rows])
    ax.set_ylabel("mean next-token loss (nats)")
    ax.set_title(
        f"{result.model}: dims {list(inter.dims)} at hidden state {inter.block + 1} (block {inter.block})", fontsize=10
    )
    return save(fig, path)


def figures(result: MassiveResult, claims: Sequence[ClaimRead]) -> dict[str, Callable[[Path], Path]]:
    """File name -> drawing function for every figure of the study."""
    out: dict[str, Callable[[Path], Path]] = {"massive_profile.png": partial(plot_profile, result)}
    if result.intervention is not None:
        out["massive_intervention.png"] = partial(plot_intervention, result)
    return out
