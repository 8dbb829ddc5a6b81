"""Robustness: every claim evaluated across the choices a careful reader would vary (a specification curve).

:func:`plan`: the original path (every choice a study declares, :class:`layerclaims.study.Robustness`, at its
first value), every single-choice departure, and ``n_specs`` combinations drawn with ``draw_seed``. The request is
checked and each specification's claims decided as one family as every run's are. One job (one study run,
resampling reduced to the study's ``grid``) per distinct value of its ``run_choices``; the ``offset`` choice reads
that run at a neighbouring layer, the others are analysis variants of it. Output, a
:class:`~layerclaims.runfolder.RunFolder` of kind robustness: robustness.csv, robustness.json, summary.md ("holds
in k of n specifications") and figures/spec_curve_<claim>.png.
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from layerclaims import study as registry
from layerclaims.claims import CLAIMS, Claim, claims_for, group_runs, map_layer
from layerclaims.decision import VERDICTS
from layerclaims.errors import LayerclaimsError, UsageError
from layerclaims.executor import EXECUTORS, Job, run_jobs
from layerclaims.run import StudyResults, study_names_of
from layerclaims.runfolder import ROBUSTNESS as KIND
from layerclaims.runfolder import RunFolder, check_out_folder
from layerclaims.study import GridRun, Robustness
from layerclaims.validate import Command, RunRequest, check_run
from layerclaims.verdicts import apply_family, evaluate

MARKER = "robustness.json"
HEAD = ("study", "claim", "spec", "spec_origin", "spec_label")
TAIL = ("layer", "value", "ci_low", "ci_high", "verdict", "reason", "resampling")
_HANDLES = StudyResults()  # a worker keeps its loaded models between jobs


def studies() -> tuple[str, ...]:
    """The installed studies that declare robustness choices."""
    return tuple(name for name, st in registry.registry().items() if st.robustness is not None)


def _declared(study: str) -> Robustness:
    rob = registry.get(study).robustness
    if rob is None:
        raise UsageError(
            f"study {study!r} declares no robustness choices",
            fix=f"choose one of {', '.join(studies()) or 'none installed'} with --study, or --study all",
        )
    return rob


def choices(study: str) -> Mapping[str, tuple[str, ...]]:
    """Study ``study``'s choices and their values, the original's first."""
    return _declared(study).choices


def defaults(study: str) -> dict[str, str]:
    return {name: vals[0] for name, vals in choices(study).items()}


@dataclass(frozen=True)
class Spec:
    """One specification: ``id`` (``A000`` / ``B000``...), ``study``, ``values`` (choice -> value, every choice of
    the study), ``origin`` (``original``, ``single`` or ``random``) and ``label`` (the departures, or ``original``)."""

    id: str
    study: str
    values: dict[str, str]
    origin: str
    label: str


def parse_only(items: Sequence[str] | None) -> dict[str, dict[str, tuple[str, ...]]]:
    """``NAME`` or ``NAME=V1,V2`` (restrict the departures to these choices and values) -> per-study choices; a
    choice name that several studies declare (``layer``, ``block``) applies to each of them."""
    if not items:
        return {s: dict(choices(s)) for s in studies()}
    valid: dict[str, list[tuple[str, tuple[str, ...]]]] = {}
    for study in studies():
        for name, vals in choices(study).items():
            valid.setdefault(name, []).append((study, vals))
    chosen: dict[str, dict[str, tuple[str, ...]]] = {s: {} for s in studies()}
    for item in items:
        name, _, raw = item.partition("=")
        name = name.strip()
        if name not in valid:
            listing = "; ".join(f"{n}: {', '.join(v[0][1])}" for n, v in valid.items())
            raise UsageError(f"unknown choice {name!r}. Valid choices and values: {listing}")
        for study, vals in valid[name]:
            want = tuple(v.strip() for v in raw.split(",")) if raw else vals
            bad = [v for v in want if v not in vals]
            if bad:
                raise UsageError(f"unknown value(s) {bad} for choice {name!r}: valid values are {', '.join(vals)}")
            chosen[study][name] = tuple(dict.fromkeys((vals[0], *want)))
    return chosen


def plan(
    study_names: Sequence[str] | None = None,
    *,
    n_specs: int = 0,
    draw_seed: int = 0,
    only: dict[str, dict[str, tuple[str, ...]]] | None = None,
) -> list[Spec]:
    """The specifications evaluated (see the module docstring); ``draw_seed`` seeds the random combinations."""
    if n_specs < 0:
        raise UsageError(f"--n-specs {n_specs}: give 0 or more random combinations")
    only = only or parse_only(None)
    out: list[Spec] = []
    for study in studies() if study_names is None else study_names:
        out += _study_specs(study, only.get(study, {}), n_specs, draw_seed)
    return out


def _study_specs(study: str, only: dict[str, tuple[str, ...]], n_specs: int, draw_seed: int) -> list[Spec]:
    base = defaults(study)
    prefix = registry.get(study).spec_prefix or study[:1].upper()
    specs: dict[tuple[tuple[str, str], ...], Spec] = {}

    def add(values: dict[str, str], origin: str) -> None:
        key = tuple(sorted(values.items()))
        if key not in specs:
            label = " ".join(f"{k}={v}" for k, v in values.items() if v != base[k]) or "original"
            specs[key] = Spec(f"{prefix}{len(specs):03d}", study, dict(values), origin, label)

    add(base, "original")
    for name, vals in only.items():
        for v in vals[1:]:
            add({**base, name: v}, "single")
    rng = np.random.default_rng(draw_seed)
    varied = {n: v for n, v in only.items() if len(v) > 1}
    space = math.prod(len(v) for v in varied.values())
    target = len(specs) + min(n_specs, max(space - len(specs), 0))
    tries = 0
    while len(specs) < target and tries < 100 * (n_specs + 1):
        tries += 1
        add({**base, **{n: str(rng.choice(v)) for n, v in varied.items()}}, "random")
    return list(specs.values())


class _Shifted:
    """A study result read ``offset`` layers (blocks) away from where the claims map."""

    def __init__(self, result: Any, offset: int) -> None:
        self.result, self.offset = result, offset
        self.model, self.n_blocks = result.model, result.n_blocks

    def measure(self, statistic: str, *, layer: int | None, kind: str | None = None) -> Any:
        return self.result.measure(statistic, layer=None if layer is None else layer + self.offset, kind=kind)


def _rows(result: Any, claims: Sequence[Claim], spec: str, offset: int) -> list[dict[str, Any]]:
    """One study run's ``claims`` evaluated on ``result`` read ``offset`` layers away, decided as one family."""
    claims = [c for c in claims if not (c.layer is None and offset != 0)]  # an all-layer claim has no neighbour
    verdicts = apply_family([evaluate(c, _Shifted(result, offset) if offset else result) for c in claims])
    return [
        {
            "spec": spec,
            "claim": claim.id,
            "layer": None if (mapped := map_layer(claim, result.n_blocks)) is None else mapped + offset,
            "value": v.value,
            "ci_low": v.ci[0] if v.ci else None,
            "ci_high": v.ci[1] if v.ci else None,
            "verdict": v.verdict,
            "reason": v.reason,
        }
        for claim, v in zip(claims, verdicts, strict=True)
    ]


def job(payload: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """One study run of the grid (an executor job) for the ``run_choices`` values ``payload["values"]``; its
    ``claims`` evaluated for each of its ``evaluations`` (``[{spec, offset, variant}]``) on the result of the
    analysis variant, read ``offset`` layers from the claim's."""
    from layerclaims import activations

    declared = registry.get(payload["study"])
    rob = _declared(payload["study"])
    handle = _HANDLES.handle(payload["request"])
    n = int(handle.n_blocks)
    claims, evaluations = payload["claims"], payload["evaluations"]
    top = n if declared.layer_unit == "hidden_state" else n - 1
    offsets = {int(ev["offset"]) for ev in evaluations} | {0}
    mapped = {m for c in claims if (m := map_layer(c, n)) is not None}
    layers = sorted({m + o for m in mapped for o in offsets} & set(range(top + 1)))
    before = activations.STATS.as_dict()
    variants = [ev["variant"] for ev in evaluations]
    results, stats = rob.run(handle, GridRun(payload["values"], variants, layers, rob.grid, payload["settings"]))
    after = activations.STATS.as_dict()
    rows = [
        r for ev, res in zip(evaluations, results, strict=True) for r in _rows(res, claims, ev["spec"], ev["offset"])
    ]
    return rows, {**stats, "cache": {k: after[k] - before[k] for k in after}}


def jobs_for(specs: Sequence[Spec], request: RunRequest, claims: Sequence[Claim] | None = None) -> list[Job]:
    """The specifications as jobs: one per study, distinct values of its ``run_choices`` and distinct claim settings
    of ``claims`` (default: the package's; those settings are the original path of that run)."""
    runs = group_runs(claims_for(None, claims))
    grouped: dict[tuple[str, tuple[tuple[str, str], ...]], list[Spec]] = {}
    for spec in specs:
        run_key = tuple((k, spec.values[k]) for k in _declared(spec.study).run_choices)
        grouped.setdefault((spec.study, run_key), []).append(spec)
    jobs: list[Job] = []
    for (study, key), group in grouped.items():
        rob = _declared(study)
        evals = [
            {
                "spec": s.id,
                "offset": int(s.values[rob.offset]),
                "variant": {k: v for k, v in s.values.items() if k != rob.offset and k not in rob.run_choices},
            }
            for s in group
        ]
        for _, settings, run_claims in (r for r in runs if r[0] == study):
            payload = {
                "request": request,
                "study": study,
                "values": dict(key),
                "settings": settings,
                "claims": run_claims,
                "evaluations": evals,
            }
            jobs.append(Job(f"{group[0].id[:1]}-job{len(jobs):03d}", job, payload))
    return jobs


@dataclass
class Outcome:
    """What :func:`run` produced: the folder, the rows, one summary line per claim, the failed jobs."""

    out: Path
    rows: list[dict[str, Any]]
    lines: list[str]
    failed: list[dict[str, Any]] = field(default_factory=list)  # job id, error, the specs it held (a list)
    seconds: float = 0.0
    stats: dict[str, Any] = field(default_factory=dict)


def run(
    model: str,
    out: str | os.PathLike[str],
    *,
    study_names: Sequence[str] | None = None,
    n_specs: int = 0,
    draw_seed: int = 0,
    only: Sequence[str] | None = None,
    executor: str = "local",
    address: str | None = None,
    workers: int | None = None,
    device: str = "cpu",
    dtype: str = "float32",
    progress: Callable[[str], None] | None = None,
    claims: Sequence[Claim] | None = None,
    command: Any = None,
) -> Outcome:
    """Every claim of ``study_names`` (default: each study with robustness choices) of ``claims`` (default: the
    package's) over the planned specifications on ``model``, written to ``out``; every input is checked before any
    model loads. ``command``: the command as typed (:class:`~layerclaims.validate.Command`), which fixes repeat."""
    say = progress or (lambda _msg: None)
    out = Path(out)
    if executor not in EXECUTORS:
        raise UsageError(f"unknown executor {executor!r}: use one of {', '.join(EXECUTORS)}")
    chosen = parse_only(only)
    names = tuple(studies() if study_names is None else study_names)
    pool = tuple(c for s in names for c in claims_for(s, claims))
    if not pool:
        raise UsageError(
            f"no claim of study {', '.join(names)} to vary",
            fix="give claims of it with --claims PATH, or choose another --study",
        )
    specs = plan(study_names_of(pool), n_specs=n_specs, draw_seed=draw_seed, only=chosen)
    check_out_folder(out, kind=KIND)
    command = command or Command(("robustness", "--model", model, "--out", str(out)))
    request = RunRequest(model, None, study_names_of(pool), device, dtype)
    check_run(request, command)  # before any worker starts
    jobs = jobs_for(specs, request, pool)
    say(f"{len(specs)} specifications in {len(jobs)} jobs on {model} ({executor} executor)")
    t0 = time.perf_counter()
    done = [0]

    def tick(res: Any) -> None:
        done[0] += 1
        state = f"failed: {res.error}" if res.error else f"{res.seconds:.1f} s"
        say(f"  [{done[0]}/{len(jobs)}] {res.id} {state}")

    results = run_jobs(jobs, executor=executor, workers=workers, address=address, on_done=tick)
    seconds = time.perf_counter() - t0
    by_spec = {s.id: s for s in specs}
    rows: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    totals = {"forward_s": 0.0, "analysis_s": 0.0, "cache_hits": 0, "cache_misses": 0, "model_runs_saved": 0}
    for job, res in zip(jobs, results, strict=True):
        if res.error:
            failed.append({"job": res.id, "error": res.error, "specs": [e["spec"] for e in job.payload["evaluations"]]})
            continue
        for key in ("forward_s", "analysis_s"):
            totals[key] += float(res.stats.get(key, 0.0))
        cache = res.stats.get("cache", {})
        for key, name in (("hits", "cache_hits"), ("misses", "cache_misses"), ("runs_saved", "model_runs_saved")):
            totals[name] += int(cache.get(key, 0))
        for row in res.rows:
            spec = by_spec[row["spec"]]
            rows.append(
                {"study": spec.study, "spec_origin": spec.origin, "spec_label": spec.label, **row, **spec.values}
            )
    if not rows and failed:
        raise LayerclaimsError(
            f"every job failed, nothing written (the folder {out} is unchanged); the first error: {failed[0]['error']}"
        )
    outcome = Outcome(out, rows, summary_lines(rows, pool), failed, seconds, totals)
    write_folder(outcome, model, specs, pool)
    return outcome


def summary_lines(rows: Sequence[dict[str, Any]], claims: Sequence[Claim] = CLAIMS) -> list[str]:
    """One line per claim: ``A5 holds in k of n specifications`` (plus fails / not evaluated counts)."""
    lines = []
    for claim in claims:
        mine = [r for r in rows if r["claim"] == claim.id]
        if not mine:
            continue
        count = {w: sum(r["verdict"] == w for r in mine) for w in VERDICTS}
        orig = next((r["verdict"] for r in mine if r["spec_origin"] == "original"), "?")
        rest = ", ".join(f"{v} {w}" for w, v in count.items() if w != "holds" and v)
        lines.append(
            f"{claim.id} holds in {count['holds']} of {len(mine)} specifications ({rest or 'no other'}; "
            f"original path: {orig})"
        )
    return lines


def write_folder(outcome: Outcome, model: str, specs: Sequence[Spec], claims: Sequence[Claim]) -> None:
    """Write everything into the stage of ``outcome.out``, then swap it in as a whole."""
    from layerclaims.figures.robustness import spec_curve

    rows, lines, failed = outcome.rows, outcome.lines, outcome.failed
    grids = {s: dict(_declared(s).grid) for s in dict.fromkeys(sp.study for sp in specs)}
    by_id = {c.id: c for c in claims}
    with RunFolder(outcome.out, kind=KIND) as folder:
        staging = folder.stage
        (staging / "figures").mkdir()
        # every study's choices, once each (a choice named ``layer`` is the specification's layer): one schema
        cols = list(dict.fromkeys([*HEAD, *(c for study in studies() for c in choices(study)), *TAIL]))
        with (staging / "robustness.csv").open("w", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, fieldnames=cols, extrasaction="ignore")
            w.writeheader()
            for r in rows:
                w.writerow({**r, "resampling": " ".join(f"{k}={v}" for k, v in grids[r["study"]].items())})
        for claim_id in dict.fromkeys(r["claim"] for r in rows):
            claim = by_id[claim_id]
            spec_curve([r for r in rows if r["claim"] == claim_id], claim, choices(claim.study), staging / "figures")
        summary = {
            "model": model,
            "lines": list(lines),
            "n_specifications": {s: sum(sp.study == s for sp in specs) for s in grids},
            "specifications": [vars(s) for s in specs],
            "failed_jobs": list(failed),
            "grid_resampling": grids,
            "notes": [
                "resampling counts are reduced in the grid (grid_resampling); the studies' defaults are larger",
                "layer/block departures read the same study run at the neighbouring layer/block",
                *(note for st in grids for note in _declared(st).notes),
            ],
            "seconds": outcome.seconds,
            "totals": outcome.stats,
        }
        (staging / MARKER).write_text(json.dumps(summary, indent=2, default=str) + "\n", encoding="utf-8")
        md = [f"# Robustness of the claims on {model}", "", *(f"- {line}" for line in lines)]
        if failed:
            md += ["", "Failed jobs (their specifications are missing above):"]
            md += [f"- {f['job']}: {f['error']}" for f in failed]
        (staging / "summary.md").write_text("\n".join(md) + "\n", encoding="utf-8")
        folder.commit()
