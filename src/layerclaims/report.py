"""What `layerclaims reproduce` writes: verdicts.json / verdicts.csv, and report.md and report.html rendered from a
:class:`RunReport` (plain data, so tested without a model); and the HTML page of the claims x models matrix. The HTML
is self-contained apart from the figures (linked relatively, or embedded as base64): inline CSS, no script, every
piece of text escaped.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import math
import os
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import groupby
from pathlib import Path
from typing import Any

import numpy as np

from layerclaims.claims import CLAIMS_BY_ID
from layerclaims.compare import (
    ALSO_ON_CONTROL,
    CONTROL_MARK,
    LAYER_LEGEND,
    MATRIX_LEGEND,
    VERDICT_CSS,
    VERDICTS_JSON,
    Matrix,
    claim_order,
    claimed_text,
    cut,
    fmt_num,
    fmt_p,
    layer_text,
    md_escape,
    md_table,
    tally_text,
)
from layerclaims.decision import ON_CONTROL
from layerclaims.verdicts import MARKS, ConditionResult, Verdict, compact_parts, fmt_ci

VERDICTS_CSV = "verdicts.csv"
REPORT_MD = "report.md"
REPORT_HTML = "report.html"
CSV_FIELDS = tuple(
    "claim model layer statistic comparison threshold value ci_low ci_high p_value p_adjusted level verdict holds "
    "control_name control_value control_ci_low control_ci_high also_holds_on_control reason settle p_against "
    "p_against_adjusted set_by_premise beats_control details".split()
)


@dataclass
class StudyOutcome:
    """One study in one run: whether it ran, and if not why and how to fix it; what it wrote (figures, saved
    result); ``problems`` after it ran (figures or saving failed); the seconds of each stage."""

    study: str
    ran: bool
    reason: str | None = None
    fix: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    figures: list[Path] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    saved: Path | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    sections: list[str] = field(default_factory=list)  # Markdown a study adds to the report (e.g. what clusters are)


@dataclass
class RunReport:
    """Everything a report shows about one `reproduce` run."""

    model: dict[str, Any]
    studies: list[StudyOutcome]
    rows: list[dict[str, Any]]
    timings: dict[str, float] = field(default_factory=dict)
    packages: dict[str, str] = field(default_factory=dict)
    platform: str = ""
    command: str = ""
    created: str = ""


# --------------------------------------------------------------------------------------------------- verdict files


def jsonable(obj: Any) -> Any:
    """``obj`` with numpy scalars/arrays turned into Python values, tuples into lists, paths into strings and
    non-finite floats into None, so that ``json.dumps(..., allow_nan=False)`` accepts it."""
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return jsonable(obj.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if obj is None or isinstance(obj, str | int | float | bool):
        return obj
    return str(obj)


def csv_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """A verdict row for verdicts.csv: ``ci`` split into ci_low/ci_high, the control's name, value and interval
    flat, ``details`` as a JSON string."""
    ci = row.get("ci") or [None, None]
    ctrl = row.get("control") or {}
    out = {k: row.get(k) for k in CSV_FIELDS if k not in ("ci_low", "ci_high", "details")}
    out["ci_low"], out["ci_high"] = ci[0], ci[1]
    cci = ctrl.get("ci") or [None, None]
    out["control_name"], out["control_value"] = ctrl.get("name"), ctrl.get("value")
    out["control_ci_low"], out["control_ci_high"] = cci[0], cci[1]
    out["details"] = json.dumps(jsonable(row.get("details") or {}), sort_keys=True, allow_nan=False)
    return {k: ("" if out[k] is None else out[k]) for k in CSV_FIELDS}


def write_verdicts(rows: Sequence[Mapping[str, Any]], out_dir: str | os.PathLike[str]) -> tuple[Path, Path]:
    """Write ``verdicts.json`` (a list of rows) and ``verdicts.csv`` (the same rows, flat) into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    clean = jsonable(list(rows))
    (out / VERDICTS_JSON).write_text(json.dumps(clean, indent=1, allow_nan=False) + "\n")
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(CSV_FIELDS), lineterminator="\n")
    writer.writeheader()
    writer.writerows(csv_row(row) for row in clean)
    (out / VERDICTS_CSV).write_text(buf.getvalue())
    return out / VERDICTS_JSON, out / VERDICTS_CSV


# --------------------------------------------------------------------------------------------------- shared pieces


def _claim_origin(v: Verdict) -> str:
    """``on gpt2-medium, block 5``: the claim's own model and layer."""
    layer = v.layer_mapped_from if v.layer_mapped_from is not None else v.layer
    where = "all layers" if layer is None else f"{v.layer_unit.replace('_', ' ')} {layer}"
    return f"on {v.own_model}, {where}"


def _short(value: Any, limit: int = 160) -> str:
    if isinstance(value, float):
        return fmt_num(value)
    return cut(value if isinstance(value, str) else json.dumps(jsonable(value), sort_keys=True), limit)


def _rounded(value: Any) -> Any:
    """Floats to 3 significant digits, recursively (the folded details block)."""
    if isinstance(value, float):
        return float(f"{value:.3g}") if math.isfinite(value) else value
    if isinstance(value, Mapping):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_rounded(v) for v in value]
    return value


def _interval(ci: tuple[float, float] | None) -> str:
    return f" {fmt_ci(ci)}" if ci else ""


def _p_text(v: Verdict, c: ConditionResult) -> str:
    """`` · p(vs 0.8) 0.04, adj. 0.12``: the p that decides the condition (against the claim where it fails) and its
    Holm-adjusted value."""
    against = c.verdict == "fails" and c.p_against is not None
    p, adjusted = (c.p_against, c.p_against_adjusted) if against else (c.p_value, c.p_adjusted)
    if p is None:
        return ""
    text = f" · {'p against (vs' if against else 'p(vs'} {c.threshold:g}) {fmt_p(p)}"
    if adjusted is not None and v.family_size > 1 and not v.set_by_premise:
        text += f", adj. {fmt_p(adjusted)}"  # a verdict set by its premise has no family p of its own
    return text


def measured_lines(v: Verdict) -> list[str]:
    """One short labelled line per condition: ``rsa_qk 0.861 [0.79, 0.93] · p(vs 0.8) 0.04, adj. 0.12 · control
    0.95 [0.93, 0.97] · block 5`` (the layer on the first line only; ``on its own:`` before each when the verdict
    was set by a premise, which gives it no p of its own)."""
    out = []
    own = "on its own: " if v.set_by_premise else ""
    for i, c in enumerate(v.conditions):
        if c.value is None:
            out.append(f"{c.statistic}: not evaluated")
            continue
        text = f"{own}{c.statistic} {fmt_num(c.value)}{_interval(c.ci)}{_p_text(v, c)}"
        if c.shortfall:
            text += f" · short at {compact_parts(c.shortfall)}"
        if c.control and c.control.value is not None:
            text += f" · control {fmt_num(c.control.value)}{_interval(c.control.ci)}"
        if i == 0:
            text += f" · {layer_text(v)}"
        out.append(text)
    return out


def detail_notes(v: Verdict) -> list[str]:
    """Each condition's verdict (``✓ pooled_r < 0: holds``), its control's verdict, its secondary test; then the
    other facts the verdict carries (cluster-count stability, ...), numbers to 3 significant digits: the first
    condition's, then another condition's where they differ (``spearman_mean_mi_vs_depth · key: ...``)."""
    out = []
    for c in v.conditions:
        out.append(f"{MARKS[c.verdict]} {c.condition}: {c.verdict} ({c.rule} rule, interval at level {fmt_p(c.level)})")
        if c.control:
            out.append(f"control: {c.control.name} → {c.control.verdict or 'no interval'}")
        if c.p_secondary is not None:
            out.append(f"{c.p_secondary_name or 'secondary test'}: p = {fmt_p(c.p_secondary)}")
    details = v.main.details if v.main else {}
    out += [f"{key}: {_short(_rounded(val))}" for key, val in details.items() if val is not None]
    for c in v.conditions[1:]:  # another condition's facts where they differ from the first's
        out += [
            f"{c.statistic} · {key}: {_short(_rounded(val))}"
            for key, val in c.details.items()
            if val is not None and repr(_rounded(val)) != repr(_rounded(details.get(key)))  # NaN equal to NaN
        ]
    return out


def verdict_parts(v: Verdict) -> tuple[str, list[str]]:
    """The verdict's mark and word (with how the run's model was taken for the claim's own model, or why it was
    not), and what follows it: the reason (unless it holds), the presupposition, what would settle it."""
    head = f"{MARKS[v.verdict]} {v.verdict}" + (f" ({v.identity})" if v.identity else "")
    reason = v.reason if v.verdict != "holds" else None
    settle = f"to settle: {v.settle}" if v.settle else None
    return head, [text for text in (reason, v.presupposition, settle) if text]


def family_line(verdicts: Sequence[Verdict]) -> str:
    """``Verdicts at family-wise level 0.05 (Holm's step-down over the 12 hypotheses ...)``."""
    sizes = [v.family_size for v in verdicts if v.family_size]
    if not sizes:
        return ""
    return (
        f"Verdicts at family-wise level {verdicts[0].level:g} (Holm's step-down over the {max(sizes)} hypotheses of "
        "this run: the distinct conditions of its claims that have a p-value, once with the p-values for the claims, "
        "once with those against them; each condition's interval is the central bootstrap interval at the level that "
        "decided it; the order of the claims plays no part)."
    )


def _flatten(d: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for key, val in d.items():
        name = f"{prefix}{key}"
        if isinstance(val, Mapping) and val:
            out.extend(_flatten(val, f"{name}."))
        else:
            out.append((name, val))
    return out


def _fmt_seconds(s: float) -> str:
    return f"{s:.2f} s" if s < 120 else f"{s / 60:.1f} min"


def _rel(path: Path, out_dir: Path) -> str:
    try:
        return path.resolve().relative_to(out_dir.resolve()).as_posix()
    except ValueError:
        return path.resolve().as_posix()


# --------------------------------------------------------------------------------------------------- document model
# The report is built once as a list of blocks; :func:`to_markdown` and :func:`to_html` render it. Text in a block is
# the small inline Markdown subset both renderers understand: ``**bold**`` and ```code```, the rest literal.


@dataclass(frozen=True)
class Heading:
    level: int
    text: str


@dataclass(frozen=True)
class Paragraph:
    text: str
    css: str = ""  # the HTML class (``sub``: a legend)


@dataclass(frozen=True)
class Items:
    items: tuple[str, ...]


@dataclass(frozen=True)
class Callout:
    """A boxed warning (a study not run, a problem): one line each, the first usually bold."""

    lines: tuple[str, ...]


@dataclass(frozen=True)
class Cell:
    """A table cell: ``lines`` (``<br>``-joined in Markdown unless ``joiner`` says otherwise, one ``<div>`` each in
    HTML), ``badge`` (a verdict word and its text: plain text in Markdown, a coloured badge in HTML), ``notes``
    folded under "details"."""

    lines: tuple[str, ...] = ()
    badge: tuple[str, str] | None = None
    notes: tuple[str, ...] = ()
    joiner: str = "<br>"
    css: str = ""


@dataclass(frozen=True)
class Table:
    header: tuple[str, ...]
    rows: tuple[tuple[str | Cell, ...], ...]
    css: str = ""


@dataclass(frozen=True)
class Figures:
    paths: tuple[Path, ...]


@dataclass(frozen=True)
class Tally:
    """The verdict counts of a run: a sentence in Markdown, coloured counts in HTML."""

    counts: Mapping[str, int]
    n: int
    created: str


Block = Heading | Paragraph | Items | Callout | Table | Figures | Tally


def _line_kind(line: str) -> str:
    """``#`` a heading, ``|`` a table row, ``- `` a list item, ``p`` a paragraph, ``""`` a blank line."""
    return next((start for start in ("#", "|", "- ") if line.startswith(start)), "p" if line else "")


def parse_markdown(text: str) -> list[Block]:
    """The blocks of the small Markdown subset a study's report section is written in: ``#`` headings, pipe tables
    (``\\|`` inside a cell), ``- `` lists and one-line paragraphs."""
    blocks: list[Block] = []
    for kind, group in groupby((line.rstrip() for line in text.splitlines()), key=_line_kind):
        run = list(group)
        if kind == "#":
            levels = [min(len(line) - len(line.lstrip("#")), 6) for line in run]
            blocks += [Heading(level, line[level:].strip()) for level, line in zip(levels, run, strict=True)]
        elif kind == "|":
            rows = [tuple(c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line)[1:-1]) for line in run]
            rows = [cells for cells in rows if not all(set(c) <= set("-: ") for c in cells)]
            blocks.append(Table(rows[0], tuple(rows[1:])))
        elif kind == "- ":
            blocks.append(Items(tuple(line[2:] for line in run)))
        elif kind:
            blocks += [Paragraph(line) for line in run]
    return blocks


def robustness_blocks(out: Path) -> list[Block]:
    """The robustness section of a run folder that holds ``robustness/`` (``layerclaims robustness --out
    RUN/robustness``): one line per claim, "holds in k of n specifications", and its specification curves."""
    path = Path(out) / "robustness" / "robustness.json"
    if not path.is_file():
        return []
    data = json.loads(path.read_text(encoding="utf-8"))
    n = ", ".join(f"{k}: {v} specifications" for k, v in data.get("n_specifications", {}).items())
    return [
        Heading(2, "Robustness"),
        Paragraph(
            f"From `robustness/` (`layerclaims robustness`, {n}; each claim decided at level 0.05 in each "
            "specification; `robustness/robustness.csv` has every path)."
        ),
        Items(tuple(data.get("lines", []))),
        Figures(tuple(sorted((Path(out) / "robustness" / "figures").glob("spec_curve_*.png")))),
    ]


MEASURED_LEGEND = (
    "Measured: value on all items [decision interval: the central bootstrap percentile interval at the level that "
    "decided the condition; the control's at the same level]; p(vs t): bootstrap p of the claim's own null (the "
    "statistic on the wrong side of its threshold t), p against (vs t): that of the opposite null (shown where the "
    "claim fails); never below 1/(B+1) for B resamples; adj.: Holm-adjusted over the run's hypotheses; control: the "
    "same statistic where the claimed structure is absent by construction (random projections of the block input; a "
    "Gaussian surrogate of the marks). Mantel and label-permutation p-values test 'any structure at all' and are "
    f"secondary (in the details). ✓ holds, {CONTROL_MARK} holds on control too (it {ALSO_ON_CONTROL}; counted apart "
    "from holds), ✗ fails, ? inconclusive, – not evaluated."
)


def _claim_row(v: Verdict) -> tuple[str | Cell, ...]:
    head, tail = verdict_parts(v)
    claimed = " and ".join(c.condition for c in v.conditions)
    return (
        Cell((v.claim,), css="claim"),
        f"{v.text} `{claimed}` {_claim_origin(v)}".strip(),
        Cell(tuple(measured_lines(v)), notes=tuple(detail_notes(v)), css="num measured"),
        Cell(tuple(tail), badge=(v.verdict, head), joiner=". "),
    )


def document(report: RunReport, out: Path) -> list[Block]:
    """The report of one run: tally, studies not run, claims table, figures, the studies' own sections, robustness,
    provenance, timings. A row of another version is refused (:meth:`Verdict.from_row`: re-run)."""
    verdicts = [Verdict.from_row(r) for r in report.rows]
    order = {cid: i for i, cid in enumerate(claim_order(v.claim for v in verdicts))}
    doc: list[Block] = [
        Heading(1, f"layerclaims report: {report.model.get('name', '?')}"),
        Tally(Counter(v.verdict for v in verdicts), len(verdicts), report.created),
    ]
    if family_line(verdicts):
        doc.append(Paragraph(family_line(verdicts)))
    doc += [
        Callout((f"**Study `{s.study}` not run.** {s.reason}", f"**Fix:** {s.fix}"))
        for s in report.studies
        if not s.ran
    ]
    doc += [
        Heading(2, "Claims"),
        Table(
            ("claim", "what was claimed", "measured", "verdict"),
            tuple(_claim_row(v) for v in sorted(verdicts, key=lambda v: order[v.claim])),
        ),
        Paragraph(f"{MEASURED_LEGEND} Layer used: {LAYER_LEGEND}.", "sub"),
        Heading(2, "Figures"),
    ]
    for s in report.studies:
        if s.ran:
            doc.append(Heading(3, f"Study `{s.study}`"))
            doc += [Callout((f"**Problem:** {p}",)) for p in s.problems]
            if s.figures:
                doc.append(Figures(tuple(s.figures)))
    doc += [block for s in report.studies for section in s.sections for block in parse_markdown(section)]
    return doc + robustness_blocks(out) + _provenance(report, out)


def _provenance(report: RunReport, out: Path) -> list[Block]:
    """The Provenance and Timings sections: the model, each study's options and own provenance flattened to ``key:
    value`` (package versions and platform once, for the run), the stages and their total."""
    keys = ("name", "revision", "source", "n_blocks", "device", "dtype", "device_map")
    facts: list[tuple[str, Any]] = [(f"model.{k}", report.model[k]) for k in keys if k in report.model]
    for s in report.studies:
        facts.append((f"{s.study}.status", "ran" if s.ran else "not run"))
        facts += [(f"{s.study}.option.{k}", v) for k, v in s.options.items()]
        own = {k: v for k, v in s.provenance.items() if k not in ("packages", "platform")}
        facts += [(f"{s.study}.{k}", v) for k, v in _flatten(own)]
        if s.saved is not None:
            facts.append((f"{s.study}.saved", _rel(s.saved, out)))
    rows = [(k, "—" if v is None else _short(v, 200)) for k, v in facts] + [
        (f"package.{k}", v) for k, v in report.packages.items()
    ]
    if report.platform:
        rows.append(("platform", report.platform))
    if report.command:
        rows.append(("command", f"`{report.command}`"))
    timings = list(report.timings.items())
    if timings:
        timings.append(("total", sum(v for _, v in timings)))
    return [
        Heading(2, "Provenance"),
        Table(("fact", "value"), tuple(rows), "facts"),
        Heading(2, "Timings"),
        Table(("stage", "time"), tuple((k, _fmt_seconds(v)) for k, v in timings), "facts"),
    ]


# --------------------------------------------------------------------------------------------------- markdown


def _md_cell(cell: str | Cell) -> str:
    if isinstance(cell, str):
        return md_escape(cell)
    parts = ([cell.badge[1]] if cell.badge else []) + [md_escape(line) for line in cell.lines]
    text = cell.joiner.join(parts) or "—"
    if cell.notes:
        text += "<details><summary>details</summary>" + "<br>".join(map(md_escape, cell.notes)) + "</details>"
    return text


def _md_block(block: Block, out: Path) -> list[str]:
    if isinstance(block, Heading):
        return ["#" * block.level + " " + block.text]
    if isinstance(block, Paragraph):
        return [block.text]
    if isinstance(block, Items):
        return [f"- {item}" for item in block.items]
    if isinstance(block, Callout):
        return "\n>\n".join(f"> {md_escape(line)}" for line in block.lines).splitlines()
    if isinstance(block, Table):
        return md_table(block.header, block.rows, _md_cell)
    if isinstance(block, Figures):
        return "\n\n".join(f"![{f.stem}]({_rel(f, out)})" for f in block.paths).splitlines()
    c = block.counts
    return [
        f"{c['holds']} claims hold, {c[ON_CONTROL]} hold on control too, {c['fails']} fail, {c['inconclusive']} "
        f"inconclusive, {c['not evaluated']} not evaluated (of {block.n}). Created {block.created}."
    ]


def to_markdown(doc: Sequence[Block], out: Path) -> str:
    """Markdown of ``doc``, a blank line after each block; figures linked relative to ``out``."""
    return "".join("\n".join(_md_block(block, out)) + "\n\n" for block in doc).rstrip("\n") + "\n"


def render_markdown(report: RunReport, out_dir: str | os.PathLike[str]) -> str:
    """report.md."""
    return to_markdown(document(report, Path(out_dir)), Path(out_dir))


# --------------------------------------------------------------------------------------------------- html

CSS = """
:root { --ok: #1a7f37; --bad: #b42318; --na: #6e6e73; --ctl: #7539c9; --line: #d0d7de; --bg2: #f6f8fa; }
* { box-sizing: border-box; }
body { font: 15px/1.45 -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: #1f2328; margin: 0;
       padding: 24px 32px 64px; max-width: 1400px; }
h1 { font-size: 26px; margin: 0 0 4px; } h2 { font-size: 20px; margin: 32px 0 10px; border-bottom: 1px solid
var(--line); padding-bottom: 4px; } h3 { font-size: 16px; margin: 20px 0 8px; }
.sub { color: var(--na); margin: 0 0 16px; }
.tally span { display: inline-block; margin-right: 14px; font-weight: 600; }
table { border-collapse: collapse; width: 100%; margin: 8px 0; }
th, td { border: 1px solid var(--line); padding: 6px 9px; text-align: left; vertical-align: top; }
th { background: var(--bg2); font-weight: 600; }
td.num { font-variant-numeric: tabular-nums; }
code { font: 12.5px/1.3 ui-monospace, SFMono-Regular, Menlo, monospace; background: var(--bg2); padding: 1px 4px;
       border-radius: 4px; }
.notes { color: #444; font-size: 12.5px; margin-top: 4px; white-space: normal; }
details.notes summary { cursor: pointer; color: var(--na); }
.badge { display: inline-block; padding: 2px 9px; border-radius: 12px; font-weight: 600; font-size: 13px;
         white-space: nowrap; color: #fff; }
.holds { background: var(--ok); } .fails { background: var(--bad); } .na { background: var(--na); }
.oncontrol { background: var(--ctl); } .cell-oncontrol { background: #f1e9fd; }
.inconclusive { background: #9a6700; } .cell-inconclusive { background: #fff4d6; }
td.measured { white-space: normal; min-width: 24em; font-size: 13.5px; }
.measured div { margin-bottom: 3px; overflow-wrap: anywhere; }
.claim { font-weight: 600; }
.reason { font-size: 12.5px; color: #444; margin-top: 4px; }
.notrun { border: 1px solid #e3b341; background: #fff8e1; border-radius: 6px; padding: 10px 14px; margin: 12px 0; }
.figs { display: grid; grid-template-columns: repeat(auto-fill, minmax(460px, 1fr)); gap: 16px; align-items: start;
        grid-auto-flow: row dense; }
figure.wide { grid-column: 1 / -1; } figure.wide img { max-width: 1100px; margin: 0 auto; }
figure { margin: 0; border: 1px solid var(--line); border-radius: 6px; padding: 8px; background: #fff; }
figure img { width: 100%; height: auto; display: block; }
figcaption { font-size: 13px; color: var(--na); margin-top: 6px; }
table.facts { width: auto; min-width: 55%; }
table.facts td:first-child { white-space: nowrap; font-family: ui-monospace, Menlo, monospace; font-size: 13px;
                             width: 24em; }
table.facts td { word-break: break-word; }
.matrix td { font-size: 13.5px; }
.cell-holds { background: #e6f4ea; } .cell-fails { background: #fde8e7; } .cell-na { background: #f2f2f2; }
"""


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _inline_html(text: str) -> str:
    """HTML of one line of inline Markdown: ``**bold**``, ```code``` and ``[text](address)``, the rest escaped."""
    out, strong = [], False
    for i, part in enumerate(re.split(r"(`[^`]*`|\*\*|\[[^\]]*\]\([^)]*\))", text)):
        if part == "**":
            out.append("</strong>" if strong else "<strong>")
            strong = not strong
        elif i % 2 and part.startswith("["):
            label, _, href = part[1:-1].partition("](")
            out.append(f'<a href="{_e(href)}">{_e(label)}</a>')
        elif i % 2:
            out.append(f"<code>{_e(part[1:-1])}</code>")
        else:
            out.append(_e(part))
    return "".join(out) + ("</strong>" if strong else "")


def _page(title: str, body: str) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_e(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n"
    )


def png_size(path: Path) -> tuple[int, int] | None:
    """(width, height) from a PNG's header, or None when the file is not a readable PNG."""
    try:
        with path.open("rb") as fh:
            head = fh.read(24)
    except OSError:
        return None
    if len(head) < 24 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        return None
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


WIDE_RATIO = 1.6  # width / height above which a figure spans the page
WIDE_PIXELS = 1200  # a figure wider than this would shrink below 45 % in a half-page column (its panels unreadable)


def _figure_html(fig: Path, out: Path, embed: bool) -> str:
    src = "data:image/png;base64," + base64.b64encode(fig.read_bytes()).decode("ascii") if embed else _rel(fig, out)
    size = png_size(fig)
    wide = size is not None and size[1] > 0 and (size[0] / size[1] > WIDE_RATIO or size[0] > WIDE_PIXELS)
    cls = ' class="wide"' if wide else ""
    return (
        f'<figure{cls}><a href="{_e(_rel(fig, out))}"><img src="{_e(src)}" alt="{_e(fig.stem)}" loading="lazy"></a>'
        f"<figcaption>{_e(fig.name)}</figcaption></figure>"
    )


def _html_cell(cell: str | Cell) -> str:
    if isinstance(cell, str):
        return f"<td>{_inline_html(cell)}</td>"
    if cell.badge:
        word, label = cell.badge
        text = f'<span class="badge {VERDICT_CSS[word]}">{_e(label)}</span>'
        text += "".join(f'<div class="reason">{_inline_html(line)}</div>' for line in cell.lines)
    else:
        text = "".join(f"<div>{_inline_html(line)}</div>" for line in cell.lines) or "—"
    if cell.notes:
        notes = "<br>".join(_e(n) for n in cell.notes)
        text += f'<details class="notes"><summary>details ({len(cell.notes)})</summary>{notes}</details>'
    return f'<td class="{cell.css}">{text}</td>' if cell.css else f"<td>{text}</td>"


def _html_block(block: Block, out: Path, embed: bool) -> str:
    if isinstance(block, Heading):
        return f"<h{block.level}>{_inline_html(block.text)}</h{block.level}>"
    if isinstance(block, Paragraph):
        cls = f' class="{block.css}"' if block.css else ""
        return f"<p{cls}>{_inline_html(block.text)}</p>"
    if isinstance(block, Items):
        return "<ul>" + "".join(f"<li>{_inline_html(item)}</li>" for item in block.items) + "</ul>"
    if isinstance(block, Callout):
        return f'<div class="notrun">{"<br>".join(_inline_html(line) for line in block.lines)}</div>'
    if isinstance(block, Table):
        cls = f' class="{block.css}"' if block.css else ""
        head = "".join(f"<th>{_inline_html(h)}</th>" for h in block.header)
        body = "".join("<tr>" + "".join(_html_cell(c) for c in row) + "</tr>" for row in block.rows)
        return f"<table{cls}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    if isinstance(block, Figures):
        return '<div class="figs">' + "".join(_figure_html(f, out, embed) for f in block.paths) + "</div>"
    c = block.counts
    return (
        '<p class="tally">'
        f'<span style="color:var(--ok)">✓ {c["holds"]} hold</span>'
        f'<span style="color:var(--ctl)">{CONTROL_MARK} {c[ON_CONTROL]} hold on control too</span>'
        f'<span style="color:var(--bad)">✗ {c["fails"]} fail</span>'
        f'<span style="color:#9a6700">? {c["inconclusive"]} inconclusive</span>'
        f'<span style="color:var(--na)">– {c["not evaluated"]} not evaluated</span></p>'
        f'<p class="sub">of {block.n} claims. Created {_e(block.created)}.</p>'
    )


def to_html(doc: Sequence[Block], out: Path, *, embed_figures: bool = False) -> str:
    """HTML of ``doc`` (the page body); figures linked relative to ``out`` or embedded as base64."""
    return "\n".join(_html_block(block, out, embed_figures) for block in doc)


def render_html(report: RunReport, out_dir: str | os.PathLike[str], *, embed_figures: bool = False) -> str:
    """report.html: the same document as report.md, styled, with figures linked relatively (or embedded)."""
    out = Path(out_dir)
    body = to_html(document(report, out), out, embed_figures=embed_figures)
    return _page(f"layerclaims report: {report.model.get('name', '?')}", body)


def write_report(
    report: RunReport, out_dir: str | os.PathLike[str], *, embed_figures: bool = False
) -> tuple[Path, Path]:
    """Write report.md and report.html into ``out_dir``; returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / REPORT_MD).write_text(render_markdown(report, out))
    (out / REPORT_HTML).write_text(render_html(report, out, embed_figures=embed_figures))
    return out / REPORT_MD, out / REPORT_HTML


# --------------------------------------------------------------------------------------------------- matrix page


def render_matrix_html(
    matrix: Matrix, title: str = "layerclaims: claims × models", links: Mapping[str, str] | None = None
) -> str:
    """The claims x models matrix as a self-contained HTML page (cells coloured by verdict); ``links`` maps a model
    to the (relative) address of its report, linked from the column header."""
    links = links or {}
    rows: list[tuple[str | Cell, ...]] = []
    for cid in matrix.claims:
        first = next((matrix.cell(cid, m).row for m in matrix.models if matrix.cell(cid, m).row), None)
        claim = CLAIMS_BY_ID.get(cid)
        text = (first or {}).get("text") or (claim.text if claim else "")
        cells = [matrix.cell(cid, m) for m in matrix.models]
        rows.append(
            (
                f"**{cid}**",
                Cell(tuple(filter(None, (text, f"`{claimed_text(cid, first)}`")))),
                *(Cell((c.text(),), css=f"num cell-{VERDICT_CSS[c.verdict]}") for c in cells),
            )
        )
    rows.append(("**tally**", "", *(tally_text(matrix.counts(m)) for m in matrix.models)))
    head = tuple(f"[{m}]({links[m]})" if m in links else m for m in matrix.models)
    doc: list[Block] = [
        Heading(1, title),
        Table(("claim", "claimed", *head), tuple(rows), "matrix"),
        Paragraph(f"{MATRIX_LEGEND} ({LAYER_LEGEND}).", "sub"),
    ]
    if matrix.notes:
        doc.append(Items(tuple(f"**{m}**: {n}" for m, n in matrix.notes.items())))
    return _page(title, to_html(doc, Path(".")))
