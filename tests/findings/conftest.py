"""Fixtures of the findings tests; the machinery lives in :mod:`layerclaims.testing`."""

from __future__ import annotations

import pytest

from layerclaims.testing import StudyCache, check_verdict, model_claim_params

__all__ = ["StudyCache", "check_verdict", "model_claim_params"]


@pytest.fixture(scope="session")
def study_cache() -> StudyCache:
    """One study run per (study, model, device) for the whole session."""
    return StudyCache()
