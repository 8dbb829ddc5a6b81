"""Study A in the robustness grid: one run per distinct (selection, line endings, edition, n, bins, trim,
estimator), its detail layers the claims' layers and their neighbours (the ``layer`` choice reads the same run)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from layerclaims.studies.punctuation import CHOICES as STUDY_CHOICES
from layerclaims.studies.punctuation import EDITIONS, TRIMS
from layerclaims.studies.punctuation.config import Config
from layerclaims.studies.punctuation.method import run
from layerclaims.study import GridRun


def settings(values: Mapping[str, str]) -> dict[str, Any]:
    """Study A Config fields for one specification's run-choice values."""
    sel = values["selection"]
    return {
        "corpus": EDITIONS[values["edition"]],
        "line_endings": values["line_endings"],
        "selection": "first" if sel == "first" else "random",
        "seed": 0 if sel == "first" else int(sel.split("-")[1]),
        "n": int(values["n"]),
        "bins": int(values["bins"]),
        "z_threshold": TRIMS[values["trim"]],
        "mi_estimator": values["mi_estimator"],
        "dimensions": values.get("dimensions", "all"),
    }


def run_variants(handle: Any, job: GridRun) -> tuple[list[Any], dict[str, Any]]:
    """One run for the run's values (every variant reads it: study A has no analysis-only choice), over the claims'
    own settings (their original path: a choice that departs from its original value overrides them)."""
    spec = settings(job.values)
    original = settings({name: vals[0] for name, vals in STUDY_CHOICES.items()})
    spec = {**spec, **job.base, **{k: v for k, v in spec.items() if v != original[k]}}
    result = run(handle, Config(**{**spec, **job.grid, "detail_layers": tuple(job.layers)}))
    timings = result.provenance.get("timings", {})
    stats = {k: float(timings.get(k, 0.0)) for k in ("forward_s", "analysis_s", "tokenize_s")}
    return [result] * len(job.variants), {**stats, "corpus": result.provenance.get("corpus")}
