"""The two commands are the whole truth: `make test` as the README writes it finds the offline data folder beside the
checkout by itself, and the Makefile pins what the findings snapshots depend on."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHOW = 'show:\n\t@echo "data=$$LAYERCLAIMS_DATA"\n'


def _recipe_env(repo: Path, env: dict[str, str]) -> str:
    """LAYERCLAIMS_DATA as a recipe of the Makefile in ``repo`` sees it."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed here (the README's commands need it)")
    out = subprocess.run(
        ["make", "-s", "-f", "Makefile", "-f", "-", "show"],
        input=SHOW,
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip().removeprefix("data=")


def test_make_finds_the_shared_data_beside_the_checkout(tmp_path: Path) -> None:
    repo = tmp_path / "layerclaims"
    repo.mkdir()
    shutil.copy(ROOT / "Makefile", repo / "Makefile")
    env = {k: v for k, v in os.environ.items() if k != "LAYERCLAIMS_DATA" and not k.startswith("MAKE")}
    assert _recipe_env(repo, env) == ""  # no ../shared/data: nothing invented
    (tmp_path / "shared" / "data" / "corpora").mkdir(parents=True)
    assert _recipe_env(repo, env) == str(tmp_path / "shared" / "data")
    assert _recipe_env(repo, {**env, "LAYERCLAIMS_DATA": "/elsewhere"}) == "/elsewhere"  # an explicit value wins
    assert _recipe_env(repo, {**env, "LAYERCLAIMS_DATA": ""}) == str(tmp_path / "shared" / "data")


def _makefile_pins() -> dict[str, str]:
    """The versions the Makefile installs (``name==version``), e.g. {"torch": "2.13.0", "transformers": "5.24.0"}."""
    return dict(re.findall(r"\b(torch|transformers)==([0-9][0-9.]*)", (ROOT / "Makefile").read_text()))


def test_torch_and_transformers_are_pinned_in_the_makefile_and_ranged_in_pyproject() -> None:
    pins = _makefile_pins()
    assert set(pins) == {"torch", "transformers"}
    pyproject = (ROOT / "pyproject.toml").read_text()
    for name in pins:
        assert re.search(rf'"{name}>=[0-9.]+,<[0-9]+"', pyproject), name


def test_tiny_revision_is_pinned() -> None:
    """The content hash of tiny-gpt2 under the torch and transformers the Makefile pins (the same hash under
    transformers 5.23 and 5.24). A change means the random weights moved (new torch/transformers init): re-check the
    findings snapshots of tiny-gpt2, then update this number."""
    import torch
    import transformers

    from layerclaims.models import load_model

    pins = _makefile_pins()
    installed = {"torch": torch.__version__.split("+")[0], "transformers": transformers.__version__}
    if installed != pins:
        pytest.skip(f"the pinned hash is for the Makefile's versions {pins}; installed: {installed}")
    assert load_model("tiny-gpt2").revision == "8ccbb2250b41256a"
