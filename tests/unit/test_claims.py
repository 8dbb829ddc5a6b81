"""Claims as data: the registry, relative-depth layer mapping, and evaluation into verdicts."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pytest

from layerclaims.claims import (
    CLAIMS,
    CLAIMS_BY_ID,
    Condition,
    claims_for,
    map_hidden_state,
    map_layer,
)
from layerclaims.errors import UsageError
from layerclaims.results import Measurement
from layerclaims.verdicts import apply_presuppositions, evaluate


@dataclass
class FakeResult:
    """A StudyResult whose statistics are given as a table {(statistic, layer, kind): Measurement}."""

    model: str
    n_blocks: int
    table: dict = field(default_factory=dict)
    asked: list = field(default_factory=list)

    def measure(self, statistic: str, *, layer: int | None, kind: str | None) -> Measurement:
        self.asked.append((statistic, layer, kind))
        return self.table[(statistic, layer, kind)]


def test_registry_has_every_claim_of_the_spec_once() -> None:
    assert [c.id for c in CLAIMS] == [
        "A1",
        "A2",
        "A3",
        "A4",
        "A5",
        "A6",
        "A7",
        "B1",
        "B2",
        "B3",
        "B4",
        *[f"MA{i}" for i in range(1, 14)],
        "AN1",
        "AN2",
        "AN3",
        "AN4",
        "AS1",
        "AS2",
    ]
    assert set(CLAIMS_BY_ID) == {c.id for c in CLAIMS}
    assert {c.id for c in claims_for("qk")} == {"B1", "B2", "B3", "B4"}
    assert all(c.study == "punctuation" for c in claims_for("punctuation"))
    with pytest.raises(UsageError, match="unknown study"):
        claims_for("nope")


def test_claims_match_the_specification_thresholds() -> None:
    b2 = CLAIMS_BY_ID["B2"]
    assert (b2.model, b2.layer, b2.statistic, b2.comparison, b2.threshold) == ("gpt2-medium", 5, "rsa_qk", ">", 0.8)
    assert CLAIMS_BY_ID["B4"].model == "gpt2-large" and CLAIMS_BY_ID["B4"].model_blocks == 36
    a1 = CLAIMS_BY_ID["A1"]
    assert (a1.layer, a1.kind, a1.threshold, a1.comparison) == (1, "internal", 3, "==")
    assert CLAIMS_BY_ID["A2"].layer == 20 and CLAIMS_BY_ID["A4"].kind == "terminal"


@pytest.mark.parametrize(
    ("layer", "n_ref", "n_target", "expected"),
    [
        (0, 24, 30, 0),  # embeddings stay embeddings
        (1, 24, 30, 1),  # 1.25 -> 1
        (20, 24, 30, 25),  # 25.0
        (24, 24, 30, 30),  # last block to last block
        (1, 24, 4, 1),  # 0.17 would round to 0: clamped to the first block output
        (20, 24, 4, 3),  # 3.33 -> 3
        (6, 24, 30, 8),  # 7.5 rounds half up -> 8
        (7, 24, 24, 7),  # identity on the claim's own model
    ],
)
def test_map_hidden_state(layer: int, n_ref: int, n_target: int, expected: int) -> None:
    assert map_hidden_state(layer, n_ref, n_target) == expected


def test_map_hidden_state_rejects_layers_outside_the_reference_model() -> None:
    with pytest.raises(UsageError, match="outside 0..24"):
        map_hidden_state(25, 24, 30)


def test_map_layer_blocks_go_through_their_output_hidden_state() -> None:
    b1 = CLAIMS_BY_ID["B1"]  # block 5 of 24 -> hidden state 6 -> 7.5 -> 8 on 30 blocks -> block 7
    assert map_layer(b1, 30) == 7
    assert map_layer(b1, 24) == 5
    assert map_layer(b1, 4) == 0  # hidden state 6/24*4 = 1 -> block 0
    assert map_layer(CLAIMS_BY_ID["B4"], 30) is None


def test_condition_comparisons() -> None:
    assert Condition("x", ">", 0.8).holds(0.81) and not Condition("x", ">", 0.8).holds(0.8)
    assert Condition("x", "==", 3).holds(3.0) and not Condition("x", "==", 3).holds(2.0)
    assert Condition("x", "<", 0).holds(-0.1) and str(Condition("x", "<", 0)) == "x < 0"


def test_evaluate_maps_the_layer_and_records_value_interval_and_p() -> None:
    reps = np.linspace(0.85, 0.95, 1000)  # every replicate above 0.8: the p against 0.8 is at its floor 1/(B+1)
    m = Measurement(0.9, (0.85, 0.95), 1e-4, {"n": 34}, replicates=reps)
    res = FakeResult("smollm2-135m", 30, {("rsa_qk", 7, None): m})
    v = evaluate(CLAIMS_BY_ID["B2"], res)
    assert res.asked == [("rsa_qk", 7, None)]
    assert (v.claim, v.model, v.layer, v.value, v.verdict) == ("B2", "smollm2-135m", 7, 0.9, "holds")
    assert v.p_value == pytest.approx(1 / 1001)
    assert v.ci is not None and 0.85 <= v.ci[0] < v.ci[1] <= 0.95
    assert v.main is not None and v.main.p_secondary == 1e-4  # the permutation p is kept, as the secondary test
    assert v.layer_mapped_from == 5 and v.main.details["n"] == 34
    assert "holds" in v.describe() and "rsa_qk = 0.9" in v.describe()


def test_evaluate_fails_a_claim_when_a_secondary_condition_fails() -> None:
    table = {
        ("min_within_cluster_slope", 1, "internal"): Measurement(0.2, (0.1, 0.3)),
        ("pooled_r", 1, "internal"): Measurement(0.1, (0.05, 0.15)),  # pooled r positive: no paradox
    }
    v = evaluate(CLAIMS_BY_ID["A6"], FakeResult("gpt2-medium", 24, table))
    assert v.verdict == "fails" and v.value == 0.2
    assert [c.verdict for c in v.conditions] == ["holds", "fails"]
    assert v.conditions[1].ci == (0.05, 0.15) and v.conditions[1].rule == "interval"
    assert "pooled_r < 0 fails" in (v.reason or "")


def test_evaluate_reports_unavailable_nan_and_intervalless_statistics_instead_of_raising() -> None:
    missing = evaluate(CLAIMS_BY_ID["B1"], FakeResult("m", 24, {}))
    assert missing.verdict == "not evaluated" and "k_minus_q_mean_cosine" in (missing.reason or "")
    nan = FakeResult("m", 24, {("k_minus_q_mean_cosine", 5, None): Measurement(math.nan)})
    v = evaluate(CLAIMS_BY_ID["B1"], nan)
    assert v.verdict == "not evaluated" and "NaN" in (v.reason or "") and "B1: NOT EVALUATED on m" in v.describe()
    point = FakeResult("m", 24, {("k_minus_q_mean_cosine", 5, None): Measurement(0.5)})  # no interval
    v = evaluate(CLAIMS_BY_ID["B1"], point)
    assert v.verdict == "not evaluated" and "no interval" in (v.reason or "")


def test_evaluate_all_and_rows() -> None:
    table = {
        ("k_minus_q_mean_cosine", 5, None): Measurement(0.1, (0.05, 0.15)),
        ("rsa_qk", 5, None): Measurement(0.7, (0.6, 0.75)),
        ("min_selectivity_qk", 5, None): Measurement(1.01, (0.99, 1.03)),
        ("min_rsa_qk_over_blocks", None, None): Measurement(0.9, (0.86, 0.95)),
        ("fraction_blocks_v_most_selective", None, None): Measurement(0.75, (0.6, 0.9)),
    }
    result = FakeResult("gpt2-medium", 24, table)
    verdicts = apply_presuppositions([evaluate(c, result) for c in claims_for("qk")])
    assert [(v.claim, v.verdict) for v in verdicts] == [
        ("B1", "holds"),
        ("B2", "fails"),
        ("B3", "inconclusive"),
        ("B4", "holds"),
    ]
    row = verdicts[1].to_row()
    assert row["threshold"] == 0.8 and row["value"] == 0.7 and row["verdict"] == "fails" and row["ci"] == [0.6, 0.75]
