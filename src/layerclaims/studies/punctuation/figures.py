"""Figures of study A (punctuation) from a saved :class:`~layerclaims.studies.punctuation.PunctuationResult`: PNG,
Agg backend, never a model run; :func:`figures` names the files."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.collections import LineCollection, PolyCollection

from layerclaims.figures import margins, save
from layerclaims.studies.punctuation.marks import KINDS

_CMAP = plt.get_cmap("tab10")


def _colour(label: int) -> Any:
    return (0.6, 0.6, 0.6, 1.0) if label < 0 else _CMAP(int(label) % 10)


def _entry_name(result: Any, e: int) -> str:
    return f"L{int(result.layers[e])}" + (" post-norm" if bool(result.post_norm[e]) else "")


def _fit_line(ax: Any, x: np.ndarray, y: np.ndarray, **kw: Any) -> None:
    if x.size < 3 or np.ptp(x) == 0:
        return
    b, a = np.polyfit(x, y, 1)
    xs = np.array([x.min(), x.max()])
    ax.plot(xs, a + b * xs, **kw)


def plot_claim_scatter(result: Any, path: Path) -> Path:
    """Covariance (x) vs MI (y) over all pairs at the detail (claim) layers, one row per kind; points coloured by
    covariance cluster, per-cluster OLS lines (solid) and the pooled line (dashed black); pooled r and the cluster
    counts in the titles."""
    ncol = max(1, len(result.internal.details))
    fig, axes = plt.subplots(2, ncol, figsize=(5.6 * ncol, 8.5), squeeze=False)
    for row, kind in enumerate(KINDS):
        k = getattr(result, kind)
        for col, d in enumerate(k.details):
            ax = axes[row, col]
            e = d.entry
            cov, mi, labels = d.cov_values.astype(float), d.mi_values.astype(float), d.cov.pair_labels()
            for lab in np.unique(labels):
                m = labels == lab
                colour, label = _colour(int(lab)), f"cluster {int(lab)} (n={int(m.sum())})"
                ax.scatter(cov[m], mi[m], s=3, color=colour, alpha=0.35, linewidths=0, rasterized=True, label=label)
                _fit_line(ax, cov[m], mi[m], color=colour, lw=2)
            _fit_line(ax, cov, mi, color="black", lw=1.5, ls="--", label="pooled fit")
            r, lo, hi = k.pooled_r.value[e], k.pooled_r.ci_low[e], k.pooled_r.ci_high[e]
            ci_s = f", 95% CI [{lo:.2f}, {hi:.2f}]" if np.isfinite(lo) and np.isfinite(hi) else ""
            claimed = " (claimed r < 0)" if kind == "internal" and d.layer == 1 else ""
            counts = ", ".join(
                f"{label} clusters {getattr(k, f'{w}_clusters')[e]} (literal {getattr(d, f'{w}_literal')})"
                if w in d.computed
                else f"{label} clusters not computed"
                for w, label in (("cov", "cov"), ("mi", "MI"))
            )
            ax.set_title(
                f"{kind}, {_entry_name(result, e)}: r = {r:.3f}{ci_s}{claimed}\n"
                f"{counts}, {len(d.cov.outlier_marks)} outlier marks (grey)",
                fontsize=9,
            )
            ax.set_xlabel("covariance")
            ax.set_ylabel("MI (bits)")
            ax.legend(fontsize=7, markerscale=3, loc="upper left")  # "best" searched 31,125 points per panel
    fig.suptitle(f"{result.model}: covariance vs MI over all pairs of {result.internal.marks.size} marks", fontsize=11)
    margins(fig, left=0.75, right=0.35, top=0.9, bottom=0.55, hspace=0.4, wspace=0.3)
    return save(fig, path, 110)


def _ends(v: np.ndarray) -> tuple[float, float]:
    """The data's ends rounded to two significant digits, as the grid prints them."""
    return float(f"{v.min():.2g}"), float(f"{v.max():.2g}")


def plot_grid(result: Any, kind: str, path: Path) -> Path:
    """Every analysed layer (the original's part 2 grid): covariance vs MI on the stored random subsample of pairs
    (``draw_*``), coloured by covariance cluster, as small multiples: each layer a unit cell spanning its own data
    range (printed under it: the covariance grows by orders of magnitude with depth). One axes for all layers, not
    30-odd with their tick machinery: a fifth of the drawing time."""
    k = getattr(result, kind)
    E = result.layers.size
    ncol = math.ceil(math.sqrt(E))
    nrow = math.ceil(E / ncol)
    pad, top = 0.1, 0.22  # a cell's margin, and the room above each panel for its title
    size = 1.0 - 2 * pad
    fig = plt.figure(figsize=(2.9 * ncol, 2.6 * nrow + 0.7))
    ax = fig.add_axes((0.01, 0.01, 0.98, 1 - 0.7 / fig.get_figheight()))
    points: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # each layer's (x, y, cluster label)
    frames: list[np.ndarray] = []
    for e in range(E):
        col, row = e % ncol, e // ncol
        x0, y0 = col + pad, nrow - 1 - row + pad
        frames.append(np.array([[x0, y0], [x0 + size, y0], [x0 + size, y0 + size], [x0, y0 + size], [x0, y0]]))
        title = _entry_name(result, e)
        if k.degenerate[e]:
            note = "identical vectors\n(same token, same position):\nr undefined"
            ax.text(x0 + size / 2, y0 + size / 2, note, ha="center", va="center", fontsize=7)
        else:
            cov, mi = k.draw_cov[e].astype(float), k.draw_mi[e].astype(float)
            (cx0, cx1), (my0, my1) = _ends(cov), _ends(mi)
            x = x0 + size * (cov - cov.min()) / (cov.max() - cov.min() or 1.0)
            y = y0 + size * (mi - mi.min()) / (mi.max() - mi.min() or 1.0)
            points.append((x, y, np.asarray(k.draw_labels[e])))
            title += f": k={k.cov_clusters[e]}, r={k.pooled_r.value[e]:.2f}"
            ranges = f"cov {cx0:g} to {cx1:g}\nMI {my0:g} to {my1:g}"
            ax.text(x0, y0 - 0.02, ranges, fontsize=8, va="top", color="0.25")
        ax.text(x0, y0 + size + 0.02, title, fontsize=10, va="bottom")
    if points:
        x, y, lab = (np.concatenate(column) for column in zip(*points, strict=True))
        for label in np.unique(lab):  # one colour per call: Agg's fast path for markers of one style
            m = lab == label
            ax.scatter(x[m], y[m], s=1.5, color=_colour(int(label)), alpha=0.35, linewidths=0, rasterized=True)
    ax.add_collection(LineCollection(frames, colors="0.4", linewidths=0.6))
    ax.set_xlim(0, ncol)
    ax.set_ylim(-0.02, nrow + top - pad)
    ax.set_axis_off()
    fig.suptitle(
        f"{result.model}, {kind}: covariance (x) vs MI in bits (y), {k.draw_cov.shape[1]} random pairs per layer;\n"
        f"each panel spans its own data range (under it); colour: pair cluster carried by groups of marks\n"
        f"(k clusters; grey: pairs of an outlier mark); merge layer {k.merge_layer}",
        fontsize=9,
    )
    return save(fig, path, 100)


def plot_histograms(result: Any, kind: str, path: Path) -> Path:
    """Per-layer histograms of covariance and of MI as two ridgelines side by side: a row per layer, each over its own
    range (printed at its right), the mean as a red tick. One filled collection per measure, not an artist per
    histogram (a third of the drawing time)."""
    k = getattr(result, kind)
    E = result.layers.size
    gap = 0.62  # room right of each ridgeline for its range and mean
    fig, ax = plt.subplots(figsize=(13, 0.32 * E + 1.2))
    margins(fig, left=0.9, right=0.1, top=0.4, bottom=0.1)

    def column(x: float, lines: list[str], **kw: Any) -> None:  # a line per row, from the top row down
        for e, line in enumerate(lines):
            ax.text(x, E - 1 - e + 0.3, line, va="center", fontsize=7, **kw)

    ticks: list[np.ndarray] = []
    for col, (what, name) in enumerate((("cov", "covariance"), ("mi", "MI (bits)"))):
        x0 = col * (1 + gap)
        counts, edges = getattr(k, f"hist_{what}"), getattr(k, f"hist_{what}_edges")
        means = getattr(k, f"mean_{what}").value
        ax.text(x0 + 0.5, E + 0.1, name, ha="center", va="bottom", fontsize=9)
        ax.text(x0, -0.15, "each layer's minimum", ha="left", va="top", fontsize=7)
        ax.text(x0 + 1, -0.15, "maximum", ha="right", va="top", fontsize=7)
        polys: list[np.ndarray] = []
        notes: list[str] = []
        for e in range(E):
            y0 = E - 1 - e
            if k.degenerate[e]:
                notes.append(f"identical vectors: every pair {means[e]:.3g}")
                continue
            lo, hi = float(edges[e][0]), float(edges[e][-1])
            width = hi - lo if hi > lo else 1.0
            x = x0 + (np.asarray(edges[e], dtype=float) - lo) / width
            c = np.asarray(counts[e], dtype=float)
            h = 0.9 * c / c.max() if c.max() > 0 else c
            step_x, step_y = np.repeat(x, 2), np.r_[0.0, np.repeat(h, 2), 0.0]  # the histogram's outline as steps
            polys.append(np.c_[step_x, y0 + step_y])
            xm = x0 + (means[e] - lo) / width
            ticks.append(np.array([[xm, y0], [xm, y0 + 0.9]]))
            notes.append(f"[{lo:.3g}, {hi:.3g}], mean {means[e]:.3g}")
        ax.add_collection(PolyCollection(polys, facecolors="tab:blue", edgecolors="none", alpha=0.7))
        column(x0 + 1.01, notes, ha="left")
    ax.add_collection(LineCollection(ticks, colors="tab:red", linewidths=1.2))
    column(-0.01, [_entry_name(result, e) for e in range(E)], ha="right")
    ax.set_xlim(0, 2 + gap * 2)
    ax.set_ylim(-0.5, E + 0.6)
    ax.set_axis_off()
    ax.set_title(f"{result.model}, {kind}: covariance and MI over all pairs, per layer (red: mean)", fontsize=10)
    return save(fig, path, 100)


def plot_means_depth(result: Any, path: Path) -> Path:
    """Mean MI and mean covariance vs layer (A7), both kinds, with bootstrap intervals over marks; the post-norm
    last entry drawn apart (hollow marker), as A7 excludes it."""
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
                post_label = f"{kind}, last entry post final norm"
                ax.plot(result.layers[~pre], m[~pre], "o", mfc="none", mec=col, ms=8, label=post_label)
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
    rho = {w: result.measure(f"spearman_mean_{w}_vs_depth", layer=None, kind="internal").value for w in ("mi", "cov")}
    fig.suptitle(
        f"{result.model}: per-layer means over all pairs (internal: Spearman vs depth over blocks 1..{result.n_blocks}"
        f" MI {rho['mi']:.2f}, cov {rho['cov']:.2f})",
        fontsize=10,
    )
    margins(fig, left=0.8, right=0.2, top=0.5, bottom=0.55, wspace=0.3)
    return save(fig, path, 110)


def figures(result: Any, claims: Sequence[Any] = ()) -> dict[str, Callable[[Path], Path]]:
    """File name -> a function drawing it to a path, for every figure of study A; the claim layers are the result's
    detail layers, set from the run's claims (``claims`` is not read)."""
    drawn: dict[str, Callable[[Path], Path]] = {"punct_scatter_claim_layers.png": partial(plot_claim_scatter, result)}
    for kind in KINDS:
        drawn[f"punct_grid_{kind}.png"] = partial(plot_grid, result, kind)
        drawn[f"punct_hist_{kind}.png"] = partial(plot_histograms, result, kind)
    drawn["punct_means_depth.png"] = partial(plot_means_depth, result)
    return drawn
