"""layerclaims.robustness: the plan (original, every single departure, seeded random combinations), bad choices
refused before any model loads, study B's analysis variants, the folder written whole (never mixed)."""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from layerclaims import cli, robustness
from layerclaims import study as registry
from layerclaims.errors import UsageError
from layerclaims.metrics.similarity import rsa
from layerclaims.robustness import choices, plan
from layerclaims.studies.qk.robustness import rank_offdiagonal, similarity_matrices
from layerclaims.study import GridRun


def test_plan_has_the_original_and_every_single_departure() -> None:
    specs = plan()
    for study in ("punctuation", "qk"):
        mine = [s for s in specs if s.study == study]
        assert mine[0].origin == "original" and mine[0].values == robustness.defaults(study)
        singles = [s for s in mine if s.origin == "single"]
        assert len(singles) == sum(len(v) - 1 for v in choices(study).values())
        for s in singles:  # exactly one choice departs from the original
            assert sum(s.values[k] != v for k, v in robustness.defaults(study).items()) == 1
    assert len({s.id for s in specs}) == len(specs)


def test_random_combinations_are_seeded_distinct_and_counted() -> None:
    a = plan(["qk"], n_specs=10, draw_seed=3)
    b = plan(["qk"], n_specs=10, draw_seed=3)
    assert [s.values for s in a] == [s.values for s in b]
    rand = [s for s in a if s.origin == "random"]
    assert len(rand) == 10
    keys = [tuple(sorted(s.values.items())) for s in a]
    assert len(set(keys)) == len(keys)
    assert [s.values for s in plan(["qk"], n_specs=10, draw_seed=4)] != [s.values for s in a]


def test_random_combinations_stop_at_the_size_of_the_space() -> None:
    only = robustness.parse_only(["vectors", "rsa"])
    specs = plan(["qk"], n_specs=50, only=only)
    assert len(specs) == 4  # 2 x 2 combinations, no more


@pytest.mark.parametrize(
    ("item", "match"),
    [("colour=red", "Valid choices and values: .*selection: first"), ("bins=11", "valid values are 15, 10, 20, 30")],
)
def test_unknown_choice_or_value_lists_the_valid_ones(item: str, match: str) -> None:
    with pytest.raises(UsageError, match=match):
        robustness.parse_only([item])


def test_cli_refuses_bad_choices_before_any_model_loads(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import layerclaims.models

    def boom(*_: Any, **__: Any) -> None:
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(layerclaims.models, "load_model", boom)
    code = cli.main(["robustness", "--model", "tiny-gpt2", "--out", str(tmp_path / "o"), "--only", "bins=7"])
    assert code == 2
    err = capsys.readouterr().err
    assert "bins" in err and "15, 10, 20, 30" in err and not (tmp_path / "o").exists()


def test_an_unknown_model_is_refused_before_any_job(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["robustness", "--model", "no-such-model-xyz", "--out", str(tmp_path / "o")]) == 2
    assert "no-such-model-xyz" in capsys.readouterr().err and not (tmp_path / "o").exists()


def test_a_foreign_folder_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "taken"
    out.mkdir()
    (out / "report.md").write_text("someone else's run")
    assert cli.main(["robustness", "--model", "tiny-gpt2", "--out", str(out), "--study", "qk"]) == 2
    assert "not a folder layerclaims wrote" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["report.md"]


def test_similarity_variants() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(2, 7, 5)) + 3.0
    pear = similarity_matrices({"q": X}, "raw", "pearson")["q"]
    np.testing.assert_allclose(pear[0], np.corrcoef(X[0]), atol=1e-12)  # rows are vectors: Pearson r between them
    cen = similarity_matrices({"q": X}, "centred", "cosine")["q"]
    Y = X[1] - X[1].mean(axis=0)
    norms = np.linalg.norm(Y, axis=1)
    np.testing.assert_allclose(cen[1], (Y @ Y.T) / np.outer(norms, norms), atol=1e-12)


def test_ranked_matrices_give_spearman_rsa() -> None:
    rng = np.random.default_rng(1)
    A = rng.normal(size=(9, 9))
    B = rng.normal(size=(9, 9)) + A
    A, B = A + A.T, B + B.T
    ranked = rank_offdiagonal(np.stack([A, B]))
    assert rsa(ranked[0], ranked[1]) == pytest.approx(rsa(A, B, method="spearman"), abs=1e-12)


@pytest.fixture
def light_grid(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fewer resamples in the fast tier: these tests check the plumbing, not the intervals."""
    qk = registry.get("qk")
    assert qk.robustness is not None
    light = dataclasses.replace(qk, robustness=dataclasses.replace(qk.robustness, grid={"n_boot": 20, "n_perm": 50}))
    monkeypatch.setitem(registry.registry(), "qk", light)


def _read(out: Path) -> list[dict[str, str]]:
    with (out / "robustness.csv").open() as fh:
        return list(csv.DictReader(fh))


def test_qk_grid_end_to_end_and_the_folder_is_replaced_whole(
    tmp_path: Path, shared_data: Path, light_grid: None
) -> None:
    out = tmp_path / "rob"
    o1 = robustness.run("tiny-gpt2", out, study_names=["qk"], only=["vectors", "rsa"], executor="inline")
    rows = _read(out)
    n_specs = 1 + 1 + 1  # original, vectors=centred, rsa=spearman
    assert {r["spec"] for r in rows} == {f"B{i:03d}" for i in range(n_specs)}
    assert {r["claim"] for r in rows} == {"B1", "B2", "B3", "B4"}
    assert {"vectors", "rsa", "value", "ci_low", "ci_high", "verdict", "resampling", "selection"} <= set(rows[0])
    assert all(
        r["verdict"] in ("holds", "holds on control too", "fails", "inconclusive", "not evaluated") for r in rows
    )
    for claim in ("B1", "B2", "B3", "B4"):
        assert (out / "figures" / f"spec_curve_{claim}.png").stat().st_size > 1000
        line = next(x for x in o1.lines if x.startswith(claim))
        k = sum(r["verdict"] == "holds" for r in rows if r["claim"] == claim)
        assert line.startswith(f"{claim} holds in {k} of {n_specs} specifications")
    # rsa=spearman changes only the RSA statistics; vectors=centred changes them all
    by = {(r["spec"], r["claim"]): r for r in rows}
    assert by[("B002", "B1")]["value"] == by[("B000", "B1")]["value"]
    assert by[("B002", "B2")]["value"] != by[("B000", "B2")]["value"]
    summary = json.loads((out / "robustness.json").read_text())
    assert summary["grid_resampling"]["qk"]["n_boot"] == 20
    (out / "stray.txt").write_text("the user's, not the run's")
    before = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    with pytest.raises(UsageError, match=r"stray\.txt") as info:  # a file the run did not write: never deleted
        robustness.run("tiny-gpt2", out, study_names=["qk"], only=["similarity"], executor="inline")
    assert "new or empty folder" in (info.value.fix or "")
    assert {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    (out / "stray.txt").unlink()
    robustness.run("tiny-gpt2", out, study_names=["qk"], only=["similarity"], executor="inline")
    assert {r["spec"] for r in _read(out)} == {"B000", "B001"}  # the earlier run replaced whole
    assert not list(tmp_path.glob(".rob.*")) + list(tmp_path.glob("rob.*"))  # no lock, stage or old folder left


def test_a_failed_job_is_reported_and_the_others_kept(
    tmp_path: Path, shared_data: Path, monkeypatch: pytest.MonkeyPatch, light_grid: None
) -> None:
    qk = registry.get("qk")
    assert qk.robustness is not None
    real = qk.robustness.run

    def flaky(handle: Any, job: GridRun) -> Any:
        if job.values["template"] == "here":
            raise RuntimeError("simulated failure")
        return real(handle, job)

    monkeypatch.setitem(
        registry.registry(), "qk", dataclasses.replace(qk, robustness=dataclasses.replace(qk.robustness, run=flaky))
    )
    o = robustness.run("tiny-gpt2", tmp_path / "r", study_names=["qk"], only=["template"], executor="inline")
    assert len(o.failed) == 1 and "simulated failure" in o.failed[0]["error"]
    assert {r["template"] for r in _read(tmp_path / "r")} == {"original", "next"}
    assert "simulated failure" in (tmp_path / "r" / "summary.md").read_text()


@pytest.mark.slow
def test_tiny_full_grid_cli(tmp_path: Path, shared_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "full"
    assert cli.main(["robustness", "--model", "tiny-gpt2", "--out", str(out), "--n-specs", "2"]) == 0
    printed = capsys.readouterr().out
    for claim in ("A1", "A5", "A7", "B2", "B4"):
        assert f"{claim} holds in " in printed
    rows = _read(out)
    assert {r["spec_origin"] for r in rows} == {"original", "single", "random"}
    assert {r["line_endings"] for r in rows if r["study"] == "punctuation"} == {"crlf", "lf"}


USER_CLAIMS = """
[[claim]]
id = "U1"
text = "Block 2: Q and K similarity matrices of my words are not exactly anti-correlated."
source = "my lab notebook"
model = "tiny-gpt2"
model_blocks = 4
study = "qk"
layer = 2
conditions = [{ statistic = "rsa_qk", comparison = ">", threshold = -1 }]

[claim.settings]
template = "I saw a {w}"
categories = { animals = ["cat", "dog", "horse", "cow", "sheep"], tools = ["hammer", "saw", "drill", "wrench",
  "knife"] }
"""


def test_robustness_takes_a_users_claims(
    tmp_path: Path, light_grid: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`robustness --claims FILE --only-claims`: the user's claim over the grid, on its own words and template (the
    original path), and only it; with the package's claims added, both are there."""
    claims = tmp_path / "mine.toml"
    claims.write_text(USER_CLAIMS)
    seen: list[dict[str, Any]] = []
    real = robustness.job

    def spy(payload: dict[str, Any]) -> Any:
        seen.append(payload)
        return real(payload)

    monkeypatch.setattr(robustness, "job", spy)
    out = tmp_path / "rob"
    argv = ["robustness", "--model", "tiny-gpt2", "--out", str(out), "--study", "qk", "--only", "block"]
    assert cli.main([*argv, "--executor", "inline", "--claims", str(claims), "--only-claims", "-q"]) == 0
    rows = _read(out)
    assert {r["claim"] for r in rows} == {"U1"} and {r["spec"] for r in rows} == {"B000", "B001", "B002"}
    assert {r["layer"] for r in rows} == {"1", "2", "3"}  # block 2 and its neighbours
    assert all(r["verdict"] == "holds" for r in rows if r["spec"] == "B000")  # r > -1 on the original path
    assert "U1 holds in" in capsys.readouterr().out
    assert (out / "figures" / "spec_curve_U1.png").is_file()
    (payload,) = seen
    assert [c.id for c in payload["claims"]] == ["U1"] and payload["settings"]["template"] == "I saw a {w}"
    assert cli.main([*argv, "--executor", "inline", "--claims", str(claims), "-q"]) == 0
    assert {r["claim"] for r in _read(out)} == {"B1", "B2", "B3", "B4", "U1"}


def test_robustness_checks_the_run_as_reproduce_does(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The request is checked by the same function as every run (validate.check_run): --only-claims without
    --claims, and a study with no claim, are refused with the fix before any job."""
    out = tmp_path / "o"
    assert cli.main(["robustness", "--model", "tiny-gpt2", "--out", str(out), "--only-claims"]) == 2
    assert "--only-claims needs --claims PATH" in capsys.readouterr().err
    claims = tmp_path / "mine.toml"
    claims.write_text(USER_CLAIMS)
    argv = ["robustness", "--model", "tiny-gpt2", "--out", str(out), "--study", "punctuation"]
    assert cli.main([*argv, "--claims", str(claims), "--only-claims"]) == 2
    assert "no claim of study punctuation to vary" in capsys.readouterr().err and not out.exists()
