"""layerclaims.extract, proven against oracles on random tiny GPT-2, Llama and BERT models (fixed seeds):

- hidden states equal ``output_hidden_states`` of a plain forward pass of each sequence alone;
- Q/K/V equal a hand re-computation from the weights: the block input (``output_hidden_states[b]``), its pre-attention
  norm written out by hand (LayerNorm for GPT-2, RMSNorm for Llama, none for post-norm BERT), the projection
  ``x W + b``, then the split (GPT-2's fused ``c_attn`` in three); nothing here reads the ARCHITECTURES table;
- attention to the first token equals a hand re-computation of the softmax attention from those Q and K (GPT-2 and
  BERT: scaled dot products; Llama: RoPE written out by hand, grouped key heads repeated), causal mask for decoders,
  averaged over every query;
- ``final="pre_norm"`` gives the last block's raw output (checked with a hook the test installs itself);
- ``window_pass`` holds both in one pass: the attention bit for bit ``first_token_attention``'s, the hidden states
  the oracle's; inside ``shared_passes`` the same windows come back without a forward pass, and only there;
- ragged batches, batch sizes and input types do not change the vectors; hooks never outlive a call;
- batches run two at a time in lanes (threads over module trees sharing the weights) give every value the one-lane
  run gives, bit for bit, and a lane's failure reaches the caller with the hooks removed and torch's threads back;
- every bad input raises a UsageError that names the valid range.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from layerclaims import extract
from layerclaims.errors import UsageError
from layerclaims.extract import (
    as_positions,
    first_token_attention,
    hidden_state_maps,
    hidden_states,
    qkv,
    shared_passes,
    window_pass,
)
from layerclaims.models import ModelHandle, base_model

# Tolerances (absolute, float32). Worst cases measured over the sequences of these tests on the three tiny models
# (torch 2.13 CPU, transformers 5.23; script: the oracles below run over every sequence, block and position):
#   hidden_states vs output_hidden_states, one sequence per forward:  9.5e-07  (activations up to |3.0|)
#   Q/K/V hooks vs the hand re-computation from the weights:          2.4e-07  (activations up to |0.7|)
#   ragged batch (padded, batch_size=5) vs each sequence alone:       4.8e-07
# The differences are a few ulp: padding and batching only change matmul shapes (summation order), and the hand
# re-computation only reorders the norm's arithmetic. ATOL = 1e-5 is ~10x the worst case (room for other thread
# counts and BLAS kernels) and still >1e4 times smaller than the activations, so a real mistake (wrong position,
# layer, chunk or norm, a padding leak) fails by orders of magnitude.
ATOL = 1e-5
MODELS = ("tiny_gpt2", "tiny_llama", "tiny_bert")


def _sequences(n: int = 6, seed: int = 1) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 50257, size=int(length)).tolist() for length in rng.integers(2, 24, size=n)]


@pytest.fixture(params=MODELS)
def handle(request: pytest.FixtureRequest) -> ModelHandle:
    return request.getfixturevalue(request.param)


def _reference_hidden(handle: ModelHandle, seq: list[int]) -> torch.Tensor:
    """``output_hidden_states`` of one unpadded sequence: [n_blocks + 1, len, d]."""
    with torch.no_grad():
        out = base_model(handle.model)(input_ids=torch.tensor([seq]), output_hidden_states=True)
    return torch.stack(out.hidden_states)[:, 0]


def _reference_qkv(handle: ModelHandle, block: int, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Q, K, V of ``block`` from its input ``x`` [len, d], written out from the weights."""
    family = handle.model.config.model_type
    blk = handle.blocks[block]
    if family == "gpt2":
        ln = blk.ln_1
        mu = x.mean(-1, keepdim=True)
        var = ((x - mu) ** 2).mean(-1, keepdim=True)
        a = (x - mu) / torch.sqrt(var + ln.eps) * ln.weight + ln.bias
        fused = a @ blk.attn.c_attn.weight + blk.attn.c_attn.bias  # Conv1D: weight is [in, out]
        d = handle.d_model
        return {"q": fused[:, :d], "k": fused[:, d : 2 * d], "v": fused[:, 2 * d :]}
    if family == "llama":
        norm = blk.input_layernorm
        eps = norm.variance_epsilon
        a = x * torch.rsqrt((x**2).mean(-1, keepdim=True) + eps) * norm.weight
        att = blk.self_attn

        def proj(lin: torch.nn.Linear) -> torch.Tensor:
            return a @ lin.weight.T + (lin.bias if lin.bias is not None else 0)

        return {"q": proj(att.q_proj), "k": proj(att.k_proj), "v": proj(att.v_proj)}
    if family == "bert":
        att = blk.attention.self  # post-norm: the projections read the block input directly
        return {n: x @ m.weight.T + m.bias for n, m in (("q", att.query), ("k", att.key), ("v", att.value))}
    raise AssertionError(family)


def _rope(x: torch.Tensor, theta: float) -> torch.Tensor:
    """Rotary position embedding of ``x`` [len, heads, head_dim] at positions 0..len-1 (rotate-half convention)."""
    n, _, dh = x.shape
    inv_freq = 1.0 / (theta ** (torch.arange(0, dh, 2, dtype=torch.float32) / dh))
    angles = torch.arange(n, dtype=torch.float32)[:, None] * inv_freq[None, :]  # [len, dh/2]
    cos = torch.cat([angles.cos(), angles.cos()], -1)[:, None, :]
    sin = torch.cat([angles.sin(), angles.sin()], -1)[:, None, :]
    rotated = torch.cat([-x[..., dh // 2 :], x[..., : dh // 2]], -1)
    return x * cos + rotated * sin


def _reference_first_token_attention(handle: ModelHandle, seq: list[int]) -> np.ndarray:
    """Attention to position 0, mean over all queries: [n_blocks, n_heads], from the hand Q/K of each block."""
    cfg = handle.model.config
    family = cfg.model_type
    n_heads = cfg.num_attention_heads if family != "gpt2" else cfg.n_head
    hidden = _reference_hidden(handle, seq)
    n = len(seq)
    out = []
    for b in range(handle.n_blocks):
        with torch.no_grad():
            ref = _reference_qkv(handle, b, hidden[b])
        dh = ref["q"].shape[-1] // n_heads
        q = ref["q"].reshape(n, n_heads, dh)
        k = ref["k"].reshape(n, -1, dh)
        if family == "llama":
            theta = float(cfg.rope_parameters["rope_theta"])
            q, k = _rope(q, theta), _rope(k, theta)
            k = k.repeat_interleave(n_heads // k.shape[1], dim=1)  # key head j serves query heads j*r..j*r+r-1
        scores = torch.einsum("qhd,khd->hqk", q, k) / dh**0.5
        if family in ("gpt2", "llama"):
            scores = scores.masked_fill(torch.ones(n, n).triu(1).bool(), float("-inf"))
        weights = torch.softmax(scores, dim=-1)  # [h, q, k]
        out.append(weights[:, :, 0].mean(-1).numpy())
    return np.stack(out)


# ------------------------------------------------------------------------------------------------- oracles


def test_first_token_attention_equals_recomputation(handle: ModelHandle) -> None:
    seqs = _sequences(5, seed=7)
    impl = handle.model.config._attn_implementation
    got = first_token_attention(handle, seqs, batch_size=3)  # ragged batches: padded queries must not count
    assert handle.model.config._attn_implementation == impl  # the model's own implementation is restored
    n_heads = handle.model.config.num_attention_heads
    assert got.shape == (handle.n_blocks, len(seqs), n_heads) and got.dtype == np.float32
    for i, seq in enumerate(seqs):
        np.testing.assert_allclose(got[:, i], _reference_first_token_attention(handle, seq), rtol=0, atol=ATOL)
    assert ((got > 0) & (got <= 1)).all()


def test_hidden_state_maps_equal_output_hidden_states(handle: ModelHandle) -> None:
    rng = np.random.default_rng(8)
    seqs = rng.integers(0, 50257, size=(5, 9)).tolist()
    got = hidden_state_maps(handle, seqs, batch_size=2)
    assert got.shape == (handle.n_blocks + 1, 5, 9, handle.d_model)
    for i, seq in enumerate(seqs):
        np.testing.assert_allclose(got[:, i], _reference_hidden(handle, seq).numpy(), rtol=0, atol=ATOL)
    n = handle.n_blocks
    pre = hidden_state_maps(handle, seqs, layers=[n, 1], final="pre_norm")
    np.testing.assert_allclose(pre[1], got[1], rtol=0, atol=ATOL)  # only the last layer depends on `final`
    np.testing.assert_allclose(
        pre[0][:, -1], hidden_states(handle, seqs, -1, layers=[n], final="pre_norm")[0], atol=ATOL
    )
    with pytest.raises(UsageError, match="one length"):
        hidden_state_maps(handle, [[1, 2, 3], [4, 5]])


def test_window_pass_holds_the_attention_and_the_hidden_states_of_one_pass(handle: ModelHandle) -> None:
    rng = np.random.default_rng(9)
    seqs = rng.integers(0, 50257, size=(5, 9)).tolist()
    impl = handle.model.config._attn_implementation
    got = window_pass(handle, seqs, batch_size=2)
    assert handle.model.config._attn_implementation == impl
    np.testing.assert_array_equal(got.first_attention, first_token_attention(handle, seqs, batch_size=2))
    post, pre = got.hidden("post_norm"), got.hidden("pre_norm")
    assert post.shape == pre.shape == (handle.n_blocks + 1, 5, 9, handle.d_model)
    for i, seq in enumerate(seqs):
        np.testing.assert_allclose(post[:, i], _reference_hidden(handle, seq).numpy(), rtol=0, atol=ATOL)
    last = hidden_state_maps(handle, seqs, layers=[handle.n_blocks], final="pre_norm")[0]
    np.testing.assert_allclose(pre[-1], last, rtol=0, atol=ATOL)
    with pytest.raises(UsageError, match="one length"):
        window_pass(handle, [[1, 2, 3], [4, 5]])


def test_shared_passes_give_the_same_windows_once(tiny_gpt2: ModelHandle) -> None:
    seqs = np.random.default_rng(10).integers(0, 50257, size=(3, 7))
    calls: list[int] = []
    hook = base_model(tiny_gpt2.model).register_forward_pre_hook(lambda *_: calls.append(1))
    try:
        first = window_pass(tiny_gpt2, seqs)
        assert window_pass(tiny_gpt2, seqs) is not first and len(calls) == 2  # outside: no memory of passes
        with shared_passes():
            inside = window_pass(tiny_gpt2, seqs)
            assert window_pass(tiny_gpt2, seqs.tolist()) is inside and len(calls) == 3
            assert window_pass(tiny_gpt2, seqs, batch_size=3) is not inside and len(calls) == 4  # another batch size
            assert window_pass(tiny_gpt2, seqs[::-1]) is not inside and len(calls) == 5  # other windows
        np.testing.assert_array_equal(inside.blocks, first.blocks)
        np.testing.assert_array_equal(inside.first_attention, first.first_attention)
        window_pass(tiny_gpt2, seqs)
        assert len(calls) == 6
    finally:
        hook.remove()


def test_first_token_attention_blocks_and_errors(tiny_gpt2: ModelHandle) -> None:
    seqs = _sequences(3)
    full = first_token_attention(tiny_gpt2, seqs)
    np.testing.assert_array_equal(first_token_attention(tiny_gpt2, seqs, blocks=[2, 0]), full[[2, 0]])
    one = first_token_attention(tiny_gpt2, [[5]])  # one token: its only query attends to itself
    np.testing.assert_allclose(one, 1.0, atol=1e-6)
    with pytest.raises(UsageError, match=r"block 4 is out of range"):
        first_token_attention(tiny_gpt2, seqs, blocks=[4])
    with pytest.raises(UsageError, match=r"sequence 1 is empty"):
        first_token_attention(tiny_gpt2, [[1, 2], []])


def test_hidden_states_equal_output_hidden_states(handle: ModelHandle) -> None:
    seqs = _sequences()
    positions = [int(p) for p in np.random.default_rng(2).integers(-2, 2, size=len(seqs))]
    got = hidden_states(handle, seqs, positions, batch_size=4)
    assert got.shape == (handle.n_blocks + 1, len(seqs), handle.d_model) and got.dtype == np.float32
    for i, seq in enumerate(seqs):
        ref = _reference_hidden(handle, seq)[:, positions[i]].numpy()
        np.testing.assert_allclose(got[:, i], ref, rtol=0, atol=ATOL)


def test_qkv_equal_recomputation_from_weights(handle: ModelHandle) -> None:
    seqs = _sequences()
    positions = [int(p) for p in np.random.default_rng(3).integers(-2, 2, size=len(seqs))]
    got = qkv(handle, seqs, positions, batch_size=4)
    dims = handle.qkv_dims()
    for name in "qkv":
        assert got[name].shape == (handle.n_blocks, len(seqs), dims[name])
    for i, seq in enumerate(seqs):
        hidden = _reference_hidden(handle, seq)
        for b in range(handle.n_blocks):
            with torch.no_grad():
                ref = _reference_qkv(handle, b, hidden[b])
            for name in "qkv":
                np.testing.assert_allclose(got[name][b, i], ref[name][positions[i]].numpy(), rtol=0, atol=ATOL)


def test_llama_grouped_kv_widths(tiny_llama: ModelHandle) -> None:
    cfg = tiny_llama.model.config
    head_dim = cfg.hidden_size // cfg.num_attention_heads
    assert tiny_llama.qkv_dims() == {"q": 64, "k": cfg.num_key_value_heads * head_dim, "v": 32}
    got = qkv(tiny_llama, [[1, 2, 3]], -1, blocks=[0], which=("k",))
    assert set(got) == {"k"} and got["k"].shape == (1, 1, 32)


def test_pre_norm_last_layer_is_the_last_block_output(handle: ModelHandle) -> None:
    seqs = _sequences(5)
    seen: list[torch.Tensor] = []
    hook = handle.blocks[-1].register_forward_hook(
        lambda m, a, out: seen.append((out[0] if isinstance(out, tuple) else out)[0, -1].clone())
    )
    try:
        with torch.no_grad():
            for seq in seqs:
                base_model(handle.model)(input_ids=torch.tensor([seq]))
    finally:
        hook.remove()
    n = handle.n_blocks
    pre = hidden_states(handle, seqs, -1, layers=[n - 1, n], final="pre_norm")
    post = hidden_states(handle, seqs, -1, layers=[n - 1, n], final="post_norm")
    np.testing.assert_allclose(pre[1], torch.stack(seen).numpy(), rtol=0, atol=ATOL)
    np.testing.assert_array_equal(pre[0], post[0])  # only the last layer depends on `final`
    if handle.arch.last_hidden_is_normed:
        assert np.abs(pre[1] - post[1]).max() > 0.1
    else:
        np.testing.assert_array_equal(pre[1], post[1])


# ---------------------------------------------------------------------------------------- batching and input


def test_ragged_batch_equals_unbatched(handle: ModelHandle) -> None:
    seqs = _sequences(7, seed=4)
    batched_h = hidden_states(handle, seqs, 1, batch_size=5)
    batched_q = qkv(handle, seqs, 1, batch_size=5)
    for i, seq in enumerate(seqs):
        np.testing.assert_allclose(batched_h[:, i], hidden_states(handle, [seq], 1)[:, 0], rtol=0, atol=ATOL)
        alone = qkv(handle, [seq], 1)
        for name in "qkv":
            np.testing.assert_allclose(batched_q[name][:, i], alone[name][:, 0], rtol=0, atol=ATOL)


@pytest.mark.parametrize("batch_size", [1, 2, 3, 64])
def test_batch_size_does_not_change_vectors(tiny_gpt2: ModelHandle, batch_size: int) -> None:
    seqs = _sequences(6, seed=5)
    ref = hidden_states(tiny_gpt2, seqs, -1, layers=[0, 2, 4], batch_size=6)
    got = hidden_states(tiny_gpt2, seqs, -1, layers=[0, 2, 4], batch_size=batch_size)
    np.testing.assert_allclose(got, ref, rtol=0, atol=ATOL)


def test_layer_and_block_order_and_duplicates_are_kept(tiny_gpt2: ModelHandle) -> None:
    seqs = _sequences(3)
    all_layers = hidden_states(tiny_gpt2, seqs, 0)
    picked = hidden_states(tiny_gpt2, seqs, 0, layers=[3, 1, 3])
    np.testing.assert_array_equal(picked, all_layers[[3, 1, 3]])
    all_blocks = qkv(tiny_gpt2, seqs, 0)
    some = qkv(tiny_gpt2, seqs, 0, blocks=[2, 0], which="v")
    assert set(some) == {"v"}
    np.testing.assert_array_equal(some["v"], all_blocks["v"][[2, 0]])
    one = hidden_states(tiny_gpt2, seqs, 0, layers=2)
    np.testing.assert_array_equal(one, all_layers[[2]])


@pytest.mark.parametrize(
    "convert",
    [
        lambda s: s,
        lambda s: [np.asarray(x, dtype=np.int32) for x in s],
        lambda s: [torch.tensor(x) for x in s],
        lambda s: np.asarray(s),
        lambda s: torch.tensor(s),
    ],
    ids=["lists", "numpy-rows", "tensor-rows", "numpy-2d", "tensor-2d"],
)
def test_input_types(tiny_gpt2: ModelHandle, convert: Any) -> None:
    seqs = [[5, 6, 7, 8], [9, 10, 11, 12]]
    ref = hidden_states(tiny_gpt2, seqs, [1, -1])
    for positions in ([1, -1], np.array([1, 3]), torch.tensor([1, 3])):
        np.testing.assert_array_equal(hidden_states(tiny_gpt2, convert(seqs), positions), ref)


def test_negative_positions_count_from_each_sequence_end() -> None:
    np.testing.assert_array_equal(as_positions(-1, [3, 5, 1]), [2, 4, 0])
    np.testing.assert_array_equal(as_positions([0, -2, -1], [3, 5, 1]), [0, 3, 0])
    np.testing.assert_array_equal(as_positions(np.int64(1), [3, 5]), [1, 1])


def test_hooks_are_removed_even_when_the_forward_fails(tiny_gpt2: ModelHandle) -> None:
    def count() -> int:
        return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in tiny_gpt2.model.modules())

    before = count()
    hidden_states(tiny_gpt2, [[1, 2, 3]], -1)
    qkv(tiny_gpt2, [[1, 2, 3]], -1, blocks=[1])
    assert count() == before

    def boom(*_: Any) -> None:
        raise RuntimeError("boom")

    failing = tiny_gpt2.blocks[0].register_forward_hook(boom)
    try:
        with pytest.raises(RuntimeError, match="boom"):
            qkv(tiny_gpt2, [[1, 2, 3]], -1, blocks=[2])
        with pytest.raises(RuntimeError, match="boom"):
            hidden_states(tiny_gpt2, [[1, 2, 3]], -1)
    finally:
        failing.remove()
    assert count() == before


@pytest.mark.parametrize("model", MODELS)
def test_lanes_give_the_values_of_one_lane_bit_for_bit(
    model: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    handle: ModelHandle = request.getfixturevalue(model)
    ragged = _sequences(9, seed=8)
    windows = np.random.default_rng(9).integers(0, 50257, size=(7, 12))

    def everything() -> list[np.ndarray]:
        q = qkv(handle, ragged, -1, batch_size=2)
        passed = window_pass(handle, windows, batch_size=2)
        return [
            hidden_states(handle, ragged, -1, batch_size=2),
            hidden_state_maps(handle, windows, batch_size=3),
            first_token_attention(handle, ragged, batch_size=2),
            *(q[k] for k in "qkv"),
            passed.blocks,
            passed.first_attention,
        ]

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one torch thread per op either way: only the lanes differ
    try:
        monkeypatch.setattr(extract, "lanes", lambda _h, _n: 1)
        one = everything()
        monkeypatch.setattr(extract, "lanes", lambda _h, n: min(3, n))
        three = everything()
    finally:
        torch.set_num_threads(threads)
    assert len(one) == len(three) == 8
    for a, b in zip(one, three, strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_failing_lane_reaches_the_caller_and_leaves_no_hook(tiny_gpt2: ModelHandle) -> None:
    def count() -> int:
        return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in tiny_gpt2.model.modules())

    calls: list[int] = []

    def boom(*_: Any) -> None:  # copied into the lanes' module trees with the rest of the model
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("boom in a lane")

    before, threads = count(), torch.get_num_threads()
    failing = tiny_gpt2.blocks[0].register_forward_hook(boom)
    try:
        assert extract.lanes(tiny_gpt2, 4) == min(threads, 4)
        with pytest.raises(RuntimeError, match="boom in a lane"):
            hidden_states(tiny_gpt2, _sequences(8, seed=2), -1, batch_size=2)
    finally:
        failing.remove()
    assert count() == before and torch.get_num_threads() == threads


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (run with --gpu on a GPU machine)")
def test_cuda_matches_cpu(tiny_gpt2: ModelHandle) -> None:
    from layerclaims.models import load_model

    gpu = load_model("tiny-gpt2", device="cuda")
    assert gpu.device.startswith("cuda")
    seqs = _sequences(4)
    np.testing.assert_allclose(hidden_states(gpu, seqs, -1), hidden_states(tiny_gpt2, seqs, -1), atol=1e-4)
    got, ref = qkv(gpu, seqs, -1), qkv(tiny_gpt2, seqs, -1)
    for name in "qkv":
        np.testing.assert_allclose(got[name], ref[name], atol=1e-4)


# --------------------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("fn", "kwargs", "match"),
    [
        (
            hidden_states,
            {"positions": 5},
            r"position 5 is outside sequence 0 of length 3: valid positions are 0\.\.2 or -3\.\.-1",
        ),
        (hidden_states, {"positions": -4}, r"position -4 is outside sequence 0"),
        (hidden_states, {"positions": [0]}, r"one int or one per sequence"),
        (hidden_states, {"positions": 0.5}, r"integers"),
        (hidden_states, {"layers": [5]}, r"layer 5 is out of range: hidden-state layers are 0\.\.4"),
        (hidden_states, {"layers": [-1]}, r"layer -1 is out of range"),
        (hidden_states, {"layers": []}, r"no layers selected"),
        (hidden_states, {"sequences": []}, r"no sequences"),
        (hidden_states, {"sequences": [[1, 2], []]}, r"sequence 1 is empty"),
        (hidden_states, {"sequences": [1, 2, 3]}, r"flat list of ints"),
        (hidden_states, {"sequences": [[1, 50257]]}, r"token id 50257 outside the model's vocabulary 0\.\.50256"),
        (hidden_states, {"sequences": [[0.5, 1.0]]}, r"must be integers"),
        (hidden_states, {"sequences": [list(range(1025))]}, r"1025 tokens .* at most 1024"),
        (hidden_states, {"batch_size": 0}, r"batch_size must be a positive integer"),
        (hidden_states, {"final": "after_norm"}, r"final must be"),
        (qkv, {"blocks": [4]}, r"block 4 is out of range: blocks are 0\.\.3"),
        (qkv, {"blocks": [True]}, r"not an integer"),
        (qkv, {"which": ("q", "o")}, r"unknown projection 'o'"),
        (qkv, {"which": ()}, r"which is empty"),
        (qkv, {"positions": [9, 0]}, r"position 9 is outside sequence 0 of length 3"),
    ],
)
def test_bad_input(tiny_gpt2: ModelHandle, fn: Any, kwargs: dict[str, Any], match: str) -> None:
    args: dict[str, Any] = {"sequences": [[1, 2, 3], [4, 5, 6, 7]], "positions": -1, **kwargs}
    with pytest.raises(UsageError, match=match):
        fn(tiny_gpt2, **args)
