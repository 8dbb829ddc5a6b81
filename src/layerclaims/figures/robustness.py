"""The specification curve of one claim (Simonsohn, Simmons & Nelson 2020, "Specification curve analysis"):
the claim's statistic under every specification, sorted, with its interval and the claim's threshold; underneath,
which value of each choice the specification used. PNG, Agg backend, no model run."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from layerclaims.claims import Claim
from layerclaims.figures import save

COLOURS = {"holds": "#1b7837", "holds on control too": "#7539c9", "fails": "#b2182b", "inconclusive": "#e08214"}
GREY = "#888888"


def spec_curve(
    rows: Sequence[dict[str, Any]], claim: Claim, choices: Mapping[str, Sequence[str]], folder: Path
) -> Path:
    """Write ``folder/spec_curve_<claim>.png`` from the robustness rows of one claim; return its path. ``choices``:
    the study's analysis choices and their values, the original's first (``robustness.choices(study)``)."""
    vals = np.array([np.nan if r["value"] is None else float(r["value"]) for r in rows])
    order = np.argsort(np.where(np.isnan(vals), np.inf, vals), kind="stable")
    x = np.arange(len(rows))
    labels = [(name, v) for name, vs in choices.items() for v in vs]
    size = (max(6.0, 0.18 * len(rows) + 3), 3.2 + 0.16 * len(labels))
    ratios = [2.2, max(1.0, 0.12 * len(labels))]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=size, sharex=True, gridspec_kw={"height_ratios": ratios})
    for xi, i in zip(x, order, strict=True):
        r = rows[i]
        colour = COLOURS.get(r["verdict"], GREY)
        if r["value"] is None:
            top.plot(xi, 0, "x", color=GREY)
            continue
        if r["ci_low"] is not None and r["ci_high"] is not None:
            top.vlines(xi, float(r["ci_low"]), float(r["ci_high"]), color=colour, alpha=0.5, lw=1.5)
        marker = "D" if r["spec_origin"] == "original" else "o"
        top.plot(xi, float(r["value"]), marker, color=colour, ms=6 if marker == "D" else 4)
    top.axhline(claim.threshold, color="black", ls="--", lw=1, label=f"claimed {claim.comparison} {claim.threshold:g}")
    k = sum(r["verdict"] == "holds" for r in rows)
    top.set_title(f"{claim.id}: {claim.statistic} holds in {k} of {len(rows)} specifications (diamond: original)")
    top.set_ylabel(claim.statistic)
    top.legend(loc="best", fontsize=8)
    for yi, (name, v) in enumerate(labels):
        used = [xi for xi, i in zip(x, order, strict=True) if str(rows[i].get(name)) == v]
        bottom.plot(used, [yi] * len(used), "s", color="#333333" if v != choices[name][0] else "#bbbbbb", ms=3)
    bottom.set_yticks(range(len(labels)))
    bottom.set_yticklabels([f"{n}={v}" for n, v in labels], fontsize=6)
    bottom.invert_yaxis()
    bottom.set_xlabel("specifications, sorted by value")
    bottom.set_xlim(-1, len(rows))
    fig.tight_layout()
    return save(fig, Path(folder) / f"spec_curve_{claim.id}.png", 110)
