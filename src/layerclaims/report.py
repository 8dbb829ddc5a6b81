"""What `layerclaims reproduce` writes: verdicts.json / verdicts.csv, report.md and report.html; and the HTML page of
the claims x models matrix.

The report is rendered from a :class:`RunReport` (plain data the CLI fills in: the model, one :class:`StudyOutcome`
per study, the verdict rows, stage timings), so it is tested without a model. The HTML page is self-contained apart
from the figures: inline CSS, no script, every piece of text escaped, figures linked by a path relative to the
report (or embedded as base64 with ``embed_figures=True``).
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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from layerclaims.claims import CLAIMS_BY_ID
from layerclaims.compare import (
    ALSO_ON_CONTROL,
    CONTROL_MARK,
    LAYER_LEGEND,
    MATRIX_LEGEND,
    VERDICT_WORDS,
    VERDICTS_JSON,
    Matrix,
    also_on_control,
    claim_order,
    claimed_text,
    fmt_num,
    fmt_p,
    layer_text,
    row_control_note,
    row_verdict,
    verdict_mark,
)
from layerclaims.verdicts import compact_parts

VERDICTS_CSV = "verdicts.csv"
REPORT_MD = "report.md"
REPORT_HTML = "report.html"
CSV_FIELDS = (
    "claim",
    "model",
    "layer",
    "statistic",
    "comparison",
    "threshold",
    "value",
    "ci_low",
    "ci_high",
    "p_value",
    "p_adjusted",
    "level",
    "verdict",
    "holds",
    "control_name",
    "control_value",
    "control_ci_low",
    "control_ci_high",
    "also_holds_on_control",
    "reason",
    "settle",
    "details",
)
# Details that the claims table shows elsewhere (layer column, claim text), not among the notes.
_HIDDEN_DETAILS = {"layer_mapped_from", "kind"}


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
    json_path = out / VERDICTS_JSON
    json_path.write_text(json.dumps(clean, indent=1, allow_nan=False) + "\n")
    csv_path = out / VERDICTS_CSV
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(CSV_FIELDS), lineterminator="\n")
    writer.writeheader()
    for row in clean:
        writer.writerow(csv_row(row))
    csv_path.write_text(buf.getvalue())
    return json_path, csv_path


# --------------------------------------------------------------------------------------------------- shared pieces


def _sorted_rows(rows: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    order = {cid: i for i, cid in enumerate(claim_order(str(r["claim"]) for r in rows))}
    return sorted(rows, key=lambda r: order[str(r["claim"])])


def _claim_text(row: Mapping[str, Any]) -> str:
    if row.get("text"):
        return str(row["text"])
    claim = CLAIMS_BY_ID.get(str(row["claim"]))
    return claim.text if claim is not None else ""


def _claim_origin(row: Mapping[str, Any]) -> str:
    """``on gpt2-medium, block 5``: the claim's own model and layer (from the row; registry for older rows)."""
    own, unit = row.get("own_model"), row.get("layer_unit")
    layer = row.get("layer_mapped_from") if row.get("layer_mapped_from") is not None else row.get("layer")
    if own is None:
        claim = CLAIMS_BY_ID.get(str(row["claim"]))
        if claim is None:
            return ""
        own, unit, layer = claim.model, claim.layer_unit, claim.layer
    where = "all layers" if layer is None else f"{str(unit or 'layer').replace('_', ' ')} {layer}"
    return f"on {own}, {where}"


def _short(value: Any, limit: int = 160) -> str:
    if isinstance(value, float):
        return fmt_num(value)
    text = value if isinstance(value, str) else json.dumps(jsonable(value), sort_keys=True)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _rounded(value: Any) -> Any:
    """Floats to 3 significant digits, recursively (the folded details block)."""
    if isinstance(value, float):
        return float(f"{value:.3g}") if math.isfinite(value) else value
    if isinstance(value, Mapping):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_rounded(v) for v in value]
    return value


def _conditions(row: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    conds = row.get("conditions")
    if conds:
        return list(conds)
    return [row] if row.get("statistic") else []


def measured_lines(row: Mapping[str, Any]) -> list[str]:
    """One short labelled line per condition: ``rsa_qk 0.861 [0.79, 0.93] · p(vs 0.8) 0.04, adj. 0.12 · control
    0.95 [0.93, 0.97] · block 5`` (the layer on the first line only)."""
    out = []
    for i, c in enumerate(_conditions(row)):
        if c.get("value") is None:
            out.append(f"{c.get('statistic')}: not evaluated")
            continue
        text = f"{c.get('statistic')} {fmt_num(c['value'])}"
        ci = c.get("ci")
        if ci:
            text += f" [{fmt_num(ci[0])}, {fmt_num(ci[1])}]"
        if c.get("p_value") is not None:
            text += f" · p(vs {c['threshold']:g}) {fmt_p(c['p_value'])}"
            if i == 0 and row.get("p_adjusted") is not None and (row.get("family_size") or 1) > 1:
                text += f", adj. {fmt_p(row['p_adjusted'])}"
        if c.get("shortfall"):
            text += f" · short at {compact_parts(c['shortfall'])}"
        ctrl = c.get("control")
        if ctrl and ctrl.get("value") is not None:
            cci = ctrl.get("ci")
            text += f" · control {fmt_num(ctrl['value'])}"
            if cci:
                text += f" [{fmt_num(cci[0])}, {fmt_num(cci[1])}]"
        if i == 0:
            text += f" · {layer_text(row)}"
        out.append(text)
    return out


def condition_notes(row: Mapping[str, Any]) -> list[str]:
    """Each condition's verdict (``✓ pooled_r < 0: holds``) and the control's name and verdict."""
    out = []
    for c in _conditions(row):
        cond = f"{c.get('statistic')} {c.get('comparison')} {c.get('threshold'):g}"
        line = f"{verdict_mark(c.get('verdict', row_verdict(row)))} {cond}: {c.get('verdict', row_verdict(row))}"
        if c.get("rule"):
            line += f" ({c['rule']} rule, interval at level {fmt_p(c.get('level'))})"
        out.append(line)
        ctrl = c.get("control")
        if ctrl:
            out.append(f"control: {ctrl.get('name')} → {ctrl.get('verdict') or 'no interval'}")
        if c.get("p_secondary") is not None:
            out.append(f"{c.get('p_secondary_name') or 'secondary test'}: p = {fmt_p(c['p_secondary'])}")
    return out


def fact_notes(row: Mapping[str, Any]) -> list[str]:
    """The other facts a verdict carries (cluster-count stability, the block where a minimum occurs, ...), numbers
    rounded to 3 significant digits."""
    return [
        f"{key}: {_short(_rounded(val))}"
        for key, val in (row.get("details") or {}).items()
        if key not in _HIDDEN_DETAILS and not key.startswith("condition ") and val is not None
    ]


def detail_notes(row: Mapping[str, Any]) -> list[str]:
    """Human lines for a verdict's details: its conditions' verdicts, the controls, the secondary tests, then the
    other facts."""
    return condition_notes(row) + fact_notes(row)


def verdict_text(row: Mapping[str, Any]) -> str:
    """The verdict cell: mark and word, the control warning, the reason, the presupposition, what would settle it."""
    word = row_verdict(row)
    out = f"{verdict_mark(word)} {word}"
    if also_on_control(row):
        out += f" ({CONTROL_MARK} {row_control_note(row)})"
    for key, label in (("reason", ""), ("presupposition", ""), ("settle", "to settle: ")):
        if row.get(key) and not (key == "reason" and word == "holds"):
            out += f". {label}{row[key]}"
    return out


def family_line(rows: Sequence[Mapping[str, Any]]) -> str:
    """``Family-wise level 0.05 (Holm over 9 claims with a p-value)``."""
    sizes = [r["family_size"] for r in rows if r.get("family_size")]
    levels = [r["level"] for r in rows if r.get("level")]
    if not sizes or not levels:
        return ""
    return (
        f"Verdicts at family-wise level {levels[0]:g} (Holm's step-down over the {max(sizes)} claims of this run that "
        "have a p-value; each claim's interval is the central bootstrap interval at its Holm level)."
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


def study_provenance(outcome: StudyOutcome) -> list[tuple[str, Any]]:
    """A study's own provenance (corpus, sha256, selection, seed, its timings, ...) flattened to ``key: value``;
    package versions and platform are shown once for the run."""
    prov = {k: v for k, v in outcome.provenance.items() if k not in ("packages", "platform")}
    return _flatten(prov)


def _timings_with_total(timings: Mapping[str, float]) -> list[tuple[str, float]]:
    """The stages and their sum (the report's own writing is timed after the report is rendered, so not here)."""
    items = list(timings.items())
    return [*items, ("total", sum(v for _, v in items))] if items else []


def _fmt_seconds(s: float) -> str:
    return f"{s:.2f} s" if s < 120 else f"{s / 60:.1f} min"


def _fmt_fact(val: Any) -> str:
    if isinstance(val, float):
        return fmt_num(val)
    if val is None:
        return "—"
    return _short(val, 200)


def _summary_counts(rows: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    out = dict.fromkeys(VERDICT_WORDS, 0)
    for r in rows:
        out[row_verdict(r)] += 1
    return out


def _rel(path: Path, out_dir: Path) -> str:
    try:
        return path.resolve().relative_to(out_dir.resolve()).as_posix()
    except ValueError:
        return path.resolve().as_posix()


def _model_facts(report: RunReport) -> list[tuple[str, Any]]:
    keys = ("name", "revision", "source", "n_blocks", "device", "dtype", "device_map")
    return [(k, report.model.get(k)) for k in keys if k in report.model]


# --------------------------------------------------------------------------------------------------- markdown


def _md(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render_markdown(report: RunReport, out_dir: str | os.PathLike[str]) -> str:
    """report.md: summary, claims table, studies not run, figures (relative links), provenance, timings."""
    out = Path(out_dir)
    model = report.model.get("name", "?")
    counts = _summary_counts(report.rows)
    lines = [
        f"# layerclaims report: {model}",
        "",
        f"{counts['holds']} claims hold, {counts['fails']} fail, {counts['inconclusive']} inconclusive, "
        f"{counts['not evaluated']} not evaluated (of {len(report.rows)}). Created {report.created}.",
        "",
    ]
    if family_line(report.rows):
        lines += [family_line(report.rows), ""]
    not_run = [s for s in report.studies if not s.ran]
    for s in not_run:
        lines += [f"> **Study `{s.study}` not run.** {_md(s.reason)}", ">", f"> **Fix:** {_md(s.fix)}", ""]
    lines += [
        "## Claims",
        "",
        "| claim | what was claimed | measured | verdict |",
        "|---|---|---|---|",
    ]
    for r in _sorted_rows(report.rows):
        claimed = f"{_claim_text(r)} `{claimed_text(str(r['claim']), r)}` {_claim_origin(r)}".strip()
        measured = "<br>".join(_md(m) for m in measured_lines(r)) or "—"
        notes = detail_notes(r)
        if notes:
            measured += "<details><summary>details</summary>" + "<br>".join(_md(n) for n in notes) + "</details>"
        lines.append(f"| {r['claim']} | {_md(claimed)} | {measured} | {_md(verdict_text(r))} |")
    lines += [
        "",
        f"{MEASURED_LEGEND} Layer used: {LAYER_LEGEND}.",
        "",
        "## Figures",
        "",
    ]
    for s in report.studies:
        if not s.ran:
            continue
        lines.append(f"### Study `{s.study}`")
        lines.append("")
        lines += [f"> **Problem:** {_md(p)}\n" for p in s.problems]
        for fig in s.figures:
            lines += [f"![{fig.stem}]({_rel(fig, out)})", ""]
    for s in report.studies:
        lines += [section.rstrip() + "\n" for section in s.sections]
    lines += robustness_markdown(out)
    lines += ["## Provenance", "", "| fact | value |", "|---|---|"]
    lines += [f"| model.{k} | {_md(_fmt_fact(v))} |" for k, v in _model_facts(report)]
    for s in report.studies:
        status = "ran" if s.ran else "not run"
        lines.append(f"| {s.study}.status | {status} |")
        lines += [f"| {s.study}.option.{k} | {_md(_fmt_fact(v))} |" for k, v in s.options.items()]
        lines += [f"| {s.study}.{k} | {_md(_fmt_fact(v))} |" for k, v in study_provenance(s)]
        if s.saved is not None:
            lines.append(f"| {s.study}.saved | {_md(_rel(s.saved, out))} |")
    lines += [f"| package.{k} | {_md(v)} |" for k, v in report.packages.items()]
    if report.platform:
        lines.append(f"| platform | {_md(report.platform)} |")
    if report.command:
        lines.append(f"| command | `{_md(report.command)}` |")
    lines += ["", "## Timings", "", "| stage | time |", "|---|---|"]
    lines += [f"| {_md(k)} | {_fmt_seconds(v)} |" for k, v in _timings_with_total(report.timings)]
    return "\n".join(lines) + "\n"


MEASURED_LEGEND = (
    "Measured: value on all items [decision interval: the central bootstrap percentile interval at the claim's Holm "
    "level]; p(vs t): bootstrap p of the claim's own null (the statistic on the wrong side of its "
    "threshold t), adj.: Holm-adjusted over the run; control: the same statistic where the claimed structure is absent "
    "by construction (random projections of the block input; a Gaussian surrogate of the marks). Mantel and "
    f"label-permutation p-values test 'any structure at all' and are secondary (in the details). ✓ holds, ✗ fails, "
    f"? inconclusive, – not evaluated; {CONTROL_MARK} {ALSO_ON_CONTROL}."
)

# --------------------------------------------------------------------------------------------------- html

CSS = """
:root { --ok: #1a7f37; --bad: #b42318; --na: #6e6e73; --line: #d0d7de; --bg2: #f6f8fa; }
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
.claimtext { display: block; } .origin { color: var(--na); font-size: 13px; }
.notes { color: #444; font-size: 12.5px; margin-top: 4px; white-space: normal; }
details.notes summary { cursor: pointer; color: var(--na); }
.badge { display: inline-block; padding: 2px 9px; border-radius: 12px; font-weight: 600; font-size: 13px;
         white-space: nowrap; color: #fff; }
.holds { background: var(--ok); } .fails { background: var(--bad); } .na { background: var(--na); }
.inconclusive { background: #9a6700; } .cell-inconclusive { background: #fff4d6; }
td.measured { white-space: normal; min-width: 24em; font-size: 13.5px; }
.measured div { margin-bottom: 3px; overflow-wrap: anywhere; }
.reason { font-size: 12.5px; color: #444; margin-top: 4px; }
.notrun .why { white-space: pre-line; }
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


def _badge(row: Mapping[str, Any]) -> str:
    word = row_verdict(row)
    cls = {"not evaluated": "na"}.get(word, word)
    return f'<span class="badge {cls}">{verdict_mark(word)} {_e(word)}</span>'


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


def _is_wide(path: Path) -> bool:
    """A figure much wider than tall, or one too detailed for a half-page column (the all-layer grids, the
    ridgelines), gets the full page width in the report."""
    size = png_size(path)
    return size is not None and size[1] > 0 and (size[0] / size[1] > WIDE_RATIO or size[0] > WIDE_PIXELS)


def _img_src(fig: Path, out: Path, embed: bool) -> str:
    if embed:
        return "data:image/png;base64," + base64.b64encode(fig.read_bytes()).decode("ascii")
    return _rel(fig, out)


def render_html(report: RunReport, out_dir: str | os.PathLike[str], *, embed_figures: bool = False) -> str:
    """report.html: the same content as report.md, styled, with figures linked relatively (or embedded)."""
    out = Path(out_dir)
    model = report.model.get("name", "?")
    counts = _summary_counts(report.rows)
    parts = [
        f"<h1>layerclaims report: {_e(model)}</h1>",
        f'<p class="sub">Created {_e(report.created)} &middot; {len(report.rows)} claims evaluated on '
        f"{_e(model)} ({_e(report.model.get('n_blocks', '?'))} blocks, {_e(report.model.get('device', '?'))}, "
        f"{_e(report.model.get('dtype', '?'))})</p>",
        '<p class="tally">'
        f'<span style="color:var(--ok)">✓ {counts["holds"]} hold</span>'
        f'<span style="color:var(--bad)">✗ {counts["fails"]} fail</span>'
        f'<span style="color:#9a6700">? {counts["inconclusive"]} inconclusive</span>'
        f'<span style="color:var(--na)">– {counts["not evaluated"]} not evaluated</span></p>',
    ]
    for s in report.studies:
        if not s.ran:
            parts.append(
                f'<div class="notrun"><strong>Study <code>{_e(s.study)}</code> not run.</strong> '
                f'<span class="why">{_e(s.reason)}</span><br><strong>Fix:</strong> {_e(s.fix)}</div>'
            )
    parts.append("<h2>Claims</h2>")
    if family_line(report.rows):
        parts.append(f"<p>{_e(family_line(report.rows))}</p>")
    parts.append(
        "<table><thead><tr><th>claim</th><th>what was claimed</th><th>measured</th><th>verdict</th></tr></thead><tbody>"
    )
    for r in _sorted_rows(report.rows):
        notes_html = _notes_html(r)
        word = row_verdict(r)
        reason = ""
        if also_on_control(r):
            reason += f'<div class="reason">{_e(CONTROL_MARK)} {_e(row_control_note(r))}</div>'
        for key, label in (("reason", ""), ("presupposition", ""), ("settle", "to settle: ")):
            if r.get(key) and not (key == "reason" and word == "holds"):
                reason += f'<div class="reason">{_e(label)}{_e(r[key])}</div>'
        measured = "".join(f"<div>{_e(m)}</div>" for m in measured_lines(r)) or "—"
        parts.append(
            f"<tr><td><strong>{_e(r['claim'])}</strong></td>"
            f'<td><span class="claimtext">{_e(_claim_text(r))}</span>'
            f"<code>{_e(claimed_text(str(r['claim']), r))}</code> "
            f'<span class="origin">{_e(_claim_origin(r))}</span></td>'
            f'<td class="num measured">{measured}{notes_html}</td>'
            f"<td>{_badge(r)}{reason}</td></tr>"
        )
    parts.append("</tbody></table>")
    parts.append(f'<p class="sub">{_e(MEASURED_LEGEND)} Layer used: {_e(LAYER_LEGEND)}.</p>')
    parts.append("<h2>Figures</h2>")
    for s in report.studies:
        if not s.ran:
            parts.append(f"<h3>Study <code>{_e(s.study)}</code></h3><p>Not run: no figures.</p>")
            continue
        parts.append(f"<h3>Study <code>{_e(s.study)}</code></h3>")
        parts += [f'<div class="notrun"><strong>Problem:</strong> {_e(p)}</div>' for p in s.problems]
        if s.figures:
            parts.append('<div class="figs">')
            for fig in s.figures:
                cls = ' class="wide"' if _is_wide(fig) else ""
                parts.append(
                    f'<figure{cls}><a href="{_e(_rel(fig, out))}"><img src="{_e(_img_src(fig, out, embed_figures))}" '
                    f'alt="{_e(fig.stem)}" loading="lazy"></a><figcaption>{_e(fig.name)}</figcaption></figure>'
                )
            parts.append("</div>")
    for s in report.studies:
        parts += [markdown_html(section) for section in s.sections]
    robustness = robustness_markdown(out)
    if robustness:
        parts.append(markdown_html("\n".join(line for line in robustness if not line.startswith("!["))))
        figs = sorted((out / "robustness" / "figures").glob("spec_curve_*.png"))
        parts.append('<div class="figs">')
        parts += [
            f'<figure><a href="{_e(_rel(f, out))}"><img src="{_e(_img_src(f, out, embed_figures))}" alt="{_e(f.stem)}" '
            f'loading="lazy"></a><figcaption>{_e(f.stem)}</figcaption></figure>'
            for f in figs
        ]
        parts.append("</div>")
    parts.append("<h2>Provenance</h2>")
    parts.append(_facts_table([(f"model.{k}", v) for k, v in _model_facts(report)]))
    for s in report.studies:
        facts: list[tuple[str, Any]] = [("status", "ran" if s.ran else "not run")]
        facts += [(f"option.{k}", v) for k, v in s.options.items()]
        facts += study_provenance(s)
        if s.saved is not None:
            facts.append(("saved", _rel(s.saved, out)))
        parts.append(f"<h3>Study <code>{_e(s.study)}</code></h3>")
        parts.append(_facts_table(facts))
    parts.append("<h3>Environment</h3>")
    env = [(f"package.{k}", v) for k, v in report.packages.items()]
    if report.platform:
        env.append(("platform", report.platform))
    if report.command:
        env.append(("command", report.command))
    parts.append(_facts_table(env))
    parts.append("<h2>Timings</h2>")
    parts.append(_facts_table([(k, _fmt_seconds(v)) for k, v in _timings_with_total(report.timings)]))
    return _page(f"layerclaims report: {model}", "\n".join(parts))


def robustness_markdown(out: Path) -> list[str]:
    """The robustness section of a run folder that holds ``robustness/`` (``layerclaims robustness --out
    RUN/robustness``): one line per claim, "holds in k of n specifications", and its specification curves."""
    path = Path(out) / "robustness" / "robustness.json"
    if not path.is_file():
        return []
    data = json.loads(path.read_text(encoding="utf-8"))
    n = data.get("n_specifications", {})
    lines = [
        "## Robustness",
        "",
        f"From `robustness/` (`layerclaims robustness`, {', '.join(f'{k}: {v} specifications' for k, v in n.items())}"
        "; each claim decided at level 0.05 in each specification; `robustness/robustness.csv` has every path).",
        "",
    ]
    lines += [f"- {line}" for line in data.get("lines", [])]
    lines.append("")
    figs = sorted((Path(out) / "robustness" / "figures").glob("spec_curve_*.png"))
    lines += [f"![{f.stem}](robustness/figures/{f.name})" for f in figs]
    return [*lines, ""]


def _inline_html(text: str) -> str:
    """``**bold**`` and ```code``` of one Markdown line, the rest escaped."""
    out = []
    for i, part in enumerate(text.split("`")):
        if i % 2:
            out.append(f"<code>{_e(part)}</code>")
        else:
            bits = part.split("**")
            out.append("".join(f"<strong>{_e(b)}</strong>" if j % 2 else _e(b) for j, b in enumerate(bits)))
    return "".join(out)


def markdown_html(text: str) -> str:
    """HTML of the small Markdown subset a study's report section uses: ``##``/``###`` headings, pipe tables,
    ``- `` lists, paragraphs, ``**bold**`` and ```code```."""
    html: list[str] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i].rstrip()
        if not line:
            i += 1
        elif line.startswith("#"):
            level = min(len(line) - len(line.lstrip("#")), 6)
            html.append(f"<h{level}>{_inline_html(line[level:].strip())}</h{level}>")
            i += 1
        elif line.startswith("|"):
            rows = []
            while i < len(lines) and lines[i].startswith("|"):
                cells = [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", lines[i].strip())[1:-1]]
                if not all(set(c) <= set("-: ") for c in cells):
                    rows.append(cells)
                i += 1
            head, body = (rows[0], rows[1:]) if rows else ([], [])
            html.append(
                "<table><thead><tr>"
                + "".join(f"<th>{_inline_html(c)}</th>" for c in head)
                + "</tr></thead><tbody>"
                + "".join("<tr>" + "".join(f"<td>{_inline_html(c)}</td>" for c in r) + "</tr>" for r in body)
                + "</tbody></table>"
            )
        elif line.startswith("- "):
            items = []
            while i < len(lines) and lines[i].startswith("- "):
                items.append(f"<li>{_inline_html(lines[i][2:])}</li>")
                i += 1
            html.append(f"<ul>{''.join(items)}</ul>")
        else:
            html.append(f"<p>{_inline_html(line)}</p>")
            i += 1
    return "\n".join(html)


def _notes_html(row: Mapping[str, Any]) -> str:
    """Conditions' verdicts, controls, secondary tests and facts, folded (``<details>``, no script)."""
    folded = detail_notes(row)
    if not folded:
        return ""
    return (
        f'<details class="notes"><summary>details ({len(folded)})</summary>'
        f"{'<br>'.join(_e(n) for n in folded)}</details>"
    )


def _facts_table(facts: Sequence[tuple[str, Any]]) -> str:
    rows = "".join(f"<tr><td>{_e(k)}</td><td>{_e(_fmt_fact(v))}</td></tr>" for k, v in facts)
    return f'<table class="facts"><tbody>{rows}</tbody></table>'


def write_report(
    report: RunReport, out_dir: str | os.PathLike[str], *, embed_figures: bool = False
) -> tuple[Path, Path]:
    """Write report.md and report.html into ``out_dir``; returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    md = out / REPORT_MD
    md.write_text(render_markdown(report, out))
    page = out / REPORT_HTML
    page.write_text(render_html(report, out, embed_figures=embed_figures))
    return md, page


# --------------------------------------------------------------------------------------------------- matrix page


def render_matrix_html(
    matrix: Matrix, title: str = "layerclaims: claims × models", links: Mapping[str, str] | None = None
) -> str:
    """The claims x models matrix as a self-contained HTML page (cells coloured by verdict); ``links`` maps a model
    to the (relative) address of its report, linked from the column header."""
    links = links or {}
    head = "".join(
        f'<th><a href="{_e(links[m])}">{_e(m)}</a></th>' if m in links else f"<th>{_e(m)}</th>" for m in matrix.models
    )
    body: list[str] = []
    for cid in matrix.claims:
        first = next((matrix.cell(cid, m).row for m in matrix.models if matrix.cell(cid, m).row), None)
        claim = CLAIMS_BY_ID.get(cid)
        text_of = (first or {}).get("text") or (claim.text if claim else "")
        tds = []
        for m in matrix.models:
            cell = matrix.cell(cid, m)
            cls = {"not evaluated": "cell-na"}.get(cell.verdict, f"cell-{cell.verdict}")
            tds.append(f'<td class="num {cls}">{_e(cell.text())}</td>')
        text = f'<span class="claimtext">{_e(text_of)}</span>' if text_of else ""
        body.append(
            f"<tr><td><strong>{_e(cid)}</strong></td><td>{text}<code>{_e(claimed_text(cid, first))}</code></td>"
            + "".join(tds)
            + "</tr>"
        )
    tally = "".join(
        "<td>{h} ✓, {f} ✗, {i} ?, {n} –</td>".format(
            h=c["holds"], f=c["fails"], i=c["inconclusive"], n=c["not evaluated"]
        )
        for c in (matrix.counts(m) for m in matrix.models)
    )
    body.append(f"<tr><td><strong>tally</strong></td><td></td>{tally}</tr>")
    notes = "".join(f"<li><strong>{_e(m)}</strong>: {_e(n)}</li>" for m, n in matrix.notes.items())
    page = (
        f"<h1>{_e(title)}</h1>"
        f'<table class="matrix"><thead><tr><th>claim</th><th>claimed</th>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table>"
        f'<p class="sub">{_e(MATRIX_LEGEND)} ({_e(LAYER_LEGEND)}).</p>' + (f"<ul>{notes}</ul>" if notes else "")
    )
    return _page(title, page)
