"""The anisotropy study's report section (Markdown)."""

from __future__ import annotations

import numpy as np

from layerclaims.studies.anisotropy.analysis import AnisotropyResult


def section(result: AnisotropyResult) -> str:
    """The mean cosine between random tokens by depth, its rise, and what centring leaves."""
    rise = result.over["last_minus_min_cosine"]
    values = ", ".join(f"{v:.2f}" for v in result.mean_cosine)
    return "\n".join(
        [
            "### Anisotropy by depth (Ethayarajh 2019)",
            "",
            f"Mean cosine between tokens of different windows ({result.n_windows} windows, "
            f"{result.positions.shape[1]} tokens each), hidden states 0..{result.n_blocks}: {values}.",
            "",
            f"- Last layer: {result.mean_cosine[-1]:.3f}; lowest: {rise.details['min']:.3f} at hidden state "
            f"{rise.details['min_layer']}; rise {rise.value:+.3f}"
            + (f" (95% interval {rise.ci[0]:+.3f} to {rise.ci[1]:+.3f})." if rise.ci else "."),
            _control_line(result),
        ]
    )


def _control_line(result: AnisotropyResult) -> str:
    worst = int(np.nanargmax(np.abs(result.centred_cosine)))
    value = float(result.centred_cosine[worst])
    if abs(value) < 0.1:
        return (
            f"- Control (mean-centred, first token left out): at most {abs(value):.3f} in absolute value at any layer: "
            "the similarity is a shared direction, not structure between tokens."
        )
    return (
        f"- Control (mean-centred, first token left out): {value:.3f} at hidden state {worst}: centring does not "
        "remove all of the similarity there."
    )
