"""The claims, as data (evaluation into verdicts lives in :mod:`layerclaims.verdicts`).

A claim is a statistic, a comparison and a threshold on a named model, layer, corpus and selection
(``../shared/docs/claims.md``). Each :class:`Claim` points to a study (``"qk"`` or ``"punctuation"``) and to
statistics that the study's result computes through ``result.measure(statistic, layer=..., kind=...)``; this module
never touches a model or a metric. ``presupposes`` names the claims whose structure this one takes for granted
(A2's "merged into 1 by layer 20" presupposes A1's clusters at layer 1).

Layers on other models (relative depth), defined once here:
- ``layer_kind="hidden_state"``: index ``L`` into ``hidden_states`` (0 = embeddings, ``L`` = output of block ``L``).
  ``L = 0`` stays 0; otherwise ``L' = clamp(round_half_up(L * n_target / n_ref), 1, n_target)``.
- ``layer_kind="block"``: a 0-based block ``b`` is mapped through its output, hidden state ``b + 1``:
  ``b' = map_hidden_state(b + 1) - 1``.
The verdict records the layer actually used. On the claim's own model the mapping is the identity.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from layerclaims.errors import UsageError

Comparison = Literal[">", "<", "==", ">=", "<="]
_OPS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    "<": operator.lt,
    ">=": operator.ge,
    "<=": operator.le,
    "==": lambda a, b: math.isclose(a, b, rel_tol=0.0, abs_tol=1e-12),
}

SEED_A = "seeds/punctuation_clusters_part1.vi.md"
SEED_B = "seeds/qk_grouping_rsa.vi.md"


@dataclass(frozen=True)
class Condition:
    """``statistic comparison threshold``, e.g. ``rsa_qk > 0.8``."""

    statistic: str
    comparison: Comparison
    threshold: float

    def holds(self, value: float) -> bool:
        return bool(_OPS[self.comparison](value, self.threshold))

    def __str__(self) -> str:
        t = int(self.threshold) if float(self.threshold).is_integer() else self.threshold
        return f"{self.statistic} {self.comparison} {t}"


@dataclass(frozen=True)
class Claim:
    """One published claim. ``layer`` is on the claim's own ``model`` (which has ``model_blocks`` blocks);
    ``None`` means the statistic reads all layers. ``kind`` selects the punctuation kind (internal/terminal)."""

    id: str
    text: str
    source: str
    model: str
    model_blocks: int
    study: Literal["qk", "punctuation"]
    layer: int | None
    layer_kind: Literal["hidden_state", "block"]
    conditions: tuple[Condition, ...]
    kind: str | None = None
    presupposes: tuple[str, ...] = ()

    @property
    def statistic(self) -> str:
        return self.conditions[0].statistic

    @property
    def threshold(self) -> float:
        return self.conditions[0].threshold

    @property
    def comparison(self) -> str:
        return self.conditions[0].comparison


CLAIMS: tuple[Claim, ...] = (
    Claim(
        "A1",
        "Layer 1, internal punctuation: the pairwise covariance values form 3 clusters.",
        f"{SEED_A}; notebook part5_layer_CCpunctuationMI, part 1",
        "gpt2-medium",
        24,
        "punctuation",
        1,
        "hidden_state",
        (Condition("cov_clusters", "==", 3),),
        kind="internal",
    ),
    Claim(
        "A2",
        "Layer 20, internal punctuation: the covariance clusters have merged into 1.",
        f"{SEED_A}; notebook part5_layer_CCpunctuationMI, part 1",
        "gpt2-medium",
        24,
        "punctuation",
        20,
        "hidden_state",
        (Condition("cov_clusters", "==", 1),),
        kind="internal",
        presupposes=("A1",),
    ),
    Claim(
        "A3",
        "Layer 1, internal punctuation: MI forms a single blob (1 cluster).",
        f"{SEED_A}; notebook part5_layer_CCpunctuationMI, part 1",
        "gpt2-medium",
        24,
        "punctuation",
        1,
        "hidden_state",
        (Condition("mi_clusters", "==", 1),),
        kind="internal",
    ),
    Claim(
        "A4",
        "Layer 1, terminal punctuation: covariance is one homogeneous cluster.",
        f"{SEED_A} (the part 2 lecture says clusters appear early for both kinds)",
        "gpt2-medium",
        24,
        "punctuation",
        1,
        "hidden_state",
        (Condition("cov_clusters", "==", 1),),
        kind="terminal",
    ),
    Claim(
        "A5",
        "Layer 1, internal: Pearson r between covariance and MI over all pairs is negative (about -0.13).",
        f"{SEED_A}; notebook part5_layer_CCpunctuationMI, part 1",
        "gpt2-medium",
        24,
        "punctuation",
        1,
        "hidden_state",
        (Condition("pooled_r", "<", 0),),
        kind="internal",
    ),
    Claim(
        "A6",
        "Layer 1, internal: within each covariance cluster the covariance-to-MI slope is positive, opposite to the "
        "pooled sign (Simpson's paradox).",
        f"{SEED_A}; notebook part5_layer_CCpunctuationMI, part 1",
        "gpt2-medium",
        24,
        "punctuation",
        1,
        "hidden_state",
        (Condition("min_within_cluster_slope", ">", 0), Condition("pooled_r", "<", 0)),
        kind="internal",
        presupposes=("A1",),
    ),
    Claim(
        "A7",
        "Mean MI falls with depth while mean covariance grows (block outputs before the final norm).",
        "notebook part5_layer_CCpunctuationMI, part 2 (lecture)",
        "gpt2-medium",
        24,
        "punctuation",
        None,
        "hidden_state",
        (Condition("spearman_mean_mi_vs_depth", "<", 0), Condition("spearman_mean_cov_vs_depth", ">", 0)),
        kind="internal",
    ),
    Claim(
        "B1",
        "Block 5: K vectors are more similar to each other than Q vectors (mean off-diagonal cosine K > Q).",
        f"{SEED_B}; notebook part5_layer_semanticGroupsRSA",
        "gpt2-medium",
        24,
        "qk",
        5,
        "block",
        (Condition("k_minus_q_mean_cosine", ">", 0),),
    ),
    Claim(
        "B2",
        "Block 5: RSA (Pearson) between the Q and K similarity matrices is above 0.8.",
        f"{SEED_B}; notebook part5_layer_semanticGroupsRSA",
        "gpt2-medium",
        24,
        "qk",
        5,
        "block",
        (Condition("rsa_qk", ">", 0.8),),
    ),
    Claim(
        "B3",
        "Block 5: category selectivity index > 1 for both Q and K.",
        f"{SEED_B}; notebook part5_layer_semanticGroupsRSA (lecture: a hair above one)",
        "gpt2-medium",
        24,
        "qk",
        5,
        "block",
        (Condition("min_selectivity_qk", ">", 1),),
    ),
    Claim(
        "B4",
        "Laminar profile: RSA Q-K stays above about 0.84 at every block, and V is more selective than Q and K.",
        "notebook part5_layer_CClayerGroupingRSA (lecture, gpt2-large)",
        "gpt2-large",
        36,
        "qk",
        None,
        "block",
        (
            Condition("min_rsa_qk_over_blocks", ">", 0.84),
            Condition("fraction_blocks_v_most_selective", ">", 0.5),
        ),
    ),
)

CLAIMS_BY_ID: dict[str, Claim] = {c.id: c for c in CLAIMS}


def claims_for(study: str | None = None) -> tuple[Claim, ...]:
    """The claims of one study (``"qk"``, ``"punctuation"``), or all of them."""
    if study is None:
        return CLAIMS
    found = tuple(c for c in CLAIMS if c.study == study)
    if not found:
        raise UsageError(f"unknown study {study!r}: choose one of {sorted({c.study for c in CLAIMS})}")
    return found


def _round_half_up(x: float) -> int:
    return math.floor(x + 0.5)


def map_hidden_state(layer: int, n_ref: int, n_target: int) -> int:
    """Map hidden-state index ``layer`` of an ``n_ref``-block model to an ``n_target``-block model by relative depth."""
    if not 0 <= layer <= n_ref:
        raise UsageError(f"hidden-state index {layer} is outside 0..{n_ref} of the claim's model")
    if layer == 0 or n_ref == n_target:
        return layer
    return min(max(_round_half_up(layer * n_target / n_ref), 1), n_target)


def map_layer(claim: Claim, n_target: int) -> int | None:
    """The layer (hidden-state index or 0-based block, per ``claim.layer_kind``) to read on an ``n_target`` model."""
    if claim.layer is None:
        return None
    if claim.layer_kind == "hidden_state":
        return map_hidden_state(claim.layer, claim.model_blocks, n_target)
    return map_hidden_state(claim.layer + 1, claim.model_blocks, n_target) - 1
