"""Decision rules: from a statistic's bootstrap distribution to holds / fails / inconclusive (``docs/verdicts.md``).

Plain functions over arrays; nothing here knows a claim, a model or a study. Every rule reads the *bootstrap
replicates* of a statistic (``Measurement.replicates``) and the claim's comparison and threshold, and returns a
:class:`Decision`: the verdict, the decision interval and the one-sided p-values behind it. Rules and their
consistency (each is proved, and property-tested in ``tests/unit/test_verdicts.py``):

**Threshold claims** (``>``, ``<``, ``>=``, ``<=``). At level ``alpha`` the decision interval is the central
``1 - alpha`` bootstrap percentile interval ``[L, U]``: with ``B`` finite replicates ``R`` and
``k = ceil(alpha/2 * B)``, ``L`` is the k-th smallest and ``U`` the k-th largest replicate (``numpy``'s
``inverted_cdf`` quantiles). For ``statistic > t``: the p-value of H0 ``statistic <= t`` is
``p = min(1, 2 #{R <= t} / B)`` and that of the opposite claim's null (``statistic > t``)
``p_against = min(1, 2 #{R > t} / B)``. Then

- holds  <=>  ``L > t``  <=>  ``p < alpha`` (the interval lies wholly in the claimed region),
- fails  <=>  ``U <= t`` <=>  ``p_against < alpha`` (wholly outside it),
- inconclusive otherwise

(the p-value sides hold whatever ``B``; the interval sides where ``1/(B+1) < alpha``, see "Resolution" below).

(``#{R <= t} < k  <=>  #{R <= t} < alpha/2 B`` because the count is an integer.) ``<`` mirrors it; ``>=``/``<=``
move the ties to the claimed side. The p-value is a bootstrap test of the claim's own null (Efron & Tibshirani
1993, ch. 16: the percentile interval inverted), not a permutation test of "no relation". Why ``alpha/2`` on one
side, i.e. the two-sided interval read one side at a time: at the study-B size (34 items) the percentile bootstrap
of a correlation is anti-conservative; read at ``alpha`` per side it said "holds" in 7.7% of 3,000 simulations
with the truth exactly at the threshold, at ``alpha/2`` in 5.0% of 6,000 (``docs/verdicts.md``).

**Count claims** (``== k`` on an integer statistic, e.g. cluster counts). ``count == k`` is the intersection of
``count > k - 1/2`` and ``count < k + 1/2``; by the rule above (intersection-union) it holds when the point count
is ``k`` and fewer than ``alpha/2 B`` replicates lie below ``k`` and fewer than ``alpha/2 B`` above it
(``p = min(1, 2 max(#{R < k}, #{R > k}) / B)``). It fails when one of the two parts fails, i.e. when the decision
interval lies wholly below ``k`` or wholly above it: ``p_against = min(1, 2 min(#{R >= k}, #{R <= k}) / B)`` below
``alpha`` (the p of the opposite claim's null, so that "fails" is decided at a level like "holds", never by a fixed
fraction of the resamples). ``fraction`` (the resamples giving ``k``) is reported. A count claimed as 1 ("no
groups") that the data could not have contradicted (its detection limit above the separation the claim calls
meaningful, ``blind_spot``) is inconclusive, never holds.

**Bands over parts** (a statistic claimed at *every* block, B4). Replicates ``[n_parts, B]`` paired across parts
(one resample of the items serves every part). A simultaneous percentile band (:func:`band_levels`): each part's
lower bound is its ``j``-th smallest replicate, with ``j`` chosen from the joint distribution of the parts' bootstrap
ranks so that in at most ``alpha/2`` of the resamples any part falls below its bound (the max-type / min-p bootstrap
on ranks; a studentised band, ``r_b - c s_b``, was tried first: on a skewed statistic such as a correlation it said
"holds" in 7.2% of 500 simulations with one block of 30 at the threshold, ``docs/verdicts.md``). Holds when the lower
band clears ``t`` at every part, fails when the upper band lies at or below ``t`` at some part, inconclusive
otherwise; the parts whose lower band falls short are listed; ``p < alpha <=> holds`` as for thresholds. The decision
interval is the simultaneous interval of ``min_b statistic_b``: ``[min_b lower_b, min_b upper_b]``.

**Conjunctions** (intersection-union, Berger 1982): all parts hold -> holds, any part fails -> fails, else
inconclusive; the claim's p-value is the largest of its parts' p-values.

**Resolution.** With ``B`` replicates no p-value is below ``1 / (B + 1)`` (:func:`p_floor`): a tail count of 0
gives that floor, not 0 (Davison & Hinkley 1997, ch. 4: a bootstrap or Monte Carlo p is at best ``1/(B+1)``). Every
rule reads the floored p, so ``holds <=> p < alpha`` stays exact; where the interval alone would have said holds
(or fails) but ``1/(B+1)`` is not below ``alpha``, the decision is inconclusive and its reason names the number of
replicates a decision at that level needs.

**Family-wise level** (:func:`holm`, applied by :func:`layerclaims.verdicts.apply_family`): Holm's step-down over
the distinct conditions of a run, once over the p-values *for* the claims (small: holds) and once over the p-values
*against* them (small: fails); see ``docs/verdicts.md``. Ties share the level of their first rank, so the levels,
like Holm's adjusted p-values, do not depend on the order of the claims.

A statistic without replicates is decided on its reported interval (``ci``, a 95% interval) and gets no p-value
(and stays outside the family); a statistic without an interval is "not evaluated", never decided from a
point estimate.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

VerdictWord = Literal["holds", "holds on control too", "fails", "inconclusive", "not evaluated"]
ON_CONTROL: VerdictWord = "holds on control too"
"""A claim that holds and also holds, by the same rule at the same level, on every control it has (the same
statistic where the claimed structure is absent by construction): counted apart from "holds". Only a claim that does
not require beating its control gets it (``Claim.beats_control``); the rules below never return it."""
VERDICTS: tuple[VerdictWord, ...] = ("holds", ON_CONTROL, "fails", "inconclusive", "not evaluated")

LEVEL = 0.05
"""Default family-wise level (one-sided) over the claims of one run."""

INTERVAL_ONLY_LEVEL = 0.05
"""Level of a reported 95% interval, when a statistic comes without replicates."""

MAX_NAN_FRACTION = 0.1
"""More undefined (NaN) replicates than this and the statistic is not evaluated: the bootstrap does not describe it."""


@dataclass(frozen=True)
class Decision:
    """The outcome of one decision rule.

    ``verdict``; ``interval``: the decision interval (None without one); ``p_value``: bootstrap p of the claim's
    null (the statistic on the wrong side of the threshold), None where the rule has none; ``p_against``: that of
    the opposite null (small p_against: the claim fails); ``level``: the level used (the interval is the central
    ``1 - level`` interval); ``reason``: why, for
    anything but a plain holds/fails; ``shortfall``: for bands, the parts whose lower band does not clear the
    threshold; ``fraction``: for counts, the fraction of resamples giving the claimed count."""

    verdict: VerdictWord
    interval: tuple[float, float] | None = None
    p_value: float | None = None
    p_against: float | None = None
    level: float = LEVEL
    reason: str | None = None
    shortfall: tuple[int, ...] = ()
    fraction: float | None = None


# --------------------------------------------------------------------------------------------------- pieces


def _k(alpha: float, b: int) -> int:
    """``ceil(alpha * B)``, at least 1 and at most B (the order statistic read for a one-sided bound)."""
    return min(max(math.ceil(alpha * b - 1e-12), 1), b)


def finite_replicates(replicates: np.ndarray | None) -> tuple[np.ndarray | None, str | None]:
    """The finite replicates (1-D, or 2-D with parts on axis 0: columns with any NaN dropped), or None and why."""
    if replicates is None:
        return None, "no bootstrap replicates"
    r = np.asarray(replicates, dtype=np.float64)
    if r.size == 0:
        return None, "no bootstrap replicates"
    ok = np.isfinite(r) if r.ndim == 1 else np.isfinite(r).all(axis=0)
    bad = 1.0 - ok.mean()
    if bad > MAX_NAN_FRACTION:
        return None, f"{bad:.0%} of the bootstrap replicates are undefined (NaN): the interval does not describe it"
    return (r[ok] if r.ndim == 1 else r[:, ok]), None


def interval(replicates: np.ndarray, alpha: float) -> tuple[float, float]:
    """``(L, U)``: the central ``1 - alpha`` percentile interval, the k-th smallest and k-th largest replicate,
    ``k = ceil(alpha/2 B)``."""
    s = np.sort(np.asarray(replicates, dtype=np.float64))
    k = _k(alpha / 2, s.size)
    return float(s[k - 1]), float(s[s.size - k])


def p_floor(b: int) -> float:
    """The smallest p-value ``B`` replicates can give: ``1 / (B + 1)`` (a tail count of 0 is not p = 0)."""
    return 1.0 / (b + 1)


def _p(count: int | np.integer, b: int) -> float:
    """The two-sided-interval p of a tail count: ``min(1, 2 count / B)``, never below :func:`p_floor`."""
    return float(max(min(1.0, 2.0 * float(count) / b), p_floor(b)))


def replicates_needed(alpha: float) -> int:
    """The fewest replicates whose :func:`p_floor` lies below ``alpha``: ``floor(1/alpha)``."""
    return math.floor(1.0 / alpha + 1e-9) if alpha > 0 else 0


def floor_reason(b: int, alpha: float) -> str | None:
    """Why ``B`` replicates cannot decide at level ``alpha`` (None when they can)."""
    if p_floor(b) < alpha:
        return None
    return (
        f"{b} resamples give no p below 1/{b + 1} = {p_floor(b):.2g}, not below the level {alpha:.2g}: "
        f"a decision at this level needs at least {replicates_needed(alpha)} resamples"
    )


def threshold_p(replicates: np.ndarray, comparison: str, threshold: float) -> tuple[float, float]:
    """``(p, p_against)``: twice the fractions of the replicates on the null side of the claim and of its opposite
    (capped at 1)."""
    r = np.asarray(replicates, dtype=np.float64)
    b = r.size
    if comparison == ">":  # the opposite claim is "<= t": its null "> t"
        return _p((r <= threshold).sum(), b), _p((r > threshold).sum(), b)
    if comparison == ">=":
        return _p((r < threshold).sum(), b), _p((r >= threshold).sum(), b)
    if comparison == "<":
        return _p((r >= threshold).sum(), b), _p((r < threshold).sum(), b)
    if comparison == "<=":
        return _p((r > threshold).sum(), b), _p((r <= threshold).sum(), b)
    raise ValueError(f"comparison {comparison!r} is not a one-sided threshold: use >, >=, <, <=")


def _word(p: float, p_against: float, alpha: float) -> VerdictWord:
    if p < alpha:
        return "holds"
    if p_against < alpha:
        return "fails"
    return "inconclusive"


# --------------------------------------------------------------------------------------------------- rules


def decide_threshold(replicates: np.ndarray, comparison: str, threshold: float, alpha: float = LEVEL) -> Decision:
    """The threshold rule (module docstring) on finite 1-D replicates."""
    p, p_against = threshold_p(replicates, comparison, threshold)
    word = _word(p, p_against, alpha)
    reason = floor_reason(np.asarray(replicates).size, alpha) if word == "inconclusive" else None
    return Decision(word, interval(replicates, alpha), p, p_against, alpha, reason=reason)


def decide_count(
    value: float,
    replicates: np.ndarray,
    claimed: float,
    alpha: float = LEVEL,
    *,
    blind_spot: str | None = None,
) -> Decision:
    """The count rule (module docstring): ``count == claimed`` on integer-valued replicates. ``blind_spot``: what
    the count could not have seen, for a count claimed as 1 ("no groups") whose detection limit on this run's data
    lies above the separation the claim calls meaningful; such a claim never holds (inconclusive, with that
    reason)."""
    r = np.asarray(replicates, dtype=np.float64)
    b = r.size
    fraction = float((r == claimed).sum() / b)
    p = _p(max((r < claimed).sum(), (r > claimed).sum()), b)
    p_against = _p(min((r >= claimed).sum(), (r <= claimed).sum()), b)
    span = interval(r, alpha)
    if p < alpha and value == claimed:
        if blind_spot:
            return Decision("inconclusive", span, p, p_against, alpha, reason=blind_spot, fraction=fraction)
        return Decision("holds", span, p, p_against, alpha, fraction=fraction)
    if p_against < alpha:
        side = "below" if (r >= claimed).sum() <= (r <= claimed).sum() else "above"
        reason = (
            f"its interval [{span[0]:g}, {span[1]:g}] lies wholly {side} {claimed:g} ({fraction:.0%} of the "
            f"resamples give {claimed:g})"
        )
        return Decision("fails", span, p, p_against, alpha, reason=reason, fraction=fraction)
    reason = f"{fraction:.0%} of the resamples give {claimed:g} (holds needs fewer than {alpha / 2:.3g} on each side)"
    if value != claimed:
        reason = f"the count on all items is {value:g}; " + reason
    floor = floor_reason(b, alpha)
    if floor:
        reason = f"{reason}; {floor}"
    if blind_spot and claimed == 1:
        reason += f"; and {blind_spot}"
    return Decision("inconclusive", span, p, p_against, alpha, reason=reason, fraction=fraction)


def band_levels(replicates: np.ndarray, alpha: float) -> tuple[int, int]:
    """The per-part order statistics of the simultaneous percentile band: ``(j_low, j_up)`` such that the lower band
    at every part is its ``j_low``-th smallest replicate and the upper band its ``j_up``-th largest.

    Each replicate's rank within its part, ``u_bi = #{R_b <= R_bi}`` (and ``v_bi = #{R_b >= R_bi}`` from above), is
    reduced to its minimum over parts, ``T_i = min_b u_bi``; ``j_low`` is the k-th smallest ``T`` (``k = ceil(alpha/2
    B)``). So in at most ``alpha/2`` of the resamples does any part fall below its band (Westfall and Young's min-p
    step, on bootstrap ranks): a per-part percentile bound, made simultaneous by the joint distribution of the
    parts."""
    r = np.asarray(replicates, dtype=np.float64)
    b = r.shape[1]
    srt = np.sort(r, axis=1)
    u = np.stack([np.searchsorted(srt[i], r[i], side="right") for i in range(r.shape[0])])
    v = np.stack([b - np.searchsorted(srt[i], r[i], side="left") for i in range(r.shape[0])])
    k = _k(alpha / 2, b)
    return int(np.sort(u.min(axis=0))[k - 1]), int(np.sort(v.min(axis=0))[k - 1])


def decide_band(
    values: np.ndarray, replicates: np.ndarray, comparison: str, threshold: float, alpha: float = LEVEL
) -> Decision:
    """The band rule (module docstring) for ``statistic_b > t`` (or ``>=``) at every part ``b``; ``values``
    ``[n_parts]`` and finite ``replicates [n_parts, B]`` paired across parts (``values`` name the statistic; the
    bands come from the replicates, as the percentile interval does)."""
    if comparison not in (">", ">="):
        raise ValueError(f"bands are for 'at every part above a threshold' claims (> or >=), got {comparison!r}")
    r = np.asarray(replicates, dtype=np.float64)
    b = r.shape[1]
    j_low, j_up = band_levels(r, alpha)
    srt = np.sort(r, axis=1)
    lower, upper = srt[:, j_low - 1], srt[:, b - j_up]
    strict = comparison == ">"
    # holds <=> every lower band clears t <=> max_b #{R_b <= t} < j_low (">"); the p-value counts the resamples whose
    # smallest rank lies at or below that count, so that p < alpha <=> holds (ties: ">=" moves them to the claim)
    below = ((r <= threshold) if strict else (r < threshold)).sum(axis=1)
    above = ((r > threshold) if strict else (r >= threshold)).sum(axis=1)
    u_min = np.stack([np.searchsorted(srt[i], r[i], side="right") for i in range(r.shape[0])]).min(axis=0)
    v_min = np.stack([b - np.searchsorted(srt[i], r[i], side="left") for i in range(r.shape[0])]).min(axis=0)
    p = _p((u_min <= below.max()).sum(), b)
    p_against = _p((v_min <= above.min()).sum(), b)
    short = tuple(int(i) for i in np.flatnonzero(lower <= threshold if strict else lower < threshold))
    interval_ = (float(lower.min()), float(upper.min()))
    word = _word(p, p_against, alpha)
    reason = floor_reason(b, alpha) if word == "inconclusive" else None
    return Decision(word, interval_, p, p_against, alpha, reason=reason, shortfall=short)


def decide_interval_only(ci: tuple[float, float], comparison: str, threshold: float) -> Decision:
    """A statistic with a reported 95% interval and no replicates: the interval rule, no p-value."""
    lo, hi = min(ci), max(ci)
    inside = {
        ">": (lo > threshold, hi <= threshold),
        ">=": (lo >= threshold, hi < threshold),
        "<": (hi < threshold, lo >= threshold),
        "<=": (hi <= threshold, lo > threshold),
        "==": (lo == hi == threshold, not lo <= threshold <= hi),
    }
    if comparison not in inside:
        raise ValueError(f"unknown comparison {comparison!r}")
    yes, no = inside[comparison]
    word: VerdictWord = "holds" if yes else ("fails" if no else "inconclusive")
    return Decision(word, (lo, hi), None, None, INTERVAL_ONLY_LEVEL, reason="decided on the reported 95% interval")


def intersection_union(words: Sequence[VerdictWord]) -> VerdictWord:
    """A conjunction: holds when every part holds, fails when any part fails, not evaluated when any part could not
    be evaluated (and none fails), else inconclusive."""
    if any(w == "fails" for w in words):
        return "fails"
    if any(w == "not evaluated" for w in words):
        return "not evaluated"
    if words and all(w == "holds" for w in words):
        return "holds"
    return "inconclusive"


# --------------------------------------------------------------------------------------------------- family


def holm(p_values: Sequence[float], level: float = LEVEL) -> tuple[list[float], list[float]]:
    """Holm's step-down adjustment (Holm 1979). Returns ``(adjusted, levels)``: the adjusted p-values
    ``p_adj(i) = max_{j <= i} min(1, (m - j + 1) p_(j))`` in the input order, and the level at which each
    hypothesis is tested, ``level / (m - rank + 1)`` (rank 1 = smallest p; tied p-values share the level of their
    first rank, so that neither output depends on the order of the input). A hypothesis is rejected at family-wise
    level ``level`` exactly when its adjusted p is below ``level``."""
    p = np.asarray(p_values, dtype=np.float64)
    m = p.size
    order = np.argsort(p, kind="stable")
    adj_sorted = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    adjusted = np.empty(m)
    adjusted[order] = adj_sorted
    first_rank = np.searchsorted(np.sort(p), p, side="left")  # 0-based rank of the first of each value's ties
    levels = level / (m - first_rank)
    return adjusted.tolist(), levels.tolist()
