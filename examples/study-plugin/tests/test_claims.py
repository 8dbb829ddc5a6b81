"""The findings test of this project: every claim of ``--claims`` checked on every ``--model``
(``pytest -m findings --model tiny-gpt2 --claims claims.toml --only-claims``)."""

import pytest

from layerclaims.verdicts import evaluate

pytestmark = pytest.mark.findings


def test_claim(model, claim, study_cache, device, check_verdict):
    result = study_cache.get(claim.study, model, device, **claim.options)
    check_verdict(evaluate(claim, result), claim)
