"""Figures of study B (Q/K grouping and RSA) from a :class:`~layerclaims.studies.qk.analysis.QKResult` and the run's
claims (:class:`~layerclaims.study.ClaimRead`): the Q and K cosine matrices and the Q-vs-K scatter at the claims'
block, and the laminar profile over blocks."""

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

from layerclaims.figures import margins, save
from layerclaims.results import BlockStatistic
from layerclaims.studies.qk import PAIRS
from layerclaims.studies.qk.analysis import QKResult
from layerclaims.study import ClaimRead

COLORS = {"q": "tab:blue", "k": "tab:orange", "v": "tab:green", "qk": "tab:purple", "qv": "tab:cyan", "kv": "tab:olive"}
CATEGORY_COLORS = ("tab:blue", "tab:red", "tab:green", "tab:purple", "tab:brown", "tab:pink")


def claim_block(result: QKResult, claims: Sequence[ClaimRead]) -> int:
    """The block the run's first block-level claim (B1) reads on this model, or the nearest studied block; the first
    studied block when no claim reads one block."""
    block = next((c.layer for c in claims if c.layer is not None), result.blocks[0])
    return min(result.blocks, key=lambda b: abs(b - block))


def _claim(claims: Sequence[ClaimRead], statistic: str) -> ClaimRead | None:
    return next((c for c in claims if c.statistic == statistic), None)


def plot_matrices(result: QKResult, block: int, path: Path) -> Path:
    """Q and K cosine matrices at ``block`` side by side, words on both axes, category borders; one colour scale (the
    off-diagonal range of both)."""
    i = result.index(block)
    mats = {k: result.cos(k)[i] for k in ("q", "k")}
    n = len(result.words)
    off = ~np.eye(n, dtype=bool)
    vmin, vmax = np.percentile(np.concatenate([m[off] for m in mats.values()]), [1, 99])
    names = [f"{w}*" if w in result.split_words else w for w in result.words]
    # Fixed positions in inches, not constrained_layout: measuring 136 tick labels was half of the drawing time.
    W, H, side = 13.5, 6.6, 5.0
    fig = plt.figure(figsize=(W, H))
    lefts = (0.95, 0.95 + side + 0.35)
    axes = [fig.add_axes((x / W, 0.95 / H, side / W, side / H)) for x in lefts]
    ticks = np.arange(n)
    borders = [j for j in range(1, n) if result.labels[j] != result.labels[j - 1]]  # where the category changes
    for col, (ax, (proj, S)) in enumerate(zip(axes, mats.items(), strict=True)):
        im = ax.imshow(S, vmin=vmin, vmax=vmax, cmap="viridis", interpolation="nearest")
        for b in borders:
            ax.axhline(b - 0.5, color="white", lw=1.2)
            ax.axvline(b - 0.5, color="white", lw=1.2)
        ax.set_xticks(ticks, names, rotation=90, fontsize=6.5)
        ax.set_yticks(ticks, names if col == 0 else [], fontsize=6.5)  # one word order: its labels once
        mean = result.mean_cosine[proj].value[i]
        sel = result.selectivity[proj].value[i]
        ax.set_title(f"{proj.upper()}: mean off-diagonal cosine {mean:.3f}, selectivity {sel:.3f}", fontsize=10)
    cax = fig.add_axes(((lefts[1] + side + 0.3) / W, 0.95 / H, 0.18 / W, side / H))
    fig.colorbar(im, cax=cax, label="cosine similarity (diagonal = 1, off scale)")
    split = f" (* split into tokens; {result.multi_token} token used)" if result.split_words else ""
    fig.suptitle(f"{result.model}, block {block}: Q and K cosine similarity of {n} words{split}", fontsize=12)
    return save(fig, path)


def plot_scatter(result: QKResult, block: int, claims: Sequence[ClaimRead], path: Path) -> Path:
    """Q cosine (x) vs K cosine (y) of every pair of words at ``block`` (upper triangle), within-category pairs
    coloured by category, between-category pairs grey; RSA r and Mantel p in the title; under it the ``rsa_qk``
    claim's number line (:func:`_claim_strip`)."""
    i = result.index(block)
    n = len(result.words)
    iu, ju = np.triu_indices(n, 1)
    q, k = result.cos_q[i][iu, ju], result.cos_k[i][iu, ju]
    labels = np.array(result.labels)
    same = labels[iu] == labels[ju]
    fig, (ax, strip) = plt.subplots(2, 1, figsize=(6.8, 7.2), height_ratios=(1, 0.15))
    margins(fig, left=0.8, right=0.2, top=0.4, bottom=0.55, hspace=0.3)
    ax.scatter(q[~same], k[~same], s=10, c="0.65", alpha=0.6, lw=0, label="between categories", rasterized=True)
    for c, cat in enumerate(result.categories):
        sel = same & (labels[iu] == cat)
        color = CATEGORY_COLORS[c % len(CATEGORY_COLORS)]
        ax.scatter(q[sel], k[sel], s=16, color=color, alpha=0.85, lw=0, label=f"within {cat}", rasterized=True)
    m = result.rsa["qk"].at(i)
    # one interval per number: the title gives r alone; the strip below draws its 95% interval, labelled as such
    p = f", Mantel p (any relation) = {m.p_value:.2g}" if m.p_value is not None else ""
    ax.set_title(f"{result.model}, block {block}: RSA Q-K r = {m.value:.3f}{p}", fontsize=9)
    _claim_strip(strip, result, i, m, _claim(claims, "rsa_qk"))
    ax.set_xlabel("cosine similarity of Q vectors")
    ax.set_ylabel("cosine similarity of K vectors")
    ax.legend(fontsize=8, loc="best", markerscale=1.5)
    ax.grid(alpha=0.3)
    return save(fig, path)


def _claim_strip(ax: plt.Axes, result: QKResult, i: int, m: Any, claim: ClaimRead | None) -> None:
    """The ``rsa_qk`` claim (B2) drawn as a number line under the scatter: RSA Q-K with its 95% interval, the claimed
    threshold (when the run has such a claim), and the control (random projections of the block input)."""
    rows = [("RSA Q-K", m.value, m.ci, "tab:purple")]
    if "rsa_qk" in result.controls:
        c = result.controls["rsa_qk"].at(i)
        rows.append(("control", c.value, c.ci, "0.45"))
    for y, (label, value, ci, color) in enumerate(rows):
        if ci is not None:
            ax.plot(ci, [y, y], color=color, lw=3, solid_capstyle="butt", alpha=0.6)
        ax.plot([value], [y], "o", color=color, ms=4)
        ax.text(-0.02, y, label, transform=ax.get_yaxis_transform(), ha="right", va="center", fontsize=7)
    lows = [r[2][0] if r[2] is not None else r[1] for r in rows]
    if claim is not None:
        ax.axvline(claim.threshold, color="k", lw=1, ls="--")
        ax.text(claim.threshold, len(rows) - 0.4, f" claimed {claim.comparison} {claim.threshold:g}", fontsize=7)
        lows.append(claim.threshold)
    ax.set_xlim(min(lows) - 0.1, 1.0)
    ax.set_ylim(-0.6, len(rows) - 0.1)
    ax.set_yticks([])
    ax.tick_params(labelsize=7)
    name = f"{claim.id}: " if claim is not None else ""
    ax.set_xlabel(
        f"{name}RSA Q-K and its control, 95% bootstrap intervals (the verdict's decision interval, at its family "
        "level, is in the report's claims table)",
        fontsize=7,
    )


def _band(ax: plt.Axes, x: np.ndarray, stat: BlockStatistic, color: str, label: str) -> None:
    ax.plot(x, stat.value, marker="o", ms=3, color=color, label=label)
    if not np.isnan(stat.ci_low).all():
        ax.fill_between(x, stat.ci_low, stat.ci_high, color=color, alpha=0.18, lw=0)


def plot_laminar(result: QKResult, path: Path, *, block: int, claim: ClaimRead | None) -> Path:
    """Selectivity of Q and K, selectivity of V, and RSA Q-K, Q-V, K-V against block; bootstrap bands, the threshold
    of the run's ``min_rsa_qk_over_blocks`` ``claim`` (B4), the control, and the claims' ``block`` marked. Q and K
    get their own panel: their selectivity stays within a few percent of 1, which V's scale would flatten."""
    x = np.array(result.blocks)
    fig, (ax1, ax2, ax3) = plt.subplots(3, 1, figsize=(8.5, 9.5), sharex=True, height_ratios=(1, 1, 1.3))
    margins(fig, left=1.0, right=0.2, top=0.5, bottom=1.3, hspace=0.12)
    for proj, ax in (("q", ax1), ("k", ax1), ("v", ax2)):
        _band(ax, x, result.selectivity[proj], COLORS[proj], proj.upper())
    top_qk = np.maximum(result.selectivity["q"].value, result.selectivity["k"].value)
    ax2.plot(x, top_qk, color="0.3", lw=1, ls="--", label="max(Q, K)")
    for ax, of, loc in ((ax1, "Q and K", "upper right"), (ax2, "V", "upper left")):
        ax.axhline(1.0, color="k", lw=0.8, ls=":")
        ax.set_ylabel(f"selectivity index\nof {of}")
        ax.legend(fontsize=8, ncol=2, loc=loc)
    for pair in PAIRS:
        _band(ax3, x, result.rsa[pair], COLORS[pair], f"{pair[0].upper()}-{pair[1].upper()}")
    if "rsa_qk" in result.controls:
        ax3.plot(x, result.controls["rsa_qk"].value, color="0.45", lw=1, ls="--", label="Q-K control (random proj.)")
    if claim is not None:
        ax3.axhline(claim.threshold, color="k", lw=0.8, ls=":", label=f"{claim.id} threshold {claim.threshold:g}")
    ax3.set_ylabel("RSA (Pearson r of\nupper triangles)")
    ax3.set_xlabel("block (0-based)")
    ax3.legend(fontsize=8, ncol=4, loc="upper center", bbox_to_anchor=(0.5, -0.16))  # below: never on the data
    ax3.xaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in (ax1, ax2, ax3):
        ax.grid(alpha=0.3)
        ax.axvline(block, color="0.4", lw=0.8, ls="--")
    ax1.annotate(
        f"claims' block {block}",
        (block, 1.0),
        xycoords=("data", "axes fraction"),
        xytext=(4, -12),
        textcoords="offset points",
        fontsize=8,
        color="0.3",
    )
    split = f"; split words: {', '.join(result.split_words)} ({result.multi_token} token)" if result.split_words else ""
    fig.suptitle(f"{result.model}: laminar profile of Q, K, V (95% bootstrap bands){split}", fontsize=11)
    return save(fig, path)


def figures(result: QKResult, claims: Sequence[ClaimRead]) -> dict[str, Callable[[Path], Path]]:
    """File name -> a function drawing it to a path, for every figure of study B (the laminar profile needs more than
    one block)."""
    block = claim_block(result, claims)
    drawn: dict[str, Callable[[Path], Path]] = {
        f"qk_matrices_block{block}.png": partial(plot_matrices, result, block),
        f"qk_scatter_block{block}.png": partial(plot_scatter, result, block, claims),
    }
    if len(result.blocks) > 1:
        over = _claim(claims, "min_rsa_qk_over_blocks")
        drawn["qk_laminar.png"] = partial(plot_laminar, result, block=block, claim=over)
    return drawn
