"""Comparing verdicts: the claims x models matrix and the diff between two runs.

Pure functions over verdict rows (the dicts of ``Verdict.to_row()``, as written to ``verdicts.json``); nothing here
loads a model or a result, so both are tested on hand-written rows. :func:`read_verdicts` is the one reader of a
saved folder's ``verdicts.json``.

Diff rules, per claim id (a run folder holds one model's verdicts):

- **flipped**: the verdict changed among holds / fails / inconclusive (rows of older runs without a ``verdict``
  field are read from their ``holds``: True holds, False fails, None not evaluated);
- **evaluation changed**: the verdict went from one of those three to not evaluated or back;
- **moved**: both values exist and the new value lies outside the old interval or the old value outside the new
  one; when neither side has an interval, any change beyond a relative 1e-6 counts as moved;
- **layer changed**: the layer used differs (another model depth, or another mapping);
- **missing**: the claim is in only one of the two folders.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from layerclaims.claims import CLAIMS, CLAIMS_BY_ID
from layerclaims.decision import VERDICTS
from layerclaims.errors import UsageError
from layerclaims.verdicts import ALSO_ON_CONTROL, MARKS, control_note, fmt_p

Row = Mapping[str, Any]

VERDICTS_JSON = "verdicts.json"
NO_INTERVAL_RTOL = 1e-6


# --------------------------------------------------------------------------------------------------- reading


def read_verdicts(directory: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The rows of ``directory/verdicts.json``. Raises UsageError naming the file and the fix when it is missing or
    not a list of verdict rows."""
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
    return rows


# --------------------------------------------------------------------------------------------------- cells


def claim_order(ids: Iterable[str]) -> list[str]:
    """Claim ids in registry order (A1..B4), unknown ids after them in sorted order."""
    ids = set(ids)
    known = [c.id for c in CLAIMS if c.id in ids]
    return known + sorted(ids - set(known))


def fmt_num(x: float | None) -> str:
    """A number in 4 significant digits; '—' for None or NaN."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    return f"{x:.4g}"


def fmt_value(row: Row) -> str:
    """``value [low, high], p=...`` of one verdict row, or '—' when it has no value."""
    value = row.get("value")
    if value is None:
        return "—"
    text = fmt_num(value)
    ci = row.get("ci")
    if ci is not None and len(ci) == 2:
        text += f" [{fmt_num(ci[0])}, {fmt_num(ci[1])}]"
    if row.get("p_value") is not None:
        text += f", p={fmt_p(row['p_value'])}"
        if row.get("p_adjusted") is not None and row.get("family_size", 1) > 1:
            text += f" (adj. {fmt_p(row['p_adjusted'])})"
    return text


def short_reason(reason: str | None, limit: int = 110) -> str:
    """The first line of a reason, cut to ``limit`` characters (tables); the full text stays in verdicts.json."""
    text = (reason or "not evaluated").strip().splitlines()[0] if (reason or "").strip() else "not evaluated"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def interval_crosses(row: Row) -> bool:
    """True when the verdict's interval holds values on both sides of the claim's threshold: the point estimate
    decides, the data do not (e.g. ``value 0.02 [-0.02, 0.06]`` for ``> 0``). For ``==`` (cluster counts): the
    interval contains the threshold and is not a single value."""
    ci, t, op = row.get("ci"), row.get("threshold"), row.get("comparison")
    if row.get("value") is None or ci is None or len(ci) != 2 or None in ci or not isinstance(t, int | float):
        return False
    lo, hi = min(ci), max(ci)
    if op == "==":
        return lo <= t <= hi and lo != hi
    tests = {">": lambda x: x > t, "<": lambda x: x < t, ">=": lambda x: x >= t, "<=": lambda x: x <= t}
    if op not in tests:
        return False
    return tests[op](lo) != tests[op](hi)


VERDICT_WORDS: tuple[str, ...] = VERDICTS
CONTROL_MARK = "⚠"


def row_verdict(row: Row | None) -> str:
    """The verdict of a row: its ``verdict`` field, or (older rows) read from ``holds``."""
    if row is None:
        return "not evaluated"
    word = row.get("verdict")
    if word in VERDICT_WORDS:
        return str(word)
    return verdict_word(row.get("holds"))


def verdict_word(verdict: str | bool | None) -> str:
    """'holds', 'fails', 'inconclusive' or 'not evaluated', from a verdict word or an old-style ``holds``."""
    if isinstance(verdict, str):
        return verdict if verdict in VERDICT_WORDS else "not evaluated"
    if verdict is None:
        return "not evaluated"
    return "holds" if verdict else "fails"


def verdict_mark(verdict: str | bool | None) -> str:
    """A short mark for tables: ✓ holds, ✗ fails, ? inconclusive, – not evaluated."""
    return MARKS[verdict_word(verdict)]


def also_on_control(row: Row) -> bool:
    """True when the claim holds and also holds on its control (the structure absent by construction)."""
    return bool(row.get("also_holds_on_control"))


def row_control_note(row: Row) -> str:
    """What a verdict row that also holds on its control says (:func:`layerclaims.verdicts.control_note`)."""
    conds = row.get("conditions") or []
    absent = [str(((c.get("control") or {}).get("details") or {}).get("absent", "")) for c in conds if c]
    return control_note(absent)


MATRIX_LEGEND = (
    f"✓ holds, ✗ fails, ? inconclusive, – not evaluated; {CONTROL_MARK} {ALSO_ON_CONTROL}. Cells: value "
    "[decision interval], p against the claim's threshold (Holm-adjusted over the run's claims), @layer used"
)

LAYER_LEGEND = (
    "L3: hidden_states[3] (0 = embeddings); block 7: the 0-based block; ←20: the claim model's layer 20, mapped to "
    "this model by relative depth; all: a statistic over all layers"
)


def layer_text(row: Row) -> str:
    """``L5`` for hidden state 5, ``block 5`` for a block claim, ``…←20`` when mapped from the claim model's layer
    20; 'all' for statistics over all layers."""
    layer = row.get("layer")
    if layer is None:
        return "all"
    unit = row.get("layer_unit")
    if unit is None:
        claim = CLAIMS_BY_ID.get(str(row.get("claim")))
        unit = claim.layer_unit if claim is not None else "hidden_state"
    text = f"block {layer}" if unit == "block" else f"L{layer}"
    mapped = row.get("layer_mapped_from", (row.get("details") or {}).get("layer_mapped_from"))
    return text if mapped is None else f"{text}←{mapped}"


def claimed_text(claim_id: str, row: Row | None = None) -> str:
    """``statistic comparison threshold`` (all conditions: from the row's ``conditions`` where it has them, else from
    the registered claim)."""
    conds = (row or {}).get("conditions")
    if conds:
        return " and ".join(f"{c['statistic']} {c['comparison']} {c['threshold']:g}" for c in conds)
    claim = CLAIMS_BY_ID.get(claim_id)
    if claim is not None:
        return " and ".join(str(c) for c in claim.conditions)
    if row is None:
        return ""
    t = row.get("threshold")
    t_text = f"{t:g}" if isinstance(t, int | float) else str(t)
    return f"{row.get('statistic')} {row.get('comparison')} {t_text}"


# --------------------------------------------------------------------------------------------------- matrix


@dataclass(frozen=True)
class MatrixCell:
    """One claim on one model: the verdict row, or None when that model has no row for the claim."""

    row: Row | None

    @property
    def holds(self) -> bool | None:
        return None if self.row is None else self.row.get("holds")

    @property
    def verdict(self) -> str:
        return row_verdict(self.row)

    def text(self) -> str:
        """``✓ 0.91 [0.88, 0.93] @L5`` (``⚠`` when it also holds on its control) or ``– reason``."""
        if self.row is None:
            return "(not in this run)"
        if self.verdict == "not evaluated":
            return f"– {short_reason(self.row.get('reason'))}"
        mark = f" {CONTROL_MARK}" if also_on_control(self.row) else ""
        return f"{verdict_mark(self.verdict)}{mark} {fmt_value(self.row)} @{layer_text(self.row)}"


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
        """How many claims hold, fail, are inconclusive and were not evaluated on ``model``."""
        out = dict.fromkeys(VERDICT_WORDS, 0)
        for c in self.claims:
            out[self.cell(c, model).verdict] += 1
        return out


def build_matrix(rows_by_model: Mapping[str, Sequence[Row]], notes: Mapping[str, str] | None = None) -> Matrix:
    """The claims x models matrix from each model's verdict rows (column order = mapping order)."""
    cells: dict[tuple[str, str], MatrixCell] = {}
    for model, rows in rows_by_model.items():
        seen: set[str] = set()
        for row in rows:
            cid = str(row["claim"])
            if cid in seen:
                raise UsageError(f"claim {cid} appears twice for {model}: give one run folder per model")
            seen.add(cid)
            cells[(cid, model)] = MatrixCell(row)
    ids = claim_order(c for c, _ in cells)
    if not ids:
        ids = [c.id for c in CLAIMS]
    return Matrix(tuple(rows_by_model), tuple(ids), cells, dict(notes or {}))


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def matrix_markdown(matrix: Matrix) -> str:
    """The matrix as a Markdown table, with a per-model tally and notes."""
    head = ["claim", "claimed", *matrix.models]
    lines = ["| " + " | ".join(_md_cell(h) for h in head) + " |", "|" + "---|" * len(head)]
    for cid in matrix.claims:
        first = next((matrix.cell(cid, m).row for m in matrix.models if matrix.cell(cid, m).row), None)
        cells = [cid, claimed_text(cid, first)] + [matrix.cell(cid, m).text() for m in matrix.models]
        lines.append("| " + " | ".join(_md_cell(c) for c in cells) + " |")
    tally = ["**tally**", ""] + [
        "{holds} ✓, {fails} ✗, {inconclusive} ?, {ne} –".format(ne=n["not evaluated"], **n)
        for n in (matrix.counts(m) for m in matrix.models)
    ]
    lines.append("| " + " | ".join(tally) + " |")
    out = "\n".join(lines) + "\n"
    out += f"\n{MATRIX_LEGEND} ({LAYER_LEGEND}).\n"
    for model, note in matrix.notes.items():
        out += f"\n- **{model}**: {note}"
    return out + ("\n" if matrix.notes else "")


# --------------------------------------------------------------------------------------------------- diff


@dataclass(frozen=True)
class DiffEntry:
    """What changed for one claim between an old and a new run. ``changes`` is empty when nothing did."""

    claim: str
    old: Row | None
    new: Row | None
    changes: tuple[str, ...]

    @property
    def changed(self) -> bool:
        return bool(self.changes)


@dataclass(frozen=True)
class Diff:
    entries: tuple[DiffEntry, ...]

    def with_change(self, change: str) -> list[DiffEntry]:
        return [e for e in self.entries if change in e.changes]

    @property
    def flipped(self) -> list[DiffEntry]:
        return self.with_change("flipped")

    @property
    def moved(self) -> list[DiffEntry]:
        return self.with_change("moved")

    @property
    def missing(self) -> list[DiffEntry]:
        return [e for e in self.entries if e.old is None or e.new is None]

    @property
    def changed(self) -> list[DiffEntry]:
        return [e for e in self.entries if e.changed]


def _inside(x: float, ci: Sequence[float] | None) -> bool | None:
    if ci is None or len(ci) != 2 or ci[0] is None or ci[1] is None:
        return None
    return min(ci) <= x <= max(ci)


def value_moved(old: Row, new: Row) -> bool:
    """New value outside the old interval, or old value outside the new one (or, with no interval on either side,
    a change beyond a relative 1e-6). False when either value is missing."""
    a, b = old.get("value"), new.get("value")
    if a is None or b is None:
        return False
    checks = [_inside(b, old.get("ci")), _inside(a, new.get("ci"))]
    if all(c is None for c in checks):
        return not math.isclose(a, b, rel_tol=NO_INTERVAL_RTOL, abs_tol=0.0)
    return any(c is False for c in checks)


def _by_claim(rows: Sequence[Row], side: str) -> dict[str, Row]:
    out: dict[str, Row] = {}
    for row in rows:
        cid = str(row["claim"])
        if cid in out:
            raise UsageError(f"claim {cid} appears twice in the {side} verdicts: diff compares one run per folder")
        out[cid] = row
    return out


def diff_verdicts(old_rows: Sequence[Row], new_rows: Sequence[Row]) -> Diff:
    """Per claim, what changed from ``old_rows`` to ``new_rows`` (see the module docstring for the rules)."""
    old, new = _by_claim(old_rows, "old"), _by_claim(new_rows, "new")
    entries: list[DiffEntry] = []
    for cid in claim_order(set(old) | set(new)):
        o, n = old.get(cid), new.get(cid)
        changes: list[str] = []
        if o is None:
            changes.append("missing in old")
        elif n is None:
            changes.append("missing in new")
        else:
            vo, vn = row_verdict(o), row_verdict(n)
            if vo != vn and "not evaluated" not in (vo, vn):
                changes.append("flipped")
            elif (vo == "not evaluated") != (vn == "not evaluated"):
                changes.append("evaluation changed")
            if value_moved(o, n):
                changes.append("moved")
            if o.get("layer") != n.get("layer"):
                changes.append("layer changed")
        entries.append(DiffEntry(cid, o, n, tuple(changes)))
    return Diff(tuple(entries))


def _side(row: Row | None) -> str:
    if row is None:
        return "(missing)"
    if row_verdict(row) == "not evaluated":
        return f"– not evaluated ({short_reason(row.get('reason'))})"
    return f"{verdict_mark(row_verdict(row))} {fmt_value(row)} @{layer_text(row)}"


def diff_markdown(diff: Diff, old_label: str = "old", new_label: str = "new", *, all_rows: bool = True) -> str:
    """The diff as a Markdown table (every claim, or only the changed ones) and a one-line summary."""
    entries = diff.entries if all_rows else tuple(diff.changed)
    head = ["claim", old_label, new_label, "change"]
    lines = ["| " + " | ".join(_md_cell(h) for h in head) + " |", "|" + "---|" * len(head)]
    for e in entries:
        cells = [e.claim, _side(e.old), _side(e.new), ", ".join(e.changes) or "unchanged"]
        lines.append("| " + " | ".join(_md_cell(c) for c in cells) + " |")
    summary = (
        f"{len(diff.flipped)} flipped, {len(diff.moved)} moved beyond their interval, "
        f"{len(diff.missing)} missing on one side, {len(diff.changed)} of {len(diff.entries)} claims changed."
    )
    return "\n".join(lines) + "\n\n" + summary + "\n"


# --------------------------------------------------------------------------------------------------- run settings

RUN_JSON = "run.json"
# What makes two runs comparable, as data: (label, path into run.json's model record).
_MODEL_FACTS = (("model", "name"), ("weights revision", "revision"), ("dtype", "dtype"), ("device", "device"))
# Per study: (label, path into the study's provenance) of what the numbers depend on besides its settings.
_STUDY_FACTS = (("corpus", ("corpus", "name")), ("corpus sha256", ("corpus", "sha256")))


def _dig(record: Any, path: Sequence[str]) -> Any:
    for key in path:
        if not isinstance(record, Mapping):
            return None
        record = record.get(key)
    return record


def _read_run(directory: str | os.PathLike[str]) -> dict[str, Any] | None:
    try:
        run = json.loads((Path(directory) / RUN_JSON).read_text())
    except (OSError, ValueError):
        return None
    return run if isinstance(run, dict) else None


def _short_value(value: Any, limit: int = 60) -> str:
    text = json.dumps(value, sort_keys=True) if not isinstance(value, str) else value
    return text if len(text) <= limit else text[: limit - 1] + "…"


def run_differences(
    old_dir: str | os.PathLike[str],
    new_dir: str | os.PathLike[str],
    old_rows: Sequence[Row] = (),
    new_rows: Sequence[Row] = (),
) -> list[str]:
    """What differs between two run folders besides the verdicts, one line each: the model (name, weights revision,
    dtype, device), and per study present in both the corpus and every setting that differs (from each folder's
    ``run.json``; without it, only the model names of the verdict rows are compared). Empty when they are runs of
    the same model, corpus and settings."""
    old, new = _read_run(old_dir), _read_run(new_dir)
    if old is None or new is None:
        names = [sorted({str(r.get("model")) for r in rows}) for rows in (old_rows, new_rows)]
        lines = [f"model: {', '.join(names[0])} vs {', '.join(names[1])}"] if names[0] != names[1] else []
        missing = [str(d) for d, run in ((old_dir, old), (new_dir, new)) if run is None]
        return [*lines, f"settings not compared: no {RUN_JSON} in {', '.join(missing)} (an older layerclaims)"]
    lines = []
    for label, key in _MODEL_FACTS:
        a, b = _dig(old, ("model", key)), _dig(new, ("model", key))
        if a != b:
            lines.append(f"{label}: {_short_value(a)} vs {_short_value(b)}")
    old_studies = {e.get("study"): e for e in old.get("studies", []) if isinstance(e, dict)}
    new_studies = {e.get("study"): e for e in new.get("studies", []) if isinstance(e, dict)}
    for study in [s for s in old_studies if s in new_studies]:
        a_entry, b_entry = old_studies[study], new_studies[study]
        for label, path in _STUDY_FACTS:
            a, b = _dig(a_entry.get("provenance"), path), _dig(b_entry.get("provenance"), path)
            if a != b:
                lines.append(f"{study} {label}: {_short_value(a)} vs {_short_value(b)}")
        a_opts, b_opts = a_entry.get("options") or {}, b_entry.get("options") or {}
        for key in sorted(set(a_opts) | set(b_opts)):
            a, b = a_opts.get(key, "default"), b_opts.get(key, "default")
            if a != b:
                lines.append(f"{study} setting {key}: {_short_value(a)} vs {_short_value(b)}")
    for study in sorted(set(old_studies) ^ set(new_studies), key=str):
        side = "old" if study in old_studies else "new"
        lines.append(f"study {study}: only in the {side} run")
    return lines
