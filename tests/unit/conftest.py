"""Shared unit-test fixtures: tiny random models (built once per session) and the offline data folder.

The tiny models come from ``layerclaims.models`` (fixed seed, no download). Treat them as read-only: tests must not
change weights or register hooks they do not remove.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from layerclaims.models import ModelHandle, load_model

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"


@pytest.fixture(scope="session")
def tiny_gpt2() -> ModelHandle:
    """Random GPT-2: 4 blocks, d_model 64, 4 heads, GPT-2 tokenizer (vocab 50257), seed 0."""
    return load_model("tiny-gpt2")


@pytest.fixture(scope="session")
def tiny_llama() -> ModelHandle:
    """Random Llama: 4 blocks, d_model 64, 4 query heads, 2 key/value heads (k, v are 32 wide), seed 0."""
    return load_model("tiny-llama")


@pytest.fixture(scope="session")
def tiny_bert() -> ModelHandle:
    """Random BERT encoder: 4 blocks, d_model 64, 4 heads, GPT-2 token ids, seed 0."""
    return load_model("tiny-bert")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The offline data folder named by LAYERCLAIMS_DATA (CI: ../shared/data); skips when it is not set."""
    value = os.environ.get("LAYERCLAIMS_DATA", "").strip()
    if not value:
        pytest.skip("LAYERCLAIMS_DATA is not set: point it at the shared offline data folder (e.g. ../shared/data)")
    path = Path(value).resolve()
    if not path.is_dir():
        pytest.skip(f"LAYERCLAIMS_DATA={value} is not a folder")
    return path


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """The repository's ``fixtures/`` folder (small test files)."""
    return FIXTURES
