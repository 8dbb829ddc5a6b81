"""One pipeline under every door: the CLI (:mod:`layerclaims.cli`), the pytest plugin and the Python API.

:func:`reproduce` loads a model once, runs each study, evaluates its claims into verdicts
(:mod:`layerclaims.verdicts`), draws the figures, saves the results and writes the report
(:mod:`layerclaims.report`). A study raising a ``LayerclaimsError`` is recorded as not run with the reason and the fix;
loading the model is not optional (its error propagates).
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import json
import logging
import os
import re
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from layerclaims import studies
from layerclaims.claims import CLAIMS, Claim, claims_for, group_runs, map_layer
from layerclaims.errors import DataNotFoundError, LayerclaimsError, UsageError
from layerclaims.report import RunReport, StudyOutcome, write_report, write_verdicts
from layerclaims.results import package_versions
from layerclaims.verdicts import Verdict, evaluate

log = logging.getLogger("layerclaims.pipeline")

DTYPES = ("float32", "float16", "bfloat16")
DEVICES = ("cpu", "cuda")

# A CLI option -> the Config field names it may have in a study (the first one a study's Config has is used).
# An option goes only to the studies whose Config has such a field.
STUDY_OPTIONS: dict[str, tuple[str, ...]] = {
    "corpus": ("corpus",),
    "selection": ("selection",),
    "seed": ("seed",),
    "n": ("n", "n_marks", "n_per_kind"),
}

CORPUS_FIX = (
    "set LAYERCLAIMS_DATA to a folder holding corpora/heart_of_darkness_pg219.txt (in this workspace: "
    "LAYERCLAIMS_DATA=../shared/data), or pass --corpus PATH to a plain-text copy of the book, or run once where "
    "www.gutenberg.org is reachable so that it is downloaded into the cache."
)


# --------------------------------------------------------------------------------------------------- helpers


def safe_dirname(name: str) -> str:
    """A folder name for a model name (``HuggingFaceTB/SmolLM2-135M`` -> ``HuggingFaceTB__SmolLM2-135M``)."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", name.replace("/", "__")).strip("._")
    return cleaned or "model"


def _config_fields(module: Any) -> set[str]:
    config = module.Config
    if dataclasses.is_dataclass(config):
        return {f.name for f in dataclasses.fields(config)}
    return set(inspect.signature(config).parameters)


def study_options(study: str, given: dict[str, Any], overrides: Sequence[str] = ()) -> dict[str, Any]:
    """The ``Config`` overrides for ``study``: the CLI options that were given (not None) and that its Config has,
    then the ``--set STUDY.FIELD=VALUE`` overrides naming this study (VALUE parsed as JSON, else a string)."""
    fields = _config_fields(studies.get(study))
    out: dict[str, Any] = {}
    for option, value in given.items():
        if value is None:
            continue
        for name in STUDY_OPTIONS.get(option, (option,)):
            if name in fields:
                out[name] = value
                break
    for item in overrides:
        target, value = parse_set(item)
        name, _, field_name = target.partition(".")
        if name != study:
            continue
        if field_name not in fields:
            raise UsageError(
                f"--set {item}: study {study!r} has no setting {field_name!r}; it has: {', '.join(sorted(fields))}"
            )
        out[field_name] = value
    return out


def parse_set(item: str) -> tuple[str, Any]:
    """``"punctuation.n_boot=200"`` -> ``("punctuation.n_boot", 200)``; the value is JSON when it parses
    (numbers, true/false/null, lists), else the plain string."""
    target, sep, raw = item.partition("=")
    name, dot, field_name = target.strip().partition(".")
    if not sep or not dot or not field_name or name not in studies.STUDY_NAMES:
        raise UsageError(
            f"--set {item!r}: write STUDY.SETTING=VALUE with STUDY one of {', '.join(studies.STUDY_NAMES)} "
            "(e.g. --set punctuation.n_boot=200)"
        )
    try:
        value: Any = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    if isinstance(value, list):
        value = tuple(value)
    return f"{name}.{field_name}", value


def load_handle(name: str, *, device: str, dtype: str, device_map: str | None) -> Any:
    """``models.load_model`` (imported here so that ``claims``, ``diff`` and ``--help`` never import torch)."""
    models = importlib.import_module("layerclaims.models")
    return models.load_model(name, device=device, dtype=dtype, device_map=device_map)


def plot_figures(study: str, result: Any, out_dir: Path) -> list[Path]:
    """``figures.<study>.plot_all(result, out_dir)``."""
    module = importlib.import_module(f"layerclaims.figures.{study}")
    return [Path(p) for p in module.plot_all(result, out_dir)]


def model_facts(handle: Any, device_map: str | None) -> dict[str, Any]:
    facts = {k: getattr(handle, k, None) for k in ("name", "revision", "source", "n_blocks", "device", "dtype")}
    facts = {k: (v if v is None or isinstance(v, int | float | str) else str(v)) for k, v in facts.items()}
    facts["device_map"] = device_map
    return facts


def not_run_rows(
    study: str, model: str, n_blocks: int, reason: str, claims: Sequence[Claim] | None = None
) -> list[Verdict]:
    """One verdict per claim of a study that could not run (``claims``: that run's; default the package's):
    ``holds=None`` and the reason."""
    rows = []
    for c in claims_for(study) if claims is None else claims:
        try:
            layer = map_layer(c, n_blocks)
        except LayerclaimsError:
            layer = None
        rows.append(
            Verdict(c.id, model, layer, c.statistic, None, None, None, c.threshold, c.comparison, None, reason=reason)
        )
    return rows


def headline(reason: str, exc: BaseException) -> str:
    """The first line of an error message, without a trailing "Looked in:"-style lead-in (verdict rows keep it
    short; the report's not-run box has the whole message)."""
    lines = reason.strip().splitlines()
    if not lines:
        return type(exc).__name__
    first = lines[0].strip()
    if first.endswith(":") and ". " in first:
        first = first[: first.rindex(". ") + 1]
    return first


def split_fix(message: str) -> tuple[str, str | None]:
    """Split an error message into (reason, fix) where it has a ``Fix:`` paragraph (as data.py's messages do)."""
    head, sep, tail = message.partition("\nFix:")
    return (head.strip(), tail.strip()) if sep else (message.strip(), None)


def _fix_for(study: str, exc: LayerclaimsError, rerun: str) -> str:
    if isinstance(exc, DataNotFoundError) and study == "punctuation":
        return CORPUS_FIX + f" Then re-run `{rerun}`."
    return f"follow the fix named in the reason, then re-run `{rerun}`."


class _Progress:
    """A tqdm bar over the stages on a terminal; nothing when quiet or when stderr is not a terminal."""

    def __init__(self, total: int, *, enabled: bool, desc: str) -> None:
        self._bar: Any = None
        if enabled:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, desc=desc, unit="stage", leave=False, file=sys.stderr)

    def stage(self, name: str) -> None:
        log.info("%s", name)
        if self._bar is not None:
            self._bar.set_postfix_str(name)

    def done(self) -> None:
        if self._bar is not None:
            self._bar.update(1)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


@contextmanager
def _timed(timings: dict[str, float], name: str, progress: _Progress) -> Iterator[None]:
    progress.stage(name)
    t0 = time.perf_counter()
    try:
        yield
    finally:
        timings[name] = time.perf_counter() - t0
        progress.done()
        log.info("%s: %.2f s", name, timings[name])


# --------------------------------------------------------------------------------------------------- reproduce


@dataclasses.dataclass
class Reproduced:
    """The outcome of one reproduce run: the report data, the verdicts, and the files written."""

    report: RunReport
    verdicts: list[Verdict]
    out: Path
    files: dict[str, Path]


def reproduce(
    model: str,
    *,
    out: Path,
    study_names: Sequence[str] = studies.STUDY_NAMES,
    device: str = "cpu",
    dtype: str = "float32",
    device_map: str | None = None,
    options: dict[str, Any] | None = None,
    overrides: Sequence[str] = (),
    progress: bool = False,
    command: str = "",
    claims: Sequence[Claim] | None = None,
) -> Reproduced:
    """Load ``model`` once, run each study, evaluate its claims, and write verdicts, figures, results and the
    report into ``out``. A study raising a LayerclaimsError is recorded as not run; loading the model is not
    optional (its LayerclaimsError propagates).

    ``claims``: the claims to evaluate (default: the package's; :func:`layerclaims.claims.combine_claims` adds a
    user's). A study runs once per distinct claim settings (:func:`layerclaims.claims.group_runs`), each claim's
    ``settings`` over the command-line options; a study none of the claims reads is not run."""
    options = dict(options or {})
    pool = CLAIMS if claims is None else tuple(claims)
    runs = [(s, settings, group) for s in study_names for (st, settings, group) in group_runs(pool) if st == s]
    out = Path(out)
    if not progress:
        _quiet_library_progress()
    timings: dict[str, float] = {}
    bar = _Progress(2 + 4 * len(runs), enabled=progress, desc=model)
    try:
        with _timed(timings, "load model", bar):
            handle = load_handle(model, device=device, dtype=dtype, device_map=device_map)
        facts = model_facts(handle, device_map)
        name = str(getattr(handle, "name", model))
        n_blocks = int(handle.n_blocks)
        out.mkdir(parents=True, exist_ok=True)
        outcomes: list[StudyOutcome] = []
        verdicts: list[Verdict] = []
        seen: set[str] = set()
        for study, settings, group in runs:
            # The first run of a study keeps the usual names; a further one (other settings) is labelled by its claims.
            label = study if study not in seen else f"{study}-{'-'.join(c.id for c in group)[:60]}"
            seen.add(study)
            opts = {**study_options(study, options, overrides), **settings}
            opts.update(_detail_layers(study, group, n_blocks, opts))
            outcome, study_verdicts = _run_study(
                study, handle, name, n_blocks, out, opts, timings, bar, claims=group, label=label
            )
            outcomes.append(outcome)
            verdicts.extend(study_verdicts)
        rows = [v.to_row() for v in verdicts]
        with _timed(timings, "write verdicts and report", bar):
            json_path, csv_path = write_verdicts(rows, out)
            report = RunReport(
                model=facts,
                studies=outcomes,
                rows=rows,
                timings=timings,
                packages=package_versions(),
                platform=_platform(),
                command=command,
                created=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            )
            md, page = write_report(report, out)
    finally:
        bar.close()
    files = {"verdicts.json": json_path, "verdicts.csv": csv_path, "report.md": md, "report.html": page}
    return Reproduced(report, verdicts, out, files)


def _quiet_library_progress() -> None:
    """No progress bars from transformers / the hub when ours are off (not a terminal, or --quiet)."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:  # pragma: no cover - transformers is a dependency
        return
    hf_logging.disable_progress_bar()


def _platform() -> str:
    import platform

    return platform.platform()


def _detail_layers(study: str, group: Sequence[Claim], n_blocks: int, opts: dict[str, Any]) -> dict[str, Any]:
    """Punctuation: the layers of this run's claims get the detailed statistics (cluster intervals, slopes), also
    when they are not the package's claims' layers (the study's default)."""
    if study != "punctuation" or "detail_layers" in opts or tuple(group) == claims_for(study):
        return {}
    layers = sorted({layer for c in group if (layer := map_layer(c, n_blocks)) is not None})
    return {"detail_layers": tuple(layers)} if layers else {}


def _run_study(
    study: str,
    handle: Any,
    model: str,
    n_blocks: int,
    out: Path,
    opts: dict[str, Any],
    timings: dict[str, float],
    bar: _Progress,
    *,
    claims: Sequence[Claim] | None = None,
    label: str | None = None,
) -> tuple[StudyOutcome, list[Verdict]]:
    label = label or study
    group = claims_for(study) if claims is None else tuple(claims)
    outcome = StudyOutcome(study=label, ran=False, options=opts)
    rerun = f"layerclaims reproduce --model {model} --study {study}"
    if label != study:  # a further run of the study (other settings): its files go into their own folder
        out = out / label
    try:
        with _timed(timings, f"{label}: run", bar):
            result = studies.run(study, handle, **opts)
    except LayerclaimsError as exc:
        outcome.reason, outcome.fix = split_fix(str(exc))
        if outcome.fix is None:
            outcome.fix = _fix_for(study, exc, rerun)
        log.warning("study %s not run: %s", study, exc)
        for _ in range(3):
            bar.done()
        reason = f"study {study} not run: {headline(outcome.reason, exc)}"
        return outcome, not_run_rows(study, model, n_blocks, reason, group)
    outcome.ran = True
    outcome.seconds["run"] = timings[f"{label}: run"]
    outcome.provenance = dict(getattr(result, "provenance", {}) or {})
    with _timed(timings, f"{label}: evaluate claims", bar):
        verdicts = [evaluate(c, result) for c in group]
    with _timed(timings, f"{label}: figures", bar):
        try:
            outcome.figures = plot_figures(study, result, out / "figures")
        except Exception as exc:  # a figure bug must not lose the verdicts; it is shown in the report
            log.warning("figures of study %s failed: %s", study, exc, exc_info=log.isEnabledFor(logging.DEBUG))
            outcome.problems.append(f"figures could not be drawn: {type(exc).__name__}: {exc}")
    with _timed(timings, f"{label}: save result", bar):
        try:
            outcome.saved = Path(result.save(out))
        except Exception as exc:  # as above: recorded, not fatal
            log.warning("saving study %s failed: %s", study, exc, exc_info=log.isEnabledFor(logging.DEBUG))
            outcome.problems.append(f"result could not be saved: {type(exc).__name__}: {exc}")
    for stage in ("evaluate claims", "figures", "save result"):
        outcome.seconds[stage] = timings[f"{label}: {stage}"]
    return outcome, verdicts


def _check_unused_options(study_names: Sequence[str], given: dict[str, Any], overrides: Sequence[str]) -> None:
    """Before any model is loaded: reject a bad --set, and warn about options that no study run will read."""
    for s in study_names:
        study_options(s, {}, overrides)
    for item in overrides:
        target, _ = parse_set(item)
        if target.partition(".")[0] not in study_names:
            log.warning("--set %s names a study that is not run (%s): ignored", item, ", ".join(study_names))
    for option, value in given.items():
        if value is None:
            continue
        if not any(study_options(s, {option: value}) for s in study_names):
            log.warning("--%s applies to none of the studies run (%s): ignored", option, ", ".join(study_names))
