"""A model recognised by what it is (config facts, recorded name, declaration), not by the name typed."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from layerclaims.errors import UsageError
from layerclaims.identity import KNOWN_MODELS, arch_facts, check_declared, is_claim_model, model_identity

# The config.json of gpt2-medium as save_pretrained writes it (the facts that matter; the rest of the keys do not).
GPT2_MEDIUM = {"model_type": "gpt2", "n_layer": 24, "n_embd": 1024, "n_head": 16, "vocab_size": 50257}
GPT2_SMALL = {"model_type": "gpt2", "n_layer": 12, "n_embd": 768, "n_head": 12, "vocab_size": 50257}


def folder(tmp_path: Path, name: str, config: dict[str, Any]) -> str:
    path = tmp_path / name
    path.mkdir()
    (path / "config.json").write_text(json.dumps(config))
    return str(path)


def test_names_and_mirrors() -> None:
    assert model_identity("gpt2-medium") == "gpt2-medium"
    assert model_identity("openai-community/gpt2-medium") == "gpt2-medium"
    assert model_identity("tiny-gpt2") is None and model_identity("someone/gpt2-medium-finetuned") is None
    assert is_claim_model("gpt2-medium", "openai-community/gpt2-medium")
    assert is_claim_model("tiny-gpt2", "tiny-gpt2")  # a user's claim about a model with no known row: by name
    assert not is_claim_model("gpt2-medium", "gpt2-large")


def test_a_folder_whose_config_records_the_name_and_matches_is_the_model(tmp_path: Path) -> None:
    path = folder(tmp_path, "weights-2024", {**GPT2_MEDIUM, "_name_or_path": "openai-community/gpt2-medium"})
    assert model_identity(path) == "gpt2-medium" and is_claim_model("gpt2-medium", path)
    local = folder(tmp_path, "copy", {**GPT2_MEDIUM, "_name_or_path": "/models/gpt2-medium/"})
    assert model_identity(local) == "gpt2-medium"
    assert model_identity(Path(local) / "config.json") == "gpt2-medium"
    assert model_identity({**GPT2_MEDIUM, "_name_or_path": "gpt2-medium"}) == "gpt2-medium"


def test_a_recorded_name_with_other_facts_or_no_name_is_not_trusted(tmp_path: Path) -> None:
    wrong = folder(tmp_path, "wrong", {**GPT2_SMALL, "_name_or_path": "gpt2-medium"})  # a truncated/mislabelled copy
    assert model_identity(wrong) is None and not is_claim_model("gpt2-medium", wrong)
    silent = folder(tmp_path, "gpt2-medium", GPT2_MEDIUM)  # the folder's own name is not evidence either
    assert model_identity(silent) is None
    assert model_identity(str(tmp_path / "missing")) is None


def test_as_declares_a_folder_that_cannot_tell_and_is_refused_on_another_architecture(tmp_path: Path) -> None:
    silent = folder(tmp_path, "silent", GPT2_MEDIUM)
    assert model_identity(silent, declared="gpt2-medium") == "gpt2-medium"
    assert is_claim_model("gpt2-medium", silent, declared="gpt2-medium")
    assert not is_claim_model("gpt2-large", silent, declared="gpt2-medium")
    small = folder(tmp_path, "small", GPT2_SMALL)
    with pytest.raises(UsageError, match=r"--as gpt2-medium refused: .* 12 blocks of width 768.* 24 blocks of width"):
        check_declared("gpt2-medium", small)
    with pytest.raises(UsageError, match="not a model whose architecture is known"):
        check_declared("llama-7b", silent)
    with pytest.raises(UsageError, match="no config.json"):
        check_declared("gpt2-medium", "tiny-gpt2")


def test_facts_read_either_naming_convention() -> None:
    llama = {"model_type": "llama", "num_hidden_layers": 30, "hidden_size": 576, "vocab_size": 49152}
    facts = arch_facts(llama)
    assert facts is not None and (facts.family, facts.n_blocks, facts.width, facts.vocab) == ("llama", 30, 576, 49152)
    assert arch_facts({"model_type": "gpt2", "n_layer": 24}) is None
    assert arch_facts(GPT2_MEDIUM) == KNOWN_MODELS["gpt2-medium"]


def test_a_loaded_handle_is_read_through_its_config(tiny_gpt2: Any) -> None:
    """tiny-gpt2 (4 blocks, width 64) is none of the known models, and --as gpt2-medium is refused on it."""
    assert model_identity(tiny_gpt2) is None
    with pytest.raises(UsageError, match="4 blocks of width 64"):
        check_declared("gpt2-medium", tiny_gpt2)


def test_identity_imports_no_torch() -> None:
    import subprocess

    code = "import sys, layerclaims.identity, layerclaims.claims, layerclaims.plugin; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_registry_blocks_match_the_registry() -> None:
    """identity.REGISTRY_BLOCKS (read by claims files without importing torch) equals each registry model's depth."""
    from layerclaims.identity import REGISTRY_BLOCKS, known_blocks
    from layerclaims.models import REGISTRY, model_shape

    assert set(REGISTRY_BLOCKS) == set(REGISTRY)
    assert {name: model_shape(name).n_blocks for name in REGISTRY} == REGISTRY_BLOCKS
    assert known_blocks("openai-community/gpt2-medium") == 24 and known_blocks("someone/else") is None
