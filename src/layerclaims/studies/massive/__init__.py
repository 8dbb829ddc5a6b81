"""Massive activations (Sun, Chen, Kolter & Liu 2024, "Massive Activations in Large Language Models", arXiv
2402.17762; code ``locuslab/massive-activations``; GPT-2 replication ``bluorion-com/refine_massive_activations``).

Method:

1. ``n_windows`` windows of ``length`` tokens from the corpus (:mod:`layerclaims.windows`; pg219 by default), the
   tokenizer's BOS token prepended (``add_bos``, as Sun et al.'s LLaMA tokenizer and the GPT-2 replication do).
2. Every hidden state at every position (:func:`layerclaims.extract.hidden_state_maps`, ``final="pre_norm"``: the
   raw output of every block, as Sun et al.'s hooks on the decoder layers read it; hidden state 0 is the
   embeddings).
3. The rule (:func:`layerclaims.metrics.massive_activations.massive_mask`): an entry is massive when
   ``|a| > abs_threshold`` (100) and ``|a| >= ratio`` (1,000) times the median ``|a|`` of that window's hidden
   state at that layer.
4. Statistics: at each hidden state, the share of windows with a massive activation and the median over windows
   of ``log10(max |a| / median |a|)``; over layers, the largest of those shares, the number of dimensions that
   carry them (a dimension counts when it is massive in at least ``presence`` of the windows at some layer), the
   dimension with the most massive entries, the share of massive entries at position 0 and at position 0 or the
   window's first delimiter (a token that is "." or holds a newline), the onset (the first hidden state where at
   least ``presence`` of the windows have one, as a fraction of the depth ``n_blocks``; ``(n_blocks + 1) /
   n_blocks`` when no layer has them) and the persistence (the share of hidden states from the onset to the last
   block output that still have them; 0 when none has).
5. The intervention (Sun et al. section 3.2): at the first block output that has them (the onset unless that is
   the embeddings), the massive dimensions at their positions in each of the first ``intervene_windows`` windows
   are set to zero, or to their mean over all windows, in the output of the block that writes that hidden state,
   and the next-token loss of those windows is measured (:mod:`layerclaims.intervene`); the statistics are the
   increases in mean cross-entropy over the unpatched model (nats per token). With a BOS token and massive
   activations at position 0 only, the mean intervention is the identity by construction (a causal model's first
   hidden state does not depend on the text); the report says so.
6. Intervals: percentile bootstrap over windows (``n_boot`` resamples; one set of resamples for every statistic,
   the intervention's per-window losses paired with the unpatched ones). Controls: the same statistics on the
   same architecture with re-initialised weights (``control_windows`` windows; :func:`layerclaims.models.
   reinitialised`, seed ``seed``), positions shuffled within each window for the position statistics, and the
   same number of randomly chosen other dimensions zeroed for the intervention.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from layerclaims.errors import UsageError
from layerclaims.study import ClaimRead, Draw, Progress, Robustness, Statistic, Study, run_each

NAME = "massive"


@dataclass(frozen=True)
class Config:
    """What to run; the defaults are Sun et al.'s rule on windows of the default corpus.

    ``corpus``: a registry name or a text file; ``n_windows`` windows of ``length`` tokens (BOS included when
    ``add_bos``); ``seed``: seeds the windows, the bootstrap, the re-initialised control and the random dimensions;
    ``abs_threshold``/``ratio``: the rule; ``presence``: the share of windows with a massive activation for a
    layer (or a dimension) to count as having one; ``intervene``: run the zero/mean intervention (causal LMs) on
    the first ``intervene_windows`` windows (all of them when there are fewer; four forward passes with the LM
    head each: the study's main cost);
    ``n_boot``: bootstrap resamples (0: no intervals); ``control_windows``: windows run through the re-initialised
    model (0: no re-initialised control); ``batch_size``: windows per forward pass."""

    corpus: str = "heart-of-darkness"
    n_windows: int = 12
    length: int = 64
    add_bos: bool = True
    seed: int = 0
    abs_threshold: float = 100.0
    ratio: float = 1000.0
    presence: float = 0.5
    intervene: bool = True
    intervene_windows: int = 4
    n_boot: int = 1000
    control_windows: int = 4
    batch_size: int = 6  # two batches of the 12 windows: one per lane on two cores (extract.in_lanes)

    def __post_init__(self) -> None:
        for name, low in (("n_windows", 2), ("length", 2), ("batch_size", 1), ("n_boot", 0), ("control_windows", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise UsageError(f"{name} must be an integer >= {low}, got {value!r}")
        if isinstance(self.intervene_windows, bool) or not isinstance(self.intervene_windows, int):
            raise UsageError(f"intervene_windows must be an integer >= 2, got {self.intervene_windows!r}")
        if self.intervene_windows < 2:
            raise UsageError(
                f"intervene_windows must be >= 2 (an interval needs 2 windows), got {self.intervene_windows}"
            )
        if self.control_windows > self.n_windows:
            raise UsageError(f"control_windows ({self.control_windows}) cannot exceed n_windows ({self.n_windows})")
        for name in ("abs_threshold", "ratio"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
                raise UsageError(f"{name} must be a number >= 0, got {value!r}")
        if isinstance(self.presence, bool) or not isinstance(self.presence, int | float) or not 0 < self.presence <= 1:
            raise UsageError(f"presence must be in (0, 1], got {self.presence!r}")


# ---------------------------------------------------------------------------------------------------- the plug-in


def _run(handle: Any, config: Config, progress: Progress | None = None) -> Any:
    from layerclaims.studies.massive.analysis import run

    return run(handle, config, progress)


def _result() -> type:
    from layerclaims.studies.massive.analysis import MassiveResult

    return MassiveResult


def _figures(result: Any, claims: Sequence[ClaimRead]) -> Mapping[str, Draw]:
    from layerclaims.studies.massive.figures import figures

    return figures(result, claims)


def _report_section(result: Any) -> str:
    from layerclaims.studies.massive.report import section

    return section(result)


ROBUSTNESS_VALUES: dict[str, dict[str, dict[str, Any]]] = {
    "ma_bos": {"yes": {"add_bos": True}, "no": {"add_bos": False}},
    "ma_sample": {"0": {"seed": 0}, "1": {"seed": 1}},
    "ma_length": {"64": {"length": 64}, "128": {"length": 128}},
    "ma_ratio": {"1000": {"ratio": 1000.0}, "100": {"ratio": 100.0}},
}


STUDY = Study(
    name=NAME,
    config=Config,
    statistics=(
        Statistic("massive_share", False, "share of windows with a massive activation at a hidden state"),
        Statistic("log10_top_ratio", False, "median over windows of log10(max |a| / median |a|) at a hidden state"),
        Statistic("max_massive_share", True, "the largest share of windows with a massive activation at any layer"),
        Statistic("n_massive_dims", True, "number of dimensions massive in >= presence of the windows at some layer"),
        Statistic("top_massive_dim", True, "the dimension with the most massive entries"),
        Statistic("share_at_first_position", True, "share of massive entries at position 0"),
        Statistic("share_at_first_or_delimiter", True, "share of massive entries at position 0 or the first delimiter"),
        Statistic("onset_depth", True, "first hidden state with massive activations / n_blocks"),
        Statistic("persistence", True, "share of hidden states from the onset on that keep them"),
        Statistic("zero_loss_increase", True, "next-token loss increase (nats) with the massive dims zeroed"),
        Statistic(
            "mean_loss_increase", True, "next-token loss increase (nats) with the massive dims set to their mean"
        ),
    ),
    layer_unit="hidden_state",
    run=_run,
    result=_result,
    figures=_figures,
    report_section=_report_section,
    robustness=Robustness(
        choices={
            "ma_bos": ("yes", "no"),
            "ma_sample": ("0", "1"),
            "ma_length": ("64", "128"),
            "ma_ratio": ("1000", "100"),
            "layer": ("0", "-1", "+1"),
        },
        offset="layer",
        run_choices=("ma_bos", "ma_sample", "ma_length", "ma_ratio"),
        grid={"n_boot": 200, "control_windows": 0},
        run=run_each(_run, Config, ROBUSTNESS_VALUES),
        notes=("massive: the grid runs without the re-initialised control (control_windows = 0)",),
    ),
    minimums={
        "n_windows": 2,
        "length": 2,
        "n_boot": 0,
        "control_windows": 0,
        "intervene_windows": 2,
        "batch_size": 1,
        "seed": 0,
    },
    spec_prefix="M",
)
