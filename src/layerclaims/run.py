"""One road to a verdict: :func:`decide_run` checks a run's request once (no weights loaded), loads the model once,
runs each study the claims need once per distinct claim settings (:func:`plan_runs`), evaluates the claims and
decides them all as one family (:func:`~layerclaims.verdicts.apply_family`). ``reproduce``, the Python API,
``matrix`` and the pytest plugin go through it (``robustness`` through the same check and ``apply_family``), so a
findings snapshot row equals the ``verdicts.json`` row of ``layerclaims reproduce`` on the same model and settings.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from layerclaims import study as registry
from layerclaims import tasks
from layerclaims.claims import CLAIMS, Claim, claim_reads, claims_for, group_runs, map_layer
from layerclaims.errors import LayerclaimsError
from layerclaims.identity import annotate, identify
from layerclaims.validate import Command, RunPlan, RunRequest, check_marks_with, check_run
from layerclaims.verdicts import Verdict, apply_family, evaluate

log = logging.getLogger("layerclaims.run")

Say = Callable[[str], None]


def silent(text: str) -> None:
    """A ``say`` that logs the stage at INFO instead of printing it."""
    log.info("%s", text)


@contextmanager
def timed(timings: dict[str, float], name: str, say: Say, label: str | None = None) -> Iterator[None]:
    """Say ``label`` (or ``name``), then record the seconds the block took as ``timings[name]``."""
    say(label or name)
    t0 = time.perf_counter()
    try:
        yield
    finally:
        timings[name] = time.perf_counter() - t0
        log.info("%s: %.2f s", name, timings[name])


@dataclasses.dataclass(frozen=True)
class StudyRun:
    """One run of a study: ``label`` is the study's name, or ``<study>-<claim ids>`` for a further run of it with
    other claim ``settings``; ``claims``: the claims decided on its result."""

    study: str
    label: str
    settings: tuple[tuple[str, Any], ...]
    claims: tuple[Claim, ...]


def study_names_of(claims: Sequence[Claim]) -> tuple[str, ...]:
    """The studies ``claims`` need, in the registry's study order (a run of exactly those)."""
    needed = {c.study for c in claims}
    return tuple(s for s in registry.names() if s in needed)


def plan_runs(study_names: Sequence[str], claims: Sequence[Claim] | None = None) -> list[StudyRun]:
    """The study runs of a run over ``study_names``: one per study and distinct claim settings of ``claims``
    (default: the package's), in study order, then in order of the claims' first appearance."""
    groups = group_runs(CLAIMS if claims is None else tuple(claims))
    runs: list[StudyRun] = []
    for study in study_names:
        for settings, group in ((s, g) for st, s, g in groups if st == study):
            again = any(r.study == study for r in runs)
            label = f"{study}-{'-'.join(c.id for c in group)[:60]}" if again else study
            runs.append(StudyRun(study, label, tuple(sorted(settings.items())), tuple(group)))
    return runs


def run_options(run: StudyRun, plan: RunPlan, n_blocks: int) -> dict[str, Any]:
    """The Config overrides of one study run: the run's options, the claims' settings over them, and a
    ``detail_layers`` not given: the layers this run's claims (else the study's package claims) read on this model,
    since a study never reads the claims; with it, a ``reads`` the study declares: those claims' ``(kind,
    layer, statistic)`` reads, and the run's claims' reads over layers (layer None)."""
    opts = {**plan.options.get(run.study, {}), **dict(run.settings)}
    if "detail_layers" in registry.get(run.study).settings and opts.get("detail_layers") is None:
        layers = {map_layer(c, n_blocks) for c in run.claims} - {None}
        if not layers:
            layers = {map_layer(c, n_blocks) for c in claims_for(run.study)} - {None}
        opts["detail_layers"] = tuple(sorted(x for x in layers if x is not None))
        if "reads" in registry.get(run.study).settings and opts.get("reads") is None:
            read = [c for c in run.claims if map_layer(c, n_blocks) is not None] or claims_for(run.study)
            found: set[tuple[str | None, int | None, str]] = {
                (r.kind, r.layer, r.statistic) for r in claim_reads(read, n_blocks) if r.layer is not None
            }
            found |= {(r.kind, None, r.statistic) for r in claim_reads(run.claims, n_blocks) if r.layer is None}
            opts["reads"] = tuple(sorted(found, key=str))
    return opts


def quiet_library_progress() -> None:
    """No progress bars from transformers / the hub (ours are one line per stage, or nothing with --quiet)."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def load_model(request: RunRequest) -> Any:
    """``models.load_model`` for the request (imported here: ``claims``, ``diff`` and ``--help`` need no torch)."""
    quiet_library_progress()
    models = importlib.import_module("layerclaims.models")
    return models.load_model(request.model, device=request.device, dtype=request.dtype, device_map=request.device_map)


def _key(value: Any) -> Any:
    """A hashable form of an option value (lists and dicts as tuples)."""
    if isinstance(value, dict):
        return tuple(sorted((k, _key(v)) for k, v in value.items()))
    if isinstance(value, list | tuple):
        return tuple(_key(v) for v in value)
    return value


def _prefixed(study: str, text: str) -> str:
    return text if text.startswith(study) else f"{study}: {text}"


class StudyResults:
    """Model handles and study results: one load per model and settings, one study run per (study, options)."""

    def __init__(self, load: Callable[[RunRequest], Any] | None = None) -> None:
        self._load = load
        self._handles: dict[tuple[str, str, str, str | None], Any] = {}
        self._results: dict[tuple[Any, ...], Any] = {}

    def handle(self, request: RunRequest) -> Any:
        key = (request.model, request.device, request.dtype, request.device_map)
        if key not in self._handles:
            self._handles[key] = (self._load or load_model)(request)
        return self._handles[key]

    def loaded(self, model: str, device: str) -> Any | None:
        """The handle of ``model`` on ``device`` if it was loaded (any dtype and device map), else None."""
        return next((h for (m, d, _, _), h in self._handles.items() if m == model and d == device), None)

    def result(self, study: str, handle: Any, options: dict[str, Any], say: Say = silent) -> Any:
        """:func:`run_study` once per (handle, study, options)."""
        key = (id(handle), study, _key(options))
        if key not in self._results:
            self._results[key] = run_study(study, handle, progress=lambda text: say(_prefixed(study, text)), **options)
        return self._results[key]


def run_study(study: str, handle: Any, *, progress: Say | None = None, **options: Any) -> Any:
    """Study ``study`` run on a loaded model with ``Config`` overrides ``options``."""
    declared = registry.get(study)
    return declared.run(handle, registry.make_config(declared, options), progress)


@dataclasses.dataclass
class Decision:
    """What :func:`decide_run` found: the study runs; ``verdicts``: this run's claims decided as one family (run
    order); ``joined``: the verdicts that joined the family (``join``), decided with it."""

    runs: list[StudyRun]
    verdicts: list[Verdict]
    joined: list[Verdict] = dataclasses.field(default_factory=list)

    @property
    def family(self) -> list[Verdict]:
        return [*self.verdicts, *self.joined]


def _start_workers(study_names: Sequence[str], claims: Sequence[Claim] | None) -> None:
    """:func:`layerclaims.tasks.start` with the warm-ups of the studies named; none when a name is unknown (the
    checks then say so)."""
    try:
        warm = [registry.get(r.study).warm for r in plan_runs(study_names, claims)]
    except LayerclaimsError:
        return
    tasks.start([w for w in dict.fromkeys(warm) if w is not None])


def decide_run(
    request: RunRequest,
    claims: Sequence[Claim] | None = None,
    *,
    command: Command | None = None,
    say: Say = silent,
    results: StudyResults | None = None,
    timings: dict[str, float] | None = None,
    on_plan: Callable[[RunPlan], None] | None = None,
    on_load: Callable[[Any], None] | None = None,
    on_result: Callable[[StudyRun, dict[str, Any], Any, list[Verdict]], None] | None = None,
    join: Callable[[], Sequence[Verdict]] | None = None,
) -> Decision:
    """Check ``request``, load its model once, run the studies ``claims`` (default: the package's) need among
    ``request.study_names`` and decide those claims as one family. ``command``: the command as typed (a fix repeats
    it with one option changed). Hooks: ``on_plan(plan)`` once the request is checked, ``on_load(handle)``,
    ``on_result(run, options, result, verdicts)`` after each study run (its claims evaluated alone), ``join()``: the
    verdicts decided elsewhere that join this run's family (an earlier run's kept studies)."""
    command = command or request.command()
    timings = {} if timings is None else timings
    _start_workers(request.study_names, claims)  # they import and warm up on the core the checks leave idle
    plan = check_run(request, command)
    if on_plan is not None:
        on_plan(plan)
    results = results or StudyResults()
    runs = plan_runs(request.study_names, claims)
    with timed(timings, "load model", say, f"load model {request.model}"):
        handle = results.handle(request)
    if on_load is not None:
        on_load(handle)
    check_marks_with(request, plan, command, getattr(handle, "tokenizer", None))  # if none was to be had before
    n_blocks = int(handle.n_blocks)
    verdicts: list[Verdict] = []
    from layerclaims.extract import shared_passes  # imported here: the model, hence torch, is loaded by now

    with shared_passes():
        for run in runs:
            opts = run_options(run, plan, n_blocks)
            try:
                with timed(timings, f"{run.label}: run", say):
                    result = results.result(run.study, handle, opts, say)
            except LayerclaimsError as exc:
                # Bad input found only once the model ran: the run stops, the folder keeps what it held. The command as
                # given would fail the same way, so the fix does not offer it again as the thing to run.
                again = f"then run it again with that change (it was: {command})"
                raise type(exc)(
                    f"study {run.study}: {exc.message}",
                    fix=f"{exc.fix.rstrip('.')}; {again}" if exc.fix else f"correct the input named, {again}",
                ) from None
            with timed(timings, f"{run.label}: evaluate claims", say):
                own = [evaluate(c, result) for c in run.claims]
            verdicts.extend(own)
            if on_result is not None:
                on_result(run, opts, result, own)
    joined = list(join()) if join is not None else []
    # a model whose name or config says it is a claim's own model: how that was shown, or why it was not
    family = annotate(apply_family([*verdicts, *joined]), identify(handle))
    return Decision(runs, family[: len(verdicts)], family[len(verdicts) :])
