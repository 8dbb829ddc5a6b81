"""The Python API: ``layerclaims.reproduce`` and ``layerclaims.load_claims``, exported lazily; a run's figures drawn
in a worker process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import layerclaims
from layerclaims import pipeline
from layerclaims.errors import UsageError

CLAIM = """
[[claim]]
id = "N1"
text = "Block 1 of tiny-gpt2: RSA Q-K of two small categories is below 2 (always: r <= 1)."
source = "a notebook"
model = "tiny-gpt2"
model_blocks = 4
study = "qk"
layer = 1
conditions = [{ statistic = "rsa_qk", comparison = "<", threshold = 2 }]
settings = { categories = { sky = ["sun", "moon", "star"], sea = ["fish", "wave", "boat"] }, n_boot = 20, n_perm = 20 }
"""


def test_import_is_cheap_and_the_api_is_lazy() -> None:
    code = (
        "import sys, layerclaims; before = 'torch' in sys.modules; f = layerclaims.load_claims; "
        "r = layerclaims.reproduce; print(before, 'torch' in sys.modules, 'reproduce' in dir(layerclaims))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False", "True"]
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        layerclaims.nope  # noqa: B018


def test_load_claims_is_the_claims_loader(tmp_path: Path) -> None:
    (tmp_path / "c.toml").write_text(CLAIM)
    (claim,) = layerclaims.load_claims(tmp_path / "c.toml")
    assert isinstance(claim, layerclaims.Claim) and claim.options["labels"] == ("sky",) * 3 + ("sea",) * 3


def test_a_setting_no_study_has_is_refused_before_loading(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no study run \\(qk\\) has the setting 'n_bootz'"):
        layerclaims.reproduce("tiny-gpt2", study="qk", out=tmp_path, n_bootz=3)
    with pytest.raises(UsageError, match="only_claims=True needs claims"):
        layerclaims.reproduce("tiny-gpt2", study="qk", out=tmp_path, only_claims=True)
    assert not any(tmp_path.iterdir())


@pytest.mark.slow
def test_reproduce_returns_verdicts_and_results(tmp_path: Path) -> None:
    """About 4 s (loads tiny-gpt2). The claim holds by construction (a Pearson r is at most 1), so it holds on its
    control too (its own verdict, counted apart from holds)."""
    (tmp_path / "c.toml").write_text(CLAIM)
    run = layerclaims.reproduce("tiny-gpt2", tmp_path / "c.toml", tmp_path / "out", only_claims=True, study="qk")
    assert [v.claim for v in run.verdicts] == ["N1"] and run.verdict("N1").verdict == "holds on control too"
    assert run.verdict("N1").passes and run.verdict("N1").holds is False
    frame = run.frame()
    assert list(frame["claim"]) == ["N1"] and frame.loc[0, "layer"] == 1
    result = run.results["qk"]
    assert result.words == ("sun", "moon", "star", "fish", "wave", "boat") and result.model == "tiny-gpt2"
    assert run.files["verdicts.json"].is_file() and run.out == tmp_path / "out"


def test_figures_drawn_in_a_worker_equal_those_drawn_here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run draws a study's figures in a worker process, from the result it saved, while the next study runs
    here: the same files, byte for byte, as drawn in this process."""
    (tmp_path / "c.toml").write_text(CLAIM)

    def run(workers: str) -> Path:
        monkeypatch.setenv("LAYERCLAIMS_WORKERS", workers)
        out = tmp_path / f"out{workers}"
        layerclaims.reproduce("tiny-gpt2", tmp_path / "c.toml", out, only_claims=True, study="qk")
        return out

    here = run("1")

    def refuse(*_: Any) -> Any:
        raise AssertionError("drawn in this process")

    monkeypatch.setattr(pipeline, "draw_table", refuse)  # the workers have their own: only they can draw now
    there = run("2")
    drawn = sorted(p.relative_to(here) for p in here.rglob("*.png"))
    assert drawn and drawn == sorted(p.relative_to(there) for p in there.rglob("*.png"))
    assert all((here / p).read_bytes() == (there / p).read_bytes() for p in drawn)
    (entry,) = json.loads((there / "run.json").read_text())["studies"]
    assert sorted(entry["figures"]) == sorted(p.as_posix() for p in drawn) and not entry["problems"]
    assert entry["seconds"]["figures"] > 0  # the worker's drawing time, not the instant of handing it over
