"""Study A's verdicts as evidence (issue 19): detection limits of the counts, the dimension variants (rogue
dimensions), and the count procedure calibrated end to end on simulated marks with overlapping windows."""

from __future__ import annotations

import numpy as np
import pytest

from layerclaims.errors import UsageError
from layerclaims.metrics.detectability import detection_limit, matched_loading, power_at
from layerclaims.metrics.mark_cases import covariance
from layerclaims.metrics.mark_clusters import cluster_marks
from tests.oracles.mark_cases import power_case


def _count(m: np.ndarray) -> int:
    return cluster_marks(m, n_boot=0).n_clusters


def test_matched_loading_recovers_the_generating_loading() -> None:
    x = power_case(0.0, np.random.default_rng(0)).x  # one population, loading 0.7, unit noise, D = 1024
    assert matched_loading(covariance(x)) == pytest.approx(0.7, abs=0.08)
    assert matched_loading(-np.eye(3) * 0 + np.eye(3)) == 0.0  # no shared direction: loading 0
    with pytest.raises(UsageError, match="N x N"):
        matched_loading(np.ones((2, 3)))


def test_power_rises_with_separation_and_the_limit_sits_between() -> None:
    common = {"n": 250, "d": 1024, "loading": 0.7, "pair_matrix": covariance, "count": _count, "n_sims": 4}
    assert power_at(0.0, seed=1, **common) == 0.0  # one population: never more than 1 cluster
    assert power_at(0.6, seed=1, **common) == 1.0  # groups 0.6 noise sd apart: always seen
    lim = detection_limit(start=0.2, seed=2, **common)
    assert lim.separation is not None and 0.2 / 1.5**3 <= lim.separation <= 0.2 * 1.5**3
    powers = dict(lim.tried)
    assert powers[lim.separation] >= 0.8 and all(p < 0.8 for s, p in lim.tried if s < lim.separation)
    assert lim.detects(lim.separation) and not lim.detects(lim.separation / 2)
    assert lim.to_dict()["n_sims"] == 4


def test_dimension_variants_and_the_top_dimensions_shares() -> None:
    from layerclaims.studies.punctuation.analysis import dimension_variant, top_dimensions

    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, (40, 16))
    x[:, 5] = 30 + 10 * rng.normal(0, 1, 40)  # a rogue dimension: large mean and variance over the marks
    top = top_dimensions(x, 3)
    assert top["dims"][0] == 5
    # the share of dimension d in the sum over pairs i < j of the (mark-centred) covariance, by brute force
    xc = x - x.mean(axis=1, keepdims=True)
    i, j = np.triu_indices(40, 1)
    terms = xc[i] * xc[j]
    assert top["pair_cov_share"][0] == pytest.approx(terms[:, 5].sum() / terms.sum())
    assert dimension_variant(x, "drop-top1").shape == (40, 15)
    assert not np.any(np.all(dimension_variant(x, "drop-top1") == x[:, [5]], axis=0))
    z = dimension_variant(x, "standardised")
    np.testing.assert_allclose(z.std(axis=0), 1.0)
    np.testing.assert_allclose(z.mean(axis=0), 0.0, atol=1e-12)
    with pytest.raises(ValueError, match="unknown dimension variant"):
        dimension_variant(x, "drop-some")


def test_the_claim_line_says_whether_it_survives_without_its_top_dimensions() -> None:
    from layerclaims.claims import Condition
    from layerclaims.results import Measurement
    from layerclaims.verdicts import condition_lines, decide_condition, survives_without_top_dimensions

    variants = {"standardised": 1.0, "drop-top1": 3.0, "drop-top3": 1.0}
    top = {"dims": [447, 138, 12], "pair_cov_share": [0.6, 0.1, 0.05], "variance_share": [0.5, 0.1, 0.05]}
    m = Measurement(3.0, (3, 3), None, {"without_top_dimensions": variants, "top_dimensions": top}, np.full(200, 3))
    c = decide_condition(Condition("cov_clusters", "==", 3), m)
    assert survives_without_top_dimensions(c) is False
    line = condition_lines(c)[-1]
    assert line.startswith("survives without its top dimensions: no") and "447 (60% of the pair covariance)" in line
    m2 = Measurement(3.0, (3, 3), None, {"without_top_dimensions": dict.fromkeys(variants, 3.0)}, np.full(200, 3))
    assert survives_without_top_dimensions(decide_condition(Condition("cov_clusters", "==", 3), m2)) is True


def test_a_count_of_one_that_could_not_see_meaningful_groups_is_inconclusive() -> None:
    from layerclaims.claims import Condition
    from layerclaims.results import Measurement
    from layerclaims.verdicts import decide_condition

    blind = {"separation": None, "meaningful": 0.15, "tried": [[0.15, 0.0], [0.225, 0.1]], "n_sims": 10}
    m = Measurement(1.0, (1, 1), None, {"detectability": blind}, np.ones(200))
    c = decide_condition(Condition("cov_clusters", "==", 1), m)
    assert c.verdict == "inconclusive" and "could not have seen groups 0.15 apart" in (c.reason or "")
    seeing = {**blind, "separation": 0.1}
    c = decide_condition(Condition("cov_clusters", "==", 1), Measurement(1.0, (1, 1), None, {"detectability": seeing},
                                                                          np.ones(200)))  # fmt: skip
    assert c.verdict == "holds"
    # "== 3" on the same counts fails at the claim's level, with its own p against
    c = decide_condition(Condition("cov_clusters", "==", 3), m)
    assert c.verdict == "fails" and c.p_against is not None and c.p_against < 0.05


def test_count_procedure_calibration_fast() -> None:
    """The count procedure end to end (cluster_marks, block-bootstrap refits, the count rule at the first and last
    Holm levels of 11 claims) on marks with overlapping windows: with one population "== 3" never holds and
    "== 1" holds; with groups far apart "== 3" is what the count sees."""
    from benchmarks.calibration import HOLM_LEVELS, simulate_counts

    assert HOLM_LEVELS[0] == pytest.approx(0.05 / 11) and HOLM_LEVELS[-1] == pytest.approx(0.05)
    n_boot = 40
    null = simulate_counts(0.0, d=576, n_sims=3, n_boot=n_boot, seed=0)
    for r in null:
        if r.claimed == 3:
            assert r.rates.holds == 0.0
        elif r.alpha * (n_boot + 1) > 1:  # the p floor 1/(B+1) lies below the level: "== 1" can be decided
            assert r.rates.holds == 1.0 and r.coverage == 1.0
        else:  # 40 resamples cannot reach the first Holm level (p >= 1/41): never holds, says inconclusive
            assert r.rates.holds == 0.0 and r.rates.inconclusive == 1.0
    far = simulate_counts(1.0, d=1024, n_sims=2, n_boot=40, seed=1, claimed=(1,))
    assert all(r.detected == 1.0 and r.rates.holds == 0.0 for r in far)
