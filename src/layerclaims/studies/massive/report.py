"""The massive-activation study's report section (Markdown)."""

from __future__ import annotations

from layerclaims.studies.massive.analysis import MassiveResult


def _fmt(x: float, digits: int = 3) -> str:
    return "n/a" if x != x else f"{x:.{digits}g}"


def section(result: MassiveResult) -> str:
    """What the numbers say: where the massive activations are, how big, from which layer, and what removing them
    does to the next-token loss."""
    over = result.over
    onset = over["onset_depth"].details.get("onset_layer")
    lines = [
        "### Massive activations (Sun et al. 2024)",
        "",
        f"{result.n_windows} windows of {result.length} tokens; an activation is massive when |a| > 100 and >= 1,000 "
        "times the median |a| of its hidden state.",
        "",
    ]
    if not len(result.entries):
        lines.append(
            f"No massive activation in any hidden state of {result.model} (largest |a| to median |a|: up to "
            f"10^{float(result.log10_top_ratio.max()):.1f})."
        )
        return "\n".join(lines)
    first = over.get("share_at_first_position")
    either = over.get("share_at_first_or_delimiter")
    lines += [
        f"- Dimensions: {', '.join(str(int(d)) for d in result.dims)} (counted: "
        f"{int(over['n_massive_dims'].value)}; most entries: {int(over['top_massive_dim'].value)}).",
        f"- Onset: hidden state {onset} of {result.n_blocks}; persistence {_fmt(over['persistence'].value)} "
        f"(share of later hidden states that keep them).",
        f"- Largest |a| (median over windows) at the onset: "
        f"{_fmt(float(result.top_value[onset]) if onset is not None else float('nan'), 5)}.",
    ]
    if first is not None and either is not None:
        lines.append(
            f"- Position: {first.value:.1%} of the massive entries are at position 0, {either.value:.1%} at position "
            f"0 or the first delimiter (shuffled positions: {first.control.value if first.control else 'n/a':.1%})."
        )
    inter = result.intervention
    if inter is not None:
        zero, mean = over["zero_loss_increase"], over["mean_loss_increase"]
        lines.append(
            f"- Intervention at hidden state {inter.block + 1}: zeroing dims {list(inter.dims)} changes the "
            f"next-token loss by {zero.value:+.4f} nats (perplexity {zero.details['clean_perplexity']:.2f} -> "
            f"{zero.details['patched_perplexity']:.2f}); setting them to their mean by {mean.value:+.4f} nats; "
            f"zeroing {len(inter.random_dims)} random dims instead by "
            f"{zero.control.value if zero.control else float('nan'):+.4f} nats."
        )
        if result.provenance.get("windows", {}).get("bos") is not None and all(p == (0,) for p in inter.positions if p):
            lines.append(
                "- Every patched entry is at position 0, the BOS token: a causal model's first hidden state does not "
                "depend on the text, so its mean is its value and the mean intervention cannot change anything there "
                "(run without BOS, robustness choice ma_bos=no, for a mean over different tokens)."
            )
    return "\n".join(lines)
