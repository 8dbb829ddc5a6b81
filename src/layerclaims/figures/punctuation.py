"""Figures of study A (punctuation) from a saved :class:`~layerclaims.studies.punctuation.PunctuationResult`.

Files written by :func:`plot_all` (PNG, Agg backend, never a model run):

* ``punct_scatter_claim_layers.png``: covariance (x) vs MI (y) over all pairs at the detail (claim) layers, one row
  per kind; points coloured by covariance cluster; pooled r, cluster counts in the titles; per-cluster OLS lines
  (solid, cluster colour) and the pooled line (dashed black).
* ``punct_grid_{kind}.png``: the same scatter at every analysed layer (the original's part 2 grid), on a fixed random
  subsample of pairs (the result's ``draw_*`` arrays), coloured by covariance cluster.
* ``punct_hist_{cov,mi}_{kind}.png``: per-layer histograms of the pair values with the per-layer mean (red line).
* ``punct_means_depth.png``: mean MI and mean covariance vs layer for both kinds with bootstrap intervals over
  marks; the post-norm last entry drawn apart (hollow marker), as A7 excludes it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

KINDS = ("internal", "terminal")
_CMAP = plt.get_cmap("tab10")


def _colour(label: int) -> Any:
    return (0.6, 0.6, 0.6, 1.0) if label < 0 else _CMAP(int(label) % 10)


def _entry_name(result: Any, e: int) -> str:
    L = int(result.layers[e])
    return f"L{L}" + (" post-norm" if bool(result.post_norm[e]) else "")


def _fit_line(ax: Any, x: np.ndarray, y: np.ndarray, **kw: Any) -> None:
    if x.size < 3 or np.ptp(x) == 0:
        return
    b, a = np.polyfit(x, y, 1)
    xs = np.array([x.min(), x.max()])
    ax.plot(xs, a + b * xs, **kw)


def _scatter(ax: Any, cov: np.ndarray, mi: np.ndarray, labels: np.ndarray, *, size: float, lines: bool) -> None:
    for lab in np.unique(labels):
        m = labels == lab
        ax.scatter(
            cov[m],
            mi[m],
            s=size,
            color=_colour(int(lab)),
            alpha=0.35,
            linewidths=0,
            rasterized=True,
            label=f"cluster {int(lab)} (n={int(m.sum())})",
        )
        if lines:
            _fit_line(ax, cov[m], mi[m], color=_colour(int(lab)), lw=2)
    if lines:
        _fit_line(ax, cov, mi, color="black", lw=1.5, ls="--", label="pooled fit")


def plot_claim_scatter(result: Any, path: Path) -> Path:
    """Covariance vs MI at the detail (claim) layers, both kinds (see module docstring)."""
    ncol = max(1, len(result.internal.details))
    fig, axes = plt.subplots(2, ncol, figsize=(5.2 * ncol, 8.5), squeeze=False)
    for row, kind in enumerate(KINDS):
        k = getattr(result, kind)
        for col, d in enumerate(k.details):
            ax = axes[row, col]
            e = d.entry
            cov, mi = d.cov_values.astype(float), d.mi_values.astype(float)
            _scatter(ax, cov, mi, d.cov.pair_labels(), size=3, lines=True)
            r, lo, hi = k.pooled_r.value[e], k.pooled_r.ci_low[e], k.pooled_r.ci_high[e]
            ci_s = f" [{lo:.2f}, {hi:.2f}]" if np.isfinite(lo) and np.isfinite(hi) else ""
            claimed = " (claimed r < 0)" if kind == "internal" and d.layer == 1 else ""
            ax.set_title(
                f"{kind}, {_entry_name(result, e)}: r = {r:.3f}{ci_s}{claimed}\n"
                f"cov clusters {k.cov_clusters[e]} (literal {d.cov_literal}), MI clusters {k.mi_clusters[e]} "
                f"(literal {d.mi_literal}), {len(d.cov.outlier_marks)} outlier marks (grey)",
                fontsize=9,
            )
            ax.set_xlabel("covariance")
            ax.set_ylabel("MI (bits)")
            ax.legend(fontsize=7, markerscale=3, loc="best")
    fig.suptitle(f"{result.model}: covariance vs MI over all pairs of {result.internal.marks.size} marks", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _identical_note(ax: Any) -> None:
    """Hidden state 0: every mark is the same token at the same position, so every vector is identical."""
    ax.text(
        0.5,
        0.5,
        "identical vectors\n(same token, same position):\nr undefined",
        ha="center",
        va="center",
        fontsize=7,
        transform=ax.transAxes,
    )
    ax.set_xticks([])
    ax.set_yticks([])


def plot_grid(result: Any, kind: str, path: Path) -> Path:
    """Every analysed layer: covariance vs MI on the stored subsample of pairs."""
    k = getattr(result, kind)
    E = result.layers.size
    ncol = math.ceil(math.sqrt(E))
    nrow = math.ceil(E / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(2.9 * ncol, 2.6 * nrow), squeeze=False)
    for e in range(E):
        ax = axes.flat[e]
        if k.degenerate[e]:
            _identical_note(ax)
            ax.set_title(f"{_entry_name(result, e)}", fontsize=8, y=1.0)
            continue
        cov, mi = k.draw_cov[e].astype(float), k.draw_mi[e].astype(float)
        _scatter(ax, cov, mi, k.draw_labels[e], size=1.5, lines=False)
        ax.set_title(f"{_entry_name(result, e)}: k={k.cov_clusters[e]}, r={k.pooled_r.value[e]:.2f}", fontsize=8, y=1.0)
        # Two ticks per axis, at the ends of the data: a tick locator on 30-odd panels was most of the drawing time
        # (the report's figures are budgeted at 3 s), and the ends are what a reader compares across layers.
        for axis, v in ((ax.xaxis, cov), (ax.yaxis, mi)):
            ends = [float(f"{v.min():.2g}"), float(f"{v.max():.2g}")]
            axis.set_ticks(ends, [f"{x:g}" for x in ends], fontsize=6)
        if e % ncol == 0:
            ax.set_ylabel("MI (bits)", fontsize=7)
        if e >= E - ncol:
            ax.set_xlabel("covariance", fontsize=7)
    for ax in list(axes.flat)[E:]:
        fig.delaxes(ax)  # no empty panels (and no ticks to build for them)
    fig.suptitle(
        f"{result.model}, {kind}: covariance (x) vs MI (y) per layer, {k.draw_cov.shape[1]} random pairs each,\n"
        f"coloured by pair cluster carried by groups of marks (k; grey: pairs of an outlier mark); "
        f"merge layer {k.merge_layer}",
        fontsize=10,
    )
    _grid_margins(fig, nrow)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _grid_margins(fig: Any, nrow: int) -> None:
    """Fixed margins for the all-layer grids: ``tight_layout`` measured every tick label of 30-odd panels (5.5 s of
    the 8 s study A's figures took on smollm2-135m); the panels' labels are small and their room is known."""
    top = 1.0 - 1.0 / fig.get_figheight()  # room for a two-line title above the first row's panel titles
    fig.subplots_adjust(left=0.06, right=0.99, bottom=0.35 / nrow + 0.02, top=top, wspace=0.35, hspace=0.55)


def plot_histograms(result: Any, kind: str, what: str, path: Path) -> Path:
    """Per-layer histograms of covariance or MI with the per-layer mean, as one ridgeline: a row per layer, each
    histogram over its own range (printed at the right; the covariance's grows by orders of magnitude with depth),
    the mean as a red tick. One axes instead of 30-odd panels: the report's figures draw in a fraction of the time."""
    k = getattr(result, kind)
    E = result.layers.size
    counts, edges = getattr(k, f"hist_{what}"), getattr(k, f"hist_{what}_edges")
    means = getattr(k, f"mean_{what}").value
    fig, ax = plt.subplots(figsize=(9, 0.32 * E + 1.2))
    for row, e in enumerate(range(E)):
        y0 = E - 1 - row
        ax.text(-0.01, y0 + 0.3, _entry_name(result, e), ha="right", va="center", fontsize=7)
        if k.degenerate[e]:
            ax.text(0.5, y0 + 0.3, f"identical vectors: every pair {means[e]:.3g}", ha="center", fontsize=7)
            continue
        lo, hi = float(edges[e][0]), float(edges[e][-1])
        width = hi - lo if hi > lo else 1.0
        x = (np.asarray(edges[e], dtype=float) - lo) / width
        c = np.asarray(counts[e], dtype=float)
        h = 0.9 * c / c.max() if c.max() > 0 else c
        ax.stairs(y0 + h, x, baseline=y0, fill=True, color="tab:blue", alpha=0.7)
        ax.plot([(means[e] - lo) / width] * 2, [y0, y0 + 0.9], color="tab:red", lw=1.2)
        ax.text(1.01, y0 + 0.3, f"[{lo:.3g}, {hi:.3g}], mean {means[e]:.3g}", ha="left", va="center", fontsize=7)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, E)
    ax.set_yticks([])
    ax.set_xticks([0, 1], ["each layer's minimum", "maximum"], fontsize=7)
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    name = "covariance" if what == "cov" else "MI (bits)"
    ax.set_title(f"{result.model}, {kind}: {name} over all pairs, per layer (red: mean)", fontsize=10)
    fig.subplots_adjust(left=0.1, right=0.75, top=1 - 0.5 / fig.get_figheight(), bottom=0.5 / fig.get_figheight())
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_means_depth(result: Any, path: Path) -> Path:
    """Mean MI and mean covariance vs layer (A7), both kinds, with bootstrap intervals."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    pre = ~result.post_norm
    for ax, what, label in ((axes[0], "mi", "mean MI (bits)"), (axes[1], "cov", "mean covariance")):
        for i, kind in enumerate(KINDS):
            k = getattr(result, kind)
            stat = getattr(k, f"mean_{what}")
            m, ci = stat.value, np.c_[stat.ci_low, stat.ci_high]
            col = _CMAP(i)
            order = np.argsort(result.layers[pre], kind="stable")
            L = result.layers[pre][order]
            ax.plot(L, m[pre][order], "o-", color=col, ms=3, label=f"{kind} (block outputs, pre-norm)")
            if np.all(np.isfinite(ci[pre])):
                ax.fill_between(L, ci[pre][order, 0], ci[pre][order, 1], color=col, alpha=0.2, lw=0)
            if result.post_norm.any():
                ax.plot(
                    result.layers[result.post_norm],
                    m[result.post_norm],
                    "o",
                    mfc="none",
                    mec=col,
                    ms=8,
                    label=f"{kind}, last entry post final norm",
                )
        ax.set_xlabel("layer (hidden-state index; 0 = embeddings)")
        ax.set_ylabel(label)
        if what == "cov":
            vals = np.concatenate([getattr(result, k).mean_cov.value for k in KINDS])
            if np.all(vals > 0):
                ax.set_yscale("log")
            else:
                ax.set_yscale("symlog", linthresh=max(1e-6, float(np.min(np.abs(vals[vals != 0]), initial=1.0))))
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    sp_mi = result.measure("spearman_mean_mi_vs_depth", layer=None, kind="internal").value
    sp_cov = result.measure("spearman_mean_cov_vs_depth", layer=None, kind="internal").value
    fig.suptitle(
        f"{result.model}: per-layer means over all pairs (internal: Spearman vs depth over blocks 1..{result.n_blocks}"
        f" MI {sp_mi:.2f}, cov {sp_cov:.2f})",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_all(result: Any, out_dir: str | Path) -> list[Path]:
    """Write every figure of study A for ``result`` into ``out_dir`` (created); returns the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [plot_claim_scatter(result, out / "punct_scatter_claim_layers.png")]
    for kind in KINDS:
        paths.append(plot_grid(result, kind, out / f"punct_grid_{kind}.png"))
        for what in ("cov", "mi"):
            paths.append(plot_histograms(result, kind, what, out / f"punct_hist_{what}_{kind}.png"))
    paths.append(plot_means_depth(result, out / "punct_means_depth.png"))
    return paths
