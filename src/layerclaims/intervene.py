"""Interventions on the residual stream: chosen dimensions of chosen blocks' outputs overwritten during the forward
pass, with zero or a fixed value (e.g. their mean over many inputs, Sun et al. 2024's "set to mean"), and the
next-token loss measured (:func:`next_token_loss`; several runs at once, their batches in lanes on a CPU:
:func:`next_token_losses`). Hooks are always removed (``try/finally``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from layerclaims.errors import UsageError
from layerclaims.extract import SequencesLike, as_sequences, check_batch_size, counterpart, in_lanes, padded_batches
from layerclaims.models import ModelHandle


@dataclass(frozen=True)
class Patch:
    """Overwrite ``dims`` of block ``block``'s output at ``positions`` with ``values``.

    ``block``: 0-based block index (its output: ``hidden_states[block + 1]``, before any final norm); ``dims``:
    residual-stream dimensions (0..d_model-1); ``positions``: absolute 0-based token positions (None: all positions;
    a position past a sequence's end is skipped for that sequence); ``values``: one value for every dim (0.0:
    zeroing) or one per dim."""

    block: int
    dims: tuple[int, ...]
    positions: tuple[int, ...] | None = None
    values: float | tuple[float, ...] = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "dims", _int_tuple(self.dims, "dims"))
        if self.positions is not None:
            positions = _int_tuple(self.positions, "positions")
            if min(positions) < 0:
                raise UsageError(f"patch positions must be absolute (>= 0), got {positions!r}: count from 0")
            object.__setattr__(self, "positions", positions)
        if not isinstance(self.values, int | float):
            values = tuple(float(v) for v in self.values)
            if len(values) != len(self.dims):
                raise UsageError(
                    f"a patch has {len(values)} values for {len(self.dims)} dims: give one value, or one per dim"
                )
            object.__setattr__(self, "values", values)
        if not all(np.isfinite(np.atleast_1d(np.asarray(self.values, dtype=float)))):
            raise UsageError(f"patch values must be finite numbers, got {self.values!r}")


def _int_tuple(values: Any, name: str) -> tuple[int, ...]:
    items = (values,) if isinstance(values, int) else tuple(values)
    if not items:
        raise UsageError(f"a patch needs at least one entry in {name}")
    if any(isinstance(v, bool) or not isinstance(v, int | np.integer) for v in items):
        raise UsageError(f"patch {name} must be integers, got {items!r}")
    return tuple(int(v) for v in items)


@dataclass(frozen=True)
class Losses:
    """Next-token cross-entropy per sequence.

    ``per_sequence``: float64 ``[n_seqs]``, the mean cross-entropy (nats per token) of each sequence's ``len - 1``
    next-token predictions; ``n_predicted``: int ``[n_seqs]``, those counts."""

    per_sequence: np.ndarray
    n_predicted: np.ndarray


def next_token_loss(
    handle: ModelHandle, sequences: SequencesLike, patches: Sequence[Patch] = (), batch_size: int = 8
) -> Losses:
    """Mean next-token cross-entropy (nats) of every sequence, with ``patches`` applied during the forward pass.

    For a sequence ``x_0..x_{T-1}``: ``loss = -(1/(T-1)) sum_{t=0}^{T-2} log p(x_{t+1} | x_0..x_t)``, from the
    full model with its LM head (log-softmax in float64 from the model's logits). Each patch overwrites its entries
    of its block's output before the next block (or the final norm) reads it; several patches of one block apply in
    the given order. Sequences need at least 2 tokens; ragged batches are right-padded and masked. UsageError for
    an encoder (no causal LM head), a block or dim out of range, or a one-token sequence."""
    return next_token_losses(handle, [(sequences, patches)], batch_size)[0]


def next_token_losses(
    handle: ModelHandle, runs: Sequence[tuple[SequencesLike, Sequence[Patch]]], batch_size: int = 8
) -> list[Losses]:
    """:func:`next_token_loss` of each ``(sequences, patches)`` in ``runs``, their batches run together
    (:func:`layerclaims.extract.in_lanes`: on a CPU, two at a time on two cores), the same values as one run after
    another."""
    get_head = getattr(handle.model, "get_output_embeddings", None)
    if get_head is None or get_head() is None or not handle.arch.causal:
        raise UsageError(
            f"{handle.name} has no causal language-model head: next-token loss needs a causal LM "
            "(e.g. tiny-gpt2, tiny-llama, smollm2-135m, gpt2)"
        )
    check_batch_size(batch_size)
    device = torch.device(handle.device)
    jobs: list[Callable[[torch.nn.Module], None]] = []
    out: list[Losses] = []
    for sequences, patches in runs:
        by_block = _by_block(handle, patches)
        seqs = as_sequences(sequences, getattr(handle.model.config, "vocab_size", None))
        lengths = np.array([len(s) for s in seqs], dtype=np.int64)
        short = np.flatnonzero(lengths < 2)
        if short.size:
            raise UsageError(f"sequence {int(short[0])} has one token: next-token loss needs at least 2 per sequence")
        per_seq = np.empty(len(seqs), dtype=np.float64)
        out.append(Losses(per_sequence=per_seq, n_predicted=lengths - 1))
        for idx, ids, mask in padded_batches(seqs, batch_size):
            jobs.append(_loss_job(handle, device, by_block, idx, ids, mask, lengths, per_seq))
    in_lanes(handle, jobs)
    return out


def _by_block(handle: ModelHandle, patches: Sequence[Patch]) -> dict[int, list[Patch]]:
    """The patches by block, each checked (UsageError naming a bad block or dim)."""
    by_block: dict[int, list[Patch]] = {}
    for p in patches:
        if not isinstance(p, Patch):
            raise UsageError(f"patches must be layerclaims.intervene.Patch objects, got {type(p).__name__}")
        handle.check_blocks([p.block])
        bad = [d for d in p.dims if not 0 <= d < handle.d_model]
        if bad:
            raise UsageError(f"patch dims {bad} are outside 0..{handle.d_model - 1} (d_model of {handle.name})")
        by_block.setdefault(p.block, []).append(p)
    return by_block


def _loss_job(
    handle: ModelHandle,
    device: torch.device,
    by_block: dict[int, list[Patch]],
    idx: np.ndarray,
    ids: torch.Tensor,
    mask: torch.Tensor,
    lengths: np.ndarray,
    per_seq: np.ndarray,
) -> Callable[[torch.nn.Module], None]:
    """One batch of :func:`next_token_losses`: its patches hooked on the model it is given, its losses written to
    ``per_seq[idx]``; hooks always removed."""

    def make_hook(block_patches: list[Patch]) -> Any:
        def hook(module: Any, args: Any, output: Any) -> Any:
            h = (output[0] if isinstance(output, tuple | list) else output).clone()
            for p in block_patches:
                dims = torch.tensor(p.dims, device=h.device)
                values = torch.as_tensor(p.values, dtype=h.dtype, device=h.device)
                if p.positions is None:
                    h[:, :, dims] = values
                else:
                    pos = torch.tensor([q for q in p.positions if q < h.shape[1]], device=h.device)
                    if len(pos):
                        h[:, pos[:, None], dims[None, :]] = values
            return (h, *output[1:]) if isinstance(output, tuple | list) else h

        return hook

    def job(model: torch.nn.Module) -> None:
        hooks = [
            counterpart(handle, model, handle.blocks[b]).register_forward_hook(make_hook(ps))
            for b, ps in sorted(by_block.items())
        ]
        try:
            with torch.inference_mode():
                logits = model(input_ids=ids.to(device), attention_mask=mask.to(device), use_cache=False).logits
                # float64 from the model's logits: the loss adds no rounding of its own beyond the logits'
                logp = torch.log_softmax(logits[:, :-1].double(), dim=-1)
                target = ids[:, 1:].to(logp.device)
                ce = -logp.gather(-1, target[..., None])[..., 0]  # [B, T-1]
                valid = mask[:, 1:].to(ce.device).bool()
                sums = (ce * valid).sum(-1).cpu().numpy()
                per_seq[idx] = sums / (lengths[idx] - 1)
        finally:
            for h in hooks:
                h.remove()

    return job
