"""Machinery of the findings tests, usable from any pytest suite that checks claims on models.

A findings test takes its claim's verdict from the run that decides every claim of the session on that model as one
family, as ``layerclaims reproduce`` writes it to ``verdicts.json`` (:class:`FindingsRuns`). On the claim's own
model the verdict must pass; on any other its numbers are recorded in a pytest-regressions snapshot, one CSV per
claim under ``snapshots/<model>/``, so that a change of model or code shows as a reviewable diff. A missing
snapshot is created (the session's summary says where); ``--force-regen`` rewrites them after a reviewed change.
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from layerclaims.claims import Claim, claims_for
from layerclaims.decision import ON_CONTROL
from layerclaims.errors import DataNotFoundError, LayerclaimsError
from layerclaims.identity import Identification, annotate, identify, is_claim_model
from layerclaims.run import StudyResults, decide_run, study_names_of
from layerclaims.validate import Command, RunRequest
from layerclaims.verdicts import VERDICT_CODES, Verdict

# The models CI runs the findings on (both offline); smollm2-135m's are marked slow unless --model names it: real
# weights through five studies take minutes on 2 CPU cores.
CI_FINDINGS_MODELS = ("tiny-gpt2", "smollm2-135m")
SLOW_FINDINGS_MODELS = ("smollm2-135m",)

# Float32 forwards, float64 analysis: covers, with a margin, the worst relative change between a 1-thread and a
# 2-thread run (each study's findings module records it beside its own tolerance).
DEFAULT_TOLERANCE = {"rtol": 1e-3, "atol": 1e-6}
EXACT = {"rtol": 0.0, "atol": 0.0}


def findings_models(config: pytest.Config, claims: Sequence[Claim] | None = None) -> list[str]:
    """--model if given; with --gpu, the claims' own models; else the CI models."""
    chosen = config.getoption("--model")
    if chosen:
        return list(chosen)
    if config.getoption("--gpu"):
        return sorted({c.model for c in claims_for(None, claims)})
    return list(CI_FINDINGS_MODELS)


def model_claim_params(config: pytest.Config, claims: Sequence[Claim] | None = None) -> list[Any]:
    """(model, claim) pairs of ``claims`` (default: the package's); with --gpu and no --model, each claim only on
    its own model."""
    own_only = config.getoption("--gpu") and not config.getoption("--model")
    slow = () if config.getoption("--model") else SLOW_FINDINGS_MODELS
    return [
        pytest.param(m, c, id=f"{m}-{c.id}", marks=[pytest.mark.slow] if m in slow else [])
        for m in findings_models(config, claims)
        for c in claims_for(None, claims)
        if not own_only or c.model == m
    ]


class FindingsRuns:
    """Every claim of the session on one model decided as one family, once per (model, device, claims). Data that
    cannot be had here (a corpus not on this machine, offline) skips that model's tests with the reason and the fix;
    any other bad input fails them with the message and the fix, without a traceback."""

    def __init__(self) -> None:
        self.results = StudyResults()
        self._families: dict[tuple[str, str, tuple[Claim, ...]], dict[str, Verdict]] = {}
        self._problems: dict[tuple[str, str, tuple[Claim, ...]], tuple[bool, str]] = {}

    def family(self, model: str, device: str, claims: Sequence[Claim]) -> dict[str, Verdict]:
        """Claim id -> verdict of ``claims`` on ``model``, all decided as one family."""
        claims = tuple(claims)
        key = (model, device, claims)
        if key not in self._families and key not in self._problems:
            request = RunRequest(model, None, study_names_of(claims), device)
            command = Command(("-m", "findings", "--model", model), prog="pytest")
            try:
                decision = decide_run(request, claims, command=command, results=self.results)
            except DataNotFoundError as exc:
                fix = f" Fix: {exc.fix.rstrip('.')}." if exc.fix else ""
                why = f"{exc.message.rstrip('.')}.{fix} Where it can, run `pytest -m findings --model {model}`"
                self._problems[key] = (True, f"the claims cannot be checked on {model} here: {why}")
            except LayerclaimsError as exc:
                fix = f"\nfix: {exc.fix}" if exc.fix else ""
                self._problems[key] = (False, f"the claims cannot be checked on {model}: {exc.message}{fix}")
            else:
                self._families[key] = {v.claim: v for v in decision.verdicts}
        if key in self._problems:
            skip, message = self._problems[key]
            if skip:
                pytest.skip(message)
            pytest.fail(message, pytrace=False)
        return self._families[key]

    def identification(self, model: str, device: str, *, declared: str | None = None) -> Identification | None:
        """What the loaded ``model`` was shown to be, or None when it was not loaded in this session."""
        handle = self.results.loaded(model, device)
        return None if handle is None else identify(handle, declared=declared)


class ControlWarning(UserWarning):
    """A claim passed on its own model but holds on its control too (the structure it names is not needed for it)."""


def _num(x: float | None) -> float:
    return float("nan") if x is None else float(x)


def snapshot_row(verdict: Verdict) -> dict[str, np.ndarray]:
    """The numbers a findings snapshot records of a verdict: layer (-1: none), value, interval, p, Holm-adjusted p,
    the verdict as a code, the control's value, and each further condition's value and verdict code."""
    ci = verdict.ci or (None, None)
    control = verdict.control
    row: dict[str, Any] = {
        "layer": -1 if verdict.layer is None else verdict.layer,
        "value": _num(verdict.value),
        "ci_low": _num(ci[0]),
        "ci_high": _num(ci[1]),
        "p_value": _num(verdict.p_value),
        "p_adjusted": _num(verdict.p_adjusted),
        "verdict": verdict.code,  # 1 holds, 0 fails, 2 inconclusive, -1 not evaluated
        "control_value": _num(control.value if control else None),
    }
    for i, cond in enumerate(verdict.conditions[1:], start=1):
        row[f"cond{i}_value"] = _num(cond.value)
        row[f"cond{i}_verdict"] = VERDICT_CODES[cond.verdict]
    return {k: np.array([v]) for k, v in row.items()}


def check_verdict(
    verdict: Verdict,
    claim: Claim,
    num_regression: Callable[[], Any],
    tolerance: dict[str, float],
    snapshots: Path | None = None,
    *,
    declared: str | None = None,
    beats_control: bool = False,
    identification: Identification | None = None,
) -> None:
    """Assert on the claim's own model (:func:`layerclaims.identity.is_claim_model`; ``declared``: pytest's ``--as
    NAME``; ``identification``: what the loaded model was shown to be): it must pass, ``holds on control too`` with
    a :class:`ControlWarning` unless ``beats_control``. On any other, snapshot the verdict's numbers into
    ``snapshots/<model>/<claim>.csv`` (default ``snapshots`` beside the test file) with ``num_regression()``,
    pytest-regressions' fixture, asked for only then."""
    if identification is not None:
        (verdict,) = annotate([verdict], identification)  # the verdict's line says how the model was taken
    if is_claim_model(claim.model, verdict.model, declared=declared, identification=identification):
        required = beats_control or claim.beats_control or verdict.beats_control
        assert verdict.passes and not (required and verdict.verdict == ON_CONTROL), failure_message(verdict, required)
        if verdict.verdict == ON_CONTROL:
            warnings.warn(
                ControlWarning(
                    f"{claim.id} passes on {verdict.model}, but it {verdict.control_note}: require it to beat its "
                    "control with beats_control = true in its claims file, or pytest --beats-control"
                ),
                stacklevel=2,
            )
        return
    row = snapshot_row(verdict)
    regression = num_regression()
    if snapshots is None:
        snapshots = Path(regression.original_datadir).parent / "snapshots"
    path = snapshots / verdict.model.replace("/", "__") / f"{claim.id}.csv"
    exact = {k: EXACT for k in row if k == "layer" or k.endswith("verdict")}
    created = not path.is_file()
    try:
        regression.check(row, fullpath=path, default_tolerance=tolerance, tolerances=exact)
    except pytest.fail.Exception as exc:  # pytest-regressions fails on creating or regenerating a snapshot
        if not created:
            pytest.fail(f"{claim.id} on {verdict.model}: {exc.msg}", pytrace=False)
    except AssertionError as exc:  # the numbers moved: the table of differences, not the library's source
        hint = "if the change is reviewed and expected, rewrite the snapshots with --force-regen"
        pytest.fail(f"{claim.id} on {verdict.model}: the snapshot {path} differs ({hint}):\n{exc}", pytrace=False)
    if created:
        CREATED.append(path)
    assert not (verdict.value is not None and math.isnan(verdict.value)), verdict.describe()


CREATED: list[Path] = []
"""Snapshots this session created (none existed): the plugin's terminal summary names them."""


def created_summary(paths: Sequence[Path]) -> list[str]:
    """One line per folder of snapshots created this session (the plugin prints them after the tests)."""
    by_folder = Counter(p.parent for p in paths)
    return [
        f"layerclaims: created {n} findings snapshot{'s' if n != 1 else ''} in {folder} (there was none to compare "
        "with): review and commit them; later runs compare against them, and --force-regen rewrites them after a "
        "reviewed change"
        for folder, n in by_folder.items()
    ]


def failure_message(verdict: Verdict, beats_control: bool = False) -> str:
    """Why a claim did not hold on its own model: the verdict's lines as the console prints them."""
    head, *rest = verdict.lines(levels=True)
    rule = "only holds, or holds on control too, passes"
    if beats_control:
        rule = "only holds passes: the claim must beat its control"
    return "\n".join([f"{head} ({rule})", *(f"  {line}" for line in rest)])
