"""Anisotropy of contextual representations by depth (Ethayarajh 2019, "How Contextual are Contextualized Word
Representations?", EMNLP; code and result files ``kawine/contextual``, ``gpt2/embedding_space_stats.json``).

Method:

1. ``n_windows`` windows of ``length`` tokens from the corpus (:mod:`layerclaims.windows`), no BOS token (as
   Ethayarajh's sentences); in each window ``per_window`` positions drawn at random (seeded; position 0 left out
   with ``skip_first``).
2. Their hidden states at every layer (:func:`layerclaims.extract.hidden_state_maps`; ``final="post_norm"``: the
   last one after the final norm, as Hugging Face's ``hidden_states[-1]`` and Ethayarajh's GPT-2 files, whose
   word norm drops at layer 12).
3. ``mean_cosine`` at a layer: the mean cosine similarity over every pair of drawn representations from two
   different windows (Ethayarajh draws each word from a different random sentence so that two words never share
   a context; all such pairs rather than 1,000 random ones: the same expectation, less noise). Over layers:
   ``last_minus_min_cosine``, the last layer's mean cosine minus the smallest over layers (the rise).
4. Intervals: percentile bootstrap over windows (a resample weights each pair of windows by the product of their
   multiplicities; pairs within one window never count). Control: the same statistic after mean-centring the
   drawn representations of each layer (:func:`layerclaims.metrics.anisotropy.centre`): a common direction, the
   anisotropy itself, is absent by construction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from layerclaims.errors import UsageError

NAME = "anisotropy"


@dataclass(frozen=True)
class Config:
    """What to run; the defaults follow Ethayarajh's method on windows of the default corpus.

    ``corpus``: a registry name or a text file; ``n_windows`` windows of ``length`` tokens; ``add_bos``: prepend the
    tokenizer's BOS token; ``per_window``: positions drawn per window; ``skip_first``: never draw position 0 (the
    first token, where massive activations sit); ``final``: the last layer after the final norm (``post_norm``)
    or the raw last block output (``pre_norm``); ``seed``: seeds windows, positions and the bootstrap;
    ``n_boot``: bootstrap resamples (0: no intervals); ``batch_size``: windows per forward pass."""

    corpus: str = "heart-of-darkness"
    n_windows: int = 24
    length: int = 64
    add_bos: bool = False
    per_window: int = 8
    skip_first: bool = False
    final: Literal["post_norm", "pre_norm"] = "post_norm"
    seed: int = 0
    n_boot: int = 1000
    batch_size: int = 16

    def __post_init__(self) -> None:
        for name, low in (("n_windows", 2), ("length", 2), ("per_window", 1), ("batch_size", 1), ("n_boot", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise UsageError(f"{name} must be an integer >= {low}, got {value!r}")
        if self.final not in ("post_norm", "pre_norm"):
            raise UsageError(f"final must be 'post_norm' or 'pre_norm', got {self.final!r}")
        first = (1 + (1 if self.add_bos else 0)) if self.skip_first else 0  # the first text token is skipped too
        available = self.length - first
        if self.per_window > available:
            raise UsageError(
                f"per_window={self.per_window} exceeds the {available} positions a window offers: draw fewer"
            )
