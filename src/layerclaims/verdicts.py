"""Verdicts: a claim evaluated on one study result, as evidence (``docs/verdicts.md``).

:func:`evaluate` reads the statistics a claim names from a study result (at its mapped layer) and decides each
condition, on the statistic and on its control, with the rules of :mod:`layerclaims.decision`; :func:`apply_family`
is the run-level step (Holm over the run's distinct conditions, then the presuppositions between claims).
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

import numpy as np

from layerclaims.claims import Claim, Condition, as_comparison, format_condition, map_layer
from layerclaims.decision import (
    LEVEL,
    ON_CONTROL,
    VERDICTS,
    Decision,
    VerdictWord,
    decide_band,
    decide_count,
    decide_interval_only,
    decide_threshold,
    finite_replicates,
    floor_reason,
    holm,
    intersection_union,
    replicates_needed,
)
from layerclaims.errors import UsageError
from layerclaims.results import Control, Measurement

ALSO_ON_CONTROL = "also holds where the structure is absent by construction"

VERDICT_CODES: dict[str, int] = {"holds": 1, ON_CONTROL: 3, "fails": 0, "inconclusive": 2, "not evaluated": -1}
"""The verdict as a number (snapshots, :attr:`Verdict.code`)."""

MARKS: dict[str, str] = {"holds": "✓", ON_CONTROL: "⚠", "fails": "✗", "inconclusive": "?", "not evaluated": "–"}


_CONDITION_ROW = (
    "statistic comparison threshold value ci p_value p_against p_adjusted p_against_adjusted p_secondary "
    "p_secondary_name verdict level rule reason shortfall control"
).split()
_VERDICT_ROW = (
    "claim model layer layer_unit layer_mapped_from kind text own_model identity statistic comparison threshold "
    "value verdict holds ci p_value p_adjusted p_against p_against_adjusted level family_size beats_control "
    "set_by_premise p_secondary p_secondary_name control also_holds_on_control reason settle presupposition "
    "presupposes conditions details"
).split()
"""The keys of a verdicts.json row, in order: the :class:`Verdict`'s fields and its summary of the first condition."""


def _row(record: Any, keys: Iterable[str]) -> dict[str, Any]:
    """``record``'s attributes ``keys`` as JSON values: tuples as lists, records as their rows."""
    return {k: _plain(getattr(record, k, None)) for k in keys}


def _plain(x: Any) -> Any:
    if isinstance(x, tuple):
        return [_plain(v) for v in x]
    return x.to_row() if isinstance(x, ControlResult | ConditionResult) else x


def _pair(ci: Sequence[float] | None) -> tuple[float, float] | None:
    return (ci[0], ci[1]) if ci else None


@dataclass(frozen=True)
class ControlResult:
    """A condition's statistic on its control, decided by the same rule at the same level: ``ci`` its decision
    interval (or the reported one), ``verdict`` None when the control has no interval."""

    name: str
    value: float | None
    ci: tuple[float, float] | None
    verdict: VerdictWord | None
    details: dict[str, Any] = field(default_factory=dict)

    def to_row(self) -> dict[str, Any]:
        return _row(self, ("name", "value", "ci", "verdict", "details"))


@dataclass(frozen=True)
class ConditionResult:
    """One condition of a claim decided on one result (the record in ``docs/verdicts.md``): ``rule`` is
    ``threshold``, ``count``, ``band``, ``interval`` (no replicates: the reported 95% interval) or ``none``;
    ``p_adjusted`` / ``p_against_adjusted`` None before :func:`apply_family` or outside its family;
    ``measurement`` kept in memory for :func:`apply_family` to re-decide at another level (not saved)."""

    statistic: str
    comparison: str
    threshold: float
    value: float | None = None
    ci: tuple[float, float] | None = None
    p_value: float | None = None
    verdict: VerdictWord = "not evaluated"
    level: float = LEVEL
    rule: str = "none"
    p_against: float | None = None
    p_secondary: float | None = None
    p_secondary_name: str | None = None
    reason: str | None = None
    shortfall: tuple[str, ...] = ()
    control: ControlResult | None = None
    details: dict[str, Any] = field(default_factory=dict)
    p_adjusted: float | None = None
    p_against_adjusted: float | None = None
    measurement: Measurement | None = field(default=None, repr=False, compare=False)

    @property
    def condition(self) -> str:
        return format_condition(self.statistic, self.comparison, self.threshold)

    def to_row(self) -> dict[str, Any]:
        """The condition's record in a verdicts.json row (without ``details``: see :meth:`Verdict.to_row`)."""
        return _row(self, _CONDITION_ROW)

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> ConditionResult:
        ctrl = row["control"]
        control = ControlResult(**{**ctrl, "ci": _pair(ctrl["ci"])}) if ctrl else None
        return cls(**{**row, "ci": _pair(row["ci"]), "shortfall": tuple(row["shortfall"]), "control": control})


@dataclass(frozen=True)
class Verdict:
    """A claim evaluated on one result (the record in ``docs/verdicts.md``; :meth:`to_row` its serialisation).
    ``conditions``: with ``beats_control``, one more per condition (its statistic minus its control's);
    ``p_adjusted``: ``p_value`` before :func:`apply_family`; ``set_by_premise``: the presupposed claim that set this
    verdict (it then has no p of its own). The claim's facts are copied so that it stands alone."""

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
    beats_control: bool = False
    p_against: float | None = None
    p_against_adjusted: float | None = None
    set_by_premise: str | None = None
    identity: str | None = None

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
        """True holds, False anything else (holds on its control too included), None not evaluated."""
        return None if self.verdict == "not evaluated" else self.verdict == "holds"

    @property
    def passes(self) -> bool:
        """What a findings test on the claim's own model and ``reproduce --strict`` accept: ``holds``, or ``holds on
        control too`` for a claim that does not require beating its control."""
        return self.verdict == "holds" or (self.verdict == ON_CONTROL and not self.beats_control)

    @property
    def also_holds_on_control(self) -> bool:
        """True when the claim holds (on its control too or not) and so does every control it has."""
        return self.verdict in ("holds", ON_CONTROL) and controls_hold(self.conditions)

    @property
    def control_note(self) -> str:
        """What a claim that also holds on its control says: what its controls lack by construction (their
        ``details["absent"]``), or :data:`ALSO_ON_CONTROL` where none names it."""
        absent = (str(c.control.details.get("absent", "")) for c in self.conditions if c.control)
        unique = list(dict.fromkeys(a for a in absent if a))
        return (
            f"also holds on its control, which has by construction no {'; no '.join(unique)}"
            if unique
            else ALSO_ON_CONTROL
        )

    @property
    def code(self) -> int:
        """:data:`VERDICT_CODES` of the verdict."""
        return VERDICT_CODES[self.verdict]

    def where(self) -> str:
        if self.layer is None:
            return "all layers"
        unit = "block" if self.layer_unit == "block" else "layer"
        mapped = f" (the claim's {self.layer_mapped_from})" if self.layer_mapped_from is not None else ""
        return f"{unit} {self.layer}{mapped}"

    def lines(self, *, levels: bool = False) -> list[str]:
        """The verdict as a head line (claim, VERDICT, model, where), lines per condition (:func:`condition_lines`)
        and per note (Holm, control, why, premise, what would settle it). ``levels``: each condition's level too."""
        head = f"{self.claim}: {self.verdict.upper()} on {self.model} at {self.where()}"
        if self.identity:  # how the model was taken for the claim's own model, or why it was not
            head += f" ({self.identity})"
        if self.verdict == "not evaluated" and not any(c.value is not None for c in self.conditions):
            return [head, f"why: {self.reason}"]
        out = [head]
        own = "on its own: " if self.set_by_premise else ""
        for c in self.conditions:
            first, *control = condition_lines(c)
            level = f" (decided at level {c.level:.3g})" if levels and c.value is not None else ""
            out += [own + first + level, *control]
        if self.p_adjusted is not None and self.family_size > 1:
            n, alpha = self.family_size, self.level
            against = f" (against it: {fmt_p(self.p_against_adjusted)})" if self.p_against_adjusted is not None else ""
            out.append(f"Holm: adjusted p={fmt_p(self.p_adjusted)}{against} over {n} hypotheses, level {alpha:g}")
        if self.also_holds_on_control:
            out.append(f"note: it {self.control_note}")
        noted = self.verdict == ON_CONTROL and self.reason == self.control_note  # the note above says it
        if self.reason and self.verdict != "holds" and not noted:
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

    def to_row(self) -> dict[str, Any]:
        """The verdicts.json record: the first condition's summary beside ``conditions``, for the flat verdicts.csv.
        The first condition's details travel in the row's ``details``, every other condition's in its own row."""
        main, first = self.main, ("threshold", "p_secondary", "p_secondary_name")
        details = (dict(main.details) if main else {}) | {"layer_mapped_from": self.layer_mapped_from}
        conds = [c.to_row() | ({"details": c.details} if i else {}) for i, c in enumerate(self.conditions)]
        own = (k for k in _VERDICT_ROW if k not in ("conditions", "details"))  # the last two keys: the order is kept
        return _row(self, own) | _row(main, first) | {"conditions": conds, "details": details}

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Verdict:
        """A verdict read back from :meth:`to_row`; ValueError for an unknown verdict word, UsageError for a row of
        another version."""
        missing = [k for k in _VERDICT_ROW if k not in row]
        if missing:
            raise UsageError(
                f"a verdicts row of claim {row.get('claim')} lacks {', '.join(missing)}: written by another version",
                fix="re-run `layerclaims reproduce --out` the same folder",
            )
        conds = tuple(ConditionResult.from_row(c) for c in row["conditions"])
        if conds:  # the first condition's details travel in the row's
            extra = {k: v for k, v in row["details"].items() if k != "layer_mapped_from"}
            conds = (dataclasses.replace(conds[0], details=extra), *conds[1:])
        word, fields = row["verdict"], {f.name for f in dataclasses.fields(cls)}
        if word not in VERDICTS:
            raise ValueError(
                f"claim {row['claim']}: unknown verdict {word!r} in a verdicts row (one of {', '.join(VERDICTS)})"
            )
        typed = {"verdict": word, "conditions": conds, "presupposes": tuple(row["presupposes"])}
        return cls(**{k: v for k, v in row.items() if k in fields} | typed)


def fmt_p(p: float | None) -> str:
    """A p-value in 2 significant digits (the rules never give one below ``1/(B+1)`` for ``B`` replicates, so the
    smallest printed is that floor, e.g. 0.048 for 20 resamples, 0.001 for 1,000; never a ``<0.001``)."""
    return fmt_num(p, ".2g")


def fmt_num(x: float | None, spec: str = ".4g") -> str:
    """A number in 4 significant digits (or ``spec``); '—' for None or NaN."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    return format(x, spec)


def fmt_ci(ci: tuple[float, float]) -> str:
    """``[low, high]`` in :func:`fmt_num`'s digits."""
    return f"[{fmt_num(ci[0])}, {fmt_num(ci[1])}]"


def compact_parts(labels: Sequence[str]) -> str:
    """``block 0, block 1, block 2, block 5`` -> ``blocks 0-2, 5 (4)`` (other labels joined as they are)."""
    nums = [int(x.removeprefix("block ")) for x in labels if x.removeprefix("block ").isdigit()]
    if len(nums) != len(labels) or not nums:
        return ", ".join(labels)
    by_offset = itertools.groupby(enumerate(sorted(nums)), key=lambda t: t[1] - t[0])  # a run keeps n - index
    runs = [[n for _, n in run] for _, run in by_offset]
    text = ", ".join(f"{r[0]}-{r[-1]}" if len(r) > 2 else ", ".join(map(str, r)) for r in runs)
    return f"block{'s' if len(nums) > 1 else ''} {text} ({len(nums)})"


def condition_lines(c: ConditionResult) -> list[str]:
    """The condition, then its control: ``rsa_qk = 0.861 [0.731, 0.943], p=0.18 vs 0.8, claimed > 0.8
    (inconclusive)`` and ``control (random projections ...) = 0.801 [0.699, 0.887], inconclusive there``."""
    if c.value is None:
        return [f"{c.condition}: not evaluated ({c.reason})"]
    ci = f" {fmt_ci(c.ci)}" if c.ci else ""
    p = f", p={fmt_p(c.p_value)} vs {c.threshold:g}" if c.p_value is not None else ""
    out = f"{c.statistic} = {fmt_num(c.value)}{ci}{p}, claimed {c.comparison} {c.threshold:g} ({c.verdict})"
    if c.shortfall:
        out += f", short at {compact_parts(c.shortfall)}"
    rogue = _rogue_line(c)
    if c.control is None:
        return [out, *rogue]
    cc = c.control
    cci = f" {fmt_ci(cc.ci)}" if cc.ci else ""
    there = f", {cc.verdict} there" if cc.verdict else ""
    return [out, f"control ({cc.name}) = {fmt_num(cc.value)}{cci}{there}", *rogue]


def survives_without_top_dimensions(c: ConditionResult) -> bool | None:
    """Whether the condition's point value also satisfies it on every dimension variant of the study's data
    (``details["without_top_dimensions"]``: each dimension standardised, the top 1 and top 3 dimensions by variance
    removed); None where the study gives no variants."""
    got = c.details.get("without_top_dimensions")
    values = list(got.values()) if isinstance(got, Mapping) else []
    if not values or not all(isinstance(v, int | float) and math.isfinite(v) for v in values):
        return None
    cond = Condition(c.statistic, as_comparison(c.comparison), c.threshold)
    return all(cond.holds(v) for v in values)


def _rogue_line(c: ConditionResult) -> list[str]:
    got = c.details.get("without_top_dimensions")
    if not isinstance(got, Mapping) or not got:
        return []
    vals = ", ".join(f"{k} {fmt_num(v) if isinstance(v, (int, float)) else '-'}" for k, v in got.items())
    word = {True: "yes", False: "no", None: "undefined on some variant"}[survives_without_top_dimensions(c)]
    top = c.details.get("top_dimensions")
    top = top if isinstance(top, Mapping) else {}
    pairs = zip(top.get("dims") or (), top.get("pair_cov_share") or (), strict=False)
    named = ", ".join(f"{d} ({float(s):.0%} of the pair covariance)" for d, s in pairs)
    return [f"survives without its top dimensions: {word} ({vals}){named and '; top dimensions ' + named}"]


def _decide(m: Measurement | Control, cond: Condition, alpha: float) -> tuple[Decision, str]:
    """The rule for a statistic or its control: band (2-D replicates), count (``==``), threshold; interval-only
    without replicates. Returns the decision and the rule's name."""
    reps, why = finite_replicates(m.replicates)
    if reps is not None and reps.ndim == 2:
        values = np.asarray(m.details.get("part_values"), dtype=np.float64)
        if values.shape != (reps.shape[0],):
            return Decision("not evaluated", reason="band replicates without details['part_values']"), "none"
        return decide_band(values, reps, cond.comparison, cond.threshold, alpha), "band"
    if reps is not None:
        if cond.comparison == "==":
            blind_spot = _blind_spot(m.details, cond)
            return decide_count(float(m.value), reps, cond.threshold, alpha, blind_spot=blind_spot), "count"
        return decide_threshold(reps, cond.comparison, cond.threshold, alpha), "threshold"
    if m.replicates is not None and why:  # replicates given but mostly undefined
        return Decision("not evaluated", reason=why), "none"
    return decide_interval_only(tuple(cast(Any, m.ci)), cond.comparison, cond.threshold), "interval"


def _blind_spot(details: Mapping[str, Any], cond: Condition) -> str | None:
    """For a count claimed as 1: what it could not have seen, from the study's ``details["detectability"]``
    (``separation``: the detection limit at 80% power, None above every separation tried; ``meaningful``: the
    separation the claim calls meaningful); None when the limit is at or below the meaningful separation."""
    det = details.get("detectability")
    if cond.threshold != 1 or not isinstance(det, Mapping) or det.get("meaningful") is None:
        return None
    sep, meaningful = det.get("separation"), float(det["meaningful"])
    if sep is not None and float(sep) <= meaningful + 1e-12:
        return None
    tried = [float(t[0]) for t in det.get("tried") or []]
    limit = f"{float(sep):.3g}" if sep is not None else f"above {max(tried, default=meaningful):.3g}"
    return (
        f"1 cluster cannot say 'no groups' here: on marks like these (N, D, loading matched) the count detects two "
        f"groups with {det.get('target_power', 0.8):.0%} power only from a separation of {limit} (relative to the "
        f"loading; {det.get('n_sims')} simulations per separation), and the claim calls {meaningful:g} meaningful: it "
        f"could not have seen groups {meaningful:g} apart"
    )


def _control_result(ctrl: Control, cond: Condition, alpha: float) -> ControlResult:
    details = {k: v for k, v in ctrl.details.items() if k != "part_values"}
    value = None if ctrl.value is None or not math.isfinite(ctrl.value) else float(ctrl.value)
    if ctrl.ci is None and ctrl.replicates is None:
        return ControlResult(ctrl.name, value, None, None, details)
    d, _ = _decide(ctrl, cond, alpha)
    ci = d.interval if d.interval is not None else ctrl.ci
    return ControlResult(ctrl.name, value, ci, None if d.verdict == "not evaluated" else d.verdict, details)


def decide_condition(
    cond: Condition, m: Measurement | None, alpha: float = LEVEL, reason: str | None = None
) -> ConditionResult:
    """One condition decided on its measurement at one-sided level ``alpha`` (``m`` None: not evaluated, with
    ``reason``)."""
    out = ConditionResult(cond.statistic, cond.comparison, float(cond.threshold), level=alpha, reason=reason)
    if m is None:
        return out
    details = {k: v for k, v in m.details.items() if k not in ("part_values", "not_evaluated")}
    keys = ("p_name", "p_method", "p")
    named = next((m.details[k] for k in keys if isinstance(m.details.get(k), str)), "permutation test")
    secondary = f"{named} (any structure at all; secondary)" if m.p_value is not None else None
    out = dataclasses.replace(out, p_secondary=m.p_value, p_secondary_name=secondary, details=details, measurement=m)
    if m.value is None or not math.isfinite(m.value):
        why = m.details.get("not_evaluated") or m.details.get("reason") or f"{cond.statistic} is undefined (NaN)"
        return dataclasses.replace(out, reason=str(why))
    if m.ci is None:
        why = m.details.get("not_evaluated") or (
            f"{cond.statistic} has no interval (bootstrap off or not defined), and a verdict is never taken from a "
            "point estimate: run with bootstrap resamples"
        )
        return dataclasses.replace(out, value=float(m.value), reason=str(why))
    d, rule = _decide(m, cond, alpha)
    parts = m.details.get("parts")
    short = tuple(str(parts[i]) if parts is not None else str(i) for i in d.shortfall)
    ctrl = _control_result(m.control, cond, alpha) if m.control is not None else None
    taken = {k: getattr(d, k) for k in ("p_value", "p_against", "verdict", "reason")}
    return dataclasses.replace(
        out, value=float(m.value), ci=d.interval, rule=rule, shortfall=short, control=ctrl, **taken
    )


def _settle(c: ConditionResult) -> str:
    n = c.details.get("n_items") or c.details.get("n_marks") or c.details.get("n_words")
    more = f"more items than the {n} sampled" if n else "more items (a larger sample)"
    reps = c.measurement.replicates if c.measurement is not None else None
    b = int(np.asarray(reps).shape[-1]) if reps is not None and np.asarray(reps).size else 0
    if b and floor_reason(b, c.level):
        return f"at least {replicates_needed(c.level)} resamples (now {b}), then possibly {more}"
    if c.rule == "count":
        return f"a count stable under resampling ({c.details.get('stability', '?')} stability now): {more}"
    if c.rule == "band":
        return f"blocks {', '.join(c.shortfall) or '?'} have lower bands at or below {c.threshold:g}: {more}"
    if c.ci is None:
        return more
    return f"its interval {fmt_ci(c.ci)} reaches both sides of {c.threshold:g}: {more}"


def _combine(conds: tuple[ConditionResult, ...]) -> tuple[VerdictWord, str | None, str | None]:
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
            f"(lowest upper bound {fmt_num(c.ci[1])})"
        )
    return f"{c.condition} fails: its interval {fmt_ci(c.ci)} lies wholly outside the claimed region"


def _claim_ps(
    conds: Sequence[ConditionResult], p: str = "p_value", against: str = "p_against"
) -> tuple[float | None, float | None]:
    """The claim's p for it (intersection-union: the largest of its conditions'; None when a condition has none) and
    against it (any condition that fails makes it fail: the smallest of its conditions')."""
    ps = [getattr(c, p) for c in conds]
    known = [getattr(c, against) for c in conds if getattr(c, against) is not None]
    return (None if not ps or any(x is None for x in ps) else float(max(ps))), (float(min(known)) if known else None)


def controls_hold(conds: Sequence[ConditionResult]) -> bool:
    """True when some condition has a control and every control there is holds by the same rule at the same level."""
    ctrl = [c.control for c in conds if c.control is not None]
    return bool(ctrl) and all(c.verdict == "holds" for c in ctrl)


def with_control_word(v: Verdict) -> Verdict:
    """``v`` with ``holds`` turned into ``holds on control too`` when every control it has holds as well, unless the
    claim requires beating its control (its conditions then decided that); and back when that is no longer so."""
    if v.verdict == "holds" and not v.beats_control and controls_hold(v.conditions):
        return dataclasses.replace(v, verdict=ON_CONTROL, reason=v.control_note)
    if v.verdict == ON_CONTROL and not (not v.beats_control and controls_hold(v.conditions)):
        return dataclasses.replace(v, verdict="holds", reason=None)
    return v


def beat_measurement(cond: Condition, m: Measurement | None) -> tuple[Condition, Measurement | None, str | None]:
    """The beat test of one condition (``Claim.beats_control``): its condition (``statistic minus control > 0`` for
    ``>``/``>=``, ``< 0`` for ``<``/``<=``; for ``== k``, ``|control - k| > 0``: the control does not give the claimed
    count), the measurement it is decided on, or None and why. With replicates on both sides: replicate ``i`` of the
    claim minus replicate ``i`` of the control (the control's in a fixed random order; for bands, columns), over the
    ``min(B, B')`` both have; the two bootstraps are independent while the errors on the same items are positively
    correlated, so the test is conservative. Without replicates on one side: whether the two intervals overlap
    (``[lo - hi', hi - lo']``)."""
    if cond.comparison == "==":
        beat = Condition(f"|control {cond.statistic} - {cond.threshold:g}|", ">", 0.0)
    else:
        beat = Condition(f"{cond.statistic} minus control", ">" if cond.comparison in (">", ">=") else "<", 0.0)
    if m is None or m.value is None or not math.isfinite(m.value):
        return beat, None, f"{cond.statistic} is not measured here, so nothing to compare with its control"
    if m.control is None:
        return beat, None, f"the claim must beat its control (beats_control), but {cond.statistic} has none here"
    ctrl = m.control
    a, _ = finite_replicates(m.replicates)
    b, _ = finite_replicates(ctrl.replicates)
    details: dict[str, Any] = {"control": ctrl.name}
    k = float(cond.threshold)
    if cond.comparison == "==":
        value = abs(float(ctrl.value) - k)
        if b is not None and b.ndim == 1:
            reps = np.abs(b - k)
            return beat, Measurement(value, (float(reps.min()), float(reps.max())), None, details, reps), None
        if ctrl.ci is not None:
            lo, hi = min(ctrl.ci), max(ctrl.ci)
            near = 0.0 if lo <= k <= hi else min(abs(lo - k), abs(hi - k))
            return beat, Measurement(value, (near, max(abs(lo - k), abs(hi - k))), None, details), None
        return beat, None, f"the control of {cond.statistic} has no interval"
    value = float(m.value) - float(ctrl.value)
    if a is not None and b is not None and a.ndim == b.ndim:
        n = min(a.shape[-1], b.shape[-1])
        order = np.random.default_rng(0).permutation(b.shape[-1])[:n]
        diff = a[..., :n] - b[..., order]
        details |= {"n_pairs": n, "pairing": "independent bootstraps paired by position"}
        if diff.ndim == 2:
            parts = np.asarray(m.details.get("part_values"), dtype=np.float64)
            cparts = np.asarray(ctrl.details.get("part_values"), dtype=np.float64)
            if parts.shape != (diff.shape[0],) or cparts.shape != parts.shape:
                return beat, None, f"{cond.statistic} or its control lacks per-part values for the band"
            details |= {"part_values": (parts - cparts).tolist(), "parts": m.details.get("parts")}
            lo_hi = (float(diff.min(axis=0).min()), float(diff.min(axis=0).max()))
            return beat, Measurement(value, lo_hi, None, details, diff), None
        return beat, Measurement(value, (float(diff.min()), float(diff.max())), None, details, diff), None
    if m.ci is not None and ctrl.ci is not None:
        ci = (min(m.ci) - max(ctrl.ci), max(m.ci) - min(ctrl.ci))
        details["decided on"] = "the two intervals (no replicates on one side): beats when they do not overlap"
        return beat, Measurement(value, ci, None, details), None
    return beat, None, f"{cond.statistic} or its control has no interval"


class StudyResult(Protocol):
    """What a study result offers to claims."""

    model: str
    n_blocks: int

    def measure(self, statistic: str, *, layer: int | None, kind: str | None) -> Measurement: ...


def evaluate(claim: Claim, result: StudyResult) -> Verdict:
    """Evaluate one claim on one study result, alone (a family of one, at one-sided :data:`LEVEL`). Never raises for
    a statistic the result cannot provide: the condition is then not evaluated, with the reason."""
    try:
        layer = map_layer(claim, result.n_blocks)
    except UsageError as exc:
        unread = tuple(decide_condition(c, None, LEVEL, str(exc)) for c in claim.conditions)
        return Verdict(claim.id, result.model, None, "not evaluated", unread, reason=str(exc), **_facts(claim))
    conds: list[ConditionResult] = []
    beats: list[ConditionResult] = []
    for cond in claim.conditions:
        try:
            m: Measurement | None = result.measure(cond.statistic, layer=layer, kind=claim.kind)
            why = None
        except (KeyError, UsageError, ValueError) as exc:
            m, why = None, str(exc).strip("'\"")
        conds.append(decide_condition(cond, m, LEVEL, why))
        if claim.beats_control:
            beat_cond, beat_m, beat_why = beat_measurement(cond, m)
            beats.append(decide_condition(beat_cond, beat_m, LEVEL, beat_why))
    conds += beats
    mapped_from = claim.layer if layer != claim.layer else None
    alone = Verdict(claim.id, result.model, layer, "not evaluated", layer_mapped_from=mapped_from, **_facts(claim))
    return _decided(alone, tuple(conds), p_adjusted=_claim_ps(conds)[0])


def _decided(v: Verdict, conds: tuple[ConditionResult, ...], **more: Any) -> Verdict:
    """``v`` decided on ``conds`` (the intersection-union of their verdicts, the claim's p's), with ``more``."""
    word, reason, settle = _combine(conds)
    p, p_against = _claim_ps(conds)
    decided = dataclasses.replace(v, conditions=conds, verdict=word, reason=reason, settle=settle, **more)
    return with_control_word(dataclasses.replace(decided, p_value=p, p_against=p_against))


def _facts(claim: Claim) -> dict[str, Any]:
    """The claim's facts a verdict copies so that it stands alone."""
    keys = ("text", "layer_unit", "kind", "beats_control")
    return {k: getattr(claim, k) for k in keys} | {"presupposes": tuple(claim.presupposes), "own_model": claim.model}


def hypothesis_key(v: Verdict, c: ConditionResult) -> tuple[Any, ...] | None:
    """A condition's hypothesis of the run: model, layer, kind, condition and a digest of its replicates, so that
    claims stating the same condition on the same data (A5's and A6's ``pooled_r < 0``) share one decision. None
    outside the family (no replicates in memory, decided on a reported interval, or not evaluated)."""
    m = c.measurement
    if m is None or c.rule in ("interval", "none") or c.p_value is None or c.p_against is None:
        return None
    reps = np.ascontiguousarray(np.asarray(m.replicates, dtype=np.float64))
    digest = hashlib.sha256(reps.tobytes() + str(reps.shape).encode()).hexdigest()
    return (v.model, v.layer, v.layer_unit, v.kind, c.statistic, c.comparison, float(c.threshold), m.value, digest)


def _family_condition(c: ConditionResult, t: tuple[float, float, float, float] | None, alpha: float) -> ConditionResult:
    """One condition decided in the run's family, ``t`` its Holm step-downs ``(p_adjusted, level, p_against_adjusted,
    level_against)``: holds when its adjusted p is below ``alpha`` (its interval at its Holm level for the claim),
    fails when its adjusted p against is (its interval at its level against), else inconclusive (its interval at the
    smaller level, so that it never looks decided unless a step-down stopped before it: the reason says so)."""
    if t is None or c.measurement is None:
        return c
    cond = Condition(c.statistic, as_comparison(c.comparison), c.threshold)
    m = c.measurement
    pa, level, pg, level_against = t
    d_for = decide_condition(cond, m, level)
    if pa < alpha and d_for.verdict == "holds":
        return dataclasses.replace(d_for, p_adjusted=pa, p_against_adjusted=pg)
    d_against = decide_condition(cond, m, level_against)
    if pg < alpha and d_against.verdict == "fails":
        return dataclasses.replace(d_against, p_adjusted=pa, p_against_adjusted=pg)
    wide = decide_condition(cond, m, min(level, level_against))
    stopped = []
    if d_for.verdict == "holds":
        stopped.append(f"Holm's step-down for the claims stopped before it (adjusted p {fmt_p(pa)})")
    if d_against.verdict == "fails":
        stopped.append(f"Holm's step-down against the claims stopped before it (adjusted p against {fmt_p(pg)})")
    reason = "; ".join(stopped) or wide.reason
    return dataclasses.replace(wide, verdict="inconclusive", reason=reason, p_adjusted=pa, p_against_adjusted=pg)


def apply_family(verdicts: Sequence[Verdict], level: float = LEVEL) -> list[Verdict]:
    """The run-level step at family-wise ``level``, once on all verdicts of a run, independent of their order: Holm's
    step-down over the run's distinct conditions (:func:`hypothesis_key`), once for the claims and once against them
    (:func:`_family_condition`); a claim is the intersection-union of its conditions. Then the presuppositions."""
    tests: dict[tuple[Any, ...], tuple[float, float]] = {}
    for v in verdicts:
        for c in v.conditions:
            key = hypothesis_key(v, c)
            if key is not None and c.p_value is not None and c.p_against is not None:
                tests[key] = (c.p_value, c.p_against)
    adj_for, lev_for = holm([p for p, _ in tests.values()], level)
    adj_against, lev_against = holm([p for _, p in tests.values()], level)
    tested = dict(zip(tests, zip(adj_for, lev_for, adj_against, lev_against, strict=True), strict=True))
    size = len(tests)
    out: list[Verdict] = []
    for v in verdicts:
        if v.verdict == "not evaluated" and not any(c.measurement is not None for c in v.conditions):
            out.append(dataclasses.replace(v, level=level, family_size=size, p_adjusted=None, p_against_adjusted=None))
            continue
        conds = tuple(_family_condition(c, tested.get(hypothesis_key(v, c) or ()), level) for c in v.conditions)
        in_family = all(hypothesis_key(v, c) is not None for c in v.conditions) and bool(conds)
        adjusted, against = _claim_ps(conds, "p_adjusted", "p_against_adjusted") if in_family else (None, None)
        out.append(_decided(v, conds, p_adjusted=adjusted, p_against_adjusted=against, level=level, family_size=size))
    return apply_presuppositions(out)


def _premise_text(p: Verdict) -> str:
    c = p.main
    if c is None or c.value is None:
        return f"{p.claim} {p.verdict}"
    measured = f"{c.statistic} = {fmt_num(c.value)}, claimed {c.comparison} {c.threshold:g} at {p.where()}"
    verb = p.verdict if p.verdict in ("holds", "fails", ON_CONTROL) else f"is {p.verdict}"
    return f"{p.claim}, which {verb} here ({measured})"


_ON_ITS_OWN = {
    "holds": "on its own it would hold",
    ON_CONTROL: "on its own it would hold, and also on its control",
    "inconclusive": "on its own it is inconclusive",
    "not evaluated": "on its own it could not be evaluated",
}


def apply_presuppositions(verdicts: Sequence[Verdict]) -> list[Verdict]:
    """Each claim read against its premises' verdicts on the same model (their own premises applied first): premise
    fails -> a claim that does not fail on its own fails, evaluated on its own or not; premise inconclusive or not
    evaluated -> a claim that would hold is inconclusive; else noted. A verdict a premise set (``set_by_premise``)
    has no p of its own (its conditions keep theirs); a premise not in the list is noted as not checked."""
    by_key = {(v.model, v.claim): v for v in verdicts}
    done: dict[int, Verdict] = {}

    def resolve(v: Verdict, path: tuple[str, ...]) -> Verdict:
        if id(v) not in done:
            path = (*path, v.claim)  # a cycle (claims files refuse them) reads the premise as it is
            premises: dict[str, Verdict | None] = {}
            for pid in v.presupposes:
                p = by_key.get((v.model, pid))
                premises[pid] = p if p is None or pid in path else resolve(p, path)
            done[id(v)] = _with_premises(v, premises)
        return done[id(v)]

    return [resolve(v, ()) for v in verdicts]


def _with_premises(v: Verdict, premises: Mapping[str, Verdict | None]) -> Verdict:
    """``v`` with its premises' verdicts (None: not in this run) applied (:func:`apply_presuppositions`)."""
    if not premises:
        return v
    notes, word, reason, by = [], v.verdict, v.reason, None
    for pid in sorted(premises):
        p = premises[pid]
        if p is None:
            notes.append(f"presupposes {pid}, not checked in this run")
            continue
        notes.append(f"presupposes {_premise_text(p)}")
        if p.verdict == "fails" and word != "fails":
            own = _ON_ITS_OWN[v.verdict]
            word, by = "fails", pid
            reason = f"its premise {pid} fails here, so there is nothing for it to be true of ({own})"
        elif p.verdict in ("inconclusive", "not evaluated") and word in ("holds", ON_CONTROL):
            word, by, reason = "inconclusive", pid, f"its premise {pid} is {p.verdict} here"
    note = "; ".join(notes)
    if by is None:
        return dataclasses.replace(v, presupposition=note)
    # the premise set the verdict: it carries the premise's reason and no p of its own
    no_p: dict[str, Any] = dict.fromkeys(("p_value", "p_adjusted", "p_against", "p_against_adjusted"))
    return dataclasses.replace(v, verdict=word, reason=reason, presupposition=note, set_by_premise=by, **no_p)
