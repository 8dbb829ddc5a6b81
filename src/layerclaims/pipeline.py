"""A run into a report folder: ``layerclaims reproduce``, the Python API and each model of ``layerclaims matrix``.

:func:`reproduce` is :func:`layerclaims.run.decide_run` with the folder around it as hooks: once the request is
checked it takes the folder's lock and writes figures, saved results, verdicts, report and ``run.json`` into a stage
(:class:`layerclaims.runfolder.RunFolder`) that is swapped in only when all of that succeeded. A run of some studies
into a folder that holds a run of the others (same model) keeps those: their files are copied into the stage and
their claims re-decided in this run's family (``run.json`` records which run each study came from).
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import logging
import os
import platform
import re
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from layerclaims import study as registry
from layerclaims import tasks
from layerclaims.claims import CLAIMS, CLAIMS_BY_ID, Claim, claim_reads
from layerclaims.errors import LayerclaimsError, UsageError
from layerclaims.figures import draw_saved, draw_table
from layerclaims.report import RunReport, StudyOutcome, jsonable, write_report, write_verdicts
from layerclaims.results import package_versions
from layerclaims.run import Decision, Say, StudyRun, decide_run, quiet_library_progress, silent, timed
from layerclaims.runfolder import ROBUSTNESS_DIR, RunFolder, read_json
from layerclaims.validate import Command, RunRequest
from layerclaims.verdicts import Verdict, evaluate

log = logging.getLogger("layerclaims.pipeline")

DTYPES = ("float32", "float16", "bfloat16")
DEVICES = ("cpu", "cuda")
MANIFEST = "run.json"
MANIFEST_VERSION = 1
# Test hook (tests/unit/test_faults.py): ``LAYERCLAIMS_TEST_PAUSE_AT=STAGE[,STAGE]`` makes a run sleep at STAGE
# (``LAYERCLAIMS_TEST_PAUSE_S`` seconds, default 30) so that a test can interrupt it there. Stages: locked, loaded,
# studied (after the first study), staged (before the swap).
PAUSE_ENV = "LAYERCLAIMS_TEST_PAUSE_AT"


def safe_dirname(name: str) -> str:
    """A folder name for a model name (``HuggingFaceTB/SmolLM2-135M`` -> ``HuggingFaceTB__SmolLM2-135M``)."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", name.replace("/", "__")).strip("._")
    return cleaned or "model"


def default_out(model: str) -> Path:
    """The output folder of a run of ``model`` when none is given."""
    return Path("out") / safe_dirname(model)


def model_facts(handle: Any, device_map: str | None) -> dict[str, Any]:
    facts = {k: getattr(handle, k, None) for k in ("name", "revision", "source", "n_blocks", "device", "dtype")}
    facts = {k: (v if v is None or isinstance(v, int | float | str) else str(v)) for k, v in facts.items()}
    return {**facts, "device_map": device_map}


def progress_printer() -> Say:
    """One line per stage on stderr (terminal or not), with the seconds since the start."""
    t0 = time.perf_counter()

    def say(text: str) -> None:
        print(f"layerclaims [{time.perf_counter() - t0:7.1f} s] {text}", file=sys.stderr, flush=True)

    return say


def pause_point(stage: str) -> None:
    """The test hook :data:`PAUSE_ENV`."""
    if stage in {w.strip() for w in os.environ.get(PAUSE_ENV, "").split(",")}:
        print(f"layerclaims: paused at {stage} (pid {os.getpid()})", file=sys.stderr, flush=True)
        time.sleep(float(os.environ.get("LAYERCLAIMS_TEST_PAUSE_S", "30")))


@dataclasses.dataclass
class Reproduction:
    """One reproduce run: ``verdicts`` (this run's claims), ``out`` (the folder), ``files`` (verdicts.json/.csv,
    report.md/.html, run.json), the report (its rows also those of the studies ``kept`` from an earlier run there)
    and, from the Python API, ``results``: the study results by run label (:class:`~layerclaims.run.StudyRun`)."""

    verdicts: list[Verdict]
    out: Path
    files: dict[str, Path]
    report: RunReport = dataclasses.field(repr=False)
    kept: tuple[str, ...] = ()
    results: dict[str, Any] = dataclasses.field(default_factory=dict)

    def frame(self) -> Any:
        """The verdicts as a pandas DataFrame (one row per claim; ``details`` left out)."""
        import pandas as pd

        return pd.DataFrame([{k: x for k, x in v.to_row().items() if k != "details"} for v in self.verdicts])

    def verdict(self, claim_id: str) -> Verdict:
        """The verdict of one claim (KeyError naming the claims there are)."""
        for v in self.verdicts:
            if v.claim == claim_id:
                return v
        raise KeyError(f"no verdict for {claim_id!r}; this run has {[v.claim for v in self.verdicts]}")


def reproduce(
    request: RunRequest,
    claims: Sequence[Claim] | None = None,
    *,
    progress: bool | Say = False,
    command: str = "",
    argv: Sequence[str] | None = None,
    on_study: Callable[[StudyOutcome, list[Verdict]], None] | None = None,
    wait_s: float = 0.0,
) -> Reproduction:
    """:func:`layerclaims.run.decide_run` on ``request`` with ``claims`` (default: the package's), written into
    ``request.out`` (default :func:`default_out`) as one step; the folder is left as it was whenever this raises or
    is interrupted. ``progress``: True prints one line per stage on stderr, a callable receives them, False logs
    them. ``argv``: the command as typed, which fixes repeat with one option changed. ``on_study(outcome,
    verdicts)``: as each study finishes. ``wait_s``: how long to wait for another run holding the folder's lock."""
    out = Path(request.out) if request.out is not None else default_out(request.model)
    request = dataclasses.replace(request, out=out, study_names=tuple(request.study_names))
    cmd = Command(tuple(argv)) if argv is not None else request.command()
    command = command or str(cmd)
    say: Say = progress if callable(progress) else (progress_printer() if progress else silent)
    quiet_library_progress()  # our progress is one line per stage
    say(f"checking {request.model}, the settings and the inputs")
    pool = CLAIMS if claims is None else tuple(claims)
    timings: dict[str, float] = {}
    staging = _Staging(request, RunFolder(out, wait_s=wait_s), cmd, timings, say, on_study, pool)
    with staging.stack:  # the folder's lock and stage, entered once the request is checked
        decision = decide_run(
            request,
            pool,
            command=cmd,
            say=say,
            timings=timings,
            on_plan=staging.lock,
            on_load=staging.loaded,
            on_result=staging.study_done,
            join=staging.kept_verdicts,
        )
        report = staging.write(decision, command)
        pause_point("staged")
        staging.folder.commit()
    say(f"wrote {out}")
    files = {name: out / name for name in ("verdicts.json", "verdicts.csv", "report.md", "report.html", MANIFEST)}
    _relocate(report, staging.folder.stage, out)
    kept = tuple(e["study"] for e in staging.kept_entries)
    return Reproduction(decision.verdicts, out, files, report, kept)


@dataclasses.dataclass
class _Staging:
    """:func:`reproduce`'s hooks around :func:`~layerclaims.run.decide_run`: the folder's lock and stage, the earlier
    run's kept studies, each study's figures, section and saved result, then verdicts, report and run.json."""

    request: RunRequest
    folder: RunFolder
    cmd: Command
    timings: dict[str, float]
    say: Say
    on_study: Callable[[StudyOutcome, list[Verdict]], None] | None
    pool: Sequence[Claim]
    stack: contextlib.ExitStack = dataclasses.field(default_factory=contextlib.ExitStack)  # entered by lock()
    earlier: dict[str, Any] = dataclasses.field(default_factory=dict)
    facts: dict[str, Any] = dataclasses.field(default_factory=dict)
    outcomes: list[StudyOutcome] = dataclasses.field(default_factory=list)
    owned: list[tuple[str, list[str]]] = dataclasses.field(default_factory=list)
    kept_outcomes: list[StudyOutcome] = dataclasses.field(default_factory=list)
    kept_rows: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    kept_entries: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    drawing: list[tuple[StudyOutcome, Future[Any]]] = dataclasses.field(default_factory=list)

    def lock(self, plan: Any) -> None:
        self.stack.enter_context(self.folder)
        self.stack.callback(self.figures_drawn)  # before the folder is left: no worker writes into a removed stage
        pause_point("locked")
        self.earlier = _earlier_run(self.folder.out, self.request.study_names, self.request.model, self.cmd)

    def loaded(self, handle: Any) -> None:
        pause_point("loaded")
        self.facts = model_facts(handle, self.request.device_map)
        _check_same_model(self.earlier, self.facts, self.folder.out, self.cmd)
        self.stack.enter_context(_os_errors_as_run_errors(self.folder, self.cmd))

    def study_done(self, run: StudyRun, opts: dict[str, Any], result: Any, verdicts: list[Verdict]) -> None:
        outcome, drawing = _stage_study(run, opts, result, self.folder.stage, self.timings, self.say)
        if drawing is not None:
            self.drawing.append((outcome, drawing))
        self.outcomes.append(outcome)
        self.owned.append((run.study, [c.id for c in run.claims]))
        if self.on_study is not None:
            self.on_study(outcome, verdicts)
        if len(self.outcomes) == 1:
            pause_point("studied")

    def kept_verdicts(self) -> list[Verdict]:
        """Copy the kept studies' files into the stage and rebuild their outcomes from run.json; their claims are
        evaluated again on their saved results and join this run's Holm family (their verdicts then equal those of
        one run over every study). A study whose claims are not all among this run's, or whose saved result cannot
        be read, keeps the rows the earlier run wrote (the report says so)."""
        if not self.earlier:
            return []
        out, stage = self.folder.out, self.folder.stage
        rows = _old_rows(out)
        by_id = {c.id: c for c in self.pool}
        redecided: list[Verdict] = []
        for study, e in self.earlier["studies"].items():
            for rel in e.get("files", []):
                src, dst = out / rel, stage / rel
                if src.is_file():
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(src, dst)
            prov = dict(e.get("provenance") or {})
            prov["kept from the earlier run"] = f"{e.get('created')}: {e.get('command')}"
            saved = (stage / e["saved"]) if e.get("saved") and (stage / e["saved"]).is_file() else None
            outcome = StudyOutcome(
                study,
                **{k: e.get(k) for k in ("ran", "reason", "fix", "options", "seconds")},
                provenance=prov,
                figures=[stage / f for f in e.get("figures", []) if (stage / f).is_file()],
                sections=list(e.get("sections") or []),
                problems=list(e.get("problems") or []),  # a copy: this run's note on them is appended
                saved=saved,
            )
            self.kept_outcomes.append(outcome)
            ids = [str(cid) for cid in e.get("claims") or []]
            missing = [cid for cid in ids if cid not in by_id]
            why = ""
            if missing:
                why = f"claims {', '.join(missing)} are not among this run's (pass the claims files that run had)"
            elif saved is None:
                why = "its saved result is missing"
            else:
                try:
                    result = load_saved(saved)
                    verdicts = [evaluate(by_id[cid], result) for cid in ids]
                except Exception as exc:  # an unreadable or older result: the earlier rows stand, the report says so
                    why = f"its saved result could not be read again ({type(exc).__name__}: {exc})"
            if why:
                outcome.problems.append(f"its verdicts keep the Holm family of the run that made them: {why}")
                self.kept_rows.extend(r for r in rows if str(r.get("claim")) in ids)
                continue
            redecided.extend(verdicts)
            outcome.provenance["verdicts"] = "re-decided from the saved result within this run's Holm family"
        self.kept_entries = list(self.earlier["studies"].values())
        return redecided

    def figures_drawn(self) -> None:
        """Wait for the figures drawn in worker processes; each study's figure files and drawing seconds, or the
        problem that stopped them."""
        while self.drawing:
            outcome, drawing = self.drawing.pop(0)
            study = outcome.study
            with _as_problem(outcome, f"figures of study {study}", "figures could not be drawn"):
                outcome.figures, seconds = drawing.result()
                outcome.seconds["figures"] = self.timings[f"{study}: figures"] = seconds

    def write(self, decision: Decision, command: str) -> RunReport:
        """Verdicts, report and run.json into the stage (the kept studies' rows and outcomes with this run's)."""
        self.figures_drawn()
        stage = self.folder.stage
        _carry_robustness(self.folder.out, stage, str(self.facts.get("name")), self.cmd)
        all_outcomes = _in_study_order(self.outcomes + self.kept_outcomes, lambda o: o.study.split("-", 1)[0])
        rows = [v.to_row() for v in decision.family] + self.kept_rows
        study_of: dict[str, str] = {c.id: run.study for run in decision.runs for c in run.claims}
        for e in self.kept_entries:
            study_of.update((cid, e["base_study"]) for cid in e.get("claims") or [])
        rows = _in_study_order(rows, lambda r: study_of.get(str(r.get("claim"))))
        created = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        with timed(self.timings, "write verdicts and report", self.say):
            write_verdicts(rows, stage)
            report = RunReport(
                model=self.facts,
                studies=all_outcomes,
                rows=rows,
                timings=self.timings,
                packages=package_versions(),
                platform=platform.platform(),
                command=command,
                created=created,
            )
            write_report(report, stage)
            ids = {str(r.get("claim")) for r in rows}
            definitions = {
                **{k: v for k, v in (self.earlier.get("manifest", {}).get("claims") or {}).items() if k in ids},
                **{c.id: claim_definition(c) for c in self.pool if c.id in ids},
            }
            self.write_manifest(command, created, definitions)
        return report

    def write_manifest(self, command: str, created: str, definitions: dict[str, dict[str, Any]]) -> None:
        """``run.json``: the model, per study run what it ran with and which files and claims are its own (what a
        later run of other studies keeps; a further run for other claim settings has its label as ``study``), and
        each claim's definition."""
        stage = self.folder.stage
        entries = [
            {
                "study": o.study,
                "base_study": base,
                **{k: getattr(o, k) for k in ("ran", "reason", "fix", "options", "provenance", "problems", "seconds")},
                "figures": [_rel(f, stage) for f in o.figures if Path(f).is_file()],
                "sections": o.sections,
                "saved": _rel(o.saved, stage) if o.saved is not None and o.saved.is_file() else None,
                "files": _study_files(o, stage),
                "claims": claim_ids,
                "command": command,
                "created": created,
                "model": self.facts,
            }
            for o, (base, claim_ids) in zip(self.outcomes, self.owned, strict=True)
        ]
        manifest = {
            "format_version": MANIFEST_VERSION,
            "model": self.facts,
            "command": command,
            "created": created,
            "studies": entries + self.kept_entries,
            "claims": definitions,
        }
        (stage / MANIFEST).write_text(json.dumps(jsonable(manifest), indent=1, allow_nan=False) + "\n")


@contextmanager
def _os_errors_as_run_errors(folder: RunFolder, cmd: Command) -> Iterator[None]:
    """An OSError while the run writes its stage (a full disk, a folder made read-only meanwhile) stops the run as
    bad input does (exit 2, the folder as it was), with what the system said and the fix for that error: disk
    space only for a full disk or quota. (Printing cannot land here: the CLI's streams keep their errors.)"""
    try:
        yield
    except OSError as exc:
        if isinstance(exc, LayerclaimsError):
            raise
        where = exc.filename or folder.stage
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            fix = f"free disk space, or give a folder on another disk: `{cmd.with_option('--out', 'NEW_FOLDER')}`"
        elif exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            fix = f"give a writable folder: `{cmd.with_option('--out', 'NEW_FOLDER')}`"
        else:
            fix = f"check {where}, then re-run `{cmd}`"
        raise UsageError(
            f"the run could not be written ({where}: {exc.strerror or exc}); {folder.out} was left as it was", fix=fix
        ) from None


def _stage_study(
    run: StudyRun, opts: dict[str, Any], result: Any, stage: Path, timings: dict[str, float], say: Say
) -> tuple[StudyOutcome, Future[Any] | None]:
    """One study run's saved result, figures and report section into ``stage`` (a further run of a study, with
    other claim settings, into its own sub-folder); its outcome for the report, and the figures still being drawn
    in a worker process (:func:`layerclaims.figures.draw_saved`, from the saved result) or None when they were
    drawn here (one worker, or a study whose functions do not pickle)."""
    declared = registry.get(run.study)
    study, label = run.study, run.label
    if label != study:
        stage = stage / label
    outcome = StudyOutcome(study=label, ran=True, options=opts)
    outcome.provenance = dict(getattr(result, "provenance", {}) or {})
    with timed(timings, f"{label}: save result", say):  # first: a worker process draws the figures from it
        with _as_problem(outcome, f"saving study {study}", "result could not be saved", stops=(OSError,)):
            outcome.saved = Path(result.save(stage))
    drawing: Future[Any] | None = None
    with timed(timings, f"{label}: figures", say):
        with _as_problem(outcome, f"figures of study {study}", "figures could not be drawn"):
            if declared.figures is not None:
                reads = claim_reads(run.claims, int(result.n_blocks))
                study_fns = (declared.result, declared.figures)
                if outcome.saved is not None and tasks.workers() > 1 and tasks.picklable(study_fns):
                    drawing = tasks.submit(draw_saved, *study_fns, outcome.saved.parent, reads, stage / "figures")
                else:
                    outcome.figures = draw_table(declared.figures(result, reads), stage / "figures")
        with _as_problem(outcome, f"report section of study {study}", "its report section could not be written"):
            if declared.report_section is not None:
                outcome.sections = [declared.report_section(result)]
    for stage_name in ("run", "evaluate claims", "figures", "save result"):
        outcome.seconds[stage_name] = timings[f"{label}: {stage_name}"]
    return outcome, drawing


@contextmanager
def _as_problem(
    outcome: StudyOutcome, what: str, shown: str, stops: tuple[type[Exception], ...] = ()
) -> Iterator[None]:
    """A bug in a figure, a section or saving must not lose the verdicts: it is a problem the report shows. An
    exception of ``stops`` (an OSError while saving: a full disk, a read-only folder) stops the run."""
    try:
        yield
    except stops:
        raise
    except Exception as exc:
        log.warning("%s failed: %s", what, exc, exc_info=log.isEnabledFor(logging.DEBUG))
        outcome.problems.append(f"{shown}: {type(exc).__name__}: {exc}")


def claim_definition(claim: Claim) -> dict[str, Any]:
    """What a claim asserts, as run.json records it (``layerclaims diff`` names a claim whose definition changed):
    its model and depth, layer, kind, conditions, premises and study settings."""
    return {
        **{k: getattr(claim, k) for k in ("study", "model", "model_blocks", "layer", "layer_unit", "kind")},
        "conditions": [[k.statistic, k.comparison, k.threshold] for k in claim.conditions],
        "presupposes": list(claim.presupposes),
        "settings": dict(claim.settings),
    }


def _rel(path: Path, base: Path) -> str:
    return Path(path).resolve().relative_to(base.resolve()).as_posix()


def _study_files(outcome: StudyOutcome, stage: Path) -> list[str]:
    saved = [] if outcome.saved is None else [outcome.saved, outcome.saved.with_suffix(".npz")]
    return [_rel(f, stage) for f in [*outcome.figures, *saved] if Path(f).is_file()]


def read_manifest(folder: Path) -> dict[str, Any] | None:
    """The ``run.json`` of a run folder, or None when there is none (or it cannot be read)."""
    manifest = read_json(folder / MANIFEST)
    ok = isinstance(manifest, dict) and manifest.get("format_version") == MANIFEST_VERSION
    return manifest if ok else None


def _earlier_run(out: Path, study_names: Sequence[str], model: str, cmd: Command) -> dict[str, Any]:
    """The earlier run's entries of the studies this run does not run (to keep), checked to be of ``model``.
    Refuses (UsageError) a folder whose other study is of another model, or of an older layout without run.json."""
    others = [s for s in registry.names() if s not in study_names]
    if not others or not out.is_dir():
        return {}
    manifest = read_manifest(out)
    if manifest is None:
        rows = _old_rows(out)
        if any(c.study in others for r in rows if (c := CLAIMS_BY_ID.get(str(r.get("claim")))) is not None):
            raise UsageError(
                f"{out} holds a run of {', '.join(others)} from an older layerclaims (no {MANIFEST}): a run of "
                f"{', '.join(study_names)} alone cannot keep those results",
                fix=_all_or_elsewhere(cmd),
            )
        return {}
    kept = {e["study"]: e for e in manifest.get("studies", []) if e.get("base_study") in others}
    if not kept:
        return {}
    old_model = (manifest.get("model") or {}).get("name")
    if old_model != model:
        raise UsageError(
            f"{out} holds study {', '.join(kept)} of {old_model} ({manifest.get('created')}); a run of "
            f"{', '.join(study_names)} on {model} there would give a report that mixes two models",
            fix=_all_or_elsewhere(cmd),
        )
    return {"manifest": manifest, "studies": kept}


def _check_same_model(earlier: dict[str, Any], facts: dict[str, Any], out: Path, cmd: Command) -> None:
    """The kept studies must be of the same weights and dtype as this run (known only once the model loaded)."""
    if not earlier:
        return
    old = earlier["manifest"].get("model") or {}
    moved = [k for k in ("revision", "dtype") if old.get(k) != facts.get(k)]
    if moved:
        what = ", ".join(f"{k} {old.get(k)} then, {facts.get(k)} now" for k in moved)
        raise UsageError(
            f"{out} holds study {', '.join(earlier['studies'])} of {facts.get('name')} with another {what}: "
            "keeping it would give a report over two different models",
            fix=_all_or_elsewhere(cmd),
        )


def _all_or_elsewhere(cmd: Command) -> str:
    """The fix for a folder whose kept studies this run cannot keep."""
    all_studies, elsewhere = cmd.with_option("--study", "all"), cmd.with_option("--out", "NEW_FOLDER")
    return f"run every study into it: `{all_studies}`, or give another folder: `{elsewhere}`"


def _old_rows(out: Path) -> list[dict[str, Any]]:
    rows = read_json(out / "verdicts.json")
    return [r for r in rows if isinstance(r, dict)] if isinstance(rows, list) else []


def _carry_robustness(out: Path, stage: Path, model: str, cmd: Command) -> None:
    """Keep ``out/robustness`` when it is of this model (the report shows it); refuse one of another model."""
    src = out / ROBUSTNESS_DIR
    summary = src / "robustness.json"
    if not summary.is_file():
        return
    other = json.loads(summary.read_text(encoding="utf-8")).get("model")
    if other != model:
        raise UsageError(
            f"{src} holds a robustness analysis of {other}, not of {model}: a run of {model} into {out} would mix them",
            fix=f"move {src} elsewhere, or give another --out, then re-run `{cmd}`",
        )
    shutil.copytree(src, stage / ROBUSTNESS_DIR)


def load_saved(saved: Path) -> Any:
    """A study's saved result (``<study>.json`` and ``.npz`` beside it), read by the study's result class."""
    return registry.get(saved.stem).load(saved.parent)


def _in_study_order(items: list[Any], study_of: Callable[[Any], str | None]) -> list[Any]:
    order = {s: i for i, s in enumerate(registry.names())}
    return sorted(items, key=lambda x: order.get(study_of(x) or "", len(order)))  # stable within a study


def _relocate(report: RunReport, stage: Path, out: Path) -> None:
    """Point the report's file paths from the (now renamed) stage to the output folder."""
    for o in report.studies:
        o.figures = [out / Path(f).relative_to(stage) if Path(f).is_relative_to(stage) else Path(f) for f in o.figures]
        if o.saved is not None and Path(o.saved).is_relative_to(stage):
            o.saved = out / Path(o.saved).relative_to(stage)


def job_reproduce(payload: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """One model's :func:`reproduce` as an executor job (``matrix``): the verdict rows and where the report is; a
    model that cannot run is its job's error."""
    rep = reproduce(**{k: v for k, v in payload.items() if k != "print_verdicts"})
    if payload.get("print_verdicts"):  # once, after the run's family decision
        for v in rep.verdicts:
            print(f"  {v.describe()}", flush=True)
    not_run = [(s.study, s.reason) for s in rep.report.studies if not s.ran]
    return list(rep.report.rows), {"out": str(rep.out), "report": str(rep.files["report.html"]), "not_run": not_run}
