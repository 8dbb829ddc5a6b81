"""layerclaims.intervene on tiny-gpt2, against a hand-patched forward pass.

The oracle runs the model by hand: token plus position embeddings, each block called on the residual stream, the
chosen entries of the chosen block's output overwritten in the tensor, the final norm and the LM head, then the
next-token cross-entropy written out (log-softmax in float64, the target's log-probability, mean over the T-1
predictions). With one sequence per forward pass the hooked model runs the same kernels on the same shapes, so the
losses are bit-identical (asserted with ==), not merely close. Several runs at once (``next_token_losses``, their
batches in lanes) give each run's losses alone, bit for bit, whichever lane runs a batch.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from layerclaims import extract
from layerclaims.errors import UsageError
from layerclaims.intervene import Patch, next_token_loss, next_token_losses
from layerclaims.models import ModelHandle


def _seqs(n: int = 3, length: int = 12, seed: int = 0) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 50257, size=length).tolist() for _ in range(n)]


def _hand_loss(handle: ModelHandle, seq: list[int], patches: list[Patch]) -> float:
    base = handle.model.transformer
    ids = torch.tensor([seq])
    with torch.no_grad():
        x = base.wte(ids) + base.wpe(torch.arange(len(seq))[None])
        for i, block in enumerate(base.h):
            out = block(x)
            x = (out[0] if isinstance(out, tuple) else out).clone()
            for p in patches:
                if p.block != i:
                    continue
                positions = range(len(seq)) if p.positions is None else [q for q in p.positions if q < len(seq)]
                values = [p.values] * len(p.dims) if isinstance(p.values, float) else list(p.values)
                for q in positions:
                    for d, v in zip(p.dims, values, strict=True):
                        x[0, q, d] = v
        logits = handle.model.lm_head(base.ln_f(x))[0]
        logp = torch.log_softmax(logits.double(), dim=-1)
        picked = logp[torch.arange(len(seq) - 1), torch.tensor(seq[1:])]
        return float(-picked.sum() / (len(seq) - 1))


PATCHES = [
    [],
    [Patch(1, (3, 7), (0,), 0.0)],
    [Patch(3, (5,), (0, 4), (2.5,))],
    [Patch(0, (1, 2, 60), None, (0.5, -1.0, 3.0)), Patch(2, (10,), (11, 40), 0.0)],
]


@pytest.mark.parametrize("patches", PATCHES, ids=["none", "zero-first", "value-two-positions", "two-blocks-all"])
def test_loss_is_exactly_the_hand_patched_forward(tiny_gpt2: ModelHandle, patches: list[Patch]) -> None:
    seqs = _seqs()
    got = next_token_loss(tiny_gpt2, seqs, patches, batch_size=1)
    for i, seq in enumerate(seqs):
        assert got.per_sequence[i] == _hand_loss(tiny_gpt2, seq, patches)
    np.testing.assert_array_equal(got.n_predicted, [11, 11, 11])


def test_patches_change_the_loss_and_batches_do_not(tiny_gpt2: ModelHandle) -> None:
    seqs = [*_seqs(4, seed=1), _seqs(1, length=7, seed=2)[0]]  # ragged: padded and masked
    clean = next_token_loss(tiny_gpt2, seqs, batch_size=1)
    batched = next_token_loss(tiny_gpt2, seqs, batch_size=3)
    np.testing.assert_allclose(batched.per_sequence, clean.per_sequence, rtol=0, atol=1e-5)
    # a patch far past every sequence's end touches nothing
    beyond = next_token_loss(tiny_gpt2, seqs, [Patch(1, (0,), (500,), 9.0)], batch_size=1)
    np.testing.assert_array_equal(beyond.per_sequence, clean.per_sequence)
    big = next_token_loss(tiny_gpt2, seqs, [Patch(0, tuple(range(64)), None, 50.0)], batch_size=1)
    assert np.abs(big.per_sequence - clean.per_sequence).min() > 1e-3


def test_several_runs_in_lanes_equal_each_run_alone(tiny_gpt2: ModelHandle, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every run's patches act on its own batches only, whichever lane (module tree) runs them: the runs together,
    in one lane or three, give each run's losses alone bit for bit."""
    seqs = _seqs(5, seed=3)
    runs = [(seqs, patches) for patches in PATCHES] + [(seqs[1:3], PATCHES[1])]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one torch thread per op either way: only the lanes differ
    try:
        monkeypatch.setattr(extract, "lanes", lambda _h, _n: 1)
        alone = [next_token_loss(tiny_gpt2, s, p, batch_size=2).per_sequence for s, p in runs]
        one = [x.per_sequence for x in next_token_losses(tiny_gpt2, runs, batch_size=2)]
        monkeypatch.setattr(extract, "lanes", lambda _h, n: min(3, n))
        three = [x.per_sequence for x in next_token_losses(tiny_gpt2, runs, batch_size=2)]
    finally:
        torch.set_num_threads(threads)
    assert len(alone) == len(one) == len(three) == 5
    for a, b, c in zip(alone, one, three, strict=True):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)
    assert not np.array_equal(alone[0], alone[1])  # the patches do act


def test_hooks_are_removed(tiny_gpt2: ModelHandle) -> None:
    def count() -> int:
        return sum(len(m._forward_hooks) for m in tiny_gpt2.model.modules())

    before = count()
    next_token_loss(tiny_gpt2, _seqs(1), [Patch(1, (0,), (0,))])
    assert count() == before


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"patches": [Patch(4, (0,))]}, r"block 4 is out of range: blocks are 0\.\.3"),
        ({"patches": [Patch(0, (64,))]}, r"patch dims \[64\] are outside 0\.\.63"),
        ({"patches": ["zero"]}, r"Patch objects"),
        ({"sequences": [[1, 2], [3]]}, r"sequence 1 has one token"),
        ({"batch_size": 0}, r"batch_size must be a positive integer"),
    ],
)
def test_bad_input(tiny_gpt2: ModelHandle, kwargs: dict[str, Any], match: str) -> None:
    args: dict[str, Any] = {"sequences": [[1, 2, 3]], "patches": (), **kwargs}
    with pytest.raises(UsageError, match=match):
        next_token_loss(tiny_gpt2, **args)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"dims": ()}, r"at least one entry in dims"),
        ({"dims": (1, 2), "values": (1.0,)}, r"1 values for 2 dims"),
        ({"dims": (1,), "positions": (-1,)}, r"absolute"),
        ({"dims": (1.5,)}, r"must be integers"),
        ({"dims": (1,), "values": float("nan")}, r"finite"),
    ],
)
def test_bad_patch(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(UsageError, match=match):
        Patch(block=0, **kwargs)


def test_encoder_has_no_next_token_loss(tiny_bert: ModelHandle) -> None:
    with pytest.raises(UsageError, match=r"no causal language-model head"):
        next_token_loss(tiny_bert, [[1, 2, 3]])
