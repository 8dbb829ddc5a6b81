"""A model recognised by what it is (config facts, recorded name, declaration), not by the name typed."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from layerclaims import identity
from layerclaims.data import gpt2_tokenizer
from layerclaims.errors import UsageError
from layerclaims.identity import (
    BEHAVIOUR_REFERENCES,
    KNOWN_MODELS,
    REGISTRY_BLOCKS,
    ArchFacts,
    BehaviourReference,
    annotate,
    arch_facts,
    check_declared,
    identify,
    is_claim_model,
    known_blocks,
    model_identity,
    next_token_loss,
)
from layerclaims.models import REGISTRY, load_model, model_shape
from layerclaims.report import verdict_parts
from layerclaims.verdicts import Verdict

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
    code = "import sys, layerclaims.identity, layerclaims.claims, layerclaims.plugin; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_registry_blocks_match_the_registry() -> None:
    """identity.REGISTRY_BLOCKS (read by claims files without importing torch) equals each registry model's depth."""
    assert set(REGISTRY_BLOCKS) == set(REGISTRY)
    assert {name: model_shape(name).n_blocks for name in REGISTRY} == REGISTRY_BLOCKS
    assert known_blocks("openai-community/gpt2-medium") == 24 and known_blocks("someone/else") is None


# ------------------------------------------------------------------------------------- identity by behaviour


def _saved_folder(tmp_path: Path, handle: Any, recorded: str) -> str:
    """``handle``'s weights saved as a model folder whose config.json records ``recorded`` as its name."""
    folder = tmp_path / "weights"
    handle.model.save_pretrained(str(folder))
    cfg = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**cfg, "_name_or_path": recorded}))
    return str(folder)


def test_next_token_loss_is_the_mean_cross_entropy_with_bos_prepended(
    tiny_gpt2: Any, tmp_path: Path, shared_data: Path
) -> None:
    """The TransformerLens formulation: ids [BOS, *tokens]; mean over the shifted predictions. Checked against
    transformers' own ``labels`` loss, with the LM head and through the tied embeddings of a head-less model."""
    ref = BEHAVIOUR_REFERENCES["gpt2"]
    tok = gpt2_tokenizer()
    ids = [tok.bos_token_id, *tok.encode(ref.text, add_special_tokens=False)]
    assert tuple(ids) == ref.ids == (50256, 15496, 995, 0)  # the stored ids are GPT-2's tokens of the text
    with torch.no_grad():
        expected = float(tiny_gpt2.model(input_ids=torch.tensor([ids]), labels=torch.tensor([ids])).loss)
    assert next_token_loss(tiny_gpt2, ref.ids) == pytest.approx(expected, rel=1e-6)
    headless = load_model(_saved_folder(tmp_path, tiny_gpt2, "tiny"))  # AutoModel: GPT2Model, no LM head
    assert not hasattr(headless.model, "lm_head")
    assert next_token_loss(headless, ref.ids) == pytest.approx(expected, rel=1e-5)
    assert headless.tokenizer.encode("Hello world") == [15496, 995]  # no tokenizer files: GPT-2's, not an empty one


def test_random_weights_whose_config_says_gpt2_are_refused_as_gpt2(
    tiny_gpt2: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shared_data: Path
) -> None:
    """A folder of random weights whose config records gpt2 with gpt2's architecture facts (here the tiny shape
    stands for GPT-2 small's, so that the test stays small) passes every config check, and is refused by its
    behaviour: its next-token loss on "Hello world!" is near ln 50257, not GPT-2 small's published 5.3319."""
    monkeypatch.setitem(identity.KNOWN_MODELS, "gpt2", ArchFacts("gpt2", 4, 64, 50257))
    path = _saved_folder(tmp_path, tiny_gpt2, "openai-community/gpt2")
    assert model_identity(path) == "gpt2" and is_claim_model("gpt2", path)  # by its config alone: taken as gpt2
    ident = identify(load_model(path))
    assert (ident.claimed, ident.model, ident.verified) == ("gpt2", None, False)
    assert not ident.is_model("gpt2") and not is_claim_model("gpt2", path, identification=ident)
    note = ident.note("gpt2")
    assert note is not None and note.startswith("not gpt2: its config says gpt2, but its next-token loss")
    assert f"{BEHAVIOUR_REFERENCES['gpt2'].loss:.4f}" in note and "TransformerLens" in note
    loss = float(note.split("with BOS ")[1].split(" ")[0])
    assert abs(loss - math.log(50257)) < 0.5  # random weights: about uniform over the vocabulary
    assert ident.note("gpt2-medium") is None  # says nothing about claims on other models


def test_a_model_reproducing_the_published_loss_is_identified_by_behaviour(
    tiny_gpt2: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shared_data: Path
) -> None:
    """The acceptance branch: a reference that these weights reproduce (the tiny model's own loss standing in for
    the published number) identifies the folder, verified."""
    monkeypatch.setitem(identity.KNOWN_MODELS, "gpt2", ArchFacts("gpt2", 4, 64, 50257))
    ids = identity.BEHAVIOUR_REFERENCES["gpt2"].ids
    own = next_token_loss(tiny_gpt2, ids)
    monkeypatch.setitem(
        identity.BEHAVIOUR_REFERENCES, "gpt2", BehaviourReference("Hello world!", ids, own, 2e-3, "test")
    )
    path = _saved_folder(tmp_path, tiny_gpt2, "gpt2")
    ident = identify(load_model(path))
    assert ident.verified and ident.is_model("gpt2") and "by its behaviour" in str(ident.note("gpt2"))
    # 0.01 off: beyond float32's tolerance, within the one for weights held in bfloat16
    off = BehaviourReference("Hello world!", ids, own + 0.01, 2e-3, "test")
    monkeypatch.setitem(identity.BEHAVIOUR_REFERENCES, "gpt2", off)
    assert not identify(load_model(path)).verified
    assert identify(load_model(path, dtype="bfloat16")).verified


def test_without_a_published_number_the_verdict_and_report_say_weights_unverified(
    tiny_gpt2: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shared_data: Path
) -> None:
    monkeypatch.setitem(identity.KNOWN_MODELS, "gpt2-medium", ArchFacts("gpt2", 4, 64, 50257))
    path = _saved_folder(tmp_path, tiny_gpt2, "gpt2-medium")
    ident = identify(load_model(path))
    assert (ident.model, ident.verified) == ("gpt2-medium", False) and ident.is_model("gpt2-medium")
    mine = Verdict("A2", path, 3, "holds", own_model="gpt2-medium")
    other = Verdict("U1", path, 3, "holds", own_model="tiny-gpt2")
    marked, untouched = annotate([mine, other], ident)
    expected = "taken as gpt2-medium by its config; weights unverified"
    assert marked.lines()[0] == f"A2: HOLDS on {path} at layer 3 ({expected})"
    assert expected in str(verdict_parts(marked)) and Verdict.from_row(marked.to_row()).identity == expected
    assert untouched.identity is None and "weights unverified" not in str(verdict_parts(untouched))


def test_the_findings_header_says_when_weights_are_unverified(tmp_path: Path) -> None:
    """`pytest -m findings --model gpt2-medium` says in its header that the weights are unverified (no model is
    loaded for the header: --collect-only)."""
    (tmp_path / "test_x.py").write_text("def test_nothing():\n    pass\n")

    def header(*models: str) -> str:
        args = [arg for m in models for arg in ("--model", m)]
        cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "layerclaims.plugin", "-m", "findings"]
        out = subprocess.run(
            [*cmd, "--collect-only", *args],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
            check=False,
        )
        return out.stdout + out.stderr

    text = header("gpt2-medium", "gpt2")
    assert "layerclaims: gpt2-medium: taken as gpt2-medium by its config; weights unverified" in text, text
    assert "layerclaims: gpt2: its config says gpt2; gpt2's claims are asserted only if its weights reproduce" in text
    assert "weights unverified" not in header("tiny-gpt2")
