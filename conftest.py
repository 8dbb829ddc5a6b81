"""The repository's own test set-up. The pytest interface of layerclaims (--gpu, --model, --claims, --only-claims,
--as, the ``findings`` and ``slow`` markers, the fixtures) is the plugin :mod:`layerclaims.plugin`, which any
project that installs layerclaims gets through the ``pytest11`` entry point.

Here: the plugin is also named in ``pytest_plugins`` so that these tests run from a checkout whose installed
metadata predates the entry point (the entry point is named ``layerclaims.plugin``, so pytest registers it once
either way); hypothesis profile ``ci`` (deterministic, derandomised) is loaded when CI is set, ``dev`` otherwise;
the global seeds are fixed for every test.
"""

from __future__ import annotations

import os
import random

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

pytest_plugins = ["layerclaims.plugin"]

settings.register_profile(
    "ci",
    derandomize=True,
    max_examples=60,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))


@pytest.fixture(autouse=True)
def _fixed_seeds() -> None:
    random.seed(0)
    np.random.seed(0)  # noqa: NPY002 - only to pin third-party code that reads the global state
