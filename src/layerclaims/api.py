"""The Python API (for notebooks): ``layerclaims.reproduce`` and ``layerclaims.load_claims``.

The same pipeline as ``layerclaims reproduce`` (:func:`layerclaims.pipeline.reproduce`), with the study results
kept in memory for further analysis::

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

from layerclaims.claims import Claim, combine_claims, load_claims
from layerclaims.errors import UsageError

__all__ = ["Reproduction", "load_claims", "reproduce"]


@dataclasses.dataclass
class Reproduction:
    """One run: ``verdicts`` (one per claim), ``results`` (the study results by run label: the study's name, and
    ``"<study>-<claim ids>"`` for a run with a claim's own settings), ``out`` (the folder
    holding verdicts.json/.csv, report.md/.html, figures and the saved results) and ``files`` (those paths)."""

    verdicts: list[Any]
    results: dict[str, Any]
    out: Path
    files: dict[str, Path]
    report: Any = dataclasses.field(repr=False, default=None)

    def rows(self) -> list[dict[str, Any]]:
        """The verdict rows as written to verdicts.json."""
        return [v.to_row() for v in self.verdicts]

    def frame(self) -> Any:
        """The verdicts as a pandas DataFrame (one row per claim; ``details`` left out)."""
        import pandas as pd

        return pd.DataFrame([{k: v for k, v in r.items() if k != "details"} for r in self.rows()])

    def verdict(self, claim_id: str) -> Any:
        """The verdict of one claim (KeyError naming the claims there are)."""
        for v in self.verdicts:
            if v.claim == claim_id:
                return v
        raise KeyError(f"no verdict for {claim_id!r}; this run has {[v.claim for v in self.verdicts]}")


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
    """Run the studies on ``model``, evaluate the claims and write the report into ``out`` (default
    ``out/<model>``), as ``layerclaims reproduce`` does; return the verdicts and the study results.

    ``claims``: claims files/folders and/or :class:`~layerclaims.claims.Claim` records added to the package's
    (``only_claims=True``: instead of them). ``study``: ``"all"``, a study's name or a list of them.
    ``settings``: study settings, each given to every study whose ``Config`` has it (``n_boot=200``, ``seed=1``,
    ``corpus="path.txt"``, ``n=100``); a claim's own ``settings`` win for its run. UsageError for a setting that no
    study run has."""
    from layerclaims import pipeline, validate
    from layerclaims import study as registry

    names = registry.names() if study == "all" else ((study,) if isinstance(study, str) else tuple(study))
    for name in names:
        registry.get(name)  # UsageError naming the studies for an unknown one
    for key, value in settings.items():
        if not any(validate.study_options(s, {key: value}) for s in names):
            fields = sorted({f for s in names for f in validate.config_fields(s)})
            raise UsageError(f"no study run ({', '.join(names)}) has the setting {key!r}: use one of {fields}")
    folder = Path(out) if out is not None else pipeline.default_out(model)
    rep = pipeline.reproduce(
        model,
        out=folder,
        study_names=names,
        device=device,
        dtype=dtype,
        device_map=device_map,
        options=settings,
        progress=progress,
        command=f"layerclaims.reproduce({model!r}, ...)",
        claims=_claims(claims, only_claims),
    )
    loaded: dict[str, Any] = {}
    for outcome in rep.report.studies:
        if outcome.ran and outcome.saved is not None:
            loaded[outcome.study] = pipeline.load_saved(outcome.saved)
    return Reproduction(list(rep.verdicts), loaded, rep.out, dict(rep.files), rep.report)
