"""Decision rules: from a statistic's bootstrap replicates to holds / fails / inconclusive, plain functions over
arrays (``docs/verdicts.md`` states them, their proofs and their calibration).

With ``B`` finite replicates ``R`` at level ``alpha``, the decision interval ``[L, U]`` is the central ``1 - alpha``
percentile interval (``L`` the k-th smallest, ``U`` the k-th largest replicate, ``k = ceil(alpha/2 B)``);
``alpha/2`` per side because at study B's 34 items the percentile bootstrap of a correlation read at ``alpha`` said
"holds" in 7.7% of simulations with the truth at the threshold (5.0% at ``alpha/2``).

- **Threshold** (for ``> t``): ``p = min(1, 2 #{R <= t} / B)``, ``p_against = min(1, 2 #{R > t} / B)``; holds <=>
  ``L > t`` <=> ``p < alpha``, fails <=> ``U <= t`` <=> ``p_against < alpha``.
- **Count** (``== k``, the intersection of ``> k - 1/2`` and ``< k + 1/2``): ``p = min(1, 2 max(#{R < k}, #{R > k})
  / B)``, holds when also the point count is ``k``; ``p_against = min(1, 2 min(#{R >= k}, #{R <= k}) / B)``. A
  count claimed as 1 whose detection limit lies above the separation the claim calls meaningful never holds.
- **Band** (``> t`` at every part; replicates ``[n_parts, B]`` paired across parts): a simultaneous percentile band
  from the joint distribution of the parts' bootstrap ranks (a studentised band said "holds" in 7.2% of simulations
  on a skewed statistic): holds when the lower band clears ``t`` at every part, fails when the upper band lies at or
  below ``t`` at some part.
- **Conjunction** (intersection-union, Berger 1982): the claim's p is the largest.

No p is below ``1 / (B + 1)`` (:func:`p_floor`; Davison & Hinkley 1997, ch. 4): where the interval alone would have
decided but that floor is not below ``alpha``, the decision is inconclusive and says how many replicates it needs.
A statistic without replicates is decided on its reported 95% interval (no p); none without an interval is decided.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

VerdictWord = Literal["holds", "holds on control too", "fails", "inconclusive", "not evaluated"]
ON_CONTROL: VerdictWord = "holds on control too"
"""A claim that holds and also holds, by the same rule at the same level, on every control it has; only a claim that
does not require beating its control gets it (``Claim.beats_control``), the rules below never return it."""
VERDICTS: tuple[VerdictWord, ...] = ("holds", ON_CONTROL, "fails", "inconclusive", "not evaluated")

LEVEL = 0.05
"""Default family-wise level (one-sided) over the claims of one run."""
MAX_NAN_FRACTION = 0.1
"""More undefined (NaN) replicates than this and the statistic is not evaluated: the bootstrap does not describe it."""


@dataclass(frozen=True)
class Decision:
    """The outcome of one decision rule: ``interval`` (the decision interval), ``p_value`` (bootstrap p of the
    claim's null; None where the rule has none), ``p_against`` (of the opposite null), ``reason`` (for anything but a
    plain holds/fails), ``shortfall`` (bands: the parts whose lower band does not clear the threshold), ``fraction``
    (counts: of the resamples giving the claimed count)."""

    verdict: VerdictWord
    interval: tuple[float, float] | None = None
    p_value: float | None = None
    p_against: float | None = None
    reason: str | None = None
    shortfall: tuple[int, ...] = ()
    fraction: float | None = None


def _k(alpha: float, b: int) -> int:
    """``ceil(alpha * B)``, at least 1 and at most B (the order statistic read for a one-sided bound)."""
    return min(max(math.ceil(alpha * b - 1e-12), 1), b)


def finite_replicates(replicates: np.ndarray | None) -> tuple[np.ndarray | None, str | None]:
    """The finite replicates (1-D, or 2-D with parts on axis 0: columns with any NaN dropped), or None and why."""
    r = np.asarray(replicates if replicates is not None else [], dtype=np.float64)
    if r.size == 0:
        return None, "no bootstrap replicates"
    ok = np.isfinite(r) if r.ndim == 1 else np.isfinite(r).all(axis=0)
    bad = 1.0 - ok.mean()
    if bad > MAX_NAN_FRACTION:
        return None, f"{bad:.0%} of the bootstrap replicates are undefined (NaN): the interval does not describe it"
    return (r[ok] if r.ndim == 1 else r[:, ok]), None


def interval(replicates: np.ndarray, alpha: float) -> tuple[float, float]:
    """``(L, U)``: the central ``1 - alpha`` percentile interval (module docstring)."""
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


_SIDES = {">": np.greater, ">=": np.greater_equal, "<": np.less, "<=": np.less_equal}
_OPPOSITE = {">": "<=", ">=": "<", "<": ">=", "<=": ">"}


def _by_p(span: tuple[float, float], p: float, p_against: float, alpha: float, b: int, **more: Any) -> Decision:
    """Holds when ``p < alpha``, fails when ``p_against < alpha``, else inconclusive (saying so when ``B`` is too
    few replicates to decide at ``alpha``)."""
    word: VerdictWord = "holds" if p < alpha else "fails" if p_against < alpha else "inconclusive"
    reason = floor_reason(b, alpha) if word == "inconclusive" else None
    return Decision(word, span, p, p_against, reason=reason, **more)


def decide_threshold(replicates: np.ndarray, comparison: str, threshold: float, alpha: float = LEVEL) -> Decision:
    """The threshold rule (module docstring) on finite 1-D replicates: ``p`` counts the replicates on the null side of
    the claim (``R <= t`` for ``> t``), ``p_against`` those on its side (the null of the opposite claim)."""
    if comparison not in _SIDES:
        raise ValueError(f"comparison {comparison!r} is not a one-sided threshold: use >, >=, <, <=")
    r = np.asarray(replicates, dtype=np.float64)
    null, claim = (_SIDES[c](r, threshold).sum() for c in (_OPPOSITE[comparison], comparison))
    return _by_p(interval(r, alpha), _p(null, r.size), _p(claim, r.size), alpha, r.size)


def decide_count(
    value: float,
    replicates: np.ndarray,
    claimed: float,
    alpha: float = LEVEL,
    *,
    blind_spot: str | None = None,
) -> Decision:
    """The count rule (module docstring): ``count == claimed`` on integer-valued replicates. ``blind_spot``: what a
    count claimed as 1 could not have seen (module docstring); such a claim never holds."""
    r = np.asarray(replicates, dtype=np.float64)
    b = r.size
    fraction = float((r == claimed).sum() / b)
    p = _p(max((r < claimed).sum(), (r > claimed).sum()), b)
    p_against = _p(min((r >= claimed).sum(), (r <= claimed).sum()), b)
    span = interval(r, alpha)
    gave = f"{fraction:.0%} of the resamples give {claimed:g}"
    word: VerdictWord = "inconclusive"
    if p < alpha and value == claimed:
        word, reason = ("inconclusive", blind_spot) if blind_spot else ("holds", None)
    elif p_against < alpha:
        side = "below" if (r >= claimed).sum() <= (r <= claimed).sum() else "above"
        word, reason = "fails", f"its interval [{span[0]:g}, {span[1]:g}] lies wholly {side} {claimed:g} ({gave})"
    else:
        reason = f"{gave} (holds needs fewer than {alpha / 2:.3g} on each side)"
        if value != claimed:
            reason = f"the count on all items is {value:g}; " + reason
        floor = floor_reason(b, alpha)
        if floor:
            reason = f"{reason}; {floor}"
        if blind_spot and claimed == 1:
            reason += f"; and {blind_spot}"
    return Decision(word, span, p, p_against, reason=reason, fraction=fraction)


def decide_band(
    values: np.ndarray, replicates: np.ndarray, comparison: str, threshold: float, alpha: float = LEVEL
) -> Decision:
    """The band rule (module docstring) for ``statistic_b > t`` (or ``>=``) at every part ``b``: ``values
    [n_parts]`` name the statistic, the bands come from finite ``replicates [n_parts, B]`` paired across parts."""
    if comparison not in (">", ">="):
        raise ValueError(f"bands are for 'at every part above a threshold' claims (> or >=), got {comparison!r}")
    r = np.asarray(replicates, dtype=np.float64)
    b = r.shape[1]
    # The band: each replicate's rank within its part, u_bi = #{R_b <= R_bi} (v_bi = #{R_b >= R_bi} from above),
    # reduced to its minimum over parts, T_i = min_b u_bi; the lower band at every part is its j_low-th smallest
    # replicate, j_low the k-th smallest T (k = ceil(alpha/2 B)). So in at most alpha/2 of the resamples does any part
    # fall below its band (Westfall and Young's min-p step, on bootstrap ranks).
    srt = np.sort(r, axis=1)
    u_min = np.stack([np.searchsorted(srt[i], r[i], side="right") for i in range(r.shape[0])]).min(axis=0)
    v_min = np.stack([b - np.searchsorted(srt[i], r[i], side="left") for i in range(r.shape[0])]).min(axis=0)
    k = _k(alpha / 2, b)
    j_low, j_up = int(np.sort(u_min)[k - 1]), int(np.sort(v_min)[k - 1])
    lower, upper = srt[:, j_low - 1], srt[:, b - j_up]
    strict = comparison == ">"
    # holds <=> every lower band clears t <=> max_b #{R_b <= t} < j_low (">"); the p-value counts the resamples whose
    # smallest rank lies at or below that count, so that p < alpha <=> holds (ties: ">=" moves them to the claim)
    below = ((r <= threshold) if strict else (r < threshold)).sum(axis=1)
    above = ((r > threshold) if strict else (r >= threshold)).sum(axis=1)
    p = _p((u_min <= below.max()).sum(), b)
    p_against = _p((v_min <= above.min()).sum(), b)
    short = tuple(int(i) for i in np.flatnonzero(lower <= threshold if strict else lower < threshold))
    return _by_p((float(lower.min()), float(upper.min())), p, p_against, alpha, b, shortfall=short)


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
    return Decision(word, (lo, hi), reason="decided on the reported 95% interval")


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


def holm(p_values: Sequence[float], level: float = LEVEL) -> tuple[list[float], list[float]]:
    """Holm's step-down (Holm 1979): ``(adjusted, levels)`` in the input order, ``p_adj(i) = max_{j <= i} min(1,
    (m - j + 1) p_(j))`` and the level each hypothesis is tested at, ``level / (m - rank + 1)`` (rank 1 = smallest p;
    tied p-values share the level of their first rank, so neither depends on the input order). Rejected at
    family-wise ``level`` exactly when the adjusted p is below it."""
    p = np.asarray(p_values, dtype=np.float64)
    m = p.size
    order = np.argsort(p, kind="stable")
    adjusted = np.empty(m)
    adjusted[order] = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    first_rank = np.searchsorted(np.sort(p), p, side="left")  # 0-based rank of the first of each value's ties
    return adjusted.tolist(), (level / (m - first_rank)).tolist()
