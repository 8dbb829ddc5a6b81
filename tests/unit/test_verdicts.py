"""Decision rules and typed verdicts: consistency of p-values and intervals, Holm, bands, counts, conjunctions,
presuppositions, controls, and verdicts read back from verdicts.json."""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from layerclaims.claims import CLAIMS_BY_ID, Claim, claims_for
from layerclaims.decision import (
    decide_band,
    decide_count,
    decide_interval_only,
    decide_threshold,
    holm,
    intersection_union,
    interval,
)
from layerclaims.errors import UsageError
from layerclaims.results import Control, Measurement
from layerclaims.verdicts import (
    ALSO_ON_CONTROL,
    Verdict,
    apply_family,
    apply_presuppositions,
    evaluate,
)

COMPARISONS = (">", ">=", "<", "<=")
# replicates on a coarse grid so that ties with the threshold happen often
grid_reps = arrays(np.float64, st.integers(20, 400), elements=st.integers(-20, 20).map(lambda i: i / 10))
levels = st.sampled_from([0.05, 0.01, 0.05 / 11, 0.2, 0.5])


def _inside(x: float, op: str, t: float) -> bool:
    return {">": x > t, ">=": x >= t, "<": x < t, "<=": x <= t}[op]


@given(grid_reps, st.sampled_from(COMPARISONS), st.integers(-20, 20).map(lambda i: i / 10), levels)
def test_threshold_rule_p_and_interval_agree(reps: np.ndarray, op: str, t: float, alpha: float) -> None:
    d = decide_threshold(reps, op, t, alpha)
    lo, hi = d.interval
    assert (lo, hi) == interval(reps, alpha) and lo <= hi
    resolvable = 1 / (reps.size + 1) < alpha  # B replicates give no p below 1/(B+1)
    wholly_in = _inside(lo, op, t) and _inside(hi, op, t) and resolvable
    wholly_out = not _inside(lo, op, t) and not _inside(hi, op, t) and resolvable
    assert (d.verdict == "holds") == wholly_in == (d.p_value < alpha)
    assert d.p_value >= 1 / (reps.size + 1) and d.p_against >= 1 / (reps.size + 1)
    if not wholly_in:
        assert (d.verdict == "fails") == wholly_out == (d.p_against < alpha)
    else:  # the interval cannot lie on both sides at once
        assert not wholly_out


def test_no_p_below_one_over_b_plus_one_and_too_few_resamples_say_so() -> None:
    reps = np.full(20, 1.0)  # every one of 20 resamples above the threshold
    d = decide_threshold(reps, ">", 0.5, 0.05 / 11)
    assert d.p_value == pytest.approx(1 / 21) and d.verdict == "inconclusive"
    assert "20 resamples give no p below 1/21" in (d.reason or "") and "at least 220 resamples" in (d.reason or "")
    assert decide_threshold(reps, ">", 0.5, 0.05).verdict == "holds"  # 1/21 < 0.05
    c = decide_count(1.0, np.ones(20), 1, 0.05 / 11)
    assert c.p_value == pytest.approx(1 / 21) and c.verdict == "inconclusive"
    assert decide_count(1.0, np.ones(20), 3, 0.05 / 11).p_against == pytest.approx(1 / 21)


def test_threshold_rule_reads_the_central_interval_at_the_level() -> None:
    reps = np.arange(1, 1001) / 1000  # 0.001 .. 1.0
    d = decide_threshold(reps, ">", 0.02, 0.05)
    assert d.interval == (0.025, 0.976)  # k = ceil(0.025 * 1000) = 25: the 25th smallest and largest
    assert d.verdict == "holds" and d.p_value == pytest.approx(0.04)  # 2 * 20 / 1000
    assert decide_threshold(reps, ">", 0.03, 0.05).verdict == "inconclusive"
    assert decide_threshold(reps, ">", 0.99, 0.05).verdict == "fails"


@given(arrays(np.float64, st.integers(2, 8), elements=st.floats(0.5, 1.0)), st.integers(0, 2**16), levels)
def test_band_rule_p_and_band_agree(values: np.ndarray, seed: int, alpha: float) -> None:
    rng = np.random.default_rng(seed)
    shared = rng.standard_normal(300)
    reps = values[:, None] + 0.05 * (shared + rng.standard_normal((values.size, 300)))
    t = float(np.round(rng.uniform(0.5, 1.0), 2))
    d = decide_band(values, reps, ">", t, alpha)
    lower_min, upper_min = d.interval
    assert (d.verdict == "holds") == (lower_min > t) == (d.p_value < alpha)
    assert (d.verdict == "holds") == (len(d.shortfall) == 0)
    if d.verdict != "holds":
        assert (d.verdict == "fails") == (upper_min <= t) == (d.p_against < alpha)


def test_band_names_the_blocks_that_fall_short_and_is_wider_than_pointwise() -> None:
    rng = np.random.default_rng(0)
    values = np.array([0.95, 0.95, 0.86, 0.95])
    reps = values[:, None] + 0.01 * rng.standard_normal((4, 2000))
    d = decide_band(values, reps, ">", 0.84, 0.05)
    assert d.verdict == "inconclusive" and d.shortfall == (2,)
    # simultaneous: block 2 alone would clear 0.84 at the pointwise level, but not with the band's wider margin
    assert decide_threshold(reps[2], ">", 0.84, 0.05).verdict == "holds"
    assert decide_band(values, reps, ">", 0.80, 0.05).verdict == "holds"
    assert decide_band(values, reps, ">", 0.90, 0.05).verdict == "fails"


def test_count_rule() -> None:
    stable = np.r_[np.full(990, 3.0), np.full(10, 2.0)]
    assert decide_count(3.0, stable, 3).verdict == "holds"
    assert decide_count(2.0, stable, 3).verdict == "inconclusive"  # the count on all items must be the claimed one
    shaky = np.r_[np.full(700, 3.0), np.full(300, 2.0)]
    d = decide_count(3.0, shaky, 3)
    assert d.verdict == "inconclusive" and d.fraction == 0.7 and "70% of the resamples give 3" in (d.reason or "")
    assert decide_count(2.0, shaky, 3).verdict == "inconclusive"
    # fails at a level, with its own p against the claim: the interval lies wholly below 3 (not "at most 20% give 3")
    fails = decide_count(1.0, np.r_[np.full(990, 1.0), np.full(10, 3.0)], 3)
    assert fails.verdict == "fails" and fails.p_against == pytest.approx(0.02) and "wholly below 3" in fails.reason
    assert decide_count(1.0, np.r_[np.full(990, 1.0), np.full(10, 3.0)], 3, alpha=0.01).verdict == "inconclusive"
    assert decide_count(1.0, np.r_[np.full(900, 1.0), np.full(100, 3.0)], 3).verdict == "inconclusive"
    assert decide_count(4.0, np.r_[np.full(995, 4.0), np.full(5, 3.0)], 3).verdict == "fails"  # wholly above
    # fails at the claim's level: 3 outside the central 1 - alpha interval (fewer than alpha/2 of resamples at 3+)
    few2 = np.r_[np.full(990, 1.0), np.full(10, 3.0)]
    d = decide_count(1.0, few2, 3)
    assert d.verdict == "fails" and d.p_against == pytest.approx(0.02) and d.interval[1] < 3
    # 10% of the resamples at 3: inside the 95% interval, so not a fail at 0.05, but a fail at 0.5
    some = np.r_[np.full(900, 1.0), np.full(100, 3.0)]
    assert decide_count(1.0, some, 3, 0.05).verdict == "inconclusive"
    assert decide_count(1.0, some, 3, 0.5).verdict == "fails"
    d = decide_count(3.0, stable, 3)
    assert d.interval == (3.0, 3.0)  # every holds has its interval wholly in the claimed region {3}
    # a count of 1 that could not have seen meaningful groups never holds
    ones = np.full(1000, 1.0)
    assert decide_count(1.0, ones, 1).verdict == "holds"
    blind = decide_count(1.0, ones, 1, blind_spot="could not have seen groups 0.15 apart")
    assert blind.verdict == "inconclusive" and "0.15" in (blind.reason or "")


def test_interval_only_rule_and_conjunctions() -> None:
    assert decide_interval_only((0.85, 0.95), ">", 0.8).verdict == "holds"
    assert decide_interval_only((0.75, 0.95), ">", 0.8).verdict == "inconclusive"
    assert decide_interval_only((0.6, 0.8), ">", 0.8).verdict == "fails"
    assert decide_interval_only((3, 3), "==", 3).verdict == "holds"
    assert decide_interval_only((1, 2), "==", 3).verdict == "fails"
    assert intersection_union(["holds", "holds"]) == "holds"
    assert intersection_union(["holds", "inconclusive"]) == "inconclusive"
    assert intersection_union(["inconclusive", "fails"]) == "fails"
    assert intersection_union(["holds", "not evaluated"]) == "not evaluated"


@given(st.lists(st.floats(0, 1), min_size=1, max_size=12), st.sampled_from([0.05, 0.1]))
def test_holm_matches_the_step_down_procedure(ps: list[float], alpha: float) -> None:
    adjusted, lv = holm(ps, alpha)
    m = len(ps)
    order = sorted(range(m), key=lambda i: (ps[i], i))
    rejected = set()
    for rank, i in enumerate(order):  # the textbook procedure
        if ps[i] < alpha / (m - rank):
            rejected.add(i)
        else:
            break
    assert {i for i in range(m) if adjusted[i] < alpha} == rejected
    assert all(a >= p for a, p in zip(adjusted, ps, strict=True)) and all(a <= 1 for a in adjusted)
    # ties share the level of their first rank: no level depends on the order of the input
    assert lv == [alpha / (m - sum(q < p for q in ps)) for p in ps]
    rev_adjusted, rev_lv = holm(ps[::-1], alpha)
    assert rev_adjusted[::-1] == adjusted and rev_lv[::-1] == lv


# ------------------------------------------------------------------------------------------------ verdicts


@dataclass
class FakeResult:
    model: str
    n_blocks: int
    table: dict[str, Measurement] = field(default_factory=dict)

    def measure(self, statistic: str, *, layer: int | None, kind: str | None) -> Measurement:
        return self.table[statistic]


def evaluate_all(result: FakeResult, study: str, claims: list[Claim] | None = None) -> list[Verdict]:
    """Every claim of ``study`` (or ``claims``) evaluated on ``result``, their presuppositions applied."""
    return apply_presuppositions([evaluate(c, result) for c in (claims if claims is not None else claims_for(study))])


def _m(center: float, sd: float, seed: int = 0, **kw: Any) -> Measurement:
    reps = center + sd * np.random.default_rng(seed).standard_normal(1000)
    return Measurement(center, (center - 2 * sd, center + 2 * sd), kw.pop("p", None), kw.pop("details", {}), reps,
                       kw.pop("control", None))  # fmt: skip


def test_every_holds_has_its_interval_wholly_past_its_threshold() -> None:
    rng = np.random.default_rng(1)
    for _ in range(200):
        v = evaluate(
            CLAIMS_BY_ID["B2"], FakeResult("m", 24, {"rsa_qk": _m(rng.uniform(0.7, 0.9), 0.03, int(rng.integers(1e6)))})
        )
        if v.verdict == "holds":
            assert v.ci is not None and v.ci[0] > 0.8
        if v.verdict == "fails":
            assert v.ci is not None and v.ci[1] <= 0.8


def test_not_evaluated_without_interval_with_the_study_reason() -> None:
    m = Measurement(0.9, None, None, {"not_evaluated": "bootstrap off (n_boot=0)"})
    v = evaluate(CLAIMS_BY_ID["B2"], FakeResult("m", 24, {"rsa_qk": m}))
    assert v.verdict == "not evaluated" and v.reason == "rsa_qk > 0.8: bootstrap off (n_boot=0)"
    assert v.value == 0.9 and v.ci is None  # the value is shown, but no verdict is taken from it


def test_holm_over_a_run_turns_a_marginal_holds_into_inconclusive() -> None:
    # B2 alone holds (p about 0.01 < 0.05); in a family of four it is tested at 0.05/4 ... 0.05 and does not
    b2 = _m(0.86, 0.024, seed=3)
    alone = evaluate(CLAIMS_BY_ID["B2"], FakeResult("m", 24, {"rsa_qk": b2}))
    assert alone.verdict == "holds" and 0.0125 <= alone.p_value < 0.05
    others = {
        "k_minus_q_mean_cosine": _m(0.0, 0.05, 4),
        "min_selectivity_qk": _m(1.0, 0.05, 5),
        "min_rsa_qk_over_blocks": Measurement(0.5, (0.4, 0.6)),
        "fraction_blocks_v_most_selective": Measurement(0.5, (0.4, 0.6)),
        "rsa_qk": b2,
    }
    family = apply_family(evaluate_all(FakeResult("m", 24, others), "qk"))
    b2v = next(v for v in family if v.claim == "B2")
    assert b2v.verdict == "inconclusive" and b2v.family_size == 3  # B4 decided on an interval: outside the family
    assert b2v.p_adjusted is not None and b2v.p_adjusted >= 0.05 and b2v.p_value == alone.p_value
    assert b2v.ci is not None and b2v.ci[0] < alone.ci[0]  # the interval at the Holm level is wider
    assert "Holm: adjusted p=" in b2v.describe()


def test_a_failed_premise_is_named() -> None:
    table = {
        "cov_clusters": Measurement(1.0, (1.0, 1.0), replicates=np.ones(200)),
        "pooled_r": _m(-0.13, 0.02),
        "min_within_cluster_slope": _m(0.5, 0.1),
    }
    verdicts = evaluate_all(
        FakeResult("gpt2-medium", 24, table), "punctuation", [CLAIMS_BY_ID[c] for c in ("A1", "A2", "A6")]
    )
    a1, a2, a6 = verdicts
    assert a1.verdict == "fails"  # 1 cluster, not 3
    assert [c.verdict for c in a2.conditions] == ["holds"] and a2.verdict == "fails"
    assert "premise A1 fails" in (a2.reason or "") and "presupposes A1, which fails here" in (a2.presupposition or "")
    assert a6.verdict == "fails" and "A1" in (a6.presupposition or "")
    alone = evaluate_all(FakeResult("gpt2-medium", 24, table), "punctuation", [CLAIMS_BY_ID["A2"]])
    assert alone[0].verdict == "holds" and "not checked in this run" in (alone[0].presupposition or "")


def test_control_is_decided_by_the_same_rule_and_flagged() -> None:
    control = Control(
        "random projections", 0.95, (0.93, 0.97), 0.95 + 0.01 * np.random.default_rng(0).standard_normal(800)
    )
    v = evaluate(CLAIMS_BY_ID["B2"], FakeResult("m", 24, {"rsa_qk": _m(0.9, 0.02, control=control)}))
    assert v.verdict == "holds on control too" and v.control is not None and v.control.verdict == "holds"
    assert v.holds is False and v.code == 3  # counted apart from holds
    assert v.also_holds_on_control and "also holds where the structure is absent" in v.describe()
    low = Control("random projections", 0.5, (0.4, 0.6), 0.5 + 0.05 * np.random.default_rng(0).standard_normal(800))
    v = evaluate(CLAIMS_BY_ID["B2"], FakeResult("m", 24, {"rsa_qk": _m(0.9, 0.02, control=low)}))
    assert v.control is not None and v.control.verdict == "fails" and not v.also_holds_on_control


def test_a_control_that_names_what_it_lacks_is_quoted_in_the_note_everywhere() -> None:
    """The note says what the control lacks by construction (``details["absent"]``), in the console lines and in
    the report's and matrix's reading of the saved row."""
    reps = 0.95 + 0.01 * np.random.default_rng(0).standard_normal(800)
    control = Control("random projections", 0.95, (0.93, 0.97), reps, {"absent": "learned W_Q or W_K"})
    v = evaluate(CLAIMS_BY_ID["B2"], FakeResult("m", 24, {"rsa_qk": _m(0.9, 0.02, control=control)}))
    note = "also holds on its control, which has by construction no learned W_Q or W_K"
    assert v.also_holds_on_control and v.control_note == note and f"note: it {note}" in v.lines()
    row = json.loads(json.dumps(v.to_row()))  # as verdicts.json keeps it
    assert Verdict.from_row(row).control_note == note
    assert Verdict("B2", "m", 5, "holds").control_note == ALSO_ON_CONTROL  # no control names what it lacks


def test_every_condition_keeps_its_details_in_the_row_and_the_report() -> None:
    """A6's second condition (pooled r) keeps its own details through verdicts.json, and the report's notes show
    them where they differ from the first condition's."""
    from layerclaims.report import detail_notes

    table = {"min_within_cluster_slope": _m(0.5, 0.1, details={"top": [3], "n": 2}),
             "pooled_r": _m(-0.13, 0.02, details={"top": [7], "n": 2})}  # fmt: skip
    v = evaluate(CLAIMS_BY_ID["A6"], FakeResult("gpt2-medium", 24, table))
    back = Verdict.from_row(json.loads(json.dumps(v.to_row())))
    assert [c.details.get("top") for c in back.conditions] == [[3], [7]]
    notes = detail_notes(back)
    assert "top: [3]" in notes and "pooled_r · top: [7]" in notes
    assert not any(n.startswith("pooled_r · n:") for n in notes)  # the same as the first condition's: not repeated


def test_rows_round_trip_through_json() -> None:
    control = Control("surrogate", 0.1, (0.0, 0.2), 0.1 + 0.05 * np.random.default_rng(0).standard_normal(500))
    table = {"pooled_r": _m(-0.13, 0.02, control=control, p=0.001, details={"p_method": "Mantel"}),
             "min_within_cluster_slope": _m(0.5, 0.1)}  # fmt: skip
    v = apply_family(
        evaluate_all(FakeResult("gpt2-medium", 24, table), "punctuation", [CLAIMS_BY_ID["A5"], CLAIMS_BY_ID["A6"]])
    )
    for original in v:
        row = json.loads(json.dumps(original.to_row()))
        back = Verdict.from_row(row)
        assert back.to_row() == row
        assert (back.verdict, back.value, back.ci, back.p_value, back.p_adjusted) == (
            original.verdict, original.value, original.ci, original.p_value, original.p_adjusted,
        )  # fmt: skip
    row = v[0].to_row()
    assert row["control"]["name"] == "surrogate" and row["p_secondary"] == 0.001
    assert "Mantel" in row["p_secondary_name"] and "secondary" in row["p_secondary_name"]
    assert Verdict.from_row(row) == v[0]
    with pytest.raises(ValueError, match="claim A5: unknown verdict 'maybe'"):
        Verdict.from_row(row | {"verdict": "maybe"})
    old = {"claim": "B2", "holds": False, "value": 0.7, "statistic": "rsa_qk"}  # a row of another version
    with pytest.raises(UsageError, match="claim B2 lacks .*verdict.*another version") as info:
        Verdict.from_row(old)
    assert "re-run" in (info.value.fix or "")


def test_comparisons_read_back_and_format() -> None:
    from layerclaims.claims import COMPARISONS, Condition, as_comparison, format_condition

    assert [as_comparison(c) for c in COMPARISONS] == list(COMPARISONS)
    with pytest.raises(ValueError, match="unknown comparison '=>'"):
        as_comparison("=>")
    assert format_condition("n", "==", 3.0) == str(Condition("n", "==", 3.0)) == "n == 3"
    assert format_condition("rsa_qk", ">", 0.8) == "rsa_qk > 0.8"


@pytest.mark.parametrize(
    ("value", "expected"), [(1 / 21, "0.048"), (1 / 1001, "0.001"), (0.0123, "0.012"), (None, "—")]
)
def test_p_formatting(value: float | None, expected: str) -> None:
    from layerclaims.verdicts import fmt_p

    assert fmt_p(value) == expected


def test_claims_p_is_the_largest_of_its_conditions() -> None:
    table = {
        "spearman_mean_mi_vs_depth": _m(-0.9, 0.05),
        "ratio_mean_mi_last_first": _m(0.5, 0.1, 2),
        "spearman_mean_cov_vs_depth": _m(0.2, 0.1, 1),
        "ratio_mean_cov_last_first": _m(300.0, 50.0, 3),
    }
    v = evaluate(CLAIMS_BY_ID["A7"], FakeResult("m", 24, table))
    ps = [c.p_value for c in v.conditions]
    assert v.p_value == max(ps) and not math.isnan(v.p_value)
    assert list(itertools.chain(*[[c.rule] for c in v.conditions])) == ["threshold"] * 4


def test_findings_on_the_claims_own_model_pass_only_on_holds_and_say_why() -> None:
    from layerclaims.testing import check_verdict

    control = Control(
        "random projections", 0.8, (0.7, 0.87), 0.8 + 0.04 * np.random.default_rng(0).standard_normal(500)
    )
    inconclusive = evaluate(
        CLAIMS_BY_ID["B2"], FakeResult("gpt2-medium", 24, {"rsa_qk": _m(0.83, 0.04, control=control)})
    )
    assert inconclusive.verdict == "inconclusive"
    with pytest.raises(AssertionError) as info:
        check_verdict(inconclusive, CLAIMS_BY_ID["B2"], None, {})
    message = str(info.value)
    assert "B2: INCONCLUSIVE on gpt2-medium at block 5" in message and "rsa_qk = 0.83 [" in message
    assert "control (random projections) = 0.8 [" in message and "what would settle it:" in message
    holds = evaluate(CLAIMS_BY_ID["B2"], FakeResult("gpt2-medium", 24, {"rsa_qk": _m(0.95, 0.01)}))
    check_verdict(holds, CLAIMS_BY_ID["B2"], None, {})  # passes: nothing raised
