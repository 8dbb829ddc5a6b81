"""The findings test of this project: every claim of ``--claims`` checked on every ``--model``
(``pytest -m findings --model tiny-gpt2 --claims claims.toml --only-claims``)."""

import pytest

pytestmark = pytest.mark.findings


def test_claim(claim, claim_verdict, check_verdict):
    check_verdict(claim_verdict, claim)
