"""Anisotropy of contextual representations by depth (Ethayarajh 2019, "How Contextual are Contextualized Word
Representations?", EMNLP; code and result files ``kawine/contextual``, ``gpt2/embedding_space_stats.json``).

Method:

1. ``n_windows`` windows of ``length`` tokens from the corpus (:mod:`layerclaims.windows`), no BOS token (as
   Ethayarajh's sentences); in each window ``per_window`` positions drawn at random (seeded; position 0 left out
   with ``skip_first``).
2. Their hidden states at every layer (:func:`layerclaims.extract.window_pass`: eager attention, one pass that a
   run shares with a study reading the same windows' attention; SDPA agrees to ~1e-5. ``final="post_norm"``: the
   last one after the final norm, as Hugging Face's ``hidden_states[-1]`` and Ethayarajh's GPT-2 files, whose word
   norm drops at layer 12).
3. ``mean_cosine`` at a layer: the mean cosine similarity over every pair of drawn representations from two
   different windows (Ethayarajh draws each word from a different random sentence so that two words never share
   a context; all such pairs rather than 1,000 random ones: the same expectation, less noise). Over layers:
   ``last_minus_min_cosine``, the last layer's mean cosine minus the smallest over layers (the rise).
4. Intervals: percentile bootstrap over windows (a resample weights each pair of windows by the product of their
   multiplicities; pairs within one window never count). Control: the same statistic after mean-centring the
   drawn representations of each layer (each layer's mean subtracted): a common direction, the
   anisotropy itself, is absent by construction. The control leaves out the first text token: its massive
   activations (Sun et al. 2024) would dominate the mean of a few dozen tokens and centring
   would then align every other token with minus that token (measured on SmolLM2-135M: 0.84 with it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from layerclaims.errors import UsageError
from layerclaims.study import ClaimRead, Draw, Progress, Robustness, Statistic, Study, run_each

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
    n_windows: int = 16
    length: int = 64
    add_bos: bool = False
    per_window: int = 8
    skip_first: bool = False
    final: Literal["post_norm", "pre_norm"] = "post_norm"
    seed: int = 0
    n_boot: int = 1000
    batch_size: int = 8  # two batches of the 16 windows: one per lane on two cores (extract.in_lanes)

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


# ---------------------------------------------------------------------------------------------------- the plug-in


def _run(handle: Any, config: Config, progress: Progress | None = None) -> Any:
    from layerclaims.studies.anisotropy.analysis import run

    return run(handle, config, progress)


def _result() -> type:
    from layerclaims.studies.anisotropy.analysis import AnisotropyResult

    return AnisotropyResult


def _figures(result: Any, claims: Sequence[ClaimRead]) -> Mapping[str, Draw]:
    from layerclaims.studies.anisotropy.figures import figures

    return figures(result, claims)


def _report_section(result: Any) -> str:
    from layerclaims.studies.anisotropy.report import section

    return section(result)


ROBUSTNESS_VALUES: dict[str, dict[str, dict[str, Any]]] = {
    "an_first_token": {"include": {"skip_first": False}, "skip": {"skip_first": True}},
    "an_final": {"post_norm": {"final": "post_norm"}, "pre_norm": {"final": "pre_norm"}},
    "an_bos": {"no": {"add_bos": False}, "yes": {"add_bos": True}},
    "an_sample": {"0": {"seed": 0}, "1": {"seed": 1}},
}


STUDY = Study(
    name=NAME,
    config=Config,
    statistics=(
        Statistic("mean_cosine", False, "mean cosine between tokens of different windows at a hidden state"),
        Statistic("last_minus_min_cosine", True, "the last layer's mean cosine minus the smallest over layers"),
    ),
    layer_unit="hidden_state",
    run=_run,
    result=_result,
    figures=_figures,
    report_section=_report_section,
    robustness=Robustness(
        choices={
            "an_first_token": ("include", "skip"),
            "an_final": ("post_norm", "pre_norm"),
            "an_bos": ("no", "yes"),
            "an_sample": ("0", "1"),
            "layer": ("0", "-1", "+1"),
        },
        offset="layer",
        run_choices=("an_first_token", "an_final", "an_bos", "an_sample"),
        grid={"n_boot": 200},
        run=run_each(_run, Config, ROBUSTNESS_VALUES),
    ),
    minimums={"n_windows": 2, "length": 2, "per_window": 1, "n_boot": 0, "batch_size": 1, "seed": 0},
    spec_prefix="N",
)
