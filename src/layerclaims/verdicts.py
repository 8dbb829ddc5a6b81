"""Verdicts: a claim evaluated on one study result.

:func:`evaluate` reads the statistics a :class:`~layerclaims.claims.Claim` names from a study result
(``result.measure(statistic, layer=..., kind=...)``, layer mapped by :func:`~layerclaims.claims.map_layer`) and
decides whether the claim holds. This module never touches a model or a metric.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Protocol

from layerclaims.claims import CLAIMS_BY_ID, Claim, claims_for, map_layer
from layerclaims.errors import UsageError
from layerclaims.results import Measurement


@dataclass(frozen=True)
class Verdict:
    """A claim evaluated on one result. ``holds`` is None (and ``reason`` says why) when it could not be evaluated."""

    claim: str
    model: str
    layer: int | None
    statistic: str
    value: float | None
    ci: tuple[float, float] | None
    p_value: float | None
    threshold: float
    comparison: str
    holds: bool | None
    reason: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_row(self) -> dict[str, Any]:
        """The flat record written to verdicts.json / verdicts.csv."""
        return {
            "claim": self.claim,
            "model": self.model,
            "layer": self.layer,
            "statistic": self.statistic,
            "comparison": self.comparison,
            "threshold": self.threshold,
            "value": self.value,
            "ci": list(self.ci) if self.ci is not None else None,
            "p_value": self.p_value,
            "holds": self.holds,
            "reason": self.reason,
            "details": self.details,
        }

    def describe(self) -> str:
        """One line for a test failure or a terminal: value, interval, p, layer, verdict."""
        if self.holds is None:
            return f"{self.claim} on {self.model}: not evaluated ({self.reason})"
        ci = f" [{self.ci[0]:.4g}, {self.ci[1]:.4g}]" if self.ci else ""
        p = f", p={self.p_value:.3g}" if self.p_value is not None else ""
        unit = "block" if CLAIMS_BY_ID.get(self.claim) and CLAIMS_BY_ID[self.claim].layer_kind == "block" else "layer"
        where = f" at {unit} {self.layer}" if self.layer is not None else ""
        verdict = "holds" if self.holds else "does NOT hold"
        also = "".join(
            f"; and {key.removeprefix('condition ')} ({d['value']:.4g}: {'yes' if d['holds'] else 'no'})"
            for key, d in self.details.items()
            if key.startswith("condition ") and isinstance(d, dict)
        )
        return (
            f"{self.claim} on {self.model}{where}: {self.statistic} = {self.value:.4g}{ci}{p}; "
            f"claimed {self.comparison} {self.threshold:g}{also}: {verdict}"
        )


class StudyResult(Protocol):
    """What a study result offers to claims."""

    model: str
    n_blocks: int

    def measure(self, statistic: str, *, layer: int | None, kind: str | None) -> Measurement: ...


def evaluate(claim: Claim, result: StudyResult) -> Verdict:
    """Evaluate one claim on one study result. Never raises for a statistic the result cannot provide: the verdict
    then has ``holds=None`` and the reason."""
    layer = map_layer(claim, result.n_blocks)
    details: dict[str, Any] = {"layer_mapped_from": claim.layer if layer != claim.layer else None}
    if claim.kind is not None:
        details["kind"] = claim.kind
    first: Measurement | None = None
    holds = True
    for i, cond in enumerate(claim.conditions):
        try:
            m = result.measure(cond.statistic, layer=layer, kind=claim.kind)
        except (KeyError, UsageError, ValueError) as exc:
            return Verdict(
                claim.id,
                result.model,
                layer,
                claim.statistic,
                None,
                None,
                None,
                claim.threshold,
                claim.comparison,
                None,
                reason=f"{cond.statistic}: {exc}",
                details=details,
            )
        ok = (not math.isnan(m.value)) and cond.holds(m.value)
        holds = holds and ok
        if i == 0:
            first = m
            details.update(m.details)
        else:
            details[f"condition {cond}"] = {
                "value": m.value,
                "ci": list(m.ci) if m.ci else None,
                "p_value": m.p_value,
                "holds": ok,
            }
    assert first is not None
    if math.isnan(first.value):
        return Verdict(
            claim.id,
            result.model,
            layer,
            claim.statistic,
            None,
            None,
            None,
            claim.threshold,
            claim.comparison,
            None,
            reason=f"{claim.statistic} is undefined on this result (NaN)",
            details=details,
        )
    return Verdict(
        claim.id,
        result.model,
        layer,
        claim.statistic,
        float(first.value),
        first.ci,
        first.p_value,
        claim.threshold,
        claim.comparison,
        holds,
        details=details,
    )


def evaluate_all(result: StudyResult, study: str) -> list[Verdict]:
    """Every claim of ``study`` evaluated on ``result``."""
    return [evaluate(c, result) for c in claims_for(study)]
