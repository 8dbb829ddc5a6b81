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
from layerclaims.decision import ON_CONTROL, VERDICTS
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
    """``value [low, high], p=...`` of one verdict row (for a claim that fails, the p against it: ``p against=...``),
    or '—' when it has no value. A verdict set by a premise shows no p (it has none of its own)."""
    value = row.get("value")
    if value is None:
        return "—"
    text = fmt_num(value)
    ci = row.get("ci")
    if ci is not None and len(ci) == 2:
        text += f" [{fmt_num(ci[0])}, {fmt_num(ci[1])}]"
    against = row_verdict(row) == "fails" and row.get("p_against") is not None
    key, label = ("p_against", "p against") if against else ("p_value", "p")
    if row.get(key) is not None:
        text += f", {label}={fmt_p(row[key])}"
        adjusted = row.get(f"{key}_adjusted" if against else "p_adjusted")
        if adjusted is not None and row.get("family_size", 1) > 1:
            text += f" (adj. {fmt_p(adjusted)})"
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
    """The verdict of a row: its ``verdict`` field, or (older rows) read from ``holds``; an older row that holds and
    also holds on its control reads as ``holds on control too``."""
    if row is None:
        return "not evaluated"
    word = row.get("verdict")
    if word == "holds" and row.get("also_holds_on_control") and not row.get("beats_control"):
        return ON_CONTROL  # a row of a run before "holds on control too" was its own word
    if word in VERDICT_WORDS:
        return str(word)
    return verdict_word(row.get("holds"))


def verdict_word(verdict: str | bool | None) -> str:
    """'holds', 'holds on control too', 'fails', 'inconclusive' or 'not evaluated', from a verdict word or an
    old-style ``holds``."""
    if isinstance(verdict, str):
        return verdict if verdict in VERDICT_WORDS else "not evaluated"
    if verdict is None:
        return "not evaluated"
    return "holds" if verdict else "fails"


def verdict_mark(verdict: str | bool | None) -> str:
    """A short mark for tables: ✓ holds, ⚠ holds on control too, ✗ fails, ? inconclusive, – not evaluated."""
    return MARKS[verdict_word(verdict)]


VERDICT_CSS: dict[str, str] = {
    "holds": "holds",
    ON_CONTROL: "oncontrol",
    "fails": "fails",
    "inconclusive": "inconclusive",
    "not evaluated": "na",
}
"""The CSS class of each verdict word (report badges, matrix cells): one colour per word."""


def tally_text(counts: Mapping[str, int]) -> str:
    """``3 ✓, 1 ⚠, 2 ✗, 4 ?, 1 –``: a tally of verdict words, each counted apart."""
    return ", ".join(f"{counts.get(w, 0)} {MARKS[w]}" for w in VERDICT_WORDS)


def also_on_control(row: Row) -> bool:
    """True when the claim holds and also holds on its control (the structure absent by construction)."""
    return bool(row.get("also_holds_on_control"))


def row_control_note(row: Row) -> str:
    """What a verdict row that also holds on its control says (:func:`layerclaims.verdicts.control_note`)."""
    conds = row.get("conditions") or []
    absent = [str(((c.get("control") or {}).get("details") or {}).get("absent", "")) for c in conds if c]
    return control_note(absent)


MATRIX_LEGEND = (
    f"✓ holds, {CONTROL_MARK} holds on control too (it {ALSO_ON_CONTROL}: counted apart from holds), ✗ fails, "
    "? inconclusive, – not evaluated. Cells: value [decision interval], p of the claim's null against its threshold "
    "(for a claim that fails, p against the claim), Holm-adjusted over the run's hypotheses, @layer used"
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
        """``✓ 0.91 [0.88, 0.93] @L5`` (``⚠`` when it holds on its control too) or ``– reason``."""
        if self.row is None:
            return "(not in this run)"
        if self.verdict == "not evaluated":
            return f"– {short_reason(self.row.get('reason'))}"
        return f"{verdict_mark(self.verdict)} {fmt_value(self.row)} @{layer_text(self.row)}"


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
    tally = ["**tally**", ""] + [tally_text(matrix.counts(m)) for m in matrix.models]
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
    dtype, device), per study present in both the corpus and every setting that differs, with the value each run
    had (from each folder's ``run.json``; without it, only the model names of the verdict rows are compared), and
    each claim whose definition changed (:func:`claim_changes`). Empty when they are runs of the same model, corpus,
    settings and claims."""
    old, new = _read_run(old_dir), _read_run(new_dir)
    if old is None or new is None:
        names = [sorted({str(r.get("model")) for r in rows}) for rows in (old_rows, new_rows)]
        lines = [f"model: {', '.join(names[0])} vs {', '.join(names[1])}"] if names[0] != names[1] else []
        missing = [str(d) for d, run in ((old_dir, old), (new_dir, new)) if run is None]
        lines.append(f"settings not compared: no {RUN_JSON} in {', '.join(missing)} (an older layerclaims)")
        return lines + claim_changes(None, None, old_rows, new_rows)
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
            a, b = _setting(a_entry, key), _setting(b_entry, key)
            if a != b:
                lines.append(f"{study} setting {key}: {_short_value(a)} vs {_short_value(b)}")
    for study in sorted(set(old_studies) ^ set(new_studies), key=str):
        side = "old" if study in old_studies else "new"
        lines.append(f"study {study}: only in the {side} run")
    return lines + claim_changes(old, new, old_rows, new_rows)


def _setting(entry: Mapping[str, Any], key: str) -> Any:
    """The value a study run had for setting ``key``: as given, else as its provenance recorded it (the study's
    default then), else the word "default"."""
    options = entry.get("options") or {}
    if key in options:
        return options[key]
    provenance = entry.get("provenance") or {}
    return provenance[key] if key in provenance else "default"


# What a claim's definition holds (run.json "claims"), in the order a change is named.
_DEFINITION_FIELDS = ("study", "model", "model_blocks", "layer", "layer_unit", "kind", "presupposes")


def _definitions(run: Mapping[str, Any] | None, rows: Sequence[Row]) -> dict[str, dict[str, Any]]:
    """Claim id -> definition: from run.json's ``claims`` where recorded, else the conditions of the verdict rows
    (statistic, comparison, threshold: what an older run.json leaves out)."""
    recorded = (run or {}).get("claims")
    if isinstance(recorded, Mapping):
        return {str(k): dict(v) for k, v in recorded.items() if isinstance(v, Mapping)}
    out: dict[str, dict[str, Any]] = {}
    for r in rows:
        conds = r.get("conditions") or [r]
        out[str(r.get("claim"))] = {
            "conditions": [[c.get("statistic"), c.get("comparison"), c.get("threshold")] for c in conds]
        }
    return out


def _definition_changes(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    """What differs between two definitions of one claim, each as ``what: old vs new``."""
    out: list[str] = []
    a_conds, b_conds = list(a.get("conditions") or []), list(b.get("conditions") or [])
    if len(a_conds) != len(b_conds):
        out.append(f"conditions: {_short_value(a_conds)} vs {_short_value(b_conds)}")
    else:
        for i, (x, y) in enumerate(zip(a_conds, b_conds, strict=True)):
            where = f" of condition {i + 1}" if len(a_conds) > 1 else ""
            for name, u, v in zip(("statistic", "comparison", "threshold"), x, y, strict=False):
                if u != v:
                    out.append(f"{name}{where}: {_short_value(u)} vs {_short_value(v)}")
    for name in _DEFINITION_FIELDS:
        if name in a and name in b and a[name] != b[name]:
            out.append(f"{name}: {_short_value(a[name])} vs {_short_value(b[name])}")
    a_set, b_set = (
        (a.get("settings") or {}, b.get("settings") or {}) if "settings" in a and "settings" in b else ({}, {})
    )
    for key in sorted(set(a_set) | set(b_set)):
        u, v = a_set.get(key, "the study's default"), b_set.get(key, "the study's default")
        if u != v:
            out.append(f"setting {key}: {_short_value(u)} vs {_short_value(v)}")
    return out


def claim_changes(
    old_run: Mapping[str, Any] | None,
    new_run: Mapping[str, Any] | None,
    old_rows: Sequence[Row] = (),
    new_rows: Sequence[Row] = (),
) -> list[str]:
    """One line per claim in both runs whose definition changed between them (threshold, comparison, statistic,
    layer, kind, settings, ...): its verdicts are then of two different claims."""
    old, new = _definitions(old_run, old_rows), _definitions(new_run, new_rows)
    lines = []
    for claim_id in claim_order(c for c in old if c in new):
        changes = _definition_changes(old[claim_id], new[claim_id])
        if changes:
            lines.append(f"claim {claim_id} is defined differently: {'; '.join(changes)}")
    return lines
