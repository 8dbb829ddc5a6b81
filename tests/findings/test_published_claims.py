"""Every claim (A1-A7, B1-B4) as a findings test: asserted on the model it was made for, snapshotted on any other.

Every claim of the session is decided on each model as one family (premises, then Holm), as ``layerclaims
reproduce`` decides it: one model load and one study run per (study, settings) for the whole session, with each
study's default ``Config``, which is the original notebook's method:
- study A (punctuation): pg219, the first 250 marks of each kind, all hidden states, the original MI/covariance
  estimator; bootstrap over marks for the intervals;
- study B (qk): the 34 words, "The next word is {w}", no BOS, the last token of each word, every block;
  1,000 stratified word bootstraps and 10,000 permutations, seed 0.
The verdict files live in ``tests/findings/snapshots/<model>/<claim>.csv``; regenerate after a reviewed change with
``pytest -m findings --model NAME --force-regen``. Run on the claims' own models with ``pytest -m findings --gpu``.
A user's claims (``--claims FILE``) run here too, with their own study settings; their snapshots go beside these.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from layerclaims import pipeline
from layerclaims.claims import Claim
from layerclaims.identity import is_claim_model
from layerclaims.report import jsonable
from layerclaims.testing import DEFAULT_TOLERANCE, FindingsRuns, findings_models, snapshot_row
from layerclaims.validate import RunRequest
from layerclaims.verdicts import Verdict

pytestmark = pytest.mark.findings

TOLERANCE: dict[str, dict[str, float]] = {
    # Measured: both CI studies run with torch.set_num_threads(1) and compared with the snapshots written at 2
    # threads. Worst relative change over every snapshotted number (values, CI ends, second conditions):
    # smollm2-135m 1.5e-15 (A5 ci_low), tiny-gpt2 1.2e-14 (A5 ci_low); cluster counts, layers and verdicts
    # identical. Another CPU (other BLAS kernels) can move float32 activations by ~1e-6 relative, and a value that
    # then crosses a histogram bin edge moves its pair's MI by a discrete step, so the margin is wide: rtol 1e-4
    # still catches any real change of method, data or model (1e-2 or more).
    "punctuation": {"rtol": 1e-4, "atol": 1e-8},
    # Measured: 1 vs 2 torch threads and batch size 5 vs 64: every snapshotted number bit-identical (the analysis
    # is float64). Float-noise proxy for another CPU or library build: Q/K/V multiplied by (1 + 1e-6 N(0, 1)),
    # 4 seeds: worst relative change 4.5e-6 (tiny-gpt2, B1's CI end: a difference of means amplifies relative
    # noise), 1.9e-6 on smollm2-135m; no p-value, block or verdict moved. rtol 5e-4 covers that 100x, and a single
    # permutation count flipping in a p-value as low as 0.02 (1/10001 absolute); a real change of method, words or
    # weights moves these numbers by 1e-3 or more.
    "qk": {"rtol": 5e-4, "atol": 1e-8},
}


def test_claim(claim: Claim, claim_verdict: Verdict, check_verdict: Callable[..., None]) -> None:
    # (model, claim) pairs come from the layerclaims pytest plugin: the package's claims and any --claims file. The
    # verdict is the claim's within the family of every claim of the session on that model (premises, then Holm), the
    # row `layerclaims reproduce --model MODEL` writes to verdicts.json.
    check_verdict(claim_verdict, claim, TOLERANCE.get(claim.study))


SNAPSHOTS = Path(__file__).resolve().parent / "snapshots"


@pytest.mark.parametrize("model", ["tiny-gpt2", pytest.param("smollm2-135m", marks=pytest.mark.slow)])
def test_the_findings_verdicts_are_the_rows_of_reproduce(
    model: str,
    device: str,
    findings_claims: tuple[Claim, ...],
    findings_runs: FindingsRuns,
    pytestconfig: pytest.Config,
    tmp_path: Path,
) -> None:
    """One road: every findings verdict (the family the tests above assert and snapshot) is the verdicts.json row of
    `layerclaims reproduce` on the same model and settings, premises and Holm included (A2 fails with its premise
    A1; adjusted p is Holm's); and each snapshot on file records that row's numbers."""
    if model not in findings_models(pytestconfig, claims=findings_claims):
        pytest.skip(f"{model} is not among this session's findings models")
    family = findings_runs.family(model, device, findings_claims)
    rep = pipeline.reproduce(RunRequest(model, tmp_path / "run", device=device), findings_claims)
    rows = {r["claim"]: r for r in json.loads((tmp_path / "run" / "verdicts.json").read_text())}
    assert sorted(rows) == sorted(family) == sorted(c.id for c in findings_claims)
    for claim_id, verdict in family.items():
        assert jsonable(verdict.to_row()) == rows[claim_id], claim_id
    assert [v.to_row() for v in rep.verdicts] == [family[v.claim].to_row() for v in rep.verdicts]
    for claim in findings_claims:
        path = SNAPSHOTS / model / f"{claim.id}.csv"
        if is_claim_model(claim.model, model) or not path.is_file():
            continue
        with path.open(newline="") as fh:
            stored = next(csv.DictReader(fh))
        expected = snapshot_row(Verdict.from_row(rows[claim.id]))
        tol = TOLERANCE.get(claim.study, DEFAULT_TOLERANCE)
        for column, value in expected.items():
            got = float(stored[column]) if stored.get(column, "") != "" else float("nan")
            assert np.isclose(got, float(value[0]), rtol=tol["rtol"], atol=tol["atol"], equal_nan=True), (
                f"{path}: {column} is {got}, reproduce writes {float(value[0])} (regenerate the snapshots with "
                f"`pytest -m findings --model {model} --force-regen` after reviewing the change)"
            )
