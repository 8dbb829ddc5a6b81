"""The run's family decision: independent of the order of the claims, the same condition on the same data decided
once, a verdict set by a premise without a p of its own, controls that bite (``holds on control too``,
``beats_control``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from layerclaims.claims import CLAIMS_BY_ID, Claim, parse_claims
from layerclaims.errors import UsageError
from layerclaims.results import Control, Measurement
from layerclaims.verdicts import Verdict, apply_family, evaluate


@dataclass
class FakeResult:
    model: str
    n_blocks: int
    table: dict[str, Measurement] = field(default_factory=dict)

    def measure(self, statistic: str, *, layer: int | None, kind: str | None) -> Measurement:
        return self.table[statistic]


def _m(center: float, sd: float, seed: int, n: int = 1000, control: Control | None = None) -> Measurement:
    reps = center + sd * np.random.default_rng(seed).standard_normal(n)
    return Measurement(center, (center - 2 * sd, center + 2 * sd), None, {}, reps, control)


def _count(value: float, n: int = 400) -> Measurement:
    return Measurement(value, (value, value), None, {}, np.full(n, value))


# Study A as on tiny-gpt2: no groups at all, a pooled r just above 0 (claimed < 0), a noisy slope; study B mixed.
TABLE = {
    "cov_clusters": _count(1.0),
    "mi_clusters": _count(1.0),
    "pooled_r": _m(0.09, 0.0386, 1),  # p against "pooled_r < 0" about 0.02: fails at 0.05 or 0.025, not at 0.0167
    "min_within_cluster_slope": _m(1800.0, 1100.0, 2),
    "spearman_mean_mi_vs_depth": _m(-0.9, 0.03, 3),
    "spearman_mean_cov_vs_depth": _m(0.8, 0.05, 4),
    "k_minus_q_mean_cosine": _m(-0.06, 0.005, 5),
    "rsa_qk": _m(0.3, 0.1, 6),
    "min_selectivity_qk": _m(1.0, 0.02, 7),
    "min_rsa_qk_over_blocks": Measurement(0.5, (0.4, 0.6)),
    "fraction_blocks_v_most_selective": Measurement(0.5, (0.4, 0.6)),
}
IDS = ("B1", "B2", "B3", "B4", "A1", "A2", "A3", "A4", "A5", "A6", "A7")
RESULT = FakeResult("tiny-gpt2", 5, TABLE)
PER_CLAIM = {cid: evaluate(CLAIMS_BY_ID[cid], RESULT) for cid in IDS}


def _decided(order: list[str]) -> dict[str, tuple[Any, ...]]:
    family = apply_family([PER_CLAIM[cid] for cid in order])
    return {
        v.claim: (v.verdict, v.p_adjusted, v.p_against_adjusted, v.family_size, tuple(c.ci for c in v.conditions))
        for v in family
    }


BASELINE = _decided(list(IDS))


@settings(max_examples=40, deadline=None)
@given(st.permutations(IDS))
def test_permuting_the_claims_leaves_every_verdict_unchanged(order: list[str]) -> None:
    assert _decided(list(order)) == BASELINE


@pytest.mark.parametrize(("sd", "expected"), [(0.0386, "inconclusive"), (0.025, "fails")])
def test_a5_and_a6_decide_their_shared_pooled_r_once_whatever_the_order(sd: float, expected: str) -> None:
    """On tiny-gpt2, A5 (pooled r < 0) was inconclusive at 0.025 while A6's identical pooled r failed at 0.05: the
    levels of failing claims came from their position. Now pooled r < 0 is one hypothesis, decided once with its p
    against the claim (about 0.02 with sd 0.0386: not below 0.05 after Holm over the run; far below with 0.025)."""
    table = TABLE | {"pooled_r": _m(0.09, sd, 1)}
    per = {cid: evaluate(CLAIMS_BY_ID[cid], FakeResult("tiny-gpt2", 5, table)) for cid in IDS}
    for order in (list(IDS), list(reversed(IDS)), ["A6", "A5", *[c for c in IDS if c not in ("A5", "A6")]]):
        family = {v.claim: v for v in apply_family([per[c] for c in order])}
        a5 = family["A5"].conditions[0]
        a6 = next(c for c in family["A6"].conditions if c.statistic == "pooled_r")
        assert (a5.verdict, a5.ci, a5.level, a5.p_against_adjusted) == (
            a6.verdict,
            a6.ci,
            a6.level,
            a6.p_against_adjusted,
        )
        assert a5.verdict == family["A5"].verdict == expected
        assert (a5.p_against_adjusted < 0.05) == (expected == "fails")
        if expected == "fails":  # A6 fails on the same condition, on its own: its own reason and p
            a6v = family["A6"]
            assert a6v.verdict == "fails" and a6v.set_by_premise is None and a6v.p_against_adjusted is not None
            assert "pooled_r < 0 fails" in (a6v.reason or "")


def test_a_verdict_set_by_a_premise_has_no_p_of_its_own() -> None:
    family = {v.claim: v for v in apply_family([PER_CLAIM[c] for c in IDS])}
    a1, a2 = family["A1"], family["A2"]
    assert a1.verdict == "fails"  # 1 cluster in every one of 400 resamples, 3 claimed
    assert a2.verdict == "fails" and a2.set_by_premise == "A1"
    assert a2.p_value is None and a2.p_adjusted is None and a2.p_against_adjusted is None
    assert "premise A1 fails" in (a2.reason or "")
    assert not any(line.startswith("Holm:") for line in a2.lines())
    assert all(line.startswith("on its own: ") for line in a2.lines()[1:2])
    row = a2.to_row()
    assert row["p_adjusted"] is None and row["set_by_premise"] == "A1"
    assert Verdict.from_row(row).set_by_premise == "A1"
    a6 = family["A6"]  # inconclusive on its own: set to fails by A1, without a p
    assert a6.verdict == "fails" and a6.set_by_premise == "A1" and a6.p_adjusted is None


def test_family_levels_do_not_depend_on_position_for_tied_p_values() -> None:
    family = apply_family([PER_CLAIM[c] for c in IDS])
    a3, a4 = (next(v for v in family if v.claim == c) for c in ("A3", "A4"))
    # both at the floor p = 1/401 for the claim: the same level, the same verdict
    assert a3.conditions[0].p_value == a4.conditions[0].p_value == pytest.approx(1 / 401)
    assert a3.conditions[0].level == a4.conditions[0].level and a3.verdict == a4.verdict


# ------------------------------------------------------------------------------------------------ controls


def _control(center: float, sd: float, seed: int, n: int = 1000) -> Control:
    reps = center + sd * np.random.default_rng(seed).standard_normal(n)
    return Control("random projections", center, (center - 2 * sd, center + 2 * sd), reps, {"absent": "learned W"})


def _b2(claim_value: float, control_value: float, beats: bool = False) -> Verdict:
    claim = dataclasses.replace(CLAIMS_BY_ID["B2"], beats_control=beats)
    m = _m(claim_value, 0.02, 11, control=_control(control_value, 0.02, 12))
    return evaluate(claim, FakeResult("m", 24, {"rsa_qk": m}))


def test_holds_on_its_control_too_is_its_own_verdict_and_beats_control_decides_the_difference() -> None:
    v = _b2(0.9, 0.88)
    assert v.verdict == "holds on control too" and "learned W" in (v.reason or "")
    # required to beat its control: 0.9 vs 0.88 (sd 0.02 each) is no clear difference
    w = _b2(0.9, 0.88, beats=True)
    assert w.verdict == "inconclusive" and w.conditions[-1].statistic == "rsa_qk minus control"
    assert w.conditions[-1].value == pytest.approx(0.02)
    # clearly beats a control that also clears 0.8: holds
    assert _b2(0.95, 0.82, beats=True).verdict == "holds"
    # the control is clearly higher: fails
    low = _b2(0.85, 0.95, beats=True)
    assert low.verdict == "fails" and "rsa_qk minus control < 0" not in (low.reason or "")
    assert "rsa_qk minus control > 0 fails" in (low.reason or "")


def test_beats_control_without_replicates_reads_whether_the_intervals_overlap() -> None:
    claim = dataclasses.replace(CLAIMS_BY_ID["B2"], beats_control=True)
    m = Measurement(0.95, (0.9, 0.99), control=Control("c", 0.7, (0.6, 0.8)))
    v = evaluate(claim, FakeResult("m", 24, {"rsa_qk": m}))
    assert v.verdict == "holds" and v.conditions[-1].rule == "interval"
    m2 = Measurement(0.95, (0.9, 0.99), control=Control("c", 0.85, (0.82, 0.92)))
    assert evaluate(claim, FakeResult("m", 24, {"rsa_qk": m2})).verdict == "inconclusive"
    no_control = evaluate(claim, FakeResult("m", 24, {"rsa_qk": Measurement(0.95, (0.9, 0.99))}))
    assert no_control.verdict == "not evaluated" and "beats_control" in (no_control.reason or "")


def test_a_count_beats_its_control_when_the_control_does_not_give_the_count() -> None:
    claim = dataclasses.replace(CLAIMS_BY_ID["A1"], beats_control=True)
    ctrl_one = Control("surrogate", 1.0, (1.0, 1.0), np.ones(400))
    m = Measurement(3.0, (3.0, 3.0), None, {}, np.full(400, 3.0), ctrl_one)
    assert evaluate(claim, FakeResult("gpt2-medium", 24, {"cov_clusters": m})).verdict == "holds"
    ctrl_three = Control("surrogate", 3.0, (3.0, 3.0), np.full(400, 3.0))
    m3 = dataclasses.replace(m, control=ctrl_three)
    assert evaluate(claim, FakeResult("gpt2-medium", 24, {"cov_clusters": m3})).verdict == "fails"
    plain = evaluate(CLAIMS_BY_ID["A1"], FakeResult("gpt2-medium", 24, {"cov_clusters": m3}))
    assert plain.verdict == "holds on control too"


def test_beats_control_is_a_claim_file_field() -> None:
    text = """
[[claim]]
id = "U1"
text = "RSA above 0.5, and above random projections"
source = "mine"
model = "gpt2-medium"
study = "qk"
layer = 5
beats_control = true
conditions = [{ statistic = "rsa_qk", comparison = ">", threshold = 0.5 }]
"""
    (claim,) = parse_claims(text, "mine.toml")
    assert isinstance(claim, Claim) and claim.beats_control
    (plain,) = parse_claims(text.replace("beats_control = true\n", ""), "mine.toml")
    assert not plain.beats_control
    with pytest.raises(UsageError, match="beats_control.*not true or false"):
        parse_claims(text.replace("beats_control = true", 'beats_control = "yes"'), "mine.toml")


# ------------------------------------------------------------------------------------------------ pytest


def test_findings_on_the_own_model_holds_on_control_too_passes_only_when_beating_is_not_required() -> None:
    from layerclaims.testing import ControlWarning, check_verdict

    claim = CLAIMS_BY_ID["B2"]
    v = dataclasses.replace(_b2(0.9, 0.88), model="gpt2-medium")
    assert v.verdict == "holds on control too"
    with pytest.warns(ControlWarning, match="beats_control = true"):
        check_verdict(v, claim, None, {})  # the claim as stated is true: it passes, with a warning
    with pytest.raises(AssertionError, match="the claim must beat its control"):
        check_verdict(v, claim, None, {}, beats_control=True)  # pytest --beats-control
    required = dataclasses.replace(claim, beats_control=True)
    w = evaluate(
        required, FakeResult("gpt2-medium", 24, {"rsa_qk": _m(0.9, 0.02, 11, control=_control(0.88, 0.02, 12))})
    )
    with pytest.raises(AssertionError, match="B2: INCONCLUSIVE"):
        check_verdict(w, required, None, {})


class _Config:
    """What the plugin's pytest_configure reads of a pytest.Config."""

    def __init__(self, **options: Any) -> None:
        self.options = {"--gpu": False, "--claims": None, "--only-claims": False, "as_model": None} | options
        self.stash = pytest.Stash()

    def getoption(self, name: str) -> Any:
        return self.options[name]

    def addinivalue_line(self, name: str, line: str) -> None:
        pass


def test_the_beats_control_option_makes_every_claim_require_it() -> None:
    from layerclaims.plugin import findings_claims_of, pytest_configure

    on, off = _Config(**{"--beats-control": True}), _Config(**{"--beats-control": False})
    pytest_configure(on)  # type: ignore[arg-type]
    pytest_configure(off)  # type: ignore[arg-type]
    assert findings_claims_of(on) and all(c.beats_control for c in findings_claims_of(on))  # type: ignore[arg-type]
    assert not any(c.beats_control for c in findings_claims_of(off))  # type: ignore[arg-type]


def test_the_report_and_the_matrix_show_a_premise_set_verdict_without_a_p() -> None:
    from layerclaims.compare import build_matrix
    from layerclaims.report import measured_lines, verdict_parts

    family = {v.claim: v for v in apply_family([PER_CLAIM[c] for c in IDS])}
    a2 = family["A2"]
    lines = measured_lines(a2)
    assert lines[0].startswith("on its own: cov_clusters 1 [1, 1]") and "adj." not in lines[0]
    assert "premise A1 fails" in str(verdict_parts(a2))
    cell = build_matrix({"m": [a2.to_row()]}).cell("A2", "m").text()
    assert cell.startswith("✗ 1 [1, 1] @") and "p=" not in cell
    a1 = family["A1"]  # fails on its own: its p against, adjusted over the run
    assert "p against (vs 3)" in measured_lines(a1)[0] and "adj." in measured_lines(a1)[0]


# ------------------------------------------------------------------------------------------------ premises


def _v(claim: str, word: Any, presupposes: tuple[str, ...] = (), reason: str | None = None) -> Verdict:
    p = 0.01 if word in ("holds", "fails") else None
    return Verdict(claim, "m", None, word, reason=reason, presupposes=presupposes, p_value=p, p_adjusted=p)


def test_a_claim_whose_premise_fails_fails_by_it_even_when_it_could_not_be_evaluated() -> None:
    """Issue #20: on tiny-gpt2 MA1 (massive activations exist) fails, and MA3, MA6, ... had nothing to measure: they
    fail by their premise, not "not evaluated"; a claim not evaluated whose premise holds stays not evaluated."""
    from layerclaims.verdicts import apply_presuppositions

    out = {
        v.claim: v
        for v in apply_presuppositions(
            [
                _v("P", "fails"),
                _v("Q", "holds"),
                _v("X", "not evaluated", ("P",), reason="nothing to measure"),
                _v("Y", "holds", ("P",)),
                _v("Z", "not evaluated", ("Q",), reason="nothing to measure"),
                _v("W", "not evaluated", ("X",), reason="nothing to measure"),  # a chain: X fails by P
            ]
        )
    }
    for cid in ("X", "Y"):
        v = out[cid]
        assert (v.verdict, v.set_by_premise) == ("fails", "P")
        assert (v.p_value, v.p_adjusted, v.p_against, v.p_against_adjusted) == (None, None, None, None)
        assert "its premise P fails here" in (v.reason or "")
    assert "could not be evaluated" in (out["X"].reason or "") and "would hold" in (out["Y"].reason or "")
    assert (out["W"].verdict, out["W"].set_by_premise) == ("fails", "X")
    z = out["Z"]
    assert (z.verdict, z.reason, z.set_by_premise) == ("not evaluated", "nothing to measure", None)
    assert z.presupposition == "presupposes Q holds"  # no condition to quote
    row = out["X"].to_row()
    assert Verdict.from_row(row) == out["X"]
