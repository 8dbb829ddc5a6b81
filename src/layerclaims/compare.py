"""Comparing verdicts: the claims x models matrix and the diff between two runs, pure functions over
``verdicts.json`` rows (read through :meth:`~layerclaims.verdicts.Verdict.from_row`; :func:`read_verdicts` reads
a folder's).

Diff rules, per claim id (a run folder holds one model's verdicts):

- **flipped**: the verdict changed among holds / holds on control too / fails / inconclusive;
- **evaluation changed**: the verdict went from one of those to not evaluated or back;
- **moved**: both values exist and the new value lies outside the old interval or the old value outside the new
  one; when neither side has an interval, any change beyond a relative 1e-6 counts as moved;
- **layer changed**: the layer used differs (another model depth, or another mapping);
- **missing**: the claim is in only one of the two folders.
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from layerclaims.claims import CLAIMS, CLAIMS_BY_ID
from layerclaims.decision import ON_CONTROL, VERDICTS
from layerclaims.errors import UsageError
from layerclaims.verdicts import ALSO_ON_CONTROL, MARKS, Verdict, fmt_ci, fmt_num, fmt_p

Row = Mapping[str, Any]

VERDICTS_JSON = "verdicts.json"
NO_INTERVAL_RTOL = 1e-6


def read_verdicts(directory: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The rows of ``directory/verdicts.json``; UsageError naming the file and the fix when they are not that."""
    path = Path(directory) / VERDICTS_JSON
    if not path.is_file():
        raise UsageError(
            f"no {VERDICTS_JSON} in {directory}: pass a folder written by `layerclaims reproduce --out {directory}`"
        )
    try:
        rows = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise UsageError(f"{path} is not valid JSON ({exc}): re-run `layerclaims reproduce` to rewrite it") from None
    if not isinstance(rows, list) or not all(isinstance(r, dict) and "claim" in r for r in rows):
        raise UsageError(f"{path} is not a list of verdict rows (objects with a 'claim' key): re-run reproduce")
    for r in rows:
        try:
            Verdict.from_row(r)
        except (KeyError, TypeError, ValueError) as exc:
            raise UsageError(f"{path}: {exc!s}: re-run reproduce") from None
    return rows


def claim_order(ids: Iterable[str]) -> list[str]:
    """Claim ids in registry order (A1..B4), unknown ids after them in sorted order."""
    ids = set(ids)
    known = [c.id for c in CLAIMS if c.id in ids]
    return known + sorted(ids - set(known))


def _value_text(v: Verdict) -> str:
    """``value [low, high], p=...`` (``p against=...`` for a claim that fails), or '—' without a value (naming the
    premise that set the verdict, if one did)."""
    if v.value is None:
        return f"— (set by its premise {v.set_by_premise})" if v.set_by_premise else "—"
    text = fmt_num(v.value) + (f" {fmt_ci(v.ci)}" if v.ci is not None else "")
    against = v.verdict == "fails" and v.p_against is not None
    label, p, adjusted = ("p against", v.p_against, v.p_against_adjusted) if against else ("p", v.p_value, v.p_adjusted)
    if p is not None:
        text += f", {label}={fmt_p(p)}"
        if adjusted is not None and v.family_size > 1:
            text += f" (adj. {fmt_p(adjusted)})"
    return text


def cut(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, the last an ellipsis."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def short_reason(reason: str | None, limit: int = 110) -> str:
    """The first line of a reason, cut to ``limit`` characters (tables); the full text stays in verdicts.json."""
    text = (reason or "").strip()
    return cut(text.splitlines()[0] if text else "not evaluated", limit)


CONTROL_MARK = MARKS[ON_CONTROL]

VERDICT_CSS: dict[str, str] = {w: {ON_CONTROL: "oncontrol", "not evaluated": "na"}.get(w, w) for w in VERDICTS}
"""The CSS class of each verdict word (report badges, matrix cells): one colour per word."""


def tally_text(counts: Mapping[str, int]) -> str:
    """``3 ✓, 1 ⚠, 2 ✗, 4 ?, 1 –``: a tally of verdict words, each counted apart."""
    return ", ".join(f"{counts.get(w, 0)} {MARKS[w]}" for w in VERDICTS)


MATRIX_LEGEND = (
    f"✓ holds, {CONTROL_MARK} holds on control too (it {ALSO_ON_CONTROL}: counted apart from holds), ✗ fails, "
    "? inconclusive, – not evaluated. Cells: value [decision interval], p of the claim's null against its threshold "
    "(for a claim that fails, p against the claim), Holm-adjusted over the run's hypotheses, @layer used"
)

LAYER_LEGEND = (
    "L3: hidden_states[3] (0 = embeddings); block 7: the 0-based block; ←20: the claim model's layer 20, mapped to "
    "this model by relative depth; all: a statistic over all layers"
)


def layer_text(v: Verdict) -> str:
    """``L5`` for hidden state 5, ``block 5`` for a block claim, ``…←20`` when mapped from the claim model's layer
    20; 'all' for statistics over all layers."""
    if v.layer is None:
        return "all"
    text = f"block {v.layer}" if v.layer_unit == "block" else f"L{v.layer}"
    return text if v.layer_mapped_from is None else f"{text}←{v.layer_mapped_from}"


def claimed_text(claim_id: str, row: Row | None = None) -> str:
    """``statistic comparison threshold`` of every condition: the row's where there is one, else the registered
    claim's."""
    conds = Verdict.from_row(row).conditions if row is not None else ()
    if conds:
        return " and ".join(f"{c.statistic} {c.comparison} {c.threshold:g}" for c in conds)
    claim = CLAIMS_BY_ID.get(claim_id)
    return " and ".join(str(c) for c in claim.conditions) if claim is not None else ""


def _cell_text(row: Row | None, missing: str, not_evaluated: str) -> str:
    """``✓ 0.91 [0.88, 0.93] @L5``; ``missing`` for no row; ``not_evaluated`` with ``{}`` for the short reason."""
    if row is None:
        return missing
    v = Verdict.from_row(row)
    if v.verdict == "not evaluated":
        return not_evaluated.format(short_reason(v.reason))
    return f"{MARKS[v.verdict]} {_value_text(v)} @{layer_text(v)}"


def _by_claim(rows: Sequence[Row], twice: str) -> dict[str, Row]:
    """Claim id -> row; UsageError ``claim ID appears twice {twice}`` for a claim with two rows."""
    out: dict[str, Row] = {}
    for row in rows:
        cid = str(row["claim"])
        if cid in out:
            raise UsageError(f"claim {cid} appears twice {twice}")
        out[cid] = row
    return out


def md_escape(text: Any) -> str:
    """``text`` for a Markdown table cell: ``|`` escaped, a newline made a space."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def md_table(head: Sequence[str], body: Iterable[Sequence[Any]], cell: Callable[[Any], str] = md_escape) -> list[str]:
    """A Markdown table's lines: the header escaped (:func:`md_escape`), each body cell rendered by ``cell``."""

    def line(cells: Iterable[str]) -> str:
        return "| " + " | ".join(cells) + " |"

    return [line(map(md_escape, head)), "|" + "---|" * len(head), *(line(map(cell, cells)) for cells in body)]


@dataclass(frozen=True)
class MatrixCell:
    """One claim on one model: the verdict row, or None when that model has no row for the claim."""

    row: Row | None

    @property
    def holds(self) -> bool | None:
        """:attr:`Verdict.holds` (None: not evaluated, or no row)."""
        return None if self.row is None else Verdict.from_row(self.row).holds

    @property
    def verdict(self) -> str:
        return "not evaluated" if self.row is None else Verdict.from_row(self.row).verdict

    def text(self) -> str:
        """``✓ 0.91 [0.88, 0.93] @L5`` (``⚠`` when it holds on its control too) or ``– reason``."""
        return _cell_text(self.row, "(not in this run)", "– {}")


@dataclass(frozen=True)
class Matrix:
    """Claims (rows) by models (columns)."""

    models: tuple[str, ...]
    claims: tuple[str, ...]
    cells: dict[tuple[str, str], MatrixCell] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)  # model -> why it has no rows (e.g. could not be loaded)

    def cell(self, claim: str, model: str) -> MatrixCell:
        return self.cells.get((claim, model), MatrixCell(None))

    def counts(self, model: str) -> dict[str, int]:
        """How many claims of each verdict word ``model`` has."""
        counts = Counter(self.cell(c, model).verdict for c in self.claims)
        return {w: counts[w] for w in VERDICTS}


def build_matrix(rows_by_model: Mapping[str, Sequence[Row]], notes: Mapping[str, str] | None = None) -> Matrix:
    """The claims x models matrix from each model's verdict rows (column order = mapping order)."""
    cells: dict[tuple[str, str], MatrixCell] = {}
    for model, rows in rows_by_model.items():
        for cid, row in _by_claim(rows, f"for {model}: give one run folder per model").items():
            cells[(cid, model)] = MatrixCell(row)
    ids = claim_order(c for c, _ in cells) or [c.id for c in CLAIMS]
    return Matrix(tuple(rows_by_model), tuple(ids), cells, dict(notes or {}))


def matrix_markdown(matrix: Matrix) -> str:
    """The matrix as a Markdown table, with a per-model tally and notes."""
    body = []
    for cid in matrix.claims:
        first = next((matrix.cell(cid, m).row for m in matrix.models if matrix.cell(cid, m).row), None)
        body.append([cid, claimed_text(cid, first), *(matrix.cell(cid, m).text() for m in matrix.models)])
    body.append(["**tally**", "", *(tally_text(matrix.counts(m)) for m in matrix.models)])
    notes = "".join(f"- **{model}**: {note}\n" for model, note in matrix.notes.items())
    table = "\n".join(md_table(["claim", "claimed", *matrix.models], body))
    return f"{table}\n\n{MATRIX_LEGEND} ({LAYER_LEGEND}).\n" + (f"\n{notes}" if notes else "")


@dataclass(frozen=True)
class DiffEntry:
    """What changed for one claim between an old and a new run. ``changes`` is empty when nothing did."""

    claim: str
    old: Row | None
    new: Row | None
    changes: tuple[str, ...]


@dataclass(frozen=True)
class Diff:
    entries: tuple[DiffEntry, ...]

    @property
    def flipped(self) -> list[DiffEntry]:
        return [e for e in self.entries if "flipped" in e.changes]

    @property
    def moved(self) -> list[DiffEntry]:
        return [e for e in self.entries if "moved" in e.changes]

    @property
    def missing(self) -> list[DiffEntry]:
        return [e for e in self.entries if e.old is None or e.new is None]

    @property
    def changed(self) -> list[DiffEntry]:
        return [e for e in self.entries if e.changes]


def _inside(x: float, ci: tuple[float, float] | None) -> bool | None:
    if ci is None or None in ci:
        return None
    return min(ci) <= x <= max(ci)


def value_moved(old: Verdict, new: Verdict) -> bool:
    """New value outside the old interval, or old value outside the new one (or, with no interval on either side,
    a change beyond a relative 1e-6). False when either value is missing."""
    if old.value is None or new.value is None:
        return False
    checks = [_inside(new.value, old.ci), _inside(old.value, new.ci)]
    if all(c is None for c in checks):
        return not math.isclose(old.value, new.value, rel_tol=NO_INTERVAL_RTOL, abs_tol=0.0)
    return any(c is False for c in checks)


def diff_verdicts(old_rows: Sequence[Row], new_rows: Sequence[Row]) -> Diff:
    """Per claim, what changed from ``old_rows`` to ``new_rows`` (see the module docstring for the rules)."""
    twice = "in the {} verdicts: diff compares one run per folder"
    old, new = _by_claim(old_rows, twice.format("old")), _by_claim(new_rows, twice.format("new"))
    entries: list[DiffEntry] = []
    for cid in claim_order(set(old) | set(new)):
        o, n = old.get(cid), new.get(cid)
        changes: list[str] = []
        if o is None or n is None:
            changes.append("missing in old" if o is None else "missing in new")
        else:
            vo, vn = Verdict.from_row(o), Verdict.from_row(n)
            if vo.verdict != vn.verdict and "not evaluated" not in (vo.verdict, vn.verdict):
                changes.append("flipped")
            elif (vo.verdict == "not evaluated") != (vn.verdict == "not evaluated"):
                changes.append("evaluation changed")
            if value_moved(vo, vn):
                changes.append("moved")
            if vo.layer != vn.layer:
                changes.append("layer changed")
        entries.append(DiffEntry(cid, o, n, tuple(changes)))
    return Diff(tuple(entries))


def diff_markdown(diff: Diff, old_label: str = "old", new_label: str = "new", *, all_rows: bool = True) -> str:
    """The diff as a Markdown table (every claim, or only the changed ones) and a one-line summary."""
    body = []
    for e in diff.entries if all_rows else diff.changed:
        old, new = (_cell_text(r, "(missing)", "– not evaluated ({})") for r in (e.old, e.new))
        body.append([e.claim, old, new, ", ".join(e.changes) or "unchanged"])
    summary = (
        f"{len(diff.flipped)} flipped, {len(diff.moved)} moved beyond their interval, "
        f"{len(diff.missing)} missing on one side, {len(diff.changed)} of {len(diff.entries)} claims changed."
    )
    return "\n".join(md_table(["claim", old_label, new_label, "change"], body)) + "\n\n" + summary + "\n"


# What makes two runs comparable besides the settings, as (label, path into run.json's model record) and, per study,
# (label, path into the study's entry).
_MODEL_FACTS = (("model", "name"), ("weights revision", "revision"), ("dtype", "dtype"), ("device", "device"))
_STUDY_FACTS = (("corpus", ("provenance", "corpus", "name")), ("corpus sha256", ("provenance", "corpus", "sha256")))
# What a claim's definition holds (run.json "claims"), in the order a change is named.
_DEFINITION_FIELDS = ("study", "model", "model_blocks", "layer", "layer_unit", "kind", "presupposes")


def _dig(record: Any, path: Sequence[str]) -> Any:
    for key in path:
        if not isinstance(record, Mapping):
            return None
        record = record.get(key)
    return record


def _vs(a: Any, b: Any) -> str:
    """``old vs new``, each value cut to 60 characters."""
    return " vs ".join(cut(v if isinstance(v, str) else json.dumps(v, sort_keys=True), 60) for v in (a, b))


def _diffs(triples: Iterable[tuple[str, Any, Any]]) -> list[str]:
    """``what: old vs new`` for each ``(what, old, new)`` that differs."""
    return [f"{what}: {_vs(a, b)}" for what, a, b in triples if a != b]


def run_differences(old_dir: str | os.PathLike[str], new_dir: str | os.PathLike[str]) -> list[str]:
    """What differs between two run folders besides the verdicts, one line each, from their ``run.json``: the model
    (name, weights revision, dtype, device), per study in both the corpus and each setting that differs, and each
    claim whose definition changed (:func:`claim_changes`)."""
    from layerclaims.pipeline import MANIFEST, read_manifest

    old, new = read_manifest(Path(old_dir)), read_manifest(Path(new_dir))
    if old is None or new is None:
        missing = ", ".join(str(d) for d, run in ((old_dir, old), (new_dir, new)) if run is None)
        return [f"settings not compared: no {MANIFEST} in {missing} (an older layerclaims: re-run it to compare)"]
    lines = _diffs((label, _dig(old, ("model", k)), _dig(new, ("model", k))) for label, k in _MODEL_FACTS)
    old_studies = {e.get("study"): e for e in old.get("studies", []) if isinstance(e, dict)}
    new_studies = {e.get("study"): e for e in new.get("studies", []) if isinstance(e, dict)}
    for study in [s for s in old_studies if s in new_studies]:
        a, b = old_studies[study], new_studies[study]
        lines += _diffs((f"{study} {label}", _dig(a, path), _dig(b, path)) for label, path in _STUDY_FACTS)
        keys = sorted(set(a.get("options") or {}) | set(b.get("options") or {}))
        lines += _diffs((f"{study} setting {k}", _setting(a, k), _setting(b, k)) for k in keys)
    for study in sorted(set(old_studies) ^ set(new_studies), key=str):
        lines.append(f"study {study}: only in the {'old' if study in old_studies else 'new'} run")
    return lines + claim_changes(old, new)


def _setting(entry: Mapping[str, Any], key: str) -> Any:
    """The value a study run had for setting ``key``: as given, else as its provenance recorded it (the study's
    default then), else the word "default"."""
    options, provenance = entry.get("options") or {}, entry.get("provenance") or {}
    return options[key] if key in options else provenance.get(key, "default")


def _definition_changes(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    """What differs between two definitions of one claim, each as ``what: old vs new``."""
    a_conds, b_conds = list(a.get("conditions") or []), list(b.get("conditions") or [])
    if len(a_conds) != len(b_conds):
        out = [f"conditions: {_vs(a_conds, b_conds)}"]
    else:
        out = []
        for i, (x, y) in enumerate(zip(a_conds, b_conds, strict=True)):
            where = f" of condition {i + 1}" if len(a_conds) > 1 else ""
            parts = zip(("statistic", "comparison", "threshold"), x, y, strict=False)
            out += _diffs((f"{name}{where}", u, v) for name, u, v in parts)
    out += _diffs((n, a[n], b[n]) for n in _DEFINITION_FIELDS if n in a and n in b)
    if "settings" in a and "settings" in b:
        a_set, b_set, default = a["settings"] or {}, b["settings"] or {}, "the study's default"
        keys = sorted(set(a_set) | set(b_set))
        out += _diffs((f"setting {k}", a_set.get(k, default), b_set.get(k, default)) for k in keys)
    return out


def claim_changes(old_run: Mapping[str, Any], new_run: Mapping[str, Any]) -> list[str]:
    """One line per claim in both runs whose definition (run.json ``claims``: threshold, comparison, statistic,
    layer, kind, settings, ...) changed between them: its verdicts are then of two different claims."""
    old, new = (run.get("claims") or {} for run in (old_run, new_run))
    changes = {c: _definition_changes(old[c], new[c]) for c in claim_order(c for c in old if c in new)}
    return [f"claim {c} is defined differently: {'; '.join(lines)}" for c, lines in changes.items() if lines]
