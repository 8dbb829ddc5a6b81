"""Study A: internal vs terminal punctuation, pairwise MI and covariance across layers (``../shared/docs/claims.md``).

The original notebook's method (``part5_layer_CCpunctuationMI``), write-up variants as options, one module per step:
:mod:`.scan` selects the marks, :mod:`.extraction` reads their hidden states, :mod:`.analysis` computes the pair
statistics, :mod:`.result` holds them with ``measure``, :mod:`.explain` says what the groups of marks share;
:mod:`.method` runs the steps, :mod:`.figures` draws, :mod:`.robustness` runs the grid's settings.

Layers. An entry is a hidden-state index ``L`` (0 = embeddings, ``L`` = output of block ``L``) plus a ``post_norm``
flag; ``measure(layer=L)`` reads ``hidden_states[L]`` as Hugging Face defines it; statistics over depth (A7) read the
pre-norm block outputs ``1..n_blocks``. The study never reads the claims: the caller passes the claim layers as
``Config.detail_layers`` and what the claims read there as ``Config.reads`` (the pipeline does).

This module is the study's declaration (:data:`STUDY`, :class:`Config`; no torch).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from layerclaims.studies.punctuation.config import Config
from layerclaims.studies.punctuation.marks import KINDS
from layerclaims.study import ClaimRead, Draw, GridRun, Progress, Robustness, Statistic, Study

__all__ = ["KINDS", "STUDY", "Config"]


def _run(handle: Any, config: Config, progress: Progress | None = None) -> Any:
    from layerclaims.studies.punctuation.method import run

    return run(handle, config, progress)


def _warm() -> None:
    from layerclaims.studies.punctuation.analysis import warm

    warm()


def _result() -> type:
    from layerclaims.studies.punctuation.result import PunctuationResult

    return PunctuationResult


def _figures(result: Any, claims: Sequence[ClaimRead]) -> Mapping[str, Draw]:
    from layerclaims.studies.punctuation.figures import figures

    return figures(result, claims)


def _report_section(result: Any) -> str:
    from layerclaims.studies.punctuation.explain import markdown

    return markdown(result)


def _robustness_run(handle: Any, job: GridRun) -> tuple[list[Any], dict[str, Any]]:
    from layerclaims.studies.punctuation.robustness import run_variants

    return run_variants(handle, job)


def _count_usable(config: Config, tokenizer: Any, corpus: str, n: int) -> Mapping[str, int]:
    from layerclaims.data import load_study_text
    from layerclaims.studies.punctuation.scan import count_usable

    text = load_study_text(corpus, line_endings=config.line_endings)
    return count_usable(tokenizer, text.pieces, n=n, start=config.start, marks=config.marks)


EDITIONS: dict[str, str] = {"pg219": "heart-of-darkness", "pg526": "heart-of-darkness-526"}
TRIMS: dict[str, float] = {"z5": 5.0, "z3": 3.0, "none": 1e9}  # |z| <= sqrt(n - 1) < 1e9: nothing is trimmed

# The robustness choices, the original's value first
CHOICES: dict[str, tuple[str, ...]] = {
    "selection": ("first", *(f"random-{s}" for s in range(5))),
    "line_endings": ("crlf", "lf"),
    "edition": tuple(EDITIONS),
    "n": ("250", "150", "500"),
    "bins": ("15", "10", "20", "30"),
    "trim": tuple(TRIMS),
    "mi_estimator": ("plugin", "miller-madow"),
    # each dimension standardised over the marks, or the 1 or 3 dimensions of largest variance removed (rogue
    # dimensions and massive activations)
    "dimensions": ("all", "standardised", "drop-top1", "drop-top3"),
    "layer": ("0", "-1", "+1"),
}

_COUNTS = ("start", "seed", "n_boot", "n_perm", "n_boot_clusters", "cluster_n_boot", "z_threshold")
_AT = "at the claim's layer, for the claim's kind of mark"
STUDY = Study(
    name="punctuation",
    config=Config,
    statistics=(
        Statistic("cov_clusters", False, f"clusters of the pair covariances carried by groups of marks, {_AT}"),
        Statistic("mi_clusters", False, f"clusters of the pair MI values carried by groups of marks, {_AT}"),
        Statistic("cov_literal_clusters", False, f"clusters of the pair covariance values themselves, {_AT}"),
        Statistic("mi_literal_clusters", False, f"clusters of the pair MI values themselves, {_AT}"),
        Statistic("pooled_r", False, f"Pearson r of pair MI and pair covariance over all pairs, {_AT}"),
        Statistic("min_within_cluster_slope", False, f"the smallest MI-on-covariance slope within a cluster, {_AT}"),
        Statistic("mean_mi", False, f"the mean pair MI, {_AT}"),
        Statistic("mean_cov", False, f"the mean pair covariance, {_AT}"),
        Statistic("spearman_mean_mi_vs_depth", True, "Spearman rho of the mean pair MI against block output depth"),
        Statistic("spearman_mean_cov_vs_depth", True, "Spearman rho of the mean pair covariance against depth"),
        Statistic("ratio_mean_mi_last_first", True, "the last block output's mean pair MI over the first's"),
        Statistic("ratio_mean_cov_last_first", True, "the last block output's mean pair covariance over the first's"),
    ),
    layer_unit="hidden_state",
    kinds=KINDS,
    run=_run,
    result=_result,
    figures=_figures,
    report_section=_report_section,
    robustness=Robustness(
        choices=CHOICES,
        offset="layer",
        run_choices=("selection", "line_endings", "edition", "n", "bins", "trim", "mi_estimator", "dimensions"),
        grid={"n_boot": 200, "n_boot_clusters": 10, "n_perm": 200, "cluster_n_boot": 10},
        run=_robustness_run,
    ),
    index_settings={"layers": "hidden_state", "detail_layers": "hidden_state"},
    # n: pairs and a correlation need 3 marks; bins: a histogram needs 2; resample counts: 0 switches them off
    minimums={"n": 3, "bins": 2, "batch_size": 1, **dict.fromkeys(_COUNTS, 0)},
    spec_prefix="A",
    count_usable=_count_usable,
    warm=_warm,
)
