"""The attention-sink study's report section (Markdown)."""

from __future__ import annotations

import numpy as np

from layerclaims.studies.sink.analysis import SinkResult


def section(result: SinkResult) -> str:
    """Gu et al.'s sink share, where the sink heads are, and the control."""
    share = result.measure("sink_share", layer=None)
    by_block = (result.alpha > result.epsilon).mean(axis=(0, 2))
    top = np.argsort(-by_block)[:3]
    ctl = share.control.value if share.control else float("nan")
    ci = f" (95% interval {share.ci[0]:.1%} to {share.ci[1]:.1%})" if share.ci else ""
    return "\n".join(
        [
            "### Attention sinks (Gu et al. 2024)",
            "",
            f"{result.alpha.shape[0]} windows of {result.length} tokens, eager attention; alpha_1 = attention to the "
            "first token averaged over the queries.",
            "",
            f"- Sink_1 at epsilon {result.epsilon:g}: {share.value:.1%} of (window, block, head) cells{ci}; "
            f"re-initialised weights: {ctl:.1%}.",
            "- Blocks with the most sink heads: "
            + ", ".join(f"{int(b)} ({by_block[b]:.0%})" for b in top)
            + f"; mean alpha_1 {float(result.alpha.mean()):.3f} (uniform attention: "
            f"{share.details['uniform_alpha']:.3f}).",
        ]
    )
