"""Attention sinks (Xiao et al. 2023, arXiv 2309.17453; Gu et al. 2024, "When Attention Sink Emerges in Language
Models", arXiv 2410.10781): heads that put a large share of their attention on the first token.

Inputs are ``alpha``, attention to the first token averaged over the queries that see it (Gu et al.'s
``alpha_1``; :func:`layerclaims.extract.first_token_attention`), one value per (sample, layer, head), in ``[0, 1]``.
"""

from __future__ import annotations

import numpy as np

from layerclaims.errors import UsageError

EPSILON = 0.3
"""Gu et al.'s threshold: a (sample, layer, head) cell is a sink when ``alpha_1 > 0.3``."""


def sink_share(alpha: np.ndarray, epsilon: float = EPSILON) -> float:
    """Gu et al.'s ``Sink_1^epsilon``: the share of cells of ``alpha`` (any shape, e.g. [sample, layer, head]) with
    ``alpha > epsilon``, in ``[0, 1]`` (Gu et al. report it x100, as a percentage). Non-increasing in ``epsilon``.
    ``epsilon`` must be in ``[0, 1)``."""
    if not 0 <= epsilon < 1:
        raise UsageError(f"epsilon must be in [0, 1), got {epsilon!r}")
    a = np.asarray(alpha, dtype=np.float64)
    if a.size == 0:
        raise UsageError("no attention values given: the sink share of nothing is undefined")
    if not np.isfinite(a).all() or a.min() < 0 or a.max() > 1 + 1e-6:
        raise UsageError("attention weights must be finite and in [0, 1]: pass softmax attention, not scores")
    return float((a > epsilon).mean())


def uniform_alpha(length: int, causal: bool = True) -> float:
    """``alpha_1`` of a head that attends uniformly: ``(1/T) sum_{t=1}^{T} 1/t = H_T / T`` for a causal head (query
    ``t`` spreads over ``t`` keys), ``1/T`` for a bidirectional one. The no-sink reference, e.g. 0.074 at
    ``T = 64`` (causal): below ``EPSILON`` for ``T >= 6``."""
    if length < 1:
        raise UsageError(f"length must be >= 1, got {length}")
    if not causal:
        return 1.0 / length
    return float(np.sum(1.0 / np.arange(1, length + 1)) / length)
