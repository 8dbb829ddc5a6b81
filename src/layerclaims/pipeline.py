"""One pipeline under every door: the CLI (:mod:`layerclaims.cli`), the pytest plugin and the Python API.

:func:`reproduce` first checks everything it was given (:func:`layerclaims.validate.check_run`: model config,
device, dtype, every setting, the corpus, the output folder; no weights loaded), then takes the output folder's
lock and writes into a staging folder beside it (:class:`layerclaims.runfolder.RunFolder`): loads the model once,
runs each study, evaluates its claims into verdicts (:mod:`layerclaims.verdicts`), draws the figures, saves the
results and writes the report (:mod:`layerclaims.report`) there, and swaps the stage in as the output folder only
when all of that succeeded. A failed or interrupted run leaves the folder as it was.

A run of some of the studies into a folder that holds a run of the others (same model) keeps those: their saved
results, verdict rows and figures are copied into the stage and the report is rendered over all of them, so the
folder always holds one consistent report (``run.json`` records which run each study came from).
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import logging
import os
import re
import shlex
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from layerclaims import study as registry
from layerclaims.claims import CLAIMS, Claim, claim_reads, claims_for, group_runs, map_layer
from layerclaims.errors import LayerclaimsError, UsageError
from layerclaims.figures import draw_table
from layerclaims.report import RunReport, StudyOutcome, jsonable, write_report, write_verdicts
from layerclaims.results import package_versions
from layerclaims.runfolder import ROBUSTNESS_DIR, RunFolder
from layerclaims.validate import (  # noqa: F401  (study_options, parse_set, STUDY_OPTIONS: used by the CLI)
    STUDY_OPTIONS,
    Command,
    RunRequest,
    check_run,
    parse_set,
    study_options,
)
from layerclaims.verdicts import Verdict, apply_family, evaluate

log = logging.getLogger("layerclaims.pipeline")

DTYPES = ("float32", "float16", "bfloat16")
DEVICES = ("cpu", "cuda")
MANIFEST = "run.json"
MANIFEST_VERSION = 1
# Test hook (tests/unit/test_faults.py): ``LAYERCLAIMS_TEST_PAUSE_AT=STAGE[,STAGE]`` makes a run print
# "paused at STAGE" on stderr and sleep there (``LAYERCLAIMS_TEST_PAUSE_S`` seconds, default 30), so that a test can
# interrupt it at a known point. Stages: locked, loaded, studied (after the first study), staged (before the swap).
PAUSE_ENV = "LAYERCLAIMS_TEST_PAUSE_AT"


# --------------------------------------------------------------------------------------------------- helpers


def safe_dirname(name: str) -> str:
    """A folder name for a model name (``HuggingFaceTB/SmolLM2-135M`` -> ``HuggingFaceTB__SmolLM2-135M``)."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", name.replace("/", "__")).strip("._")
    return cleaned or "model"


def load_handle(name: str, *, device: str, dtype: str, device_map: str | None) -> Any:
    """``models.load_model`` (imported here so that ``claims``, ``diff`` and ``--help`` never import torch)."""
    models = importlib.import_module("layerclaims.models")
    return models.load_model(name, device=device, dtype=dtype, device_map=device_map)


def report_sections(study: str, result: Any) -> list[str]:
    """The Markdown sections study ``study`` adds to the report (its ``report_section``), drawn from its result."""
    section = registry.get(study).report_section
    return [] if section is None else [section(result)]


def plot_figures(study: str, result: Any, out_dir: Path, claims: Sequence[Claim] = ()) -> list[Path]:
    """Every figure study ``study`` declares for ``result`` and the run's ``claims``, drawn into ``out_dir``."""
    figures = registry.get(study).figures
    if figures is None:
        return []
    return draw_table(figures(result, claim_reads(claims, int(result.n_blocks))), out_dir)


def run_study(
    study: str, handle: Any, *, claims: Sequence[Claim] = (), progress: Say | None = None, **options: Any
) -> Any:
    """Run study ``study`` on a loaded model with ``Config`` overrides ``options``. A Config with a
    ``detail_layers`` field not given gets the layers ``claims`` read on this model (default: the package's claims
    of the study): the caller's side of it, since a study never reads the claims."""
    declared = registry.get(study)
    if "detail_layers" in declared.settings and options.get("detail_layers") is None:
        n_blocks = int(handle.n_blocks)
        layers = {map_layer(c, n_blocks) for c in (claims or claims_for(study))}
        if not layers - {None}:
            layers = {map_layer(c, n_blocks) for c in claims_for(study)}
        options = {**options, "detail_layers": tuple(sorted(x for x in layers if x is not None))}
    return declared.run(handle, registry.make_config(declared, options), progress)


def model_facts(handle: Any, device_map: str | None) -> dict[str, Any]:
    facts = {k: getattr(handle, k, None) for k in ("name", "revision", "source", "n_blocks", "device", "dtype")}
    facts = {k: (v if v is None or isinstance(v, int | float | str) else str(v)) for k, v in facts.items()}
    facts["device_map"] = device_map
    return facts


Say = Callable[[str], None]


def progress_printer(stream: Any = None) -> Say:
    """One line per stage on ``stream`` (stderr by default, terminal or not), with the seconds since the start."""
    t0 = time.perf_counter()

    def say(text: str) -> None:
        print(f"layerclaims [{time.perf_counter() - t0:7.1f} s] {text}", file=stream or sys.stderr, flush=True)

    return say


def _silent(text: str) -> None:
    log.info("%s", text)


@contextmanager
def _timed(timings: dict[str, float], name: str, say: Say, label: str | None = None) -> Iterator[None]:
    say(label or name)
    t0 = time.perf_counter()
    try:
        yield
    finally:
        timings[name] = time.perf_counter() - t0
        log.info("%s: %.2f s", name, timings[name])


def pause_point(stage: str) -> None:
    """The test hook :data:`PAUSE_ENV` (a no-op unless the variable names ``stage``)."""
    wanted = os.environ.get(PAUSE_ENV, "")
    if stage in {w.strip() for w in wanted.split(",") if w.strip()}:
        print(f"layerclaims: paused at {stage} (pid {os.getpid()})", file=sys.stderr, flush=True)
        time.sleep(float(os.environ.get("LAYERCLAIMS_TEST_PAUSE_S", "30")))


# --------------------------------------------------------------------------------------------------- reproduce


@dataclasses.dataclass
class Reproduced:
    """The outcome of one reproduce run: the report data, the verdicts, and the files written.

    ``verdicts``: the claims evaluated by this run; ``report.rows`` also holds the rows of studies kept from an
    earlier run in the same folder (``kept``: their names)."""

    report: RunReport
    verdicts: list[Verdict]
    out: Path
    files: dict[str, Path]
    kept: tuple[str, ...] = ()


def reproduce(
    model: str,
    *,
    out: str | os.PathLike[str],
    study_names: Sequence[str] | None = None,
    device: str = "cpu",
    dtype: str = "float32",
    device_map: str | None = None,
    options: dict[str, Any] | None = None,
    overrides: Sequence[str] = (),
    progress: bool | Say = False,
    command: str = "",
    argv: Sequence[str] | None = None,
    on_study: Callable[[StudyOutcome, list[Verdict]], None] | None = None,
    wait_s: float = 0.0,
    claims: Sequence[Claim] | None = None,
) -> Reproduced:
    """Check the inputs, then load ``model`` once, run each study, evaluate its claims, and write verdicts, figures,
    results, ``run.json`` and the report into ``out`` as one step (see the module docstring).

    ``progress``: True prints one line per stage on stderr, a callable receives those lines, False logs them at
    INFO. ``argv``: the command line as typed (``reproduce --model ...``), so that a fix suggests the same command
    with one option changed; without it the command is rebuilt from the arguments. ``on_study(outcome, verdicts)``
    is called as each study finishes (the CLI prints its verdict lines then). ``wait_s``: how long to wait for
    another run holding the folder's lock. ``claims``: the claims to evaluate (default: the package's;
    :func:`layerclaims.claims.combine_claims` adds a user's); a study runs once per distinct claim settings
    (:func:`layerclaims.claims.group_runs`), each claim's ``settings`` over the command-line options. Raises a
    LayerclaimsError (with ``fix``) for bad input, before any weights load where it can be told then; the folder is
    left as it was whenever this raises or is interrupted."""
    options = dict(options or {})
    out = Path(out)
    study_names = tuple(registry.names() if study_names is None else study_names)
    request = RunRequest(model, out, study_names, device, dtype, device_map, options, tuple(overrides))
    cmd = Command(tuple(argv)) if argv is not None else request.command()
    command = command or str(cmd)
    say: Say = progress if callable(progress) else (progress_printer() if progress else _silent)
    _quiet_library_progress()  # our progress is one line per stage; no bars from transformers / the hub
    say(f"checking {model}, the settings and the inputs")
    plan = check_run(request, cmd)
    timings: dict[str, float] = {}
    with RunFolder(out, wait_s=wait_s) as folder:
        pause_point("locked")
        earlier = _earlier_run(folder.out, study_names, model, cmd)
        with _timed(timings, "load model", say, f"load model {model}"):
            handle = load_handle(model, device=device, dtype=dtype, device_map=device_map)
        pause_point("loaded")
        facts = model_facts(handle, device_map)
        _check_same_model(earlier, facts, folder.out, cmd)
        with _os_errors_as_run_errors(folder, cmd):
            _, verdicts, report, kept_entries = _run_and_stage(
                handle,
                facts,
                _runs(study_names, claims),
                CLAIMS if claims is None else tuple(claims),
                plan.options,
                folder,
                earlier,
                timings,
                say,
                on_study,
                cmd,
                command,
            )
            pause_point("staged")
            folder.commit()
    say(f"wrote {out}")
    files = {name: out / name for name in ("verdicts.json", "verdicts.csv", "report.md", "report.html", MANIFEST)}
    _relocate(report, folder.stage, out)
    return Reproduced(report, verdicts, out, files, kept=tuple(e["study"] for e in kept_entries))


@contextmanager
def _os_errors_as_run_errors(folder: RunFolder, cmd: Command) -> Iterator[None]:
    """An OSError while the run writes its stage (a full disk, a folder made read-only meanwhile) stops the run as
    bad input does (exit 2, the folder as it was), with what the system said."""
    try:
        yield
    except OSError as exc:
        if isinstance(exc, LayerclaimsError):
            raise
        where = exc.filename or folder.stage
        raise UsageError(
            f"the run could not be written ({where}: {exc.strerror or exc}); {folder.out} was left as it was",
            fix=f"free disk space or give a writable folder, then re-run `{cmd}`",
        ) from None


StudyRun = tuple[str, dict[str, Any], tuple[Claim, ...]]


def _runs(study_names: Sequence[str], claims: Sequence[Claim] | None) -> list[StudyRun]:
    """(study, settings, claims) per study run: one per distinct claim settings of each study asked for."""
    pool = CLAIMS if claims is None else tuple(claims)
    return [(s, settings, tuple(group)) for s in study_names for (st, settings, group) in group_runs(pool) if st == s]


def _run_and_stage(
    handle: Any,
    facts: dict[str, Any],
    runs: Sequence[StudyRun],
    pool: Sequence[Claim],
    options: dict[str, dict[str, Any]],
    folder: RunFolder,
    earlier: dict[str, Any],
    timings: dict[str, float],
    say: Say,
    on_study: Callable[[StudyOutcome, list[Verdict]], None] | None,
    cmd: Command,
    command: str,
) -> tuple[list[StudyOutcome], list[Verdict], RunReport, list[dict[str, Any]]]:
    """Run the studies into the stage, carry the kept ones over, write verdicts, report and run.json there."""
    outcomes, verdicts = run_studies(handle, runs, options, folder.stage, timings, say, on_study, command=cmd)
    kept_outcomes, kept_rows, kept_entries = _carry_earlier(earlier, folder.out, folder.stage)
    kept_verdicts, kept_rows = _redecide_kept(kept_outcomes, kept_entries, kept_rows, pool)
    # Holm over the claims of the folder's studies, the kept ones re-decided with them (the family a run of every
    # study gives), then presuppositions across studies
    family = apply_family(verdicts + kept_verdicts)
    verdicts = family[: len(verdicts)]
    _carry_robustness(folder.out, folder.stage, str(facts.get("name")), cmd)
    all_outcomes = _in_study_order(outcomes + kept_outcomes, lambda o: o.study.split("-", 1)[0])  # label: study-...
    rows = [v.to_row() for v in family] + kept_rows
    # a kept entry from an older run.json may name no study (None): the claim id's prefix decides then
    study_of: dict[str, str | None] = {c.id: study for study, _, group in runs for c in group}
    for e in kept_entries:
        study_of.update((cid, e.get("base_study", e.get("study"))) for cid in e.get("claims") or [])
    rows = _in_study_order(rows, lambda r: study_of.get(str(r.get("claim"))) or _claim_study(str(r.get("claim"))))
    created = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    with _timed(timings, "write verdicts and report", say):
        write_verdicts(rows, folder.stage)
        report = RunReport(
            model=facts,
            studies=all_outcomes,
            rows=rows,
            timings=timings,
            packages=package_versions(),
            platform=_platform(),
            command=command,
            created=created,
        )
        write_report(report, folder.stage)
        owned = [(study, [c.id for c in group]) for study, _, group in runs]  # per outcome: its study and claims
        _write_manifest(folder.stage, facts, outcomes, owned, kept_entries, command, created)
    return outcomes, verdicts, report, kept_entries


def run_studies(
    handle: Any,
    runs: Sequence[StudyRun],
    options: dict[str, dict[str, Any]],
    stage: Path,
    timings: dict[str, float],
    say: Say,
    on_study: Callable[[StudyOutcome, list[Verdict]], None] | None = None,
    *,
    command: Command | None = None,
) -> tuple[list[StudyOutcome], list[Verdict]]:
    """The per-study loop over ``runs`` (study, claim settings, claims; :func:`_runs`): run the study with its
    Config overrides and the claims' settings over them, evaluate those claims, draw and save into ``stage``;
    ``on_study`` is told as each one finishes. A further run of a study (other claim settings) is labelled by its
    claims and writes into its own sub-folder."""
    name = str(getattr(handle, "name", "?"))
    outcomes: list[StudyOutcome] = []
    verdicts: list[Verdict] = []
    seen: set[str] = set()
    for i, (study, settings, group) in enumerate(runs):
        label = study if study not in seen else f"{study}-{'-'.join(c.id for c in group)[:60]}"
        seen.add(study)
        opts = {**options.get(study, {}), **settings}
        outcome, study_verdicts = _run_study(
            study, handle, name, stage, opts, timings, say, command, claims=group, label=label
        )
        outcomes.append(outcome)
        verdicts.extend(study_verdicts)
        if on_study is not None:
            on_study(outcome, study_verdicts)
        if i == 0:
            pause_point("studied")
    return outcomes, verdicts


def _quiet_library_progress() -> None:
    """No progress bars from transformers / the hub (ours are one line per stage, or nothing with --quiet)."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:  # pragma: no cover - transformers is a dependency
        return
    hf_logging.disable_progress_bar()


def _platform() -> str:
    import platform

    return platform.platform()


def _prefixed(study: str, text: str) -> str:
    return text if text.startswith(study) else f"{study}: {text}"


def _run_study(
    study: str,
    handle: Any,
    model: str,
    stage: Path,
    opts: dict[str, Any],
    timings: dict[str, float],
    say: Say,
    command: Command | None = None,
    *,
    claims: Sequence[Claim] | None = None,
    label: str | None = None,
) -> tuple[StudyOutcome, list[Verdict]]:
    label = label or study
    group = claims_for(study) if claims is None else tuple(claims)
    if label != study:  # a further run of the study (other settings): its files go into their own folder
        stage = stage / label
    outcome = StudyOutcome(study=label, ran=False, options=opts)
    try:
        with _timed(timings, f"{label}: run", say):
            result = run_study(study, handle, claims=group, progress=lambda text: say(_prefixed(study, text)), **opts)
    except LayerclaimsError as exc:
        # Bad input found only once the model ran (e.g. fewer usable marks than the cheap count promised): the run
        # stops, the folder keeps what it held.
        again = f"then re-run `{command}`" if command is not None else "then run again"
        raise type(exc)(
            f"study {study}: {exc.message}",
            fix=f"{exc.fix.rstrip('.')}; {again}" if exc.fix else f"correct the input named, {again}",
        ) from None
    outcome.ran = True
    outcome.seconds["run"] = timings[f"{label}: run"]
    outcome.provenance = dict(getattr(result, "provenance", {}) or {})
    with _timed(timings, f"{label}: evaluate claims", say):
        verdicts = [evaluate(c, result) for c in group]
    with _timed(timings, f"{label}: figures", say):
        try:
            outcome.figures = plot_figures(study, result, stage / "figures", group)
        except Exception as exc:  # a figure bug must not lose the verdicts; it is shown in the report
            log.warning("figures of study %s failed: %s", study, exc, exc_info=log.isEnabledFor(logging.DEBUG))
            outcome.problems.append(f"figures could not be drawn: {type(exc).__name__}: {exc}")
        try:
            outcome.sections = report_sections(study, result)
        except Exception as exc:  # as above: a section that cannot be written is a problem shown, not a lost run
            log.warning("report section of study %s failed: %s", study, exc, exc_info=log.isEnabledFor(logging.DEBUG))
            outcome.problems.append(f"its report section could not be written: {type(exc).__name__}: {exc}")
    with _timed(timings, f"{label}: save result", say):
        try:
            outcome.saved = Path(result.save(stage))
        except OSError:  # a full disk or a read-only folder: the run cannot be written, it stops
            raise
        except Exception as exc:  # a bug in saving: recorded, not fatal
            log.warning("saving study %s failed: %s", study, exc, exc_info=log.isEnabledFor(logging.DEBUG))
            outcome.problems.append(f"result could not be saved: {type(exc).__name__}: {exc}")
    for stage_name in ("evaluate claims", "figures", "save result"):
        outcome.seconds[stage_name] = timings[f"{label}: {stage_name}"]
    return outcome, verdicts


# --------------------------------------------------------------------------------------------------- run.json


def _rel(path: Path, base: Path) -> str:
    return Path(path).resolve().relative_to(base.resolve()).as_posix()


def _study_files(outcome: StudyOutcome, stage: Path) -> list[str]:
    files = [_rel(f, stage) for f in outcome.figures if Path(f).is_file()]
    if outcome.saved is not None:
        for p in (outcome.saved, outcome.saved.with_suffix(".npz")):
            if p.is_file():
                files.append(_rel(p, stage))
    return files


def _write_manifest(
    stage: Path,
    facts: dict[str, Any],
    outcomes: list[StudyOutcome],
    owned: list[tuple[str, list[str]]],
    kept: list[dict[str, Any]],
    command: str,
    created: str,
) -> None:
    """``run.json``: the model, and per study run what it was run with and which files and claims are its own (what
    a later run of the other study keeps). ``owned``: per outcome, its study and the ids of the claims it
    evaluated (a further run of a study for other claim settings has a label of its own as ``study``)."""
    entries = []
    for o, (base, claim_ids) in zip(outcomes, owned, strict=True):
        entries.append(
            {
                "study": o.study,
                "base_study": base,
                "ran": o.ran,
                "reason": o.reason,
                "fix": o.fix,
                "options": o.options,
                "provenance": o.provenance,
                "problems": o.problems,
                "seconds": o.seconds,
                "figures": [_rel(f, stage) for f in o.figures if Path(f).is_file()],
                "sections": list(getattr(o, "sections", []) or []),
                "saved": _rel(o.saved, stage) if o.saved is not None and o.saved.is_file() else None,
                "files": _study_files(o, stage),
                "claims": claim_ids,
                "command": command,
                "created": created,
                "model": facts,
            }
        )
    manifest = {
        "format_version": MANIFEST_VERSION,
        "model": facts,
        "command": command,
        "created": created,
        "studies": entries + kept,
    }
    (stage / MANIFEST).write_text(json.dumps(jsonable(manifest), indent=1, allow_nan=False) + "\n")


def _claim_study(claim_id: str) -> str | None:
    from layerclaims.claims import CLAIMS_BY_ID

    c = CLAIMS_BY_ID.get(claim_id)
    return c.study if c is not None else None


def read_manifest(folder: Path) -> dict[str, Any] | None:
    """The ``run.json`` of a run folder, or None when there is none (or it cannot be read)."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or manifest.get("format_version") != MANIFEST_VERSION:
        return None
    return manifest


def _earlier_run(out: Path, study_names: Sequence[str], model: str, cmd: Command) -> dict[str, Any]:
    """The earlier run's entries of the studies this run does not run (to keep), checked to be of ``model``.
    Refuses (UsageError) a folder whose other study is of another model, or of an older layout without run.json."""
    others = [s for s in registry.names() if s not in study_names]
    if not others or not out.is_dir():
        return {}
    manifest = read_manifest(out)
    all_studies = cmd.with_option("--study", "all")
    elsewhere = cmd.with_option("--out", "NEW_FOLDER")
    if manifest is None:
        rows = _old_rows(out)
        if any(_claim_study(str(r.get("claim"))) in others for r in rows):
            raise UsageError(
                f"{out} holds a run of {', '.join(others)} from an older layerclaims (no {MANIFEST}): a run of "
                f"{', '.join(study_names)} alone cannot keep those results",
                fix=f"run every study into it: `{all_studies}`, or give another folder: `{elsewhere}`",
            )
        return {}
    kept = {e["study"]: e for e in manifest.get("studies", []) if e.get("base_study", e.get("study")) in others}
    if not kept:
        return {}
    old_model = (manifest.get("model") or {}).get("name")
    if old_model != model:
        raise UsageError(
            f"{out} holds study {', '.join(kept)} of {old_model} ({manifest.get('created')}); a run of "
            f"{', '.join(study_names)} on {model} there would give a report that mixes two models",
            fix=f"run every study into it: `{all_studies}`, or give another folder: `{elsewhere}`",
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
            fix=f"run every study into it: `{cmd.with_option('--study', 'all')}`, or give another folder: "
            f"`{cmd.with_option('--out', 'NEW_FOLDER')}`",
        )


def _old_rows(out: Path) -> list[dict[str, Any]]:
    try:
        rows = json.loads((out / "verdicts.json").read_text())
    except (OSError, ValueError):
        return []
    return [r for r in rows if isinstance(r, dict)] if isinstance(rows, list) else []


def _carry_robustness(out: Path, stage: Path, model: str, cmd: Command) -> None:
    """Keep ``out/robustness`` (``layerclaims robustness --out OUT/robustness``) when it is of this model: the report
    then shows it. One of another model is refused rather than dropped or mixed in."""
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


def _carry_earlier(
    earlier: dict[str, Any], out: Path, stage: Path
) -> tuple[list[StudyOutcome], list[dict[str, Any]], list[dict[str, Any]]]:
    """Copy the kept studies' files (saved result, figures) from ``out`` into ``stage``; their outcomes (rebuilt
    from run.json), verdict rows (from verdicts.json) and run.json entries."""
    if not earlier:
        return [], [], []
    rows = _old_rows(out)
    outcomes: list[StudyOutcome] = []
    kept_rows: list[dict[str, Any]] = []
    entries: list[dict[str, Any]] = []
    for study, e in earlier["studies"].items():
        for rel in e.get("files", []):
            src, dst = out / rel, stage / rel
            if src.is_file():
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dst)
        prov = dict(e.get("provenance") or {})
        prov["kept from the earlier run"] = f"{e.get('created')}: {e.get('command')}"
        outcomes.append(
            StudyOutcome(
                study=study,
                ran=bool(e.get("ran")),
                reason=e.get("reason"),
                fix=e.get("fix"),
                options=dict(e.get("options") or {}),
                provenance=prov,
                figures=[stage / f for f in e.get("figures", []) if (stage / f).is_file()],
                sections=list(e.get("sections") or []),
                problems=list(e.get("problems") or []),
                saved=(stage / e["saved"]) if e.get("saved") and (stage / e["saved"]).is_file() else None,
                seconds=dict(e.get("seconds") or {}),
            )
        )
        claims = set(e.get("claims") or [])
        kept_rows.extend(r for r in rows if r.get("claim") in claims)
        entries.append(e)
    return outcomes, kept_rows, entries


def _redecide_kept(
    outcomes: Sequence[StudyOutcome],
    entries: Sequence[dict[str, Any]],
    rows: list[dict[str, Any]],
    pool: Sequence[Claim],
) -> tuple[list[Verdict], list[dict[str, Any]]]:
    """The kept studies' claims evaluated again on their saved results, so that they join this run's Holm family
    (their verdicts then equal those of one run over every study). Returns those verdicts and the rows that stay as
    the earlier run wrote them: a study whose claims are not all in this run's claims (a user's claims file not
    passed again) or whose saved result cannot be read; the report says so for each."""
    by_id = {c.id: c for c in pool}
    redecided: list[Verdict] = []
    for outcome, e in zip(outcomes, entries, strict=True):
        ids = [str(cid) for cid in e.get("claims") or []]
        missing = [cid for cid in ids if cid not in by_id]
        why = ""
        if missing:
            why = f"claims {', '.join(missing)} are not among this run's (pass the claims files that run had)"
        elif outcome.saved is None:
            why = "its saved result is missing"
        else:
            try:
                result = load_saved(outcome.saved)
                verdicts = [evaluate(by_id[cid], result) for cid in ids]
            except Exception as exc:  # an unreadable or older result: the earlier rows stand, and the report says so
                why = f"its saved result could not be read again ({type(exc).__name__}: {exc})"
        if why:
            outcome.problems.append(f"its verdicts keep the Holm family of the run that made them: {why}")
            continue
        redecided.extend(verdicts)
        outcome.provenance["verdicts"] = "re-decided from the saved result within this run's Holm family"
        rows = [r for r in rows if str(r.get("claim")) not in ids]
    return redecided, rows


def load_saved(saved: Path) -> Any:
    """A study's saved result (``<study>.json`` and ``.npz`` beside it), read by the study's result class."""
    return registry.get(saved.stem).load(saved.parent)


def _in_study_order(items: list[Any], study_of: Callable[[Any], str | None]) -> list[Any]:
    order = {s: i for i, s in enumerate(registry.names())}
    return sorted(items, key=lambda x: order.get(study_of(x) or "", len(order)))  # stable within a study


def _relocate(report: RunReport, stage: Path, out: Path) -> None:
    """Point the report's file paths from the (now renamed) stage to the output folder."""
    for o in report.studies:
        o.figures = [out / Path(f).relative_to(stage) if _under(f, stage) else Path(f) for f in o.figures]
        if o.saved is not None and _under(o.saved, stage):
            o.saved = out / Path(o.saved).relative_to(stage)


def _under(path: Path, base: Path) -> bool:
    try:
        Path(path).relative_to(base)
    except ValueError:
        return False
    return True


def check_unused_options(study_names: Sequence[str], given: dict[str, Any], overrides: Sequence[str]) -> None:
    """Warn about options that no study run will read (a bad --set is refused by :func:`check_run`)."""
    for item in overrides:
        target, _ = parse_set(item)
        if target.partition(".")[0] not in study_names:
            log.warning("--set %s names a study that is not run (%s): ignored", item, ", ".join(study_names))
    for option, value in given.items():
        if value is None:
            continue
        if not any(study_options(s, {option: value}) for s in study_names):
            log.warning("--%s applies to none of the studies run (%s): ignored", option, ", ".join(study_names))


def shell_command(argv: Sequence[str]) -> str:
    """``layerclaims`` + the argv, shell-quoted (the report's command line)."""
    return "layerclaims " + shlex.join(argv)


def job_reproduce(payload: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """One model's :func:`reproduce` as an executor job (``layerclaims matrix``): ``payload`` holds its plain-data
    arguments; returns the verdict rows and where the report is. A LayerclaimsError is the job's error (its fix in
    the message), so one model that cannot run does not lose the others."""
    args = dict(payload)
    print_verdicts = bool(args.pop("print_verdicts", False))
    model = str(args.pop("model"))
    out = Path(args.pop("out"))
    if print_verdicts:

        def on_study(outcome: StudyOutcome, verdicts: list[Verdict]) -> None:
            for v in verdicts:
                print(f"  {v.describe()}", flush=True)

        args["on_study"] = on_study
    rep = reproduce(model, out=out, **args)
    not_run = [(s.study, s.reason) for s in rep.report.studies if not s.ran]
    return list(rep.report.rows), {"out": str(out), "report": str(rep.files["report.html"]), "not_run": not_run}
