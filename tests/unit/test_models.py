"""layerclaims.models: the architecture table, the registry (tiny random models, minilm-l6, smollm2-135m, local
folders, hub ids offline), devices and dtypes, and the errors for bad names and indices."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from layerclaims import data, models
from layerclaims.errors import DataNotFoundError, DeviceError, ModelNotFoundError, UsageError
from layerclaims.extract import hidden_states, qkv
from layerclaims.models import ARCHITECTURES, ModelHandle, base_model, load_model

MODELS = ("tiny_gpt2", "tiny_llama", "tiny_bert")


@pytest.fixture(params=MODELS)
def handle(request: pytest.FixtureRequest) -> ModelHandle:
    return request.getfixturevalue(request.param)


@pytest.fixture
def offline_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    """HF_HUB_OFFLINE=1: hub ids resolve from the local cache only (no waiting on the network)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    data.hub_reachable.cache_clear()
    yield
    data.hub_reachable.cache_clear()


# ----------------------------------------------------------------------------------------- architecture table


def test_table_covers_the_needed_families() -> None:
    assert {"gpt2", "llama", "bert"} <= set(ARCHITECTURES)
    for family, arch in ARCHITECTURES.items():
        assert arch.family == family
        assert [s.name for s in arch.qkv] == ["q", "k", "v"]


def test_every_table_path_exists_in_the_tiny_models(handle: ModelHandle) -> None:
    base = base_model(handle.model)
    arch = handle.arch
    assert arch.family == handle.model.config.model_type
    if arch.final_norm is not None:
        base.get_submodule(arch.final_norm)
    for block in handle.blocks:
        for site in arch.qkv:
            block.get_submodule(site.module)
        block.get_submodule(arch.attention)


def test_last_hidden_state_normed_flag_matches_transformers(handle: ModelHandle) -> None:
    """The flag ``last_hidden_is_normed`` is a fact about the installed transformers: check it, do not trust it."""
    seen: list[torch.Tensor] = []
    hook = handle.blocks[-1].register_forward_hook(
        lambda m, a, out: seen.append(out[0] if isinstance(out, tuple) else out)
    )
    try:
        with torch.no_grad():
            out = base_model(handle.model)(input_ids=torch.tensor([[1, 2, 3, 4]]), output_hidden_states=True)
    finally:
        hook.remove()
    last, block_out = out.hidden_states[-1], seen[0]
    if handle.arch.last_hidden_is_normed:
        norm = base_model(handle.model).get_submodule(handle.arch.final_norm)
        with torch.no_grad():
            torch.testing.assert_close(last, norm(block_out), rtol=0, atol=1e-6)
        assert not torch.allclose(last, block_out, atol=1e-2)
    else:
        torch.testing.assert_close(last, block_out, rtol=0, atol=0)


def test_causal_lm_and_bare_model_resolve_the_same_blocks(tiny_gpt2: ModelHandle) -> None:
    bare = base_model(tiny_gpt2.model)
    assert bare is not tiny_gpt2.model  # GPT2LMHeadModel -> .transformer
    assert models.find_blocks(bare, tiny_gpt2.arch) is models.find_blocks(tiny_gpt2.model, tiny_gpt2.arch)


def test_unknown_architecture_names_the_table() -> None:
    with pytest.raises(ModelNotFoundError, match="ARCHITECTURES"):
        models.architecture_for("mamba")


# ------------------------------------------------------------------------------------------------ tiny models


def test_tiny_handles_facts(handle: ModelHandle) -> None:
    assert handle.n_blocks == 4 and handle.d_model == 64
    assert handle.device == "cpu" and handle.dtype == "float32"
    assert handle.source == "random:seed=0" and len(handle.revision) == 16
    assert not handle.model.training
    assert not any(p.requires_grad for p in handle.model.parameters())
    assert handle.tokenizer.encode("Hello world") == [15496, 995]


def test_tiny_gpt2_is_identical_on_every_load_and_leaves_the_rng_alone(tiny_gpt2: ModelHandle) -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    again = load_model("tiny-gpt2")
    assert torch.equal(torch.rand(3), expected)  # the fixed seed did not leak into the caller's RNG
    assert again.revision == tiny_gpt2.revision
    for (name, a), (_, b) in zip(tiny_gpt2.model.state_dict().items(), again.model.state_dict().items(), strict=True):
        assert torch.equal(a, b), name


def test_check_layers_and_blocks(tiny_gpt2: ModelHandle) -> None:
    assert tiny_gpt2.check_layers(None) == [0, 1, 2, 3, 4]
    assert tiny_gpt2.check_blocks(None) == [0, 1, 2, 3]
    assert tiny_gpt2.check_layers(np.int64(2)) == [2]
    assert tiny_gpt2.check_blocks(torch.tensor([3, 0])) == [3, 0]
    with pytest.raises(UsageError, match=r"layer 5 is out of range: hidden-state layers are 0\.\.4"):
        tiny_gpt2.check_layers([0, 5])
    with pytest.raises(UsageError, match=r"block 4 is out of range: blocks are 0\.\.3 for tiny-gpt2"):
        tiny_gpt2.check_blocks(4)
    with pytest.raises(UsageError, match="not an integer"):
        tiny_gpt2.check_blocks(["1"])


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", torch.bfloat16])
def test_dtype_argument(dtype: str | torch.dtype) -> None:
    if dtype == "float16":  # half precision on the CPU is slow and inexact: loading says so
        with pytest.warns(UserWarning, match="float16 on the CPU is slower"):
            h = load_model("tiny-gpt2", dtype=dtype)
    else:
        h = load_model("tiny-gpt2", dtype=dtype)
    assert h.dtype == str(models.resolve_dtype(dtype)).removeprefix("torch.")
    assert next(h.model.parameters()).dtype == models.resolve_dtype(dtype)
    out = hidden_states(h, [[1, 2, 3]], -1, layers=[4])
    assert out.dtype == np.float32 and np.isfinite(out).all()


# ----------------------------------------------------------------------------------------------- bad requests


def test_unknown_model_lists_known_names() -> None:
    with pytest.raises(ModelNotFoundError) as info:
        load_model("tiny-gtp2")
    for name in models.REGISTRY:
        assert name in str(info.value)


def test_bad_dtype_and_device() -> None:
    with pytest.raises(UsageError, match="float32"):
        load_model("tiny-gpt2", dtype="float8")
    with pytest.raises(UsageError, match="'cpu' or 'cuda'"):
        load_model("tiny-gpt2", device="gpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda_says_how_to_fix() -> None:
    with pytest.raises(DeviceError, match=r"no CUDA device.*device='cpu'"):
        load_model("tiny-gpt2", device="cuda")


def test_hub_id_offline_says_how_to_get_weights(offline_hub: None, monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    attempts: list[object] = []

    def no_network(self: socket.socket, address: object) -> None:
        attempts.append(address)
        raise OSError("the test forbids network connections")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    with pytest.raises(DataNotFoundError) as info:
        load_model("layerclaims-test/no-such-model")
    msg = str(info.value)
    assert "not in the local Hugging Face cache" in msg and "network" in msg and "tiny-gpt2" in msg
    assert attempts == []  # offline: not one connection tried (so no retries against the network)


# ------------------------------------------------------------------------------------------------ folders


def test_local_folder_round_trip(tiny_gpt2: ModelHandle, tmp_path: Path) -> None:
    folder = tmp_path / "tiny"
    tiny_gpt2.model.save_pretrained(str(folder), safe_serialization=True)
    tiny_gpt2.tokenizer.save_pretrained(str(folder))
    h = load_model(str(folder), device_map="cpu")
    assert h.source == str(folder) and h.arch.family == "gpt2" and h.n_blocks == 4
    assert h.revision == models.file_sha256(folder / "model.safetensors")[:16]
    seqs = [[1, 2, 3, 4], [5, 6]]
    np.testing.assert_array_equal(hidden_states(h, seqs, -1), hidden_states(tiny_gpt2, seqs, -1))


def test_local_folder_without_weights(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(DataNotFoundError, match="safetensors"):
        load_model(str(tmp_path))


# ----------------------------------------------------------------------------------------- PyPI-shipped models


def test_minilm_l6() -> None:
    try:
        h = load_model("minilm-l6")
    except DataNotFoundError as exc:
        pytest.skip(str(exc))
    assert h.arch.family == "bert" and h.n_blocks == 6 and h.d_model == 384
    assert h.qkv_dims() == {"q": 384, "k": 384, "v": 384}
    ids = h.tokenizer("the river was wide")["input_ids"]
    out = hidden_states(h, [ids], -1)
    assert out.shape == (7, 1, 384) and np.isfinite(out).all()


@pytest.mark.slow
def test_smollm2_converted_once_cached_and_rebuilt_when_corrupt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    try:
        gguf = models.smollm2_gguf()
    except DataNotFoundError as exc:
        pytest.skip(str(exc))
    monkeypatch.setenv(data.CACHE_ENV, str(tmp_path))
    folder = models.smollm2_folder()
    assert folder == tmp_path / "models" / "smollm2-135m"

    conversions: list[Path] = []
    convert = models._convert_smollm2

    def counting(dest: Path, gguf_path: Path) -> None:
        conversions.append(dest)
        convert(dest, gguf_path)

    monkeypatch.setattr(models, "_convert_smollm2", counting)
    h = load_model("smollm2-135m")
    assert conversions == [folder]
    assert "GGUF" not in capfd.readouterr().err  # transformers' de-quantizing bar is kept out of the run's output
    assert (folder / models.MANIFEST).is_file() and (folder / "model.safetensors").is_file()
    assert [p.name for p in folder.parent.iterdir()] == ["smollm2-135m"]  # no temporary folder left
    assert h.arch.family == "llama" and h.n_blocks == 30 and h.d_model == 576
    assert h.qkv_dims() == {"q": 576, "k": 192, "v": 192}  # 9 query heads, 3 key/value heads of 64
    assert h.arch.last_hidden_is_normed and h.source == str(folder)

    # The fp32 weights are the GGUF's, de-quantized (read independently with the gguf package), and the model works:
    # greedy next token of a factual prompt (catches a wrong Q/K permutation or an untied head).
    from gguf import GGUFReader
    from gguf.quants import dequantize

    tensors = {t.name: t for t in GGUFReader(str(gguf)).tensors}
    base = h.model.model
    for gguf_name, weight in (
        ("token_embd.weight", base.embed_tokens.weight),
        ("output_norm.weight", base.norm.weight),
    ):
        t = tensors[gguf_name]
        expected = torch.from_numpy(np.array(dequantize(t.data, t.tensor_type), dtype=np.float32))
        torch.testing.assert_close(weight, expected.reshape(weight.shape), rtol=0, atol=0)
    assert h.model.lm_head.weight.data_ptr() == base.embed_tokens.weight.data_ptr()  # tied, as in SmolLM2
    ids = h.tokenizer.encode("The capital of France is")
    with torch.no_grad():
        top = int(h.model(input_ids=torch.tensor([ids])).logits[0, -1].argmax())
    assert h.tokenizer.decode([top]) == " Paris"

    again = load_model("smollm2-135m")
    assert again.revision == h.revision
    assert conversions == [folder]  # cached: the second load converted nothing

    weights = folder / "model.safetensors"
    with open(weights, "r+b") as fh:  # flip bytes in the middle of the tensor data
        fh.seek(weights.stat().st_size // 2)
        fh.write(b"\x00\x01\x02\x03" * 16)
    with pytest.warns(UserWarning, match="corrupt cache entry"):
        rebuilt = load_model("smollm2-135m")
    assert rebuilt.revision == h.revision
    models._verify_manifest(folder)
    q = qkv(rebuilt, [ids], -1, blocks=[0, 29])
    assert q["k"].shape == (2, 1, 192)


def test_reinitialised_is_the_same_architecture_with_fresh_weights(tiny_gpt2: ModelHandle) -> None:
    from layerclaims.models import reinitialised

    state = torch.random.get_rng_state()
    a = reinitialised(tiny_gpt2, 3)
    assert torch.equal(torch.random.get_rng_state(), state)  # the caller's RNG is untouched
    assert reinitialised(tiny_gpt2, 3) is a  # cached
    b = reinitialised(tiny_gpt2, 4)
    assert type(a.model) is type(tiny_gpt2.model) and a.n_blocks == tiny_gpt2.n_blocks and a.source == "random:seed=3"
    wa, wb, w0 = (h.model.transformer.h[0].attn.c_attn.weight for h in (a, b, tiny_gpt2))
    assert not torch.equal(wa, wb) and not torch.equal(wa, w0)
    again = reinitialised(b, 3)  # another handle: a fresh draw with the same seed gives the same weights
    assert torch.equal(again.model.transformer.h[0].attn.c_attn.weight, wa)
    assert not a.model.training and not any(p.requires_grad for p in a.model.parameters())


def test_a_background_reinitialisation_draws_the_same_weights_as_one_built_in_place(tiny_gpt2: ModelHandle) -> None:
    """``reinitialising`` builds in a thread while this one draws from torch's RNG for another seeded build: both
    get the weights they get alone (one seeded build at a time), and a failed build raises at ``result()``."""
    from layerclaims import models

    alone = models.reinitialised(tiny_gpt2, 7).model.state_dict()
    models._REINIT.clear()
    pending = models.reinitialising(tiny_gpt2, 7)
    mixed = models._seeded(lambda: torch.nn.Linear(64, 64), 11)  # a seeded build here while the thread draws
    assert torch.equal(mixed.weight, models._seeded(lambda: torch.nn.Linear(64, 64), 11).weight)
    got = pending.result().model.state_dict()
    assert got.keys() == alone.keys() and all(torch.equal(got[k], alone[k]) for k in alone)

    broken = dataclasses.replace(tiny_gpt2, model=torch.nn.Identity())  # Identity(config) is no model
    with pytest.raises(AttributeError):
        models.reinitialising(broken, 1).result()
