"""The claims x models matrix and the verdict diff, on hand-written verdict rows (no model)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from layerclaims.claims import CLAIMS_BY_ID
from layerclaims.compare import (
    build_matrix,
    claim_order,
    diff_markdown,
    diff_verdicts,
    layer_text,
    matrix_markdown,
    read_verdicts,
    value_moved,
)
from layerclaims.errors import UsageError
from layerclaims.verdicts import ConditionResult, Verdict


def row(claim: str, value: float | None = 0.5, ci: list[float] | None = None, holds: bool | None = True, **kw: Any):
    """A verdicts.json row as :meth:`Verdict.to_row` writes it (one condition, ``rsa_qk > 0.8``)."""
    known = CLAIMS_BY_ID.get(claim)
    word = "not evaluated" if holds is None else ("holds" if holds else "fails")
    p_value = kw.pop("p_value", None)
    cond = ConditionResult("rsa_qk", ">", 0.8, value, None if ci is None else (ci[0], ci[1]), p_value, word)
    verdict = Verdict(
        claim,
        kw.pop("model", "m"),
        kw.pop("layer", 5),
        word,
        (cond,),
        reason=kw.pop("reason", None),
        p_value=p_value,
        layer_unit=known.layer_unit if known is not None else "hidden_state",
        layer_mapped_from=kw.pop("layer_mapped_from", None),
        set_by_premise=kw.pop("set_by_premise", None),
    )
    assert not kw
    return verdict.to_row()


# ------------------------------------------------------------------------------------------------ diff


def test_diff_detects_a_flip_and_nothing_else_when_values_stay_inside_their_intervals() -> None:
    old = [row("B2", 0.81, [0.79, 0.83], True), row("B1", 0.1, [0.05, 0.15], True)]
    new = [row("B2", 0.795, [0.78, 0.81], False), row("B1", 0.11, [0.06, 0.16], True)]
    d = diff_verdicts(old, new)
    assert [e.claim for e in d.flipped] == ["B2"]
    assert d.moved == []
    by = {e.claim: e for e in d.entries}
    assert by["B2"].changes == ("flipped",)
    assert by["B1"].changes == ()
    assert [e.claim for e in d.entries] == ["B1", "B2"]  # registry order


@pytest.mark.parametrize(
    ("old", "new", "moved"),
    [
        (row("B2", 0.5, [0.4, 0.6]), row("B2", 0.7, [0.65, 0.75]), True),  # new outside old CI (and vice versa)
        (row("B2", 0.5, [0.4, 0.6]), row("B2", 0.55, [0.3, 0.9]), False),  # each inside the other's interval
        (row("B2", 0.5, [0.49, 0.51]), row("B2", 0.45, [0.3, 0.6]), True),  # new outside the narrow old interval
        (row("B2", 0.5, [0.3, 0.6]), row("B2", 0.45, [0.44, 0.46]), True),  # old outside the narrow new interval
        (row("B2", 0.5, None), row("B2", 0.55, [0.5, 0.6]), False),  # one interval: old inside new's
        (row("B2", 0.5, None), row("B2", 0.5 * (1 + 1e-9), None), False),  # no interval: rounding is no move
        (row("B2", 0.5, None), row("B2", 0.51, None), True),  # no interval: any real change
        (row("B2", None, None, None), row("B2", 0.51, None), False),  # no value on one side
    ],
)
def test_value_moved_beyond_the_interval(old: dict, new: dict, moved: bool) -> None:
    assert value_moved(Verdict.from_row(old), Verdict.from_row(new)) is moved
    assert ("moved" in diff_verdicts([old], [new]).entries[0].changes) is moved


def test_diff_reports_missing_claims_evaluation_changes_and_layer_changes() -> None:
    old = [row("A1", 3, None, True, layer=1), row("B2", 0.9, [0.85, 0.95], True), row("B3", 1.1)]
    new = [row("A1", 3, None, True, layer=2), row("B2", None, None, None, reason="study qk not run"), row("B4", 0.9)]
    d = diff_verdicts(old, new)
    by = {e.claim: e.changes for e in d.entries}
    assert by == {
        "A1": ("layer changed",),
        "B2": ("evaluation changed",),
        "B3": ("missing in new",),
        "B4": ("missing in old",),
    }
    assert {e.claim for e in d.missing} == {"B3", "B4"}
    md = diff_markdown(d, "old", "new")
    assert "| B3 | ✓ 1.1 @block 5 | (missing) | missing in new |" in md
    assert "not evaluated (study qk not run)" in md
    assert "0 flipped, 0 moved beyond their interval, 2 missing on one side, 4 of 4 claims changed." in md


def test_diff_changed_only_lists_only_changed_claims() -> None:
    old = [row("B1", 0.1, [0.0, 0.2]), row("B2", 0.9, [0.85, 0.95], True)]
    new = [row("B1", 0.1, [0.0, 0.2]), row("B2", 0.7, [0.6, 0.75], False)]
    md = diff_markdown(diff_verdicts(old, new), all_rows=False)
    assert "| B2 |" in md and "| B1 |" not in md
    assert "flipped, moved" in md


def test_diff_rejects_a_claim_twice_on_one_side() -> None:
    with pytest.raises(UsageError, match="appears twice"):
        diff_verdicts([row("B1"), row("B1")], [])


# ------------------------------------------------------------------------------------------------ matrix


def test_matrix_cells_show_verdict_value_interval_and_layer_used() -> None:
    rows = {
        "tiny-gpt2": [
            row("B2", 0.9, [0.85, 0.95], True, layer=0, p_value=0.001, layer_mapped_from=5),
            row("A1", None, None, None, layer=1, reason="study punctuation not run: no corpus"),
        ],
        "smollm2-135m": [row("B2", 0.5, [0.4, 0.6], False, layer=6, layer_mapped_from=5)],
    }
    m = build_matrix(rows, notes={"smollm2-135m": "partial"})
    assert m.models == ("tiny-gpt2", "smollm2-135m")
    assert m.claims == ("A1", "B2")
    assert m.cell("B2", "tiny-gpt2").text() == "✓ 0.9 [0.85, 0.95], p=0.001 @block 0←5"
    assert m.cell("B2", "smollm2-135m").text() == "✗ 0.5 [0.4, 0.6] @block 6←5"
    assert m.cell("A1", "tiny-gpt2").text() == "– study punctuation not run: no corpus"
    assert m.cell("A1", "smollm2-135m").text() == "(not in this run)"
    assert m.counts("tiny-gpt2") == {
        "holds": 1, "holds on control too": 0, "fails": 0, "inconclusive": 0, "not evaluated": 1
    }  # fmt: skip
    md = matrix_markdown(m)
    header, _rule, *body = md.splitlines()[:5]
    assert header == "| claim | claimed | tiny-gpt2 | smollm2-135m |"
    assert body[1].startswith("| B2 | rsa_qk > 0.8 | ✓ 0.9")
    assert "| **tally** |  | 1 ✓, 0 ⚠, 0 ✗, 0 ?, 1 – | 0 ✓, 0 ⚠, 1 ✗, 0 ?, 1 – |" in md
    assert "- **smollm2-135m**: partial" in md


def test_a_matrix_cell_set_by_a_premise_names_it() -> None:
    """A claim that fails because its premise fails has no value of its own: the cell says which premise."""
    m = build_matrix({"m": [row("MA3", None, None, False, layer=None, set_by_premise="MA1")]})
    assert m.cell("MA3", "m").text() == "✗ — (set by its premise MA1) @all"


def test_matrix_escapes_pipes_and_keeps_unknown_claims_after_registered_ones() -> None:
    m = build_matrix({"a|b": [row("Z9", 1.0), row("B1", None, None, None, reason="x | y")]})
    assert m.claims == ("B1", "Z9")
    md = matrix_markdown(m)
    assert "a\\|b" in md and "x \\| y" in md
    assert "| Z9 | rsa_qk > 0.8 |" in md  # unregistered claim: its condition from the row


def test_matrix_with_no_rows_lists_every_registered_claim() -> None:
    m = build_matrix({"broken": []}, notes={"broken": "not run: cannot load"})
    assert len(m.claims) == 11 + 19 and m.cell("A1", "broken").row is None


def test_long_reasons_are_cut_to_their_first_line_in_tables() -> None:
    long = "corpus not found. Looked in:\n  - a\n  - b\nFix: set LAYERCLAIMS_DATA"
    m = build_matrix({"m": [row("A1", None, None, None, reason=long), row("A2", None, None, None, reason="x" * 200)]})
    assert m.cell("A1", "m").text() == "– corpus not found. Looked in:"
    assert m.cell("A2", "m").text() == "– " + "x" * 109 + "…"


def test_claim_order_and_layer_text() -> None:
    assert claim_order(["B1", "X", "A2", "A1"]) == ["A1", "A2", "B1", "X"]
    assert layer_text(Verdict.from_row(row("X", layer=None))) == "all"
    assert layer_text(Verdict.from_row(row("X", layer=3))) == "L3"


# ------------------------------------------------------------------------------------------------ reading


def test_read_verdicts_errors_name_the_folder_and_the_fix(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no verdicts.json in .*layerclaims reproduce --out"):
        read_verdicts(tmp_path)
    (tmp_path / "verdicts.json").write_text("{not json")
    with pytest.raises(UsageError, match="not valid JSON"):
        read_verdicts(tmp_path)
    (tmp_path / "verdicts.json").write_text(json.dumps({"claim": "A1"}))
    with pytest.raises(UsageError, match="not a list of verdict rows"):
        read_verdicts(tmp_path)
    (tmp_path / "verdicts.json").write_text(json.dumps([row("A1")]))
    assert read_verdicts(tmp_path)[0]["claim"] == "A1"


def test_a_change_among_holds_fails_inconclusive_is_a_flip_and_to_not_evaluated_is_not() -> None:
    old = [row("B1", 0.1, [0.0, 0.2]) | {"verdict": "inconclusive"}, row("B2", 0.9, [0.85, 0.95])]
    new = [
        row("B1", 0.1, [0.0, 0.2]) | {"verdict": "holds"},
        row("B2", None, None, None) | {"verdict": "not evaluated"},
    ]
    d = diff_verdicts(old, new)
    assert {e.claim: e.changes for e in d.entries} == {"B1": ("flipped",), "B2": ("evaluation changed",)}
    cell = build_matrix({"m": [row("B1", 0.9, [0.85, 0.95]) | {"verdict": "inconclusive"}]}).cell("B1", "m")
    assert cell.text().startswith("? 0.9") and cell.verdict == "inconclusive"
    # holds on its control too: its own word and mark, counted apart from holds
    also = build_matrix({"m": [row("B1", 0.9, [0.85, 0.95]) | {"verdict": "holds on control too"}]})
    assert also.cell("B1", "m").text().startswith("⚠ 0.9") and also.cell("B1", "m").verdict == "holds on control too"
    assert also.counts("m")["holds"] == 0 and also.counts("m")["holds on control too"] == 1
    beat = row("B1", 0.9, [0.85, 0.95]) | {"verdict": "holds", "also_holds_on_control": True, "beats_control": True}
    assert build_matrix({"m": [beat]}).cell("B1", "m").verdict == "holds"  # it beat its control
    # a failing claim shows the p against it
    failing = row("B1", 0.1, [0.0, 0.2]) | {"verdict": "fails", "p_value": 1.0, "p_against": 0.002,
                                            "p_against_adjusted": 0.02, "family_size": 4}  # fmt: skip
    assert "p against=0.002 (adj. 0.02)" in build_matrix({"m": [failing]}).cell("B1", "m").text()
