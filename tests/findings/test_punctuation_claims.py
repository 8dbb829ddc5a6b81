"""Claims A1-A7 (study A, punctuation) as findings: asserted on gpt2-medium, snapshotted on every other model.

One study run per model (``StudyCache``), the notebook's method: pg219, the first 250 marks of each kind, all
hidden states, the original MI/covariance estimator; mark bootstrap for the intervals. The verdict files live in
``tests/findings/snapshots/<model>/A*.csv``; regenerate after a reviewed change with
``pytest tests/findings/test_punctuation_claims.py --model NAME --force-regen``.
"""

from __future__ import annotations

from typing import Any

import pytest

from layerclaims import studies
from layerclaims.claims import Claim, evaluate
from layerclaims.errors import DataNotFoundError
from layerclaims.testing import StudyCache, check_verdict, model_claim_params

pytestmark = pytest.mark.findings

# Tolerance, measured: both CI studies (default Config) run with torch.set_num_threads(1) and compared with the
# snapshots written at 2 threads. Worst relative change over every snapshotted number (values, CI ends, second
# conditions): smollm2-135m 1.5e-15 (A5 ci_low), tiny-gpt2 1.2e-14 (A5 ci_low); cluster counts, layers and verdicts
# identical. Another CPU (other BLAS kernels) can move float32 activations by ~1e-6 relative, and a value that then
# crosses a histogram bin edge moves its pair's MI by a discrete step, so the margin is wide: rtol 1e-4 is ~1e10 x the
# measured thread effect and still catches any real change of method, data or model (1e-2 or more).
TOLERANCE = {"rtol": 1e-4, "atol": 1e-8}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if {"model", "claim"} <= set(metafunc.fixturenames):
        metafunc.parametrize(("model", "claim"), model_claim_params(metafunc.config, "punctuation"))


def _require_corpus() -> None:
    from layerclaims.data import load_corpus

    try:
        load_corpus("heart-of-darkness", allow_download=False)
    except DataNotFoundError:
        pytest.skip(
            "the pg219 corpus is not available offline: set LAYERCLAIMS_DATA to ../shared/data (CI does) or put "
            "heart_of_darkness_pg219.txt in the layerclaims cache (corpora/)"
        )


def _run(handle: Any) -> Any:
    return studies.run("punctuation", handle)


def test_claim(model: str, claim: Claim, study_cache: StudyCache, device: str, num_regression: Any) -> None:
    _require_corpus()
    result = study_cache.get("punctuation", model, device, _run)
    verdict = evaluate(claim, result)
    check_verdict(verdict, claim, num_regression, TOLERANCE)
