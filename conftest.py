"""The pytest interface of layerclaims.

Options:
  --gpu         run models on CUDA (a clear error when none is present); with no --model, the findings tests run
                each claim on the model it was made for (gpt2-medium, gpt2-large) and assert that it holds.
  --model NAME  run the findings tests on this registry name or Hugging Face id / local folder (repeatable).
Markers: ``findings`` (claims on real models), ``slow`` (more than a few seconds).
Hypothesis: profile ``ci`` (deterministic, derandomised) is loaded when CI is set, ``dev`` otherwise.
"""

from __future__ import annotations

import os
import random

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

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


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("layerclaims")
    group.addoption("--gpu", action="store_true", default=False, help="run models on CUDA")
    group.addoption(
        "--model",
        action="append",
        default=None,
        metavar="NAME",
        help="model for the findings tests (repeatable; default tiny-gpt2 and smollm2-135m, as on CI)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "findings: a published claim evaluated on a real (or tiny) model")
    config.addinivalue_line("markers", "slow: takes more than a few seconds")
    if config.getoption("--gpu"):
        import torch

        if not torch.cuda.is_available():
            raise pytest.UsageError(
                "--gpu was given but torch sees no CUDA device on this machine: "
                "drop --gpu to run on the CPU, or run on a machine with an NVIDIA GPU and a CUDA build of torch."
            )


@pytest.fixture(autouse=True)
def _fixed_seeds() -> None:
    random.seed(0)
    np.random.seed(0)  # noqa: NPY002 - only to pin third-party code that reads the global state


@pytest.fixture(scope="session")
def device(pytestconfig: pytest.Config) -> str:
    """``"cuda"`` with --gpu, else ``"cpu"``."""
    return "cuda" if pytestconfig.getoption("--gpu") else "cpu"
