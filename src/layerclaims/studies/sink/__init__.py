"""Attention sinks (Xiao et al. 2023, "Efficient Streaming Language Models with Attention Sinks", arXiv 2309.17453;
Gu et al. 2024, "When Attention Sink Emerges in Language Models: An Empirical View", arXiv 2410.10781, code
``sail-sg/Attention-Sink``, ``eval_sink_open_source.py``).

Method (Gu et al.'s metric):

1. ``n_windows`` windows of ``length`` = 64 tokens from the corpus (:mod:`layerclaims.windows`); ``add_bos``
   prepends the tokenizer's BOS token (Gu et al. use each tokenizer's default: LLaMA's adds one, GPT-2's not).
2. ``alpha_1``: each head's attention to the first token, averaged over the queries that see it (all of them),
   from eager attention (:func:`layerclaims.extract.window_pass`, as :func:`~layerclaims.extract.first_token_attention`;
   one pass that a run shares with a study reading the same windows' hidden states), one value per (window, block,
   head).
3. ``sink_share``: the share of (window, block, head) cells with ``alpha_1 > epsilon`` (0.3), Gu et al.'s
   ``Sink_1^epsilon`` (reported there x100); ``mean_first_token_attention``: the mean ``alpha_1``; at a block,
   ``sink_share_at_block``. A uniform causal head has ``alpha_1 = H_64/64 = 0.074``, far below 0.3.
4. Intervals: percentile bootstrap over windows. Control: the same architecture with re-initialised weights
   (:func:`layerclaims.models.reinitialised`, seed ``seed``, ``control_windows`` windows), where nothing learned
   can make a sink. With and without BOS is a robustness choice (``add_bos``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from layerclaims.errors import UsageError
from layerclaims.study import ClaimRead, Draw, Progress, Robustness, Statistic, Study, run_each

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
    batch_size: int = 8  # two batches of the 16 windows: one per lane on two cores (extract.in_lanes)

    def __post_init__(self) -> None:
        for name, low in (("n_windows", 2), ("length", 2), ("batch_size", 1), ("n_boot", 0), ("control_windows", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise UsageError(f"{name} must be an integer >= {low}, got {value!r}")
        if self.control_windows > self.n_windows:
            raise UsageError(f"control_windows ({self.control_windows}) cannot exceed n_windows ({self.n_windows})")
        if isinstance(self.epsilon, bool) or not isinstance(self.epsilon, int | float) or not 0 <= self.epsilon < 1:
            raise UsageError(f"epsilon must be in [0, 1), got {self.epsilon!r}")


# ---------------------------------------------------------------------------------------------------- the plug-in


def _run(handle: Any, config: Config, progress: Progress | None = None) -> Any:
    from layerclaims.studies.sink.analysis import run

    return run(handle, config, progress)


def _result() -> type:
    from layerclaims.studies.sink.analysis import SinkResult

    return SinkResult


def _figures(result: Any, claims: Sequence[ClaimRead]) -> Mapping[str, Draw]:
    from layerclaims.studies.sink.figures import figures

    return figures(result, claims)


def _report_section(result: Any) -> str:
    from layerclaims.studies.sink.report import section

    return section(result)


ROBUSTNESS_VALUES: dict[str, dict[str, dict[str, Any]]] = {
    "as_bos": {"no": {"add_bos": False}, "yes": {"add_bos": True}},
    "as_epsilon": {"0.3": {"epsilon": 0.3}, "0.2": {"epsilon": 0.2}, "0.5": {"epsilon": 0.5}},
    "as_sample": {"0": {"seed": 0}, "1": {"seed": 1}},
    "as_length": {"64": {"length": 64}, "32": {"length": 32}},
}


STUDY = Study(
    name=NAME,
    config=Config,
    statistics=(
        Statistic("sink_share_at_block", False, "share of (window, head) cells of a block with alpha_1 > epsilon"),
        Statistic(
            "sink_share", True, "Gu et al.'s Sink_1: share of (window, block, head) cells with alpha_1 > epsilon"
        ),
        Statistic("mean_first_token_attention", True, "mean alpha_1 over (window, block, head) cells"),
    ),
    layer_unit="block",
    run=_run,
    result=_result,
    figures=_figures,
    report_section=_report_section,
    robustness=Robustness(
        choices={
            "as_bos": ("no", "yes"),
            "as_epsilon": ("0.3", "0.2", "0.5"),
            "as_sample": ("0", "1"),
            "as_length": ("64", "32"),
            "block": ("0", "-1", "+1"),
        },
        offset="block",
        run_choices=("as_bos", "as_epsilon", "as_sample", "as_length"),
        grid={"n_boot": 200, "control_windows": 0},
        run=run_each(_run, Config, ROBUSTNESS_VALUES),
        notes=("sink: the grid runs without the re-initialised control (control_windows = 0)",),
    ),
    minimums={"n_windows": 2, "length": 2, "n_boot": 0, "control_windows": 0, "batch_size": 1, "seed": 0},
    spec_prefix="S",
)
