"""Machinery of the findings tests, usable from any pytest suite that checks claims on models.

On the model a claim was made for, a findings test asserts that the verdict is ``holds`` (not fails, not
inconclusive, not "not evaluated") and on failure shows each condition's value, decision interval, p against its
threshold, the control and what would settle it. On any other model it records the verdict's typed fields (verdict
as a code, value, interval, p, Holm-adjusted p, the control's value) in a pytest-regressions snapshot, one CSV per
claim under ``tests/findings/snapshots/<model>/``, so that a change of model or code shows as a reviewable diff.
Regenerate after a reviewed change with ``pytest -m findings --model NAME --force-regen``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from layerclaims.claims import Claim, claims_for
from layerclaims.errors import DataNotFoundError
from layerclaims.identity import is_claim_model
from layerclaims.verdicts import Verdict

# The models CI runs the findings on: a random tiny GPT-2 and real SmolLM2-135M weights, both available offline.
CI_FINDINGS_MODELS = ("tiny-gpt2", "smollm2-135m")

# Snapshot tolerance. Numbers come from float32 forward passes on CPU; the analysis is float64. The worst
# relative change measured between a 1-thread and a 2-thread run of the same study is recorded by each study's
# findings module beside its tolerance; this default covers it with a margin and still catches any real change.
DEFAULT_TOLERANCE = {"rtol": 1e-3, "atol": 1e-6}
EXACT = {"rtol": 0.0, "atol": 0.0}


def findings_models(
    config: pytest.Config, study: str | None = None, claims: Sequence[Claim] | None = None
) -> list[str]:
    """--model if given; with --gpu, the claims' own models; else the CI models."""
    chosen = config.getoption("--model")
    if chosen:
        return list(chosen)
    if config.getoption("--gpu"):
        return sorted({c.model for c in claims_for(study, claims)})
    return list(CI_FINDINGS_MODELS)


def model_claim_params(
    config: pytest.Config, study: str | None = None, claims: Sequence[Claim] | None = None
) -> list[Any]:
    """(model, claim) pairs of one study (or all) of ``claims`` (default: the package's); with --gpu and no
    --model, each claim only on its own model."""
    own_only = config.getoption("--gpu") and not config.getoption("--model")
    return [
        pytest.param(m, c, id=f"{m}-{c.id}")
        for m in findings_models(config, study, claims)
        for c in claims_for(study, claims)
        if not own_only or c.model == m
    ]


class StudyCache:
    """One model load per (model, device) and one study run per (study, model, device) for the whole session.

    What cannot be had here (weights that are not on this machine, a corpus offline) is skipped with the reason and
    the fix, never failed: the claim is then simply not checked on this machine."""

    def __init__(self) -> None:
        self._handles: dict[tuple[str, str], Any] = {}
        self._results: dict[tuple[str, str, str, tuple[tuple[str, Any], ...]], Any] = {}
        self._skips: dict[tuple[str, str, str, tuple[tuple[str, Any], ...]], str] = {}

    def get(self, study: str, model: str, device: str, **options: Any) -> Any:
        """The result of ``pipeline.run_study(study, <model on device>, **options)``, computed once per options (a
        claim's ``settings``: ``get(claim.study, model, device, **claim.options)``)."""
        from layerclaims.models import load_model
        from layerclaims.pipeline import run_study

        key = (study, model, device, tuple(sorted(options.items())))
        if key not in self._results and key not in self._skips:
            try:
                if (model, device) not in self._handles:
                    self._handles[(model, device)] = load_model(model, device=device)
                self._results[key] = run_study(study, self._handles[(model, device)], **options)
            except DataNotFoundError as exc:
                self._skips[key] = (
                    f"study {study!r} cannot run on {model} here: {str(exc).rstrip('.')}. Where it can, run "
                    f"`pytest -m findings --model {model}` (add --force-regen to create its snapshots)."
                )
        if key in self._skips:
            pytest.skip(self._skips[key])
        return self._results[key]


def _num(x: float | None) -> float:
    return float("nan") if x is None else float(x)


def check_verdict(
    verdict: Verdict,
    claim: Claim,
    num_regression: Any,
    tolerance: dict[str, float],
    snapshots: Path | None = None,
    *,
    declared: str | None = None,
) -> None:
    """Assert on the claim's own model; snapshot the verdict's numbers on any other.

    The claim's own model is recognised by what it is (:func:`layerclaims.identity.is_claim_model`: a local folder
    or mirror of gpt2-medium counts as gpt2-medium; ``declared`` is pytest's ``--as NAME``). Snapshots go to
    ``snapshots/<model>/<claim>.csv``; by default ``snapshots`` is the folder ``snapshots`` beside the calling test
    file."""
    if is_claim_model(claim.model, verdict.model, declared=declared):
        assert verdict.verdict == "holds", failure_message(verdict)
        return
    ci = verdict.ci or (None, None)
    control = verdict.control
    row = {
        "layer": np.array([-1 if verdict.layer is None else verdict.layer]),
        "value": np.array([_num(verdict.value)]),
        "ci_low": np.array([_num(ci[0])]),
        "ci_high": np.array([_num(ci[1])]),
        "p_value": np.array([_num(verdict.p_value)]),
        "p_adjusted": np.array([_num(verdict.p_adjusted)]),
        # 1 holds, 0 fails, 2 inconclusive, -1 not evaluated (Verdict.code)
        "verdict": np.array([verdict.code]),
        "control_value": np.array([_num(control.value if control else None)]),
    }
    for i, cond in enumerate(verdict.conditions[1:], start=1):
        row[f"cond{i}_value"] = np.array([_num(cond.value)])
        row[f"cond{i}_verdict"] = np.array([_VERDICT_CODE[cond.verdict]])
    if snapshots is None:
        snapshots = Path(num_regression.original_datadir).parent / "snapshots"
    path = snapshots / verdict.model.replace("/", "__") / f"{claim.id}.csv"
    exact = {k: EXACT for k in row if k == "layer" or k.endswith("verdict")}
    num_regression.check(row, fullpath=path, default_tolerance=tolerance, tolerances=exact)
    assert not (verdict.value is not None and math.isnan(verdict.value)), verdict.describe()


_VERDICT_CODE = {"holds": 1, "fails": 0, "inconclusive": 2, "not evaluated": -1}


def failure_message(verdict: Verdict) -> str:
    """Why a claim did not hold on its own model: the verdict's lines as the console prints them
    (:meth:`~layerclaims.verdicts.Verdict.lines`: each condition's value, decision interval and level, p against its
    threshold, the control, and what would settle an inconclusive verdict)."""
    head, *rest = verdict.lines(levels=True)
    return "\n".join([f"{head} (only holds passes)", *(f"  {line}" for line in rest)])
