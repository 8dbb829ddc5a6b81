"""The pytest plugin, as a user gets it: a project OUTSIDE this repository, with one findings test and one claims
file, run by pytest in a subprocess that finds the plugin through the installed ``pytest11`` entry point."""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from layerclaims import cli

REPO = Path(__file__).resolve().parents[2]

# Block 2 of tiny-gpt2 (4 blocks), 2 categories of 5 words, another template. U1 holds by construction (a Pearson r
# is > -1 unless the two matrices are exactly anti-correlated), U2 cannot hold (r <= 1): the verdict is asserted
# both ways on the claim's own model without depending on a measured value. U3 is about gpt2-medium (block 8 of 24
# -> block 1 of tiny-gpt2 by relative depth): snapshotted on tiny-gpt2. All three share one study run. 100 resamples:
# no p is below 1/(B+1), and a run decides U1 and U2 in a family of 3 hypotheses (first level 0.05/3 > 1/101).
CLAIMS_TOML = """
[defaults]
study = "qk"
source = "my lab notebook"
layer = 2
model = "tiny-gpt2"
model_blocks = 4

[defaults.settings]
template = "I saw a {w}"
n_boot = 200
n_perm = 100
categories = { animals = ["cat", "dog", "horse", "cow", "sheep"], tools = ["hammer", "saw", "drill", "wrench",
  "knife"] }

[[claim]]
id = "U1"
text = "Block 2: Q and K similarity matrices of my words are not exactly anti-correlated."
conditions = [{ statistic = "rsa_qk", comparison = ">", threshold = -1 }]

[[claim]]
id = "U2"
text = "Block 2: RSA Q-K above 1 (impossible: the test must fail)."
conditions = [{ statistic = "rsa_qk", comparison = ">", threshold = 1 }]

[[claim]]
id = "U3"
text = "Block 8 of gpt2-medium: RSA Q-K of my words above 0.8."
model = "gpt2-medium"
model_blocks = 24
layer = 8
conditions = [{ statistic = "rsa_qk", comparison = ">", threshold = 0.8 }]
"""

FINDINGS_TEST = """
import pytest

pytestmark = pytest.mark.findings


def test_claim(claim, claim_verdict, check_verdict):
    check_verdict(claim_verdict, claim)
"""


def _entry_point_installed() -> bool:
    return any(ep.value == "layerclaims.plugin" for ep in importlib.metadata.entry_points(group="pytest11"))


needs_entry_point = pytest.mark.skipif(
    not _entry_point_installed(),
    reason="the installed layerclaims metadata has no pytest11 entry point: run `pip install -e .` (once)",
)


def make_project(tmp_path: Path) -> Path:
    project = tmp_path / "my_project"
    (project / "tests").mkdir(parents=True)
    (project / "claims.toml").write_text(CLAIMS_TOML)
    (project / "tests" / "test_my_claims.py").write_text(FINDINGS_TEST)
    return project


def run_pytest(project: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """``python -m pytest`` in ``project`` with no `-p`: the plugin must come from the entry point."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    if env.get("PYTHONPATH"):  # as this process sees it (a relative entry would move with the working folder)
        env["PYTHONPATH"] = os.pathsep.join(str(Path(p).resolve()) for p in env["PYTHONPATH"].split(os.pathsep) if p)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@needs_entry_point
def test_an_outside_project_gets_the_options(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    assert REPO not in project.parents
    done = run_pytest(project, "--help")
    assert done.returncode == 0, done.stderr
    for option in ("--gpu", "--model=NAME", "--claims=PATH", "--only-claims", "--as=NAME", "--beats-control"):
        assert option in done.stdout, option
    markers = run_pytest(project, "--markers")
    assert "@pytest.mark.findings" in markers.stdout and "@pytest.mark.slow" in markers.stdout


@needs_entry_point
def test_an_outside_project_with_a_bad_claims_file_is_a_usage_error(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    (project / "claims.toml").write_text(CLAIMS_TOML.replace('"rsa_qk", comparison = ">", threshold = 1', '"rsa"', 1))
    done = run_pytest(project, "-m", "findings", "--claims", "claims.toml", "--model", "tiny-gpt2")
    assert done.returncode == 4, done.stdout + done.stderr  # pytest's exit code for a usage error
    assert "claims.toml: claim U2, field 'conditions[0].comparison': missing" in done.stderr


@pytest.mark.slow
@needs_entry_point
def test_an_outside_project_checks_its_own_claims(tmp_path: Path) -> None:
    """About 30 s: pytest in a subprocess (twice) loads tiny-gpt2 and runs study B once for the three claims. The
    first run creates the snapshot of U3 (tiny-gpt2 is not its model), passes it and says so; the second compares."""
    project = make_project(tmp_path)
    args = ("-m", "findings", "--claims", "claims.toml", "--only-claims", "--model", "tiny-gpt2", "-rA")
    first = run_pytest(project, *args)
    out = first.stdout
    assert "PASSED tests/test_my_claims.py::test_claim[tiny-gpt2-U1]" in out, out
    assert "FAILED tests/test_my_claims.py::test_claim[tiny-gpt2-U2]" in out, out
    assert "U2: FAILS on tiny-gpt2 at" in out and "rsa_qk > 1" in out  # the failure message of the typed verdict
    assert "PASSED tests/test_my_claims.py::test_claim[tiny-gpt2-U3]" in out, out  # created, not failed
    snapshots = project / "tests" / "snapshots" / "tiny-gpt2"
    assert f"layerclaims: created 1 findings snapshot in {snapshots}" in out and "--force-regen" in out, out
    assert "File not found in data directory" not in out and "def perform_regression_check" not in out, out
    assert "B2" not in out  # --only-claims: the package's claims are not checked
    snapshot = snapshots / "U3.csv"
    assert snapshot.is_file()  # beside the user's test; later runs compare with it (pytest-regressions)
    assert "layer,value,ci_low,ci_high,p_value,p_adjusted,verdict" in snapshot.read_text().splitlines()[0]
    second = run_pytest(project, *args)
    assert "PASSED tests/test_my_claims.py::test_claim[tiny-gpt2-U3]" in second.stdout, second.stdout
    assert "layerclaims: created" not in second.stdout, second.stdout
    snapshot.write_text(snapshot.read_text().replace(",1,", ",5,", 1))  # a layer that moved: a reviewable diff
    third = run_pytest(project, *args)
    assert "FAILED tests/test_my_claims.py::test_claim[tiny-gpt2-U3]" in third.stdout, third.stdout
    assert "U3 on tiny-gpt2: the snapshot" in third.stdout and "--force-regen" in third.stdout, third.stdout
    assert "def perform_regression_check" not in third.stdout, third.stdout


@pytest.mark.slow
def test_the_cli_runs_a_users_claims_into_verdicts_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`layerclaims reproduce --claims FILE --only-claims --study qk` on tiny-gpt2: one study run for the three claims,
    all three in verdicts.json, U1/U2 decided by construction, U3 at the mapped block. About 4 s (loads tiny-gpt2)."""
    project = make_project(tmp_path)
    out = tmp_path / "out"
    argv = ["reproduce", "--model", "tiny-gpt2", "--claims", str(project / "claims.toml"), "--only-claims"]
    assert cli.main([*argv, "--study", "qk", "--out", str(out), "-q"]) == 0, capsys.readouterr()
    rows = {r["claim"]: r for r in json.loads((out / "verdicts.json").read_text())}
    assert sorted(rows) == ["U1", "U2", "U3"]
    # U1 holds by construction, so on its control too: its own word, not counted as holds
    assert rows["U1"]["verdict"] == "holds on control too" and rows["U2"]["verdict"] == "fails"
    assert rows["U1"]["value"] == rows["U2"]["value"]  # one run, one block
    assert rows["U3"]["layer"] == 1 and rows["U3"]["details"]["layer_mapped_from"] == 8
    assert set(rows["U1"]["details"]["rsa_by_category"]) == {"animals", "tools"}
    saved = json.loads((out / "qk.json").read_text())
    assert "cat" in json.dumps(saved) and "galaxy" not in json.dumps(saved)  # the user's words, not the package's


@needs_entry_point
def test_as_is_refused_when_the_folder_is_not_the_declared_model(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    small = tmp_path / "gpt2-small-copy"
    small.mkdir()
    config = {"model_type": "gpt2", "n_layer": 12, "n_embd": 768, "vocab_size": 50257, "_name_or_path": "gpt2"}
    (small / "config.json").write_text(json.dumps(config))
    done = run_pytest(project, "-m", "findings", "--model", str(small), "--as", "gpt2-medium")
    assert done.returncode == 4, done.stdout + done.stderr
    assert "--as gpt2-medium refused" in done.stderr and "12 blocks of width 768" in done.stderr


SNAPSHOT_TEST = """
from pathlib import Path

from layerclaims.claims import load_claims
from layerclaims.verdicts import evaluate


class NoResult:  # a result that provides no statistic: the verdict is built here, no model needed

    model, n_blocks = "tiny-gpt2", 2

    def measure(self, statistic, *, layer, kind):
        raise KeyError(statistic)


def test_snapshot(check_verdict):
    (claim,) = [c for c in load_claims(Path(__file__).parents[1] / "claims.toml") if c.id == "U3"]
    check_verdict(evaluate(claim, NoResult()), claim)
"""


@needs_entry_point
def test_the_first_run_creates_the_snapshots_and_says_so(tmp_path: Path) -> None:
    """A user's project with no snapshots yet: the first run writes them and passes, naming the folder and the
    --force-regen hint once (not a failure per test with the library's source); the next run compares; a snapshot
    that no longer matches fails with the claim, the file and the hint, without the library's source."""
    project = make_project(tmp_path)
    (project / "tests" / "test_my_claims.py").write_text(SNAPSHOT_TEST)
    first = run_pytest(project, "-rA")
    snapshots = project / "tests" / "snapshots" / "tiny-gpt2"
    assert first.returncode == 0, first.stdout + first.stderr
    assert f"layerclaims: created 1 findings snapshot in {snapshots}" in first.stdout, first.stdout
    assert "--force-regen" in first.stdout and "File not found in data directory" not in first.stdout
    assert (snapshots / "U3.csv").is_file()
    second = run_pytest(project, "-rA")
    assert second.returncode == 0 and "layerclaims: created" not in second.stdout, second.stdout
    # the stored verdict changed from not evaluated (-1) to holds (1)
    (snapshots / "U3.csv").write_text((snapshots / "U3.csv").read_text().replace(",-1,", ",1,", 1))
    third = run_pytest(project, "-rA")
    assert third.returncode == 1, third.stdout
    assert f"U3 on tiny-gpt2: the snapshot {snapshots / 'U3.csv'} differs" in third.stdout, third.stdout
    assert "--force-regen" in third.stdout and "def perform_regression_check" not in third.stdout, third.stdout
    assert "site-packages" not in third.stdout, third.stdout
