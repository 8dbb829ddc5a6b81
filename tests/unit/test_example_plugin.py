"""examples/study-plugin, as a user gets it: installed outside the repository (``pip install --no-deps --target DIR``,
``PYTHONPATH=DIR``), its study ``norm`` is found through the entry-point group ``layerclaims.studies``, and its claim
X1 gets the same verdict from ``layerclaims reproduce --claims`` (verdicts.json) and from ``pytest -m findings
--claims`` in a folder outside the repository; ``layerclaims robustness`` varies the choices it declares.

The install and the claims check are the fast representative; the runs on tiny-gpt2 are ``slow`` (about 2 minutes).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "study-plugin"


def _run(args: list[str], cwd: Path, site: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env["PYTHONPATH"] = str(site)
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """``(site, project)``: the example installed into ``site`` (from a copy outside the repository, so that no
    build files land in it), and a project folder holding only its claims and its findings test."""
    root = tmp_path_factory.mktemp("plugin")
    shutil.copytree(EXAMPLE, root / "src", ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    site = root / "site"
    # the build uses this environment's setuptools where it has one (seconds, no index needed)
    isolation = ["--no-build-isolation"] if importlib.util.find_spec("setuptools") else []
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", *isolation, "--target", str(site)]
    cmd.append(str(root / "src"))
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    if done.returncode != 0 and "No matching distribution found for setuptools" in done.stderr:
        pytest.skip("pip cannot get setuptools to build the example here (offline without a package index)")
    assert done.returncode == 0, done.stderr
    project = root / "project"
    (project / "tests").mkdir(parents=True)
    shutil.copy(EXAMPLE / "claims.toml", project / "claims.toml")
    shutil.copy(EXAMPLE / "tests" / "test_claims.py", project / "tests" / "test_claims.py")
    return site, project


def test_the_installed_example_registers_its_study_and_claim(installed: tuple[Path, Path]) -> None:
    site, project = installed
    code = "from layerclaims import study; s = study.get('norm'); print(study.names(), s.layer_unit, s.settings)"
    done = _run([sys.executable, "-c", code], project, site)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split(")")[0] == "('anisotropy', 'massive', 'punctuation', 'qk', 'sink', 'norm'"
    claims = _run(
        [sys.executable, "-m", "layerclaims", "claims", "--claims", "claims.toml", "--format", "json"], project, site
    )
    assert claims.returncode == 0, claims.stderr
    assert [r["id"] for r in json.loads(claims.stdout)][-1] == "X1"
    # without the install, the claims file names a study nobody registered: a usage error with the fix
    missing = _run([sys.executable, "-m", "layerclaims", "claims", "--claims", "claims.toml"], project, project)
    assert missing.returncode == 2 and "unknown study 'norm'" in missing.stderr
    assert "install the package that registers 'norm'" in missing.stderr
    # robustness of a study none of the claims is about: a usage error before any model loads
    rob = [sys.executable, "-m", "layerclaims", "robustness", "--model", "tiny-gpt2", "--study", "norm", "--out", "r"]
    bare = _run(rob, project, site)
    assert bare.returncode == 2 and "no claim of study norm to vary" in bare.stderr and "--claims PATH" in bare.stderr
    assert not (project / "r").exists()


@pytest.mark.slow
def test_x1_gets_one_verdict_from_reproduce_and_from_pytest_findings(
    installed: tuple[Path, Path], tmp_path: Path
) -> None:
    site, project = installed
    out = tmp_path / "run"
    reproduce = [sys.executable, "-m", "layerclaims", "reproduce", "--model", "tiny-gpt2", "--claims", "claims.toml"]
    done = _run([*reproduce, "--only-claims", "--out", str(out), "-q"], project, site)
    assert done.returncode == 0, done.stderr
    rows = json.loads((out / "verdicts.json").read_text())
    assert [r["claim"] for r in rows] == ["X1"]
    verdict = rows[0]["verdict"]
    assert verdict in ("holds", "fails", "inconclusive", "not evaluated")
    assert (out / "norm.json").is_file() and (out / "figures" / "norm_ratio.png").stat().st_size > 1000
    findings = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-m", "findings", "-rA"]
    done = _run([*findings, "--model", "tiny-gpt2", "--claims", "claims.toml", "--only-claims"], project, site)
    outcome = "PASSED" if verdict == "holds" else "FAILED"  # on its own model a findings test asserts that it holds
    assert f"{outcome} tests/test_claims.py::test_claim[tiny-gpt2-X1]" in done.stdout, done.stdout + done.stderr


@pytest.mark.slow
def test_robustness_varies_the_choices_the_example_declares(installed: tuple[Path, Path], tmp_path: Path) -> None:
    site, project = installed
    out = tmp_path / "rob"
    cmd = [sys.executable, "-m", "layerclaims", "robustness", "--model", "tiny-gpt2", "--study", "norm"]
    cmd += ["--claims", "claims.toml", "--only-claims", "--only", "length=6", "--executor", "inline"]
    done = _run([*cmd, "--out", str(out), "-q"], project, site)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("X1 holds in ") and "of 2 specifications" in done.stdout
    summary = json.loads((out / "robustness.json").read_text())
    assert [s["values"]["length"] for s in summary["specifications"]] == ["8", "6"]
    assert summary["grid_resampling"] == {"norm": {"n_boot": 200}}
