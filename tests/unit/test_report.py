"""verdicts.json / verdicts.csv and the Markdown and HTML reports, rendered from plain data (no model)."""

from __future__ import annotations

import base64
import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from layerclaims.claims import CLAIMS_BY_ID
from layerclaims.compare import build_matrix
from layerclaims.report import (
    RunReport,
    StudyOutcome,
    csv_row,
    jsonable,
    png_size,
    render_html,
    render_markdown,
    render_matrix_html,
    write_report,
    write_verdicts,
)
from layerclaims.verdicts import ConditionResult, Verdict, decide_condition

# A 1x1 PNG (the smallest valid file), so that tests need no plotting library.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="
)


def verdicts() -> list[Verdict]:
    """B2 holds (block 5 of the claim's model mapped to block 0), A6 fails on one of its two conditions, A1 was not
    evaluated (its study did not run)."""
    b2 = ConditionResult(
        "rsa_qk",
        ">",
        0.8,
        0.91,
        (0.88, 0.93),
        0.001,
        "holds",
        rule="threshold",
        details={"stability": np.float64(0.95)},
    )
    slope = ConditionResult(
        "min_within_cluster_slope",
        ">",
        0.0,
        -0.2,
        (-0.3, -0.1),
        1.0,
        "fails",
        rule="threshold",
        p_against=0.001,
        details={"slopes": [-0.2]},
    )
    pooled = ConditionResult("pooled_r", "<", 0.0, -0.1, (-0.2, -0.05), 0.001, "holds", rule="threshold")
    a6, b2_claim, a1 = CLAIMS_BY_ID["A6"], CLAIMS_BY_ID["B2"], CLAIMS_BY_ID["A1"]
    why = "study punctuation not run: <no corpus> & nothing else"
    return [
        Verdict(
            "B2",
            "tiny-gpt2",
            0,
            "holds",
            (b2,),
            p_value=0.001,
            p_adjusted=0.001,
            text=b2_claim.text,
            layer_unit="block",
            layer_mapped_from=5,
            own_model=b2_claim.model,
        ),
        Verdict(
            "A6",
            "tiny-gpt2",
            1,
            "fails",
            (slope, pooled),
            reason="min_within_cluster_slope > 0 fails",
            text=a6.text,
            kind=a6.kind,
            own_model=a6.model,
        ),
        Verdict(
            "A1",
            "tiny-gpt2",
            1,
            "not evaluated",
            tuple(decide_condition(c, None, 0.05, why) for c in a1.conditions),
            reason=why,
            text=a1.text,
            kind=a1.kind,
            own_model=a1.model,
        ),
    ]


def rows() -> list[dict]:
    return [v.to_row() for v in verdicts()]


def report(tmp_path: Path) -> RunReport:
    fig = tmp_path / "figures" / "qk_similarity.png"
    fig.parent.mkdir(parents=True)
    fig.write_bytes(PNG)
    return RunReport(
        model={"name": "tiny-gpt2", "revision": "seed-0", "n_blocks": 2, "device": "cpu", "dtype": "float32"},
        studies=[
            StudyOutcome(
                "qk",
                True,
                options={"seed": 1},
                provenance={"timings": {"forward": 0.5}, "packages": {"x": "1"}, "seed": 1},
                figures=[fig],
                saved=tmp_path / "qk.json",
            ),
            StudyOutcome(
                "punctuation",
                False,
                reason="corpus 'nope.txt' not found <here>",
                fix="set LAYERCLAIMS_DATA",
                options={"corpus": "nope.txt"},
            ),
        ],
        rows=rows(),
        timings={"load model": 0.1, "qk: run": 1.5, "report": 200.0},
        packages={"numpy": "2.0"},
        platform="Linux",
        command="layerclaims reproduce --model tiny-gpt2",
        created="2025-01-01 00:00 UTC",
    )


def test_jsonable_turns_numpy_and_non_finite_values_into_json() -> None:
    out = jsonable({"a": np.float32(1.5), "b": np.arange(2), "c": (1, math.nan), "d": Path("x/y"), 3: math.inf})
    assert out == {"a": 1.5, "b": [0, 1], "c": [1, None], "d": "x/y", "3": None}
    json.dumps(out, allow_nan=False)


def test_verdict_files_hold_the_same_rows(tmp_path: Path) -> None:
    json_path, csv_path = write_verdicts(rows(), tmp_path)
    loaded = json.loads(json_path.read_text())
    assert [r["claim"] for r in loaded] == ["B2", "A6", "A1"]
    assert loaded[0]["details"]["stability"] == 0.95 and loaded[0]["ci"] == [0.88, 0.93]
    with csv_path.open() as fh:
        table = list(csv.DictReader(fh))
    assert [r["claim"] for r in table] == ["B2", "A6", "A1"]
    assert (table[0]["ci_low"], table[0]["ci_high"], table[0]["holds"]) == ("0.88", "0.93", "True")
    assert table[2]["holds"] == "" and table[2]["value"] == ""
    assert json.loads(table[1]["details"])["slopes"] == [-0.2]
    assert "ci" not in table[0]


def test_csv_row_splits_the_interval() -> None:
    r = csv_row({"claim": "X", "ci": [1, 2], "details": {"a": 1}})
    assert (r["ci_low"], r["ci_high"], r["details"], r["value"]) == (1, 2, '{"a": 1}', "")


def test_markdown_report_has_claims_figures_provenance_and_timings(tmp_path: Path) -> None:
    md = render_markdown(report(tmp_path), tmp_path)
    assert md.startswith("# layerclaims report: tiny-gpt2")
    assert "1 claims hold, 0 hold on control too, 1 fail, 0 inconclusive, 1 not evaluated (of 3)" in md
    assert "**Study `punctuation` not run.**" in md and "**Fix:** set LAYERCLAIMS_DATA" in md
    lines = md.splitlines()
    claim_rows = [ln for ln in lines if ln.startswith(("| A", "| B"))]
    assert [ln.split("|")[1].strip() for ln in claim_rows] == ["A1", "A6", "B2"]  # registry order
    b2 = claim_rows[2]
    assert "rsa_qk 0.91 [0.88, 0.93] · p(vs 0.8) 0.001" in b2 and "block 0←5" in b2 and "✓ holds" in b2
    assert "<details><summary>details</summary>" in b2 and "stability: 0.95" in b2
    assert "on gpt2-medium, block 5" in b2 and "`rsa_qk > 0.8`" in b2
    assert "✗ fails" in claim_rows[1]
    assert "crosses" not in b2
    assert "not evaluated. study punctuation not run" in claim_rows[0]
    assert "![qk_similarity](figures/qk_similarity.png)" in md
    assert "| model.revision | seed-0 |" in md and "| qk.timings.forward | 0.5 |" in md
    assert "| punctuation.option.corpus | nope.txt |" in md and "| qk.saved | qk.json |" in md
    assert "qk.packages" not in md  # packages once, for the run
    assert "| package.numpy | 2.0 |" in md and "| report | 3.3 min |" in md


def test_html_report_escapes_text_and_links_figures_relatively(tmp_path: Path) -> None:
    page = render_html(report(tmp_path), tmp_path)
    assert page.startswith("<!DOCTYPE html>") and "<style>" in page and "<script" not in page
    assert "&lt;no corpus&gt; &amp; nothing else" in page and "<no corpus>" not in page
    assert "not found &lt;here&gt;" in page
    assert 'src="figures/qk_similarity.png"' in page
    assert 'class="badge holds"' in page and 'class="badge fails"' in page and 'class="badge na"' in page
    assert "Study <code>punctuation</code> not run." in page
    assert str(tmp_path) not in page  # nothing absolute: the folder can be moved


def test_wide_figures_span_the_page(tmp_path: Path) -> None:
    rep = report(tmp_path)
    assert png_size(rep.studies[0].figures[0]) == (1, 1)
    assert png_size(tmp_path / "missing.png") is None
    wide = tmp_path / "figures" / "wide.png"  # a PNG header claiming 2000 x 500
    wide.write_bytes(PNG[:16] + (2000).to_bytes(4, "big") + (500).to_bytes(4, "big") + PNG[24:])
    rep.studies[0].figures.append(wide)
    page = render_html(rep, tmp_path)
    assert '<figure class="wide"><a href="figures/wide.png">' in page
    big = tmp_path / "figures" / "big.png"  # 1700 x 1600: square, but too detailed for a half-page column
    big.write_bytes(PNG[:16] + (1700).to_bytes(4, "big") + (1600).to_bytes(4, "big") + PNG[24:])
    rep.studies[0].figures.append(big)
    assert '<figure class="wide"><a href="figures/big.png">' in render_html(rep, tmp_path)
    assert '<figure><a href="figures/qk_similarity.png">' in page


def test_typed_verdicts_show_level_control_settle_and_the_control_warning(tmp_path: Path) -> None:
    from layerclaims.results import Control, Measurement
    from layerclaims.verdicts import apply_family, evaluate

    class Fake:
        model, n_blocks = "gpt2-medium", 24

        def __init__(self, table: dict) -> None:
            self.table = table

        def measure(self, statistic: str, *, layer: int | None, kind: str | None) -> Measurement:
            return self.table[statistic]

    rng = np.random.default_rng(0)
    control = Control("random projections", 0.95, (0.93, 0.97), 0.95 + 0.01 * rng.standard_normal(400))
    b2 = Measurement(
        0.9, (0.85, 0.95), 0.001, {"p_name": "Mantel test"}, 0.9 + 0.02 * rng.standard_normal(400), control
    )
    b1 = Measurement(0.01, (-0.02, 0.04), None, {"n_items": 34}, 0.01 + 0.02 * rng.standard_normal(400))
    verdicts = apply_family(
        [
            evaluate(CLAIMS_BY_ID["B2"], Fake({"rsa_qk": b2})),
            evaluate(CLAIMS_BY_ID["B1"], Fake({"k_minus_q_mean_cosine": b1})),
        ]
    )
    rep = report(tmp_path)
    rep.rows = [v.to_row() for v in verdicts]
    md = render_markdown(rep, tmp_path)
    assert "Verdicts at family-wise level 0.05 (Holm's step-down over the 2 hypotheses" in md
    assert "0 claims hold, 1 hold on control too" in md  # counted apart from holds
    b2_line = next(ln for ln in md.splitlines() if ln.startswith("| B2"))
    assert "⚠ holds on control too. also holds where the structure is absent by construction" in b2_line
    assert "· control 0.95 [" in b2_line and "Mantel test (any structure at all; secondary): p = 0.001" in b2_line
    b1_line = next(ln for ln in md.splitlines() if ln.startswith("| B1"))
    assert "? inconclusive" in b1_line and "to settle: " in b1_line and "more items than the 34 sampled" in b1_line
    page = render_html(rep, tmp_path)
    assert 'class="badge inconclusive"' in page and "<details" in page
    assert 'class="badge oncontrol">⚠ holds on control too' in page and "⚠ 1 hold on control too</span>" in page


def test_html_report_can_embed_figures(tmp_path: Path) -> None:
    page = render_html(report(tmp_path), tmp_path, embed_figures=True)
    assert "data:image/png;base64," + base64.b64encode(PNG).decode() in page


def test_write_report_writes_both_files(tmp_path: Path) -> None:
    md, page = write_report(report(tmp_path), tmp_path)
    assert md.name == "report.md" and page.name == "report.html"
    assert "tiny-gpt2" in md.read_text() and "tiny-gpt2" in page.read_text()


def test_matrix_page_colours_cells_by_verdict() -> None:
    m = build_matrix({"<m>": rows()}, notes={"<m>": "note & more"})
    page = render_matrix_html(m)
    assert "&lt;m&gt;" in page and "<m>" not in page
    assert "cell-holds" in page and "cell-fails" in page and "cell-na" in page
    assert "note &amp; more" in page


def test_a_study_section_in_markdown_becomes_html_headings_tables_and_lists() -> None:
    from layerclaims.report import parse_markdown, to_html

    text = "## What **groups** are\n\n| a | b \\| c |\n|---|---|\n| `x<y` | 2 |\n\n- mark 3: `, and`\n- mark 9\n"
    page = to_html(parse_markdown(text), Path("."))
    assert "<h2>What <strong>groups</strong> are</h2>" in page
    assert "<th>a</th><th>b | c</th>" in page  # an escaped pipe stays inside its cell
    assert "<td><code>x&lt;y</code></td><td>2</td>" in page  # escaped, and the separator row is not a row
    assert page.count("<tr>") == 2
    assert "<ul><li>mark 3: <code>, and</code></li><li>mark 9</li></ul>" in page


def test_a_run_folder_with_a_robustness_analysis_gets_its_section(tmp_path: Path) -> None:
    import json

    from layerclaims.report import robustness_blocks, to_markdown

    assert robustness_blocks(tmp_path) == []  # no robustness/ folder: no section
    rob = tmp_path / "robustness"
    (rob / "figures").mkdir(parents=True)
    (rob / "figures" / "spec_curve_A5.png").write_bytes(b"png")
    lines = ["A5 holds in 0 of 18 specifications (18 fails; original path: fails)"]
    (rob / "robustness.json").write_text(json.dumps({"model": "m", "lines": lines, "n_specifications": {"qk": 9}}))
    md = to_markdown(robustness_blocks(tmp_path), tmp_path)
    assert "## Robustness" in md and "qk: 9 specifications" in md
    assert f"- {lines[0]}" in md
    assert "![spec_curve_A5](robustness/figures/spec_curve_A5.png)" in md


def test_a_row_of_another_version_asks_for_a_re_run(tmp_path: Path) -> None:
    from layerclaims.errors import UsageError

    rep = report(tmp_path)
    rep.rows = [{"claim": "B2", "model": "tiny-gpt2", "layer": 0, "holds": True}]  # no conditions, no own_model
    with pytest.raises(UsageError, match="written by another version"):
        render_markdown(rep, tmp_path)
