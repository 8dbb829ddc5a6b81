"""Robustness: every claim evaluated across the choices a careful reader would vary (a specification curve).

A *specification* assigns one value to each choice of a study (:data:`CHOICES`); the original path is every
choice at its default. The full product is thousands of paths, so :func:`plan` evaluates

1. the original path;
2. every single-choice departure from it (each other value of each choice, the rest kept at the original);
3. ``n_specs`` further combinations drawn at random (each choice uniformly, seeded, duplicates skipped),

and says which (column ``spec_kind``: ``original``, ``single``, ``random``). Choices (defaults first):

Study A (punctuation): ``selection`` first | random-0..4 (random with seed 0..4), ``line_endings`` crlf | lf
(the served text with CRLF, or the LF body: :func:`layerclaims.data.load_study_text`), ``edition`` pg219 | pg526,
``n`` 250 | 150 | 500, ``bins`` 15 | 10 | 20 | 30, ``trim`` z5 | z3 | none (no dimension trimmed), ``mi_estimator``
plugin | miller-madow, ``dimensions`` all | standardised | drop-top1 | drop-top3 (each dimension standardised over
the marks, or the 1 or 3 dimensions of largest variance removed: rogue dimensions and massive activations),
``layer`` 0 | -1 | +1 (the claim's mapped layer and its neighbours).

Study B (qk): ``split_word`` last | mean, ``template`` original | next | here (``"The next word is {w}"``,
``"The word that comes next is {w}"``, ``"Here is the next word: {w}"``), ``vectors`` raw | centred (the mean
vector over the words subtracted at each block), ``similarity`` cosine | pearson (cosine of each vector centred
over its own dimensions = Pearson r between vectors), ``rsa`` pearson | spearman, ``block`` 0 | -1 | +1.

Cost. Jobs are grouped by what needs a model run: study A runs once per distinct (selection, line endings,
edition, n, bins, trim, estimator); layer departures read the same result at the neighbouring layer (the detail
layers include the neighbours). Forward passes go through the activation cache (:mod:`layerclaims.activations`), so
a specification that changes only the analysis reads its vectors from disk. Study B extracts Q/K/V once per
(template, split-word policy) and derives every analysis variant from those vectors. Bootstrap and permutation
counts are reduced for the grid (:data:`GRID_SETTINGS`, written to robustness.json and a CSV column).

Spearman RSA is computed on the ranks of each matrix's off-diagonal entries (Pearson r of ranks is Spearman's
rho, and the Mantel p-value permutes items, which ranks commute with); its bootstrap resamples those full-sample
ranks rather than re-ranking each resample (an approximation, said in robustness.json).

Output (one folder, written to a staging folder beside ``out`` and moved into place only when complete; an
existing folder from an earlier robustness run is replaced as a whole, any other non-empty folder is refused):
``robustness.csv`` (claim, spec, one column per choice, value, interval, verdict), ``robustness.json`` (the plan,
the summary, failed jobs with their errors, settings, timings, cache counters), ``summary.md`` (one line per claim:
"holds in k of n specifications") and ``figures/spec_curve_<claim>.png``.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from layerclaims.errors import LayerclaimsError, UsageError

STUDIES: tuple[str, ...] = ("punctuation", "qk")
TEMPLATES: dict[str, str] = {
    "original": "The next word is {w}",
    "next": "The word that comes next is {w}",
    "here": "Here is the next word: {w}",
}
EDITIONS: dict[str, str] = {"pg219": "heart-of-darkness", "pg526": "heart-of-darkness-526"}
TRIMS: dict[str, float] = {"z5": 5.0, "z3": 3.0, "none": 1e9}  # |z| <= sqrt(n - 1) < 1e9: nothing is trimmed
SELECTIONS: tuple[str, ...] = ("first", *(f"random-{s}" for s in range(5)))

CHOICES: dict[str, dict[str, tuple[str, ...]]] = {
    "punctuation": {
        "selection": SELECTIONS,
        "line_endings": ("crlf", "lf"),
        "edition": tuple(EDITIONS),
        "n": ("250", "150", "500"),
        "bins": ("15", "10", "20", "30"),
        "trim": tuple(TRIMS),
        "mi_estimator": ("plugin", "miller-madow"),
        "dimensions": ("all", "standardised", "drop-top1", "drop-top3"),
        "layer": ("0", "-1", "+1"),
    },
    "qk": {
        "split_word": ("last", "mean"),
        "template": tuple(TEMPLATES),
        "vectors": ("raw", "centred"),
        "similarity": ("cosine", "pearson"),
        "rsa": ("pearson", "spearman"),
        "block": ("0", "-1", "+1"),
    },
}
"""Each study's choices and their values, the original's first."""

OFFSET_CHOICE = {"punctuation": "layer", "qk": "block"}
GRID_SETTINGS: dict[str, dict[str, int]] = {
    "punctuation": {
        "n_boot": 200,
        "n_boot_clusters": 10,
        "n_perm": 200,
        "cluster_n_boot": 10,
    },
    "qk": {"n_boot": 200, "n_perm": 1000},
}
"""Reduced resampling counts used in the grid (the studies' defaults: n_boot 1000, n_boot_clusters 200, n_perm 1000,
cluster_n_boot 20; study B n_boot 1000, n_perm 10000)."""

MARKER = "robustness.json"


@dataclass(frozen=True)
class Spec:
    """One specification: ``id`` (``A000`` / ``B000``...), ``study``, ``values`` (choice -> value, every choice of
    the study), ``kind`` (``original``, ``single`` or ``random``) and ``label`` (the departures, or ``original``)."""

    id: str
    study: str
    values: dict[str, str]
    kind: str
    label: str


def defaults(study: str) -> dict[str, str]:
    return {name: vals[0] for name, vals in CHOICES[study].items()}


def parse_only(items: Sequence[str] | None) -> dict[str, dict[str, tuple[str, ...]]]:
    """``NAME`` or ``NAME=V1,V2`` (restrict the departures to these choices and values) -> per-study choices.
    UsageError naming every valid choice and value for an unknown one."""
    if not items:
        return {s: dict(c) for s, c in CHOICES.items()}
    valid = {name: (study, vals) for study, ch in CHOICES.items() for name, vals in ch.items()}
    chosen: dict[str, dict[str, tuple[str, ...]]] = {s: {} for s in CHOICES}
    for item in items:
        name, _, raw = item.partition("=")
        name = name.strip()
        if name not in valid:
            listing = "; ".join(f"{n}: {', '.join(v)}" for n, (_, v) in valid.items())
            raise UsageError(f"unknown choice {name!r}. Valid choices and values: {listing}")
        study, vals = valid[name]
        want = tuple(v.strip() for v in raw.split(",")) if raw else vals
        bad = [v for v in want if v not in vals]
        if bad:
            raise UsageError(f"unknown value(s) {bad} for choice {name!r}: valid values are {', '.join(vals)}")
        chosen[study][name] = tuple(dict.fromkeys((vals[0], *want)))
    return chosen


def plan(
    studies: Sequence[str] = STUDIES,
    *,
    n_specs: int = 0,
    seed: int = 0,
    only: dict[str, dict[str, tuple[str, ...]]] | None = None,
) -> list[Spec]:
    """The specifications evaluated (see the module docstring)."""
    if n_specs < 0:
        raise UsageError(f"--n-specs {n_specs}: give 0 or more random combinations")
    only = only or parse_only(None)
    out: list[Spec] = []
    for study in studies:
        if study not in CHOICES:
            raise UsageError(f"unknown study {study!r}: choose from {', '.join(STUDIES)}")
        prefix = "A" if study == "punctuation" else "B"
        base = defaults(study)
        seen: set[tuple[tuple[str, str], ...]] = set()

        def add(
            values: dict[str, str],
            kind: str,
            study: str = study,
            prefix: str = prefix,
            seen: set[tuple[tuple[str, str], ...]] = seen,
        ) -> None:
            key = tuple(sorted(values.items()))
            if key in seen:
                return
            seen.add(key)
            diff = [f"{k}={v}" for k, v in values.items() if v != defaults(study)[k]]
            out.append(Spec(f"{prefix}{len(seen) - 1:03d}", study, dict(values), kind, " ".join(diff) or "original"))

        add(base, "original")
        for name, vals in only[study].items():
            for v in vals[1:]:
                add({**base, name: v}, "single")
        rng = np.random.default_rng(seed)
        varied = {n: v for n, v in only[study].items() if len(v) > 1}
        space = math.prod(len(v) for v in varied.values()) if varied else 1
        target = len(seen) + min(n_specs, max(space - len(seen), 0))
        tries = 0
        while len(seen) < target and tries < 100 * (n_specs + 1):
            tries += 1
            add({**base, **{n: str(rng.choice(v)) for n, v in varied.items()}}, "random")
    return out


# ------------------------------------------------------------------------------------------------ jobs


def _verdict_word(v: Any) -> str:
    word = getattr(v, "verdict", None)
    if word is not None:
        return str(getattr(word, "value", word))
    return {True: "holds", False: "fails"}.get(v.holds, "not evaluated")


class _Shifted:
    """A study result read ``offset`` layers (blocks) away from where the claims map."""

    def __init__(self, result: Any, offset: int) -> None:
        self.result, self.offset = result, offset
        self.model, self.n_blocks = result.model, result.n_blocks

    def measure(self, statistic: str, *, layer: int | None, kind: str | None = None) -> Any:
        return self.result.measure(statistic, layer=None if layer is None else layer + self.offset, kind=kind)


def _rows(result: Any, study: str, evaluations: list[dict[str, Any]]) -> list[dict[str, Any]]:
    from layerclaims.claims import claims_for, map_layer
    from layerclaims.verdicts import apply_presuppositions, evaluate

    rows = []
    for ev in evaluations:
        offset = int(ev["offset"])
        claims = [c for c in claims_for(study) if not (c.layer is None and offset != 0)]  # all-layer: no neighbour
        # Each specification is read as a run is: a claim whose premise fails in it fails (A2 and A6 on A1).
        verdicts = apply_presuppositions([evaluate(c, _Shifted(result, offset) if offset else result) for c in claims])
        for claim, v in zip(claims, verdicts, strict=True):
            mapped = map_layer(claim, result.n_blocks)
            rows.append(
                {
                    "spec": ev["spec"],
                    "claim": claim.id,
                    "layer": None if mapped is None else mapped + offset,
                    "value": v.value,
                    "ci_low": v.ci[0] if v.ci else None,
                    "ci_high": v.ci[1] if v.ci else None,
                    "verdict": _verdict_word(v),
                    "reason": v.reason,
                }
            )
    return rows


def _model(payload: dict[str, Any]) -> Any:
    from layerclaims.executor import model

    return model(payload["model"], payload.get("device", "cpu"), payload.get("dtype", "float32"))


def job_punctuation(payload: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """One study A run (``payload["settings"]``: Config fields) evaluated at each layer offset of
    ``payload["evaluations"]`` (``[{spec, offset}]``)."""
    from layerclaims import activations
    from layerclaims.claims import claims_for, map_layer
    from layerclaims.studies import punctuation

    handle = _model(payload)
    n = int(handle.n_blocks)
    offsets = {int(ev["offset"]) for ev in payload["evaluations"]}
    mapped = {map_layer(c, n) for c in claims_for("punctuation") if c.layer is not None}
    detail = sorted({m + o for m in mapped if m is not None for o in offsets | {0}} & set(range(n + 1)))
    before = activations.STATS.as_dict()
    t0 = time.perf_counter()
    result = punctuation.run(handle, punctuation.Config(**payload["settings"], detail_layers=tuple(detail)))
    after = activations.STATS.as_dict()
    timings = result.provenance.get("timings", {})
    stats = {
        "seconds": time.perf_counter() - t0,
        "forward_s": float(timings.get("forward_s", 0.0)),
        "analysis_s": float(timings.get("analysis_s", 0.0)),
        "tokenize_s": float(timings.get("tokenize_s", 0.0)),
        "cache": {k: after[k] - before[k] for k in after},
        "corpus": result.provenance.get("corpus"),
    }
    return _rows(result, "punctuation", payload["evaluations"]), stats


def _rank_offdiagonal(S: np.ndarray) -> np.ndarray:
    """Each matrix's off-diagonal entries replaced by their average ranks (symmetric); the diagonal by n + 1."""
    from scipy.stats import rankdata

    out = np.empty_like(S)
    n = S.shape[-1]
    iu = np.triu_indices(n, 1)
    for b in range(S.shape[0]):
        r = rankdata(S[b][iu])
        M = np.full((n, n), float(r.size + 1))
        M[iu] = r
        M[(iu[1], iu[0])] = r
        out[b] = M
    return out


def similarity_matrices(vecs: dict[str, np.ndarray], vectors: str, similarity: str) -> dict[str, np.ndarray]:
    """``{q,k,v: [n_blocks, n_words, n_words]}`` from word vectors ``[n_blocks, n_words, d]``: ``vectors``
    ``"centred"`` subtracts the mean over words first; ``similarity`` ``"pearson"`` centres each vector over its
    own dimensions before the cosine (so each entry is Pearson r between two vectors)."""
    from layerclaims.metrics.similarity import cosine_matrix

    out = {}
    for k, X in vecs.items():
        Y = X - X.mean(axis=1, keepdims=True) if vectors == "centred" else X
        if similarity == "pearson":
            Y = Y - Y.mean(axis=2, keepdims=True)
        out[k] = np.stack([cosine_matrix(Yb) for Yb in Y])
    return out


def job_qk(payload: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Study B's vectors extracted once for ``payload["template"]`` and ``payload["split_word"]``; every analysis
    variant of ``payload["evaluations"]`` (``[{spec, vectors, similarity, rsa, offset}]``) derived from them."""
    from layerclaims.studies import qk

    handle = _model(payload)
    qk.check_model(handle)
    # the grid's resampling counts are a plain mapping (tests shrink them): Config checks each value it is given
    options: dict[str, Any] = {**GRID_SETTINGS["qk"]}
    config = qk.Config(template=TEMPLATES[payload["template"]], multi_token=payload["split_word"], **options)
    blocks = handle.check_blocks(None)
    t0 = time.perf_counter()
    prompts = qk.tokenize_prompts(handle.tokenizer, config.words, config.template, config.add_bos)
    vecs = qk.word_vectors(handle, prompts, blocks, config.multi_token, config.batch_size)
    t1 = time.perf_counter()
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for ev in payload["evaluations"]:
        groups.setdefault((ev["vectors"], ev["similarity"], ev["rsa"]), []).append(ev)
    rows: list[dict[str, Any]] = []
    for (vectors, similarity, rsa_method), evs in groups.items():
        sims = similarity_matrices(vecs, vectors, similarity)
        stats = qk.analyse(sims, config.word_labels, blocks, config)
        if rsa_method == "spearman":
            ranked = qk.analyse({k: _rank_offdiagonal(S) for k, S in sims.items()}, config.word_labels, blocks, config)
            stats["rsa"] = ranked["rsa"]
            stats["rsa_by_category"] = ranked["rsa_by_category"]
            stats["over_blocks"] = {
                **stats["over_blocks"],
                "min_rsa_qk_over_blocks": ranked["over_blocks"]["min_rsa_qk_over_blocks"],
            }
        result = qk.make_result(handle, config, blocks, prompts, vecs, sims, stats, {})
        rows += _rows(result, "qk", evs)
    return rows, {"seconds": time.perf_counter() - t0, "forward_s": t1 - t0, "analysis_s": time.perf_counter() - t1}


def jobs_for(specs: Sequence[Spec], model: str, *, device: str = "cpu", dtype: str = "float32") -> list[Any]:
    """Group the specifications into jobs: one per distinct model-run setting (see the module docstring)."""
    from layerclaims.executor import Job

    grouped: dict[tuple[str, tuple[tuple[str, str], ...]], list[Spec]] = {}
    for spec in specs:
        run_key = {k: v for k, v in spec.values.items() if k != OFFSET_CHOICE[spec.study]}
        if spec.study == "qk":
            run_key = {k: run_key[k] for k in ("template", "split_word")}
        grouped.setdefault((spec.study, tuple(sorted(run_key.items()))), []).append(spec)
    jobs = []
    for i, ((study, key), group) in enumerate(grouped.items()):
        values = dict(key)
        base = {"model": model, "device": device, "dtype": dtype}
        evals = [{"spec": s.id, "offset": int(s.values[OFFSET_CHOICE[study]]), **_analysis_values(s)} for s in group]
        if study == "punctuation":
            payload = {**base, "settings": punctuation_settings(values), "evaluations": evals}
            jobs.append(Job(f"A-job{i:03d}", "robustness-punctuation", payload))
        else:
            payload = {**base, "template": values["template"], "split_word": values["split_word"], "evaluations": evals}
            jobs.append(Job(f"B-job{i:03d}", "robustness-qk", payload))
    return jobs


def _analysis_values(spec: Spec) -> dict[str, str]:
    if spec.study != "qk":
        return {}
    return {k: spec.values[k] for k in ("vectors", "similarity", "rsa")}


def punctuation_settings(values: dict[str, str]) -> dict[str, Any]:
    """Study A Config fields for one specification's values (the layer offset excluded)."""
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
        **GRID_SETTINGS["punctuation"],
    }


# ------------------------------------------------------------------------------------------------ the run


@dataclass
class Outcome:
    """What :func:`run` produced: the folder, the rows, one summary line per claim, the failed jobs."""

    out: Path
    rows: list[dict[str, Any]]
    lines: list[str]
    failed: list[dict[str, Any]] = field(default_factory=list)  # job id, error, the specs it held (a list)
    seconds: float = 0.0
    stats: dict[str, Any] = field(default_factory=dict)


def check_out(out: Path) -> None:
    """UsageError when ``out`` exists and is neither empty nor an earlier robustness folder (never mixed)."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file: give a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).is_file():
        raise UsageError(
            f"--out {out} holds files that are not from a robustness run: give a new or empty folder "
            "(an earlier robustness folder is replaced as a whole)"
        )


def run(
    model: str,
    out: str | os.PathLike[str],
    *,
    studies: Sequence[str] = STUDIES,
    n_specs: int = 0,
    seed: int = 0,
    only: Sequence[str] | None = None,
    executor: str = "local",
    address: str | None = None,
    workers: int | None = None,
    device: str = "cpu",
    dtype: str = "float32",
    progress: Callable[[str], None] | None = None,
) -> Outcome:
    """Evaluate every claim of ``studies`` over the planned specifications on ``model`` and write the folder
    ``out`` (see the module docstring). Every input is checked before any model loads (UsageError)."""
    from layerclaims.executor import EXECUTORS, run_jobs

    say = progress or (lambda _msg: None)
    out = Path(out)
    if executor not in EXECUTORS:
        raise UsageError(f"unknown executor {executor!r}: use one of {', '.join(EXECUTORS)}")
    chosen = parse_only(only)
    specs = plan(studies, n_specs=n_specs, seed=seed, only=chosen)
    check_out(out)
    from layerclaims import models

    models.model_shape(model)  # an unknown model, device or dtype is refused here, before any worker starts
    models.resolve_device(device)
    models.resolve_dtype(dtype)
    jobs = jobs_for(specs, model, device=device, dtype=dtype)
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
        totals["forward_s"] += float(res.stats.get("forward_s", 0.0))
        totals["analysis_s"] += float(res.stats.get("analysis_s", 0.0))
        cache = res.stats.get("cache", {})
        totals["cache_hits"] += int(cache.get("hits", 0))
        totals["cache_misses"] += int(cache.get("misses", 0))
        totals["model_runs_saved"] += int(cache.get("runs_saved", 0))
        for row in res.rows:
            spec = by_spec[row["spec"]]
            rows.append({"study": spec.study, "spec_kind": spec.kind, "spec_label": spec.label, **row, **spec.values})
    if not rows and failed:
        raise LayerclaimsError(
            f"every job failed, nothing written (the folder {out} is unchanged); the first error: {failed[0]['error']}"
        )
    lines = summary_lines(rows)
    write_folder(out, model=model, specs=specs, rows=rows, lines=lines, failed=failed, seconds=seconds, totals=totals)
    return Outcome(out, rows, lines, failed, seconds, totals)


def summary_lines(rows: Sequence[dict[str, Any]]) -> list[str]:
    """One line per claim: ``A5 holds in k of n specifications`` (plus fails / not evaluated counts)."""
    from layerclaims.claims import CLAIMS

    lines = []
    for claim in CLAIMS:
        mine = [r for r in rows if r["claim"] == claim.id]
        if not mine:
            continue
        count = {w: sum(r["verdict"] == w for r in mine) for w in ("holds", "fails", "inconclusive", "not evaluated")}
        orig = next((r["verdict"] for r in mine if r["spec_kind"] == "original"), "?")
        rest = ", ".join(f"{v} {w}" for w, v in count.items() if w != "holds" and v)
        lines.append(
            f"{claim.id} holds in {count['holds']} of {len(mine)} specifications ({rest or 'no other'}; "
            f"original path: {orig})"
        )
    return lines


def _columns() -> list[str]:
    choice_cols = [c for study in STUDIES for c in CHOICES[study]]
    return [
        "study",
        "claim",
        "spec",
        "spec_kind",
        "spec_label",
        *choice_cols,
        "layer",
        "value",
        "ci_low",
        "ci_high",
        "verdict",
        "reason",
        "resampling",
    ]


def write_folder(
    out: Path,
    *,
    model: str,
    specs: Sequence[Spec],
    rows: Sequence[dict[str, Any]],
    lines: Sequence[str],
    failed: Sequence[dict[str, Any]],
    seconds: float,
    totals: dict[str, Any],
) -> None:
    """Write everything into a staging folder beside ``out``, then put it in place of ``out`` as a whole."""
    from layerclaims.claims import CLAIMS_BY_ID
    from layerclaims.figures.robustness import spec_curve

    out = out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f".{out.name}.staging-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "figures").mkdir(parents=True)
    try:
        cols = _columns()
        with (staging / "robustness.csv").open("w", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, fieldnames=cols, extrasaction="ignore")
            w.writeheader()
            for r in rows:
                res = GRID_SETTINGS[r["study"]]
                w.writerow({**r, "resampling": " ".join(f"{k}={v}" for k, v in res.items())})
        for claim_id in dict.fromkeys(r["claim"] for r in rows):
            claim_rows = [r for r in rows if r["claim"] == claim_id]
            claim = CLAIMS_BY_ID[claim_id]
            spec_curve(claim_rows, claim, CHOICES[claim.study], staging / "figures")
        summary = {
            "model": model,
            "lines": list(lines),
            "n_specifications": {s: sum(sp.study == s for sp in specs) for s in STUDIES},
            "specifications": [vars(s) for s in specs],
            "failed_jobs": list(failed),
            "grid_resampling": GRID_SETTINGS,
            "notes": [
                "resampling counts are reduced in the grid (grid_resampling); the studies' defaults are larger",
                "spearman RSA: Pearson r of the full-sample ranks of the off-diagonal entries; its bootstrap "
                "resamples those ranks (not re-ranked per resample)",
                "layer/block departures read the same study run at the neighbouring layer/block",
            ],
            "seconds": seconds,
            "totals": totals,
        }
        (staging / MARKER).write_text(json.dumps(summary, indent=2, default=str) + "\n", encoding="utf-8")
        md = [f"# Robustness of the claims on {model}", "", *(f"- {line}" for line in lines)]
        if failed:
            md += ["", "Failed jobs (their specifications are missing above):"]
            md += [f"- {f['job']}: {f['error']}" for f in failed]
        (staging / "summary.md").write_text("\n".join(md) + "\n", encoding="utf-8")
        if out.exists():
            check_out(out)
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            os.replace(out, old)
            os.replace(staging, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
