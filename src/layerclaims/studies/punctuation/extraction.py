"""Study A, step 2: the mark vectors. Which hidden states (entries) are analysed and one batched forward pass that
keeps only the mark's position at those layers."""

from __future__ import annotations

from typing import Any

import numpy as np

from layerclaims.errors import UsageError
from layerclaims.studies.punctuation.marks import MARK_INDEX


def entries(handle: Any, requested: tuple[int, ...] | None) -> tuple[np.ndarray, np.ndarray]:
    """``(layers, post_norm)`` of the analysed entries: hidden-state indices 0..n_blocks (or ``requested``), plus
    the post-norm last entry where the architecture applies the final norm there."""
    n = int(handle.n_blocks)
    layers = list(range(n + 1)) if requested is None else sorted(set(requested))
    bad = [x for x in layers if not 0 <= x <= n]
    if bad:
        raise UsageError(f"layers {bad} are outside 0..{n} (hidden states of {handle.name}); fix Config.layers")
    post = [False] * len(layers)
    if n in layers and getattr(handle.arch, "last_hidden_is_normed", False):  # GPT-2, Llama: True; BERT: False
        layers.append(n)
        post.append(True)
    return np.asarray(layers, dtype=np.int64), np.asarray(post, dtype=bool)


def detail_entries(layers: np.ndarray, post_norm: np.ndarray, wanted: tuple[int, ...], n_blocks: int) -> np.ndarray:
    """Entry indices of the detail layers ``wanted`` (hidden-state indices as Hugging Face numbers them: the
    last one is the post-norm entry where there is one); layers that were not analysed are left out."""
    out = []
    for L in sorted(set(wanted)):
        post = L == n_blocks and bool(post_norm.any())
        hit = np.flatnonzero((layers == L) & (post_norm == post))
        if hit.size:
            out.append(int(hit[0]))
    return np.asarray(out, dtype=np.int64)


def extract_marks(
    handle: Any, ctx: np.ndarray, layers: np.ndarray, post_norm: np.ndarray, batch_size: int
) -> np.ndarray:
    """``[E, n, d]`` float64 vectors of the mark (index 20) at each entry, from ONE batched forward pass that keeps
    only that position (:func:`layerclaims.extract.hidden_states`, ``final="pre_norm"``). The post-norm entry is
    the model's final norm on the last block's output at the mark: exactly the last Hugging Face ``hidden_states``
    entry (the norm acts position by position). A causal model does not run the 10 tokens after the mark (they
    cannot change its state): the same vectors, to float rounding, for two thirds of the compute."""
    import torch

    from layerclaims.activations import hidden_states  # extract.hidden_states through the on-disk cache
    from layerclaims.models import base_model

    if getattr(handle.arch, "causal", False):
        ctx = ctx[:, : MARK_INDEX + 1]
    seqs = [[int(t) for t in row] for row in ctx]
    pre_layers = [int(x) for x in layers[~post_norm]]
    need_post = bool(post_norm.any())
    n = int(handle.n_blocks)
    ask = sorted(set(pre_layers) | ({n} if need_post else set()))
    hs = np.asarray(hidden_states(handle, seqs, MARK_INDEX, ask, batch_size, final="pre_norm"))
    pos = {L: i for i, L in enumerate(ask)}
    parts = [hs[[pos[L] for L in pre_layers]].astype(np.float64)]
    if need_post:
        norm = base_model(handle.model).get_submodule(handle.arch.final_norm)
        param = next(handle.model.parameters())
        with torch.no_grad():
            last = torch.as_tensor(hs[pos[n]], dtype=param.dtype, device=param.device)
            parts.append(norm(last).double().cpu().numpy()[None])
    return np.concatenate(parts, axis=0)
