"""Verdicts: a claim evaluated on one study result, as evidence (``docs/verdicts.md``).

:func:`evaluate` reads the statistics a :class:`~layerclaims.claims.Claim` names from a study result
(``result.measure(statistic, layer=..., kind=...)``, layer mapped by :func:`~layerclaims.claims.map_layer`) and
decides each condition with the rules of :mod:`layerclaims.decision` on the statistic's bootstrap replicates:
``holds`` / ``fails`` / ``inconclusive``, or ``not evaluated`` (with the reason) when the statistic has no
interval. A claim with several conditions is their intersection-union. The same rule is applied to the
statistic's control (the structure absent by construction); a claim that also holds there is marked so.

:func:`apply_family` is the run-level step: Holm's adjustment over the claims of one run (each claim re-decided at
its Holm level, the adjusted p recorded) and the presuppositions between claims (A2 and A6 presuppose A1: when the
premise fails, the verdict names it). :func:`evaluate_all` evaluates the claims of one study and applies the
presuppositions among them; the pipeline calls :func:`apply_family` once on all verdicts of a run.

This module never touches a model or a metric.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypedDict

import numpy as np

from layerclaims.claims import Claim, Condition, as_comparison, claims_for, format_condition, map_layer
from layerclaims.decision import (
    LEVEL,
    VERDICTS,
    Decision,
    VerdictWord,
    decide_band,
    decide_count,
    decide_interval_only,
    decide_threshold,
    finite_replicates,
    holm,
    intersection_union,
)
from layerclaims.errors import UsageError
from layerclaims.results import Control, Measurement

ALSO_ON_CONTROL = "also holds where the structure is absent by construction"


def control_note(absent: Sequence[str]) -> str:
    """What a claim that also holds on its control says: what the control lacks by construction (each control's
    ``details["absent"]``), or :data:`ALSO_ON_CONTROL` where no control names it."""
    unique = list(dict.fromkeys(a for a in absent if a))
    return (
        f"also holds on its control, which has by construction no {'; no '.join(unique)}" if unique else ALSO_ON_CONTROL
    )


MARKS: dict[str, str] = {"holds": "✓", "fails": "✗", "inconclusive": "?", "not evaluated": "–"}


# --------------------------------------------------------------------------------------------------- records


@dataclass(frozen=True)
class ControlResult:
    """A condition's statistic on its control, decided by the same rule at the same level: ``name`` (what the
    control is), ``value``, ``ci`` (its decision interval, or the reported one), ``verdict`` (None when the
    control has no interval), ``details`` (e.g. the number of seeds)."""

    name: str
    value: float | None
    ci: tuple[float, float] | None
    verdict: VerdictWord | None
    details: dict[str, Any] = field(default_factory=dict)

    def to_row(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "value": self.value,
            "ci": list(self.ci) if self.ci else None,
            "verdict": self.verdict,
            "details": self.details,
        }

    @classmethod
    def from_row(cls, row: Mapping[str, Any] | None) -> ControlResult | None:
        if not row:
            return None
        ci = row.get("ci")
        return cls(str(row.get("name", "control")), row.get("value"), tuple(ci) if ci else None, row.get("verdict"),
                   dict(row.get("details") or {}))  # fmt: skip


@dataclass(frozen=True)
class ConditionResult:
    """One condition of a claim (``statistic comparison threshold``) decided on one result.

    ``value``: the point estimate on all items; ``ci``: the decision interval (at ``level``, one-sided on each
    side); ``p_value``: one-sided p of the claim's null against its own threshold (e.g. H0: RSA <= 0.8; for counts
    the larger tail beside the claimed count); ``p_against``: that of the opposite null (for counts: the fraction
    of resamples giving the claimed count); ``p_secondary`` and ``p_secondary_name``: the study's "any structure at
    all" test (Mantel, label permutation), shown, never deciding; ``rule``: ``threshold``, ``count``, ``band``,
    ``interval`` (no replicates: decided on the reported 95% interval) or ``none``; ``shortfall``: for bands, the
    parts (blocks) whose lower band does not clear the threshold; ``control``: the same statistic where the
    structure is absent by construction; ``details``: what the study attached to the measurement.
    ``measurement``: the measurement itself, kept in memory so that :func:`apply_family` can re-decide at another
    level (not saved)."""

    statistic: str
    comparison: str
    threshold: float
    value: float | None
    ci: tuple[float, float] | None
    p_value: float | None
    verdict: VerdictWord
    level: float = LEVEL
    rule: str = "none"
    p_against: float | None = None
    p_secondary: float | None = None
    p_secondary_name: str | None = None
    reason: str | None = None
    shortfall: tuple[str, ...] = ()
    control: ControlResult | None = None
    details: dict[str, Any] = field(default_factory=dict)
    measurement: Measurement | None = field(default=None, repr=False, compare=False)

    @property
    def condition(self) -> str:
        return format_condition(self.statistic, self.comparison, self.threshold)

    def to_row(self) -> dict[str, Any]:
        return {
            "statistic": self.statistic,
            "comparison": self.comparison,
            "threshold": self.threshold,
            "value": self.value,
            "ci": list(self.ci) if self.ci else None,
            "p_value": self.p_value,
            "p_against": self.p_against,
            "p_secondary": self.p_secondary,
            "p_secondary_name": self.p_secondary_name,
            "verdict": self.verdict,
            "level": self.level,
            "rule": self.rule,
            "reason": self.reason,
            "shortfall": list(self.shortfall),
            "control": self.control.to_row() if self.control else None,
        }

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> ConditionResult:
        ci = row.get("ci")
        return cls(
            statistic=str(row["statistic"]),
            comparison=str(row["comparison"]),
            threshold=float(row["threshold"]),
            value=row.get("value"),
            ci=tuple(ci) if ci else None,
            p_value=row.get("p_value"),
            verdict=row.get("verdict", "not evaluated"),
            level=float(row.get("level") or LEVEL),
            rule=str(row.get("rule") or "none"),
            p_against=row.get("p_against"),
            p_secondary=row.get("p_secondary"),
            p_secondary_name=row.get("p_secondary_name"),
            reason=row.get("reason"),
            shortfall=tuple(row.get("shortfall") or ()),
            control=ControlResult.from_row(row.get("control")),
        )


def _verdict_word(word: object, claim: object) -> VerdictWord:
    """``word`` (a verdicts.json row's) as a :data:`~layerclaims.decision.VerdictWord`; ValueError naming the claim
    when it is none of them."""
    for w in VERDICTS:
        if word == w:
            return w
    raise ValueError(f"claim {claim}: unknown verdict {word!r} in a verdicts row (one of {', '.join(VERDICTS)})")


@dataclass(frozen=True)
class Verdict:
    """A claim evaluated on one result.

    ``verdict``: ``holds`` (every condition's decision interval lies in the claimed region, and the claim's Holm-
    adjusted p is below ``level``), ``fails`` (some condition's interval lies wholly outside it, or a presupposed
    claim fails), ``inconclusive`` (else; ``settle`` says what would settle it) or ``not evaluated`` (``reason``).
    ``conditions``: one :class:`ConditionResult` per condition of the claim. ``p_value``: the claim's p
    (intersection-union: the largest of its conditions'); ``p_adjusted``: Holm-adjusted over ``family_size`` claims
    of the run (equal to ``p_value`` before :func:`apply_family`); ``level``: the family-wise level.
    ``presupposition``: what the claim takes for granted and how that fared here. The claim's facts (``text``,
    ``layer_unit``, ``presupposes``) are copied from the :class:`Claim` so that a saved verdict stands alone."""

    claim: str
    model: str
    layer: int | None
    verdict: VerdictWord
    conditions: tuple[ConditionResult, ...] = ()
    reason: str | None = None
    settle: str | None = None
    presupposition: str | None = None
    level: float = LEVEL
    p_value: float | None = None
    p_adjusted: float | None = None
    family_size: int = 1
    text: str = ""
    layer_unit: str = "hidden_state"
    layer_mapped_from: int | None = None
    kind: str | None = None
    presupposes: tuple[str, ...] = ()
    own_model: str | None = None

    # ----------------------------------------------------------------------------------------- the first condition

    @property
    def main(self) -> ConditionResult | None:
        return self.conditions[0] if self.conditions else None

    @property
    def statistic(self) -> str:
        return self.main.statistic if self.main else ""

    @property
    def comparison(self) -> str:
        return self.main.comparison if self.main else ""

    @property
    def threshold(self) -> float:
        return self.main.threshold if self.main else float("nan")

    @property
    def value(self) -> float | None:
        return self.main.value if self.main else None

    @property
    def ci(self) -> tuple[float, float] | None:
        return self.main.ci if self.main else None

    @property
    def control(self) -> ControlResult | None:
        """The first condition's control that exists (the summary a table shows)."""
        return next((c.control for c in self.conditions if c.control is not None), None)

    @property
    def holds(self) -> bool | None:
        """Backwards-compatible reading: True holds, False fails or inconclusive, None not evaluated."""
        if self.verdict == "not evaluated":
            return None
        return self.verdict == "holds"

    @property
    def also_holds_on_control(self) -> bool:
        """True when the claim holds and every condition that has a control also holds on it."""
        ctrl = [c.control for c in self.conditions if c.control is not None]
        return self.verdict == "holds" and bool(ctrl) and all(c.verdict == "holds" for c in ctrl)

    @property
    def control_note(self) -> str:
        """:func:`control_note` of this claim's controls."""
        return control_note([str(c.control.details.get("absent", "")) for c in self.conditions if c.control])

    @property
    def code(self) -> int:
        """The verdict as a number for snapshots: 1 holds, 0 fails, 2 inconclusive, -1 not evaluated."""
        return {"holds": 1, "fails": 0, "inconclusive": 2, "not evaluated": -1}[self.verdict]

    # ----------------------------------------------------------------------------------------------------- text

    def where(self) -> str:
        if self.layer is None:
            return "all layers"
        unit = "block" if self.layer_unit == "block" else "layer"
        mapped = f" (the claim's {self.layer_mapped_from})" if self.layer_mapped_from is not None else ""
        return f"{unit} {self.layer}{mapped}"

    def lines(self, *, levels: bool = False) -> list[str]:
        """The verdict as a head line (claim, VERDICT, model, where) and one line per condition (value, decision
        interval, p against its threshold, the control) and per note (Holm, control, why, premise, what would settle
        it): the terminal's and the findings tests' form. ``levels``: each condition's decision level too."""
        head = f"{self.claim}: {self.verdict.upper()} on {self.model} at {self.where()}"
        if self.verdict == "not evaluated" and not any(c.value is not None for c in self.conditions):
            return [head, f"why: {self.reason}"]
        out = [head]
        for c in self.conditions:
            first, *control = condition_lines(c)
            level = f" (decided at level {c.level:.3g})" if levels and c.value is not None else ""
            out += [first + level, *control]
        if self.p_adjusted is not None and self.family_size > 1:
            n, alpha = self.family_size, self.level
            out.append(f"Holm: adjusted p={fmt_p(self.p_adjusted)} over {n} claims, level {alpha:g}")
        if self.also_holds_on_control:
            out.append(f"note: it {self.control_note}")
        if self.reason and self.verdict != "holds":
            out.append(f"why: {self.reason}")
        if self.presupposition:
            out.append(self.presupposition)
        if self.settle and self.verdict == "inconclusive":
            out.append(f"what would settle it: {self.settle}")
        return out

    def describe(self) -> str:
        """:meth:`lines` on one line (a log, a table cell, an assertion message)."""
        head, *rest = self.lines()
        return f"{head}: " + "; ".join(rest) if rest else head

    # ------------------------------------------------------------------------------------------------------ rows

    def to_row(self) -> dict[str, Any]:
        """The record written to verdicts.json (one per claim); :meth:`from_row` reads it back."""
        main = self.main
        ctrl = self.control
        return {
            "claim": self.claim,
            "model": self.model,
            "layer": self.layer,
            "layer_unit": self.layer_unit,
            "layer_mapped_from": self.layer_mapped_from,
            "kind": self.kind,
            "text": self.text,
            "own_model": self.own_model,
            "statistic": self.statistic,
            "comparison": self.comparison,
            "threshold": self.threshold if main else None,
            "value": self.value,
            "verdict": self.verdict,
            "holds": self.holds,
            "ci": list(self.ci) if self.ci else None,
            "p_value": self.p_value,
            "p_adjusted": self.p_adjusted,
            "level": self.level,
            "family_size": self.family_size,
            "p_secondary": main.p_secondary if main else None,
            "p_secondary_name": main.p_secondary_name if main else None,
            "control": ctrl.to_row() if ctrl else None,
            "also_holds_on_control": self.also_holds_on_control,
            "reason": self.reason,
            "settle": self.settle,
            "presupposition": self.presupposition,
            "presupposes": list(self.presupposes),
            "conditions": [c.to_row() for c in self.conditions],
            "details": (dict(main.details) if main else {}) | {"layer_mapped_from": self.layer_mapped_from},
        }

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Verdict:
        """A verdict read back from a verdicts.json row (rows of older runs, with ``holds`` and no ``verdict``, are
        read as holds / fails / not evaluated)."""
        word = row.get("verdict")
        if word is None:
            h = row.get("holds")
            word = "not evaluated" if h is None else ("holds" if h else "fails")
        verdict = _verdict_word(word, row.get("claim"))
        conds = tuple(ConditionResult.from_row(c) for c in row.get("conditions") or ())
        if not conds and row.get("statistic"):
            ci = row.get("ci")
            conds = (
                ConditionResult(
                    str(row["statistic"]), str(row.get("comparison")), float(row.get("threshold") or 0.0),
                    row.get("value"), tuple(ci) if ci else None, row.get("p_value"), verdict,
                ),
            )  # fmt: skip
        if conds:
            extra = {k: v for k, v in (row.get("details") or {}).items() if k != "layer_mapped_from"}
            conds = (dataclasses.replace(conds[0], details=extra), *conds[1:])
        return cls(
            claim=str(row["claim"]),
            model=str(row.get("model", "")),
            layer=row.get("layer"),
            verdict=verdict,
            conditions=conds,
            reason=row.get("reason"),
            settle=row.get("settle"),
            presupposition=row.get("presupposition"),
            level=float(row.get("level") or LEVEL),
            p_value=row.get("p_value"),
            p_adjusted=row.get("p_adjusted"),
            family_size=int(row.get("family_size") or 1),
            text=str(row.get("text") or ""),
            layer_unit=str(row.get("layer_unit") or "hidden_state"),
            layer_mapped_from=row.get("layer_mapped_from", (row.get("details") or {}).get("layer_mapped_from")),
            kind=row.get("kind"),
            presupposes=tuple(row.get("presupposes") or ()),
            own_model=row.get("own_model"),
        )


# --------------------------------------------------------------------------------------------------- text helpers


def fmt_p(p: float | None) -> str:
    """A p-value in 2 significant digits; ``0`` (no replicate on the null side) as ``<1/B``-style ``<0.001``."""
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "—"
    if p == 0:
        return "<0.001"
    return f"{p:.2g}"


def _num(x: float | None) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    return f"{x:.4g}"


def compact_parts(labels: Sequence[str]) -> str:
    """``block 0, block 1, block 2, block 5`` -> ``blocks 0-2, 5 (4)`` (other labels joined as they are)."""
    nums = [int(x.removeprefix("block ")) for x in labels if x.removeprefix("block ").isdigit()]
    if len(nums) != len(labels) or not nums:
        return ", ".join(labels)
    runs: list[list[int]] = []
    for n in sorted(nums):
        if runs and n == runs[-1][-1] + 1:
            runs[-1].append(n)
        else:
            runs.append([n])
    text = ", ".join(f"{r[0]}-{r[-1]}" if len(r) > 2 else ", ".join(map(str, r)) for r in runs)
    return f"block{'s' if len(nums) > 1 else ''} {text} ({len(nums)})"


def condition_lines(c: ConditionResult) -> list[str]:
    """The condition, then its control: ``rsa_qk = 0.861 [0.731, 0.943], p=0.18 vs 0.8, claimed > 0.8
    (inconclusive)`` and ``control (random projections ...) = 0.801 [0.699, 0.887], inconclusive there``."""
    if c.value is None:
        return [f"{c.condition}: not evaluated ({c.reason})"]
    ci = f" [{_num(c.ci[0])}, {_num(c.ci[1])}]" if c.ci else ""
    p = f", p={fmt_p(c.p_value)} vs {c.threshold:g}" if c.p_value is not None else ""
    out = f"{c.statistic} = {_num(c.value)}{ci}{p}, claimed {c.comparison} {c.threshold:g} ({c.verdict})"
    if c.shortfall:
        out += f", short at {compact_parts(c.shortfall)}"
    if c.control is None:
        return [out]
    cc = c.control
    cci = f" [{_num(cc.ci[0])}, {_num(cc.ci[1])}]" if cc.ci else ""
    there = f", {cc.verdict} there" if cc.verdict else ""
    return [out, f"control ({cc.name}) = {_num(cc.value)}{cci}{there}"]


# --------------------------------------------------------------------------------------------------- deciding


def _decide(value: float, m_ci: Any, replicates: Any, details: Mapping[str, Any], cond: Condition, alpha: float
            ) -> tuple[Decision, str]:  # fmt: skip
    """The rule for one statistic: band (2-D replicates), count (``==``), threshold; interval-only without
    replicates. Returns the decision and the rule's name."""
    reps, why = finite_replicates(replicates)
    if reps is not None and reps.ndim == 2:
        values = np.asarray(details.get("part_values"), dtype=np.float64)
        if values.shape != (reps.shape[0],):
            return Decision("not evaluated", reason="band replicates without details['part_values']"), "none"
        return decide_band(values, reps, cond.comparison, cond.threshold, alpha), "band"
    if reps is not None:
        if cond.comparison == "==":
            return decide_count(value, reps, cond.threshold, alpha), "count"
        return decide_threshold(reps, cond.comparison, cond.threshold, alpha), "threshold"
    if replicates is not None and why:  # replicates given but mostly undefined
        return Decision("not evaluated", reason=why), "none"
    return decide_interval_only(tuple(m_ci), cond.comparison, cond.threshold), "interval"


def _control_result(ctrl: Control, cond: Condition, alpha: float) -> ControlResult:
    details = {k: v for k, v in ctrl.details.items() if k != "part_values"}
    if ctrl.ci is None and ctrl.replicates is None:
        return ControlResult(ctrl.name, _finite(ctrl.value), None, None, details)
    d, _ = _decide(ctrl.value, ctrl.ci, ctrl.replicates, ctrl.details, cond, alpha)
    ci = d.interval if d.interval is not None else ctrl.ci
    return ControlResult(ctrl.name, _finite(ctrl.value), ci, None if d.verdict == "not evaluated" else d.verdict,
                         details)  # fmt: skip


def _finite(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def _secondary_name(m: Measurement) -> str | None:
    if m.p_value is None:
        return None
    for key in ("p_name", "p_method", "p"):
        if isinstance(m.details.get(key), str):
            return f"{m.details[key]} (any structure at all; secondary)"
    return "permutation test (any structure at all; secondary)"


class _ConditionFields(TypedDict):
    """The fields of a :class:`ConditionResult` that name its condition."""

    statistic: str
    comparison: str
    threshold: float


class _MeasuredFields(TypedDict):
    """The fields of a :class:`ConditionResult` read off its measurement, whatever the decision."""

    p_secondary: float | None
    p_secondary_name: str | None
    details: dict[str, Any]
    measurement: Measurement


def decide_condition(cond: Condition, m: Measurement | None, alpha: float = LEVEL, reason: str | None = None
                     ) -> ConditionResult:  # fmt: skip
    """One condition decided on its measurement at one-sided level ``alpha`` (``m`` None: not evaluated, with
    ``reason``)."""
    base = _ConditionFields(statistic=cond.statistic, comparison=cond.comparison, threshold=float(cond.threshold))
    if m is None:
        return ConditionResult(**base, value=None, ci=None, p_value=None, verdict="not evaluated", level=alpha,
                               reason=reason)  # fmt: skip
    details = {k: v for k, v in m.details.items() if k not in ("part_values", "not_evaluated")}
    common = _MeasuredFields(p_secondary=m.p_value, p_secondary_name=_secondary_name(m), details=details, measurement=m)
    if m.value is None or not math.isfinite(m.value):
        why = m.details.get("not_evaluated") or m.details.get("reason") or f"{cond.statistic} is undefined (NaN)"
        return ConditionResult(**base, value=None, ci=None, p_value=None, verdict="not evaluated", level=alpha,
                               reason=str(why), **common)  # fmt: skip
    if m.ci is None:
        why = m.details.get("not_evaluated") or (
            f"{cond.statistic} has no interval (bootstrap off or not defined), and a verdict is never taken from a "
            "point estimate: run with bootstrap resamples"
        )
        return ConditionResult(**base, value=float(m.value), ci=None, p_value=None, verdict="not evaluated",
                               level=alpha, reason=str(why), **common)  # fmt: skip
    d, rule = _decide(float(m.value), m.ci, m.replicates, m.details, cond, alpha)
    parts = m.details.get("parts")
    short = tuple(str(parts[i]) if parts is not None else str(i) for i in d.shortfall)
    ctrl = _control_result(m.control, cond, alpha) if m.control is not None else None
    return ConditionResult(**base, value=float(m.value), ci=d.interval, p_value=d.p_value, verdict=d.verdict,
                           level=alpha, rule=rule, p_against=d.p_against, reason=d.reason, shortfall=short,
                           control=ctrl, **common)  # fmt: skip


def _settle(c: ConditionResult) -> str:
    n = c.details.get("n_items") or c.details.get("n_marks") or c.details.get("n_words")
    more = f"more items than the {n} sampled" if n else "more items (a larger sample)"
    if c.rule == "count":
        return f"a count stable under resampling ({c.details.get('stability', '?')} stability now): {more}"
    if c.rule == "band":
        return f"blocks {', '.join(c.shortfall) or '?'} have lower bands at or below {c.threshold:g}: {more}"
    if c.ci is None:
        return more
    return f"its interval [{_num(c.ci[0])}, {_num(c.ci[1])}] reaches both sides of {c.threshold:g}: {more}"


def _combine(claim_id: str, conds: tuple[ConditionResult, ...]) -> tuple[VerdictWord, str | None, str | None]:
    word = intersection_union([c.verdict for c in conds])
    reason = settle = None
    if word == "not evaluated":
        reason = "; ".join(f"{c.condition}: {c.reason}" for c in conds if c.verdict == "not evaluated")
    elif word == "fails":
        reason = "; ".join(_fail_reason(c) for c in conds if c.verdict == "fails")
    elif word == "inconclusive":
        open_ = [c for c in conds if c.verdict == "inconclusive"]
        settle = "; ".join(f"{c.condition}: {_settle(c)}" for c in open_)
        reason = "; ".join(c.reason for c in open_ if c.reason) or None
    return word, reason, settle


def _fail_reason(c: ConditionResult) -> str:
    if c.rule == "count" or c.ci is None:
        return f"{c.condition} fails" + (f": {c.reason}" if c.reason else "")
    if c.rule == "band":
        return (
            f"{c.condition} fails: the simultaneous upper band lies at or below {c.threshold:g} at some block "
            f"(lowest upper bound {_num(c.ci[1])})"
        )
    return (
        f"{c.condition} fails: its interval [{_num(c.ci[0])}, {_num(c.ci[1])}] lies wholly outside the claimed region"
    )


def _claim_p(conds: Sequence[ConditionResult]) -> float | None:
    ps = [c.p_value for c in conds]
    known = [p for p in ps if p is not None]
    if not ps or len(known) < len(ps):
        return None
    return float(max(known))


class StudyResult(Protocol):
    """What a study result offers to claims."""

    model: str
    n_blocks: int

    def measure(self, statistic: str, *, layer: int | None, kind: str | None) -> Measurement: ...


def evaluate(claim: Claim, result: StudyResult, level: float = LEVEL) -> Verdict:
    """Evaluate one claim on one study result, alone (a family of one, at one-sided ``level``). Never raises for a
    statistic the result cannot provide: the condition is then not evaluated, with the reason."""
    try:
        layer = map_layer(claim, result.n_blocks)
    except UsageError as exc:
        return not_evaluated(claim, result.model, None, str(exc))
    conds: list[ConditionResult] = []
    for cond in claim.conditions:
        try:
            m: Measurement | None = result.measure(cond.statistic, layer=layer, kind=claim.kind)
            why = None
        except (KeyError, UsageError, ValueError) as exc:
            m, why = None, str(exc).strip("'\"")
        conds.append(decide_condition(cond, m, level, why))
    word, reason, settle = _combine(claim.id, tuple(conds))
    p = _claim_p(conds)
    return Verdict(
        claim=claim.id,
        model=result.model,
        layer=layer,
        verdict=word,
        conditions=tuple(conds),
        reason=reason,
        settle=settle,
        level=level,
        p_value=p,
        p_adjusted=p,
        text=claim.text,
        layer_unit=claim.layer_unit,
        layer_mapped_from=claim.layer if layer != claim.layer else None,
        kind=claim.kind,
        presupposes=tuple(claim.presupposes),
        own_model=claim.model,
    )


def not_evaluated(claim: Claim, model: str, layer: int | None, reason: str) -> Verdict:
    """A verdict for a claim that could not be evaluated at all (its study did not run, ...)."""
    conds = tuple(decide_condition(c, None, LEVEL, reason) for c in claim.conditions)
    return Verdict(claim.id, model, layer, "not evaluated", conds, reason=reason, text=claim.text,
                   layer_unit=claim.layer_unit, kind=claim.kind, presupposes=tuple(claim.presupposes),
                   own_model=claim.model)  # fmt: skip


def evaluate_all(result: StudyResult, study: str, claims: Iterable[Claim] | None = None) -> list[Verdict]:
    """Every claim of ``study`` (or the ``claims`` given) evaluated on ``result``, presuppositions among them
    applied. The family-wise step is :func:`apply_family`, once per run."""
    chosen = list(claims) if claims is not None else list(claims_for(study))
    return apply_presuppositions([evaluate(c, result) for c in chosen])


# --------------------------------------------------------------------------------------------------- run level


def redecide(v: Verdict, alpha: float) -> Verdict:
    """``v`` with every condition decided again at one-sided level ``alpha`` (conditions without their
    measurement in memory, e.g. read from a file, are kept as they are)."""
    conds = []
    for c in v.conditions:
        if c.measurement is None or c.rule in ("interval", "none"):
            conds.append(c)
            continue
        # a condition with its measurement was decided here, from a claim's checked Condition
        cond = Condition(c.statistic, as_comparison(c.comparison), c.threshold)
        conds.append(decide_condition(cond, c.measurement, alpha))
    word, reason, settle = _combine(v.claim, tuple(conds))
    if v.verdict == "not evaluated" and not v.conditions:
        return v
    return dataclasses.replace(v, conditions=tuple(conds), verdict=word, reason=reason, settle=settle,
                               p_value=_claim_p(conds))  # fmt: skip


def apply_family(verdicts: Sequence[Verdict], level: float = LEVEL) -> list[Verdict]:
    """The run-level step: Holm's adjustment at family-wise ``level`` over the claims of one run that have a
    p-value (claims decided on a reported interval alone, or not evaluated, are outside the family and say so), each
    claim re-decided at its Holm level (a claim holds only when its adjusted p is below ``level``), then the
    presuppositions. Call it once on all verdicts of a run (``pipeline.reproduce``)."""
    base = [redecide(v, level) if v.verdict != "not evaluated" else v for v in verdicts]
    family = [(i, v.p_value) for i, v in enumerate(base) if v.p_value is not None and v.verdict != "not evaluated"]
    idx = [i for i, _ in family]
    out = list(base)
    if family:
        adjusted, levels = holm([p for _, p in family], level)
        for i, p_adj, a in zip(idx, adjusted, levels, strict=True):
            v = redecide(base[i], a)
            word, reason, settle = v.verdict, v.reason, v.settle
            if word == "holds" and not p_adj < level:
                word, reason = "inconclusive", f"Holm's step-down stopped before this claim (adjusted p {p_adj:.2g})"
                settle = settle or "the claims with smaller p-values in this run clearing their Holm levels"
            out[i] = dataclasses.replace(v, verdict=word, reason=reason, settle=settle, p_adjusted=p_adj,
                                         level=level, family_size=len(idx))  # fmt: skip
    for i, v in enumerate(out):
        if i not in idx:
            out[i] = dataclasses.replace(v, level=level, family_size=len(idx), p_adjusted=None)
    return apply_presuppositions(out)


def _premise_text(p: Verdict) -> str:
    c = p.main
    if c is None or c.value is None:
        return f"{p.claim} {p.verdict}"
    measured = f"{c.statistic} = {_num(c.value)}, claimed {c.comparison} {c.threshold:g} at {p.where()}"
    return f"{p.claim}, which {p.verdict} here ({measured})"


_ON_ITS_OWN = {"holds": "on its own it would hold", "inconclusive": "on its own it is inconclusive"}


def apply_presuppositions(verdicts: Sequence[Verdict]) -> list[Verdict]:
    """Claims that presuppose others (``Claim.presupposes``) read their premises' verdicts on the same model:
    premise fails -> the claim fails and names it ("presupposes A1, which fails here: ..."); premise inconclusive
    or not evaluated -> a claim that would hold is inconclusive; premise holds -> noted. A premise not in the list
    is noted as not checked in this run."""
    by_key = {(v.model, v.claim): v for v in verdicts}
    out = []
    for v in verdicts:
        if not v.presupposes:
            out.append(v)
            continue
        notes, word, reason = [], v.verdict, v.reason
        for pid in v.presupposes:
            p = by_key.get((v.model, pid))
            if p is None:
                notes.append(f"presupposes {pid}, not checked in this run")
                continue
            notes.append(f"presupposes {_premise_text(p)}")
            if p.verdict == "fails" and word != "not evaluated":
                own = _ON_ITS_OWN.get(v.verdict)
                word = "fails"
                reason = f"its premise {pid} fails here, so there is nothing for it to be true of" + (
                    f" ({own})" if own else ""
                )
            elif p.verdict in ("inconclusive", "not evaluated") and word == "holds":
                word, reason = "inconclusive", f"its premise {pid} is {p.verdict} here"
        out.append(dataclasses.replace(v, verdict=word, reason=reason, presupposition="; ".join(notes)))
    return out
