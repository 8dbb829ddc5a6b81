"""Every claim (A1-A7, B1-B4) as a findings test: asserted on the model it was made for, snapshotted on any other.

One study run per (study, model) for the whole session, with each study's default ``Config``, which is the
original notebook's method:
- study A (punctuation): pg219, the first 250 marks of each kind, all hidden states, the original MI/covariance
  estimator; bootstrap over marks for the intervals;
- study B (qk): the 34 words, "The next word is {w}", no BOS, the last token of each word, every block;
  1,000 stratified word bootstraps and 10,000 permutations, seed 0.
The verdict files live in ``tests/findings/snapshots/<model>/<claim>.csv``; regenerate after a reviewed change with
``pytest -m findings --model NAME --force-regen``. Run on the claims' own models with ``pytest -m findings --gpu``.
A user's claims (``--claims FILE``) run here too, with their own study settings; their snapshots go beside these.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from layerclaims.claims import Claim
from layerclaims.testing import StudyCache
from layerclaims.verdicts import evaluate

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


def test_claim(
    model: str, claim: Claim, study_cache: StudyCache, device: str, check_verdict: Callable[..., None]
) -> None:
    # (model, claim) pairs come from the layerclaims pytest plugin: the package's claims and any --claims file.
    result = study_cache.get(claim.study, model, device, **claim.options)
    check_verdict(evaluate(claim, result), claim, TOLERANCE[claim.study])
