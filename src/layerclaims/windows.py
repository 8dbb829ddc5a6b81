"""Fixed-length token windows cut from a corpus: the inputs of the layer studies (massive activations, anisotropy,
attention sinks). The corpus body (:func:`layerclaims.data.load_corpus`) is tokenised once without special tokens and
cut into consecutive slots of ``length`` tokens (``length - 1`` when a BOS token is prepended); ``n_windows`` slots are
drawn without replacement, seeded, kept in text order. Windows never overlap, so resampling windows resamples
independent stretches of text.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np

from layerclaims.data import load_corpus
from layerclaims.errors import UsageError
from layerclaims.tokens import encode_plain


@dataclass(frozen=True, eq=False)
class Windows:
    """``ids``: int64 ``[n_windows, length]`` token ids; ``starts``: each window's first text-token index in the
    tokenised corpus; ``bos``: the BOS id prepended at position 0 (None: none); ``corpus``/``corpus_sha256``: the
    text; ``n_corpus_tokens``: its length in tokens."""

    ids: np.ndarray
    starts: np.ndarray
    bos: int | None
    corpus: str
    corpus_sha256: str
    n_corpus_tokens: int

    @property
    def provenance(self) -> dict[str, Any]:
        return {
            "corpus": self.corpus,
            "corpus_sha256": self.corpus_sha256,
            "n_corpus_tokens": self.n_corpus_tokens,
            "n_windows": int(self.ids.shape[0]),
            "length": int(self.ids.shape[1]),
            "bos": self.bos,
            "starts": [int(s) for s in self.starts],
        }


def bos_id(tokenizer: Any) -> int:
    """The id a window starts with when a BOS token is asked for: the tokenizer's BOS token (GPT-2:
    ``<|endoftext|>`` 50256), else its CLS token (an encoder such as BERT always sees ``[CLS]`` first); UsageError
    when it has neither."""
    for attr in ("bos_token_id", "cls_token_id"):
        value = getattr(tokenizer, attr, None)
        if value is not None:
            return int(value)
    raise UsageError(
        f"the tokenizer {type(tokenizer).__name__} has no BOS or CLS token: run with add_bos=False",
        fix="set add_bos = false for this model (--set STUDY.add_bos=false)",
    )


@functools.lru_cache(maxsize=1)  # one tokenisation per run
def _encode(tokenizer: Any, text: str) -> list[int]:
    return encode_plain(tokenizer, text)


def corpus_windows(tokenizer: Any, corpus: str, n_windows: int, length: int, seed: int, add_bos: bool) -> Windows:
    """``n_windows`` windows of ``length`` tokens from ``corpus`` (a registry name or a text file), drawn with
    ``seed``; ``add_bos`` prepends the tokenizer's BOS id to each. UsageError when the corpus is too short for
    ``n_windows`` non-overlapping windows, or for a bad count or length."""
    for name, value, low in (("n_windows", n_windows, 2), ("length", length, 2)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise UsageError(f"{name} must be an integer >= {low}, got {value!r}")
    bos = bos_id(tokenizer) if add_bos else None
    text = load_corpus(corpus)
    ids = _encode(tokenizer, text.text)
    span = length - 1 if add_bos else length  # >= 1: length >= 2
    n_slots = len(ids) // span
    if n_slots < n_windows:
        raise UsageError(
            f"the corpus {corpus!r} has {len(ids)} tokens: {n_slots} windows of {span} text tokens, fewer than "
            f"n_windows={n_windows}",
            fix=f"use n_windows <= {n_slots}, shorter windows, or a longer corpus",
        )
    rng = np.random.default_rng([seed, 4099])
    slots = np.sort(rng.choice(n_slots, size=n_windows, replace=False))
    starts = slots * span
    arr = np.array([ids[s : s + span] for s in starts], dtype=np.int64)
    if bos is not None:
        arr = np.concatenate([np.full((n_windows, 1), bos, dtype=np.int64), arr], axis=1)
    return Windows(arr, starts.astype(np.int64), bos, text.name, text.sha256, len(ids))
