"""The Python API (for notebooks): ``layerclaims.reproduce`` and ``layerclaims.load_claims``, the pipeline of
``layerclaims reproduce`` with the study results kept for further analysis::

    import layerclaims

    run = layerclaims.reproduce("tiny-gpt2", claims="my_claims.toml", n_boot=200)
    run.frame()                 # one row per claim: value, interval, p, holds
    run.results[name]           # the result of study `name` behind the verdicts
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from layerclaims import pipeline, validate
from layerclaims import study as registry
from layerclaims.claims import Claim, combine_claims, load_claims
from layerclaims.errors import UsageError
from layerclaims.pipeline import Reproduction

__all__ = ["Reproduction", "load_claims", "reproduce"]


def _claims(claims: Any, only_claims: bool) -> tuple[Claim, ...] | None:
    if claims is None:
        if only_claims:
            raise UsageError("only_claims=True needs claims=PATH (or Claim records): there would be no claim")
        return None
    if isinstance(claims, str | Path | Claim):
        claims = [claims]
    paths = [c for c in claims if isinstance(c, str | Path)]
    records = [c for c in claims if isinstance(c, Claim)]
    if len(paths) + len(records) != len(claims):
        raise UsageError("claims= takes claims file/folder paths and Claim records (from load_claims)")
    return combine_claims(paths, only=only_claims, extra=records)


def reproduce(
    model: str,
    claims: str | Path | Claim | Sequence[str | Path | Claim] | None = None,
    out: str | Path | None = None,
    *,
    only_claims: bool = False,
    study: str | Sequence[str] = "all",
    device: str = "cpu",
    dtype: str = "float32",
    device_map: str | None = None,
    progress: bool = False,
    **settings: Any,
) -> Reproduction:
    """What ``layerclaims reproduce`` does (the report in ``out``, default ``out/<model>``), returning the verdicts
    and the study results. ``claims``: files/folders and/or :class:`~layerclaims.claims.Claim` records added to
    the package's (``only_claims=True``: instead of them). ``study``: ``"all"``, a study's name or a list of them.
    ``settings``: study settings, each given to every study whose ``Config`` has it (``n_boot=200``, ``seed=1``,
    ``n=100``); a claim's own ``settings`` win for its run. UsageError for a setting that no study run has."""
    names = registry.names() if study == "all" else ((study,) if isinstance(study, str) else tuple(study))
    for name in names:
        registry.get(name)  # UsageError naming the studies for an unknown one
    for key, value in settings.items():
        if not any(validate.study_options(s, {key: value}) for s in names):
            fields = sorted({f for s in names for f in validate.config_fields(s)})
            raise UsageError(f"no study run ({', '.join(names)}) has the setting {key!r}: use one of {fields}")
    request = validate.RunRequest(model, None if out is None else Path(out), names, device, dtype, device_map, settings)
    command = f"layerclaims.reproduce({model!r}, ...)"
    rep = pipeline.reproduce(request, _claims(claims, only_claims), progress=progress, command=command)
    results = {o.study: pipeline.load_saved(o.saved) for o in rep.report.studies if o.ran and o.saved is not None}
    return dataclasses.replace(rep, results=results)
