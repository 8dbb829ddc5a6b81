"""A run draws a study's figures in a worker process, from the result it saved, while the next study runs here:
the same files, byte for byte, as drawn in this process."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import layerclaims
from layerclaims import pipeline

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


def test_figures_drawn_in_a_worker_equal_those_drawn_here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
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
