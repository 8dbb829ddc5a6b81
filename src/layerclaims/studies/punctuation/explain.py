"""Study A, what the clusters are made of: for every group of marks, the attributes (:func:`mark_attributes`) most
over-represented against the other (non-outlier) marks, and every outlier mark with its window of text;
:func:`markdown` renders it for the report."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace
from typing import Any

import numpy as np

from layerclaims.metrics.mark_clusters import MarkClusters
from layerclaims.studies.punctuation.marks import BEFORE, CONTEXT
from layerclaims.studies.punctuation.result import (
    AttributeRow,
    Explanation,
    GroupExplained,
    KindResult,
    OutlierMark,
    PunctuationResult,
)

N_ROWS = 6  # attribute rows kept per group
MIN_IN = 2  # an attribute value must hold for at least this many marks of the group to be listed ...
MIN_EXCESS = 0.05  # ... and be this much more frequent in the group than among the other marks
QUOTES = ('"', "\u201c", "\u201d")
SENTENCE_END = (".", "?", "!")


def mark_attributes(
    windows: np.ndarray, marks: np.ndarray, n_tokens: int, tokenizer: Any
) -> tuple[dict[str, list[str]], list[str]]:
    """``(attributes, texts)``: attribute name -> one value per mark, and each mark's window of text
    (:func:`_window`). ``windows``: each mark's token window ``[n_marks, CONTEXT]``; ``n_tokens``: the
    tokens scanned (positions in the book are relative to them)."""
    windows = np.asarray(windows, dtype=np.int64).reshape(-1, CONTEXT)
    uniq, inverse = np.unique(windows, return_inverse=True)
    decoded = [tokenizer.decode([int(u)]) for u in uniq]  # each token on its own, each distinct id once
    text = [[decoded[i] for i in row] for row in inverse.reshape(windows.shape)]
    attrs: defaultdict[str, list[str]] = defaultdict(list)
    for m, win in zip(marks, text, strict=True):
        before, mark, after = win[:BEFORE], win[BEFORE], win[BEFORE + 1 :]
        whole = "".join(win)
        attrs["mark token"].append(repr(mark))
        attrs["token before"].append(repr(before[-1]))
        attrs["token after"].append(repr(after[0]))
        attrs["line break in window"].append(_yes("\n" in whole))
        attrs["line break within 3 tokens before"].append(_yes("\n" in "".join(before[-3:])))
        attrs["double quote in window"].append(_yes(any(q in whole for q in QUOTES)))
        attrs["position in sentence"].append(_position(before))
        attrs["place in book"].append(f"decile {min(int(10 * int(m) / max(n_tokens, 1)), 9) + 1}")
    return dict(attrs), [_window(win, tokenizer) for win in windows]


def _window(win: np.ndarray, tokenizer: Any) -> str:
    """The mark's window decoded as text, each side as a sequence (so word pieces join as the tokenizer joins them),
    the mark between ``⟦ ⟧`` and line breaks shown as ``⏎``."""
    before, mark, after = (tokenizer.decode([int(i) for i in part]) for part in np.split(win, [BEFORE, BEFORE + 1]))
    return f"{before}⟦{mark}⟧{after}".replace("\n", "⏎")


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def _position(before: list[str]) -> str:
    """Tokens since the last sentence end among the 20 before the mark, bucketed."""
    for back, tok in enumerate(reversed(before), start=1):
        if tok.strip() in SENTENCE_END:
            if back <= 3:
                return "1-3 tokens into the sentence"
            return "4-10 tokens into the sentence" if back <= 10 else "11-20 tokens into the sentence"
    return "over 20 tokens into the sentence"


def explain_groups(
    attrs: dict[str, list[str]], windows: list[str], marks: np.ndarray, groups: MarkClusters
) -> Explanation:
    """The over-represented attributes of each group (when there are 2 or more) and the outlier marks' windows."""
    lab = groups.mark_labels
    n_groups = groups.n_groups if groups.n_groups >= 2 else 0
    rows = (
        GroupExplained(g, int((lab == g).sum()), _over_represented(attrs, lab == g, lab >= 0)) for g in range(n_groups)
    )
    outliers = tuple(OutlierMark(int(i), int(marks[i]), windows[i]) for i in groups.outlier_marks)
    return Explanation(tuple(rows), outliers)


def _over_represented(attrs: dict[str, list[str]], inside: np.ndarray, typical: np.ndarray) -> tuple[AttributeRow, ...]:
    outside = typical & ~inside
    n_in, n_out = int(inside.sum()), max(int(outside.sum()), 1)
    rows = []
    for name, values in attrs.items():
        v = np.asarray(values, dtype=object)
        for value in set(v[inside]):
            hit = v == value
            k = int((hit & inside).sum())
            rate_in, rate_out = k / n_in, float((hit & outside).sum()) / n_out
            if k >= MIN_IN and rate_in - rate_out >= MIN_EXCESS:
                rows.append(AttributeRow(name, str(value), k, rate_in, rate_out))
    rows.sort(key=lambda r: (r.rate_out - r.rate_in, r.attribute, r.value))
    return tuple(rows[:N_ROWS])


def explain_kind(k: KindResult, windows: np.ndarray, n_tokens: int, tokenizer: Any) -> KindResult:
    """``k`` with every detail layer's :class:`Explanation` filled in, for the covariance and the MI groups (those
    computed); ``windows``, ``n_tokens``: as :func:`mark_attributes` takes them."""
    attrs, texts = mark_attributes(windows, k.marks, n_tokens, tokenizer)
    details = tuple(
        replace(
            d,
            explain={w: explain_groups(attrs, texts, k.marks, getattr(d, w)) for w in ("cov", "mi") if w in d.computed},
        )
        for d in k.details
    )
    return replace(k, details=details)


# --------------------------------------------------------------------------------------------------- markdown


def markdown(result: PunctuationResult) -> str:
    """The report section: per kind and detail layer, each count with its interval, stability and literal count
    beside it, the pair types, each group's over-represented attributes and the outlier marks' windows."""
    lines = [f"## Study A: what the clusters are made of ({result.model})", ""]
    for kind in ("internal", "terminal"):
        k = result.kind_result(kind)
        for d in k.details:
            lines += [f"### {kind} marks, layer {d.layer}" + (" post-norm" if d.post_norm else ""), ""]
            if not d.computed:
                lines += ["Not computed: no claim reads it.", ""]
                continue
            lines += [_dimensions_md(d.dimensions), ""]
            for what, label in (("cov", "covariance"), ("mi", "MI")):
                if what not in d.computed:
                    lines += [f"**{label}**: not computed: no claim reads it.", ""]
                    continue
                lines += _statistic_md(getattr(d, what), getattr(d, f"{what}_literal"), label, d.explain.get(what))
    return "\n".join(lines).rstrip() + "\n"


def _dimensions_md(dims: dict[str, Any]) -> str:
    """Whether the marks' hidden states carry massive-activation dimensions, and their top-variance dimensions."""
    top = ", ".join(
        f"{d} ({v:.0%} of the variance)"
        for d, v in zip(dims.get("dims", []), dims.get("variance_share", []), strict=False)
    )
    top_text = f"top dimensions by variance over the marks: {top}" if top else "top dimensions not computed"
    m = dims.get("massive_activations")
    if m is None:
        return f"**Dimensions**: massive activations not computed; {top_text}."
    if m["dims"]:
        found = ", ".join(f"{d} (in {k} marks)" for d, k in zip(m["dims"], m["n_marks"], strict=True))
        head = f"massive-activation dimensions ({m['rule']}): {found}"
    else:
        head = f"no massive-activation dimension ({m['rule']}; largest max/median |a| of a mark: {m['top_ratio']:.3g})"
    return f"**Dimensions**: {head}; {top_text}."


def _statistic_md(g: MarkClusters, literal: int, label: str, ex: Explanation | None) -> list[str]:
    lo, hi = g.count_interval()
    out = [
        f"**{label}**: {g.n_clusters} pair cluster(s) carried by groups of marks (>= {g.min_support} marks each; "
        f"95% interval over resamples of marks [{lo}, {hi}], stability {g.stability:.2f}); literal count of the "
        f"pair values: {literal}; groups of sizes {g.diagnostics.get('group_sizes', [])}; "
        f"{len(g.outlier_marks)} outlier mark(s).",
        "",
        "| pair type (groups) | pairs | centre | robust sd | cluster |",
        "|---|---|---|---|---|",
    ]
    out += [f"| ({t.a}, {t.b}) | {t.n_pairs} | {t.centre:.4g} | {t.scale:.3g} | {t.cluster} |" for t in g.pair_types]
    out.append("")
    if ex is None:
        return out
    for grp in ex.groups:
        out += [f"Group {grp.group} ({grp.size} marks): most over-represented attributes", ""]
        out += ["| attribute | value | marks | rate in group | rate in other marks |", "|---|---|---|---|---|"]
        out += [
            f"| {r.attribute} | {_cell(r.value)} | {r.n_in} | {r.rate_in:.0%} | {r.rate_out:.0%} |" for r in grp.rows
        ]
        out.append("")
    if ex.outliers:
        out += [f"Outlier marks ({label}):", ""]
        out += [f"- mark {o.mark} (token {o.token_index}): `{_cell(o.window)}`" for o in ex.outliers]
        out.append("")
    return out


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("`", "'")
