"""Attention sinks (Xiao et al. 2023, "Efficient Streaming Language Models with Attention Sinks", arXiv 2309.17453;
Gu et al. 2024, "When Attention Sink Emerges in Language Models: An Empirical View", arXiv 2410.10781, code
``sail-sg/Attention-Sink``, ``eval_sink_open_source.py``).

Method (Gu et al.'s metric):

1. ``n_windows`` windows of ``length`` = 64 tokens from the corpus (:mod:`layerclaims.windows`); ``add_bos``
   prepends the tokenizer's BOS token (Gu et al. use each tokenizer's default: LLaMA's adds one, GPT-2's not).
2. ``alpha_1``: each head's attention to the first token, averaged over the queries that see it (all of them),
   from eager attention (:func:`layerclaims.extract.first_token_attention`), one value per (window, block, head).
3. ``sink_share``: the share of (window, block, head) cells with ``alpha_1 > epsilon`` (0.3), Gu et al.'s
   ``Sink_1^epsilon`` (reported there x100); ``mean_first_token_attention``: the mean ``alpha_1``; at a block,
   ``sink_share_at_block``. A uniform causal head has ``alpha_1 = H_64/64 = 0.074``, far below 0.3.
4. Intervals: percentile bootstrap over windows. Control: the same architecture with re-initialised weights
   (:func:`layerclaims.models.reinitialised`, seed ``seed``, ``control_windows`` windows), where nothing learned
   can make a sink. With and without BOS is a robustness choice (``add_bos``).
"""

from __future__ import annotations

from dataclasses import dataclass

from layerclaims.errors import UsageError

NAME = "sink"


@dataclass(frozen=True)
class Config:
    """What to run; the defaults are Gu et al.'s metric (epsilon 0.3, 64-token inputs) on the default corpus.

    ``corpus``: a registry name or a text file; ``n_windows`` windows of ``length`` tokens (BOS included with
    ``add_bos``); ``epsilon``: the sink threshold on ``alpha_1``; ``seed``: seeds windows, bootstrap and control;
    ``n_boot``: bootstrap resamples (0: no intervals); ``control_windows``: windows through the re-initialised
    model (0: no control); ``batch_size``: windows per forward pass."""

    corpus: str = "heart-of-darkness"
    n_windows: int = 16
    length: int = 64
    add_bos: bool = False
    epsilon: float = 0.3
    seed: int = 0
    n_boot: int = 1000
    control_windows: int = 4
    batch_size: int = 16

    def __post_init__(self) -> None:
        for name, low in (("n_windows", 2), ("length", 2), ("batch_size", 1), ("n_boot", 0), ("control_windows", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise UsageError(f"{name} must be an integer >= {low}, got {value!r}")
        if self.control_windows > self.n_windows:
            raise UsageError(f"control_windows ({self.control_windows}) cannot exceed n_windows ({self.n_windows})")
        if isinstance(self.epsilon, bool) or not isinstance(self.epsilon, int | float) or not 0 <= self.epsilon < 1:
            raise UsageError(f"epsilon must be in [0, 1), got {self.epsilon!r}")
