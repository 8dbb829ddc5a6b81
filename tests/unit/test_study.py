"""layerclaims.study: the studies declare themselves and are found through the entry-point group
``layerclaims.studies``; the declarations match what the results measure; a study that cannot be loaded is a clear
error naming its distribution and the fix; nothing outside a study's package names it."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any

import pytest

from layerclaims import study as registry
from layerclaims.errors import UsageError

SRC = Path(__file__).resolve().parents[2] / "src" / "layerclaims"


def test_the_package_studies_are_registered_as_entry_points() -> None:
    assert {"qk", "punctuation"} <= set(registry.names())
    for name in ("qk", "punctuation"):
        st = registry.get(name)
        assert st.name == name and isinstance(st, registry.Study)
        assert st.settings[: len(dataclasses.fields(st.config))] == tuple(f.name for f in dataclasses.fields(st.config))


def test_the_declared_statistics_are_what_the_results_measure() -> None:
    from layerclaims.studies.punctuation.result import MEASURES
    from layerclaims.studies.qk.analysis import _AT_BLOCK, _OVER_BLOCKS

    qk = registry.get("qk")
    assert qk.statistic_names(over_layers=False) == _AT_BLOCK
    assert qk.statistic_names(over_layers=True) == _OVER_BLOCKS
    punct = registry.get("punctuation")
    assert set(punct.statistic_names(over_layers=False) + punct.statistic_names(over_layers=True)) == set(MEASURES)


def test_reading_the_declarations_imports_no_torch() -> None:
    code = (
        "import sys; from layerclaims import study, claims; study.names(); "
        "print('torch' in sys.modules, 'matplotlib' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_an_unknown_study_names_the_installed_ones() -> None:
    with pytest.raises(UsageError, match="installed studies are .*qk") as exc:
        registry.get("nope")
    assert "entry-point group layerclaims.studies" in (exc.value.fix or "")


class _Dist:
    name = "broken-study"


def _entry(value: str, name: str = "broken") -> Any:
    ep = EntryPoint(name=name, value=value, group=registry.GROUP)
    return ep._for(_Dist())  # type: ignore[attr-defined]  # the distribution an installed entry point names


@pytest.mark.parametrize(
    ("value", "problem"),
    [("no_such_module_xyz:STUDY", "cannot be loaded: ModuleNotFoundError"), ("os.path:join", "not a Study")],
)
def test_a_study_that_cannot_be_loaded_names_its_distribution_and_the_fix(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, value: str, problem: str
) -> None:
    """The other studies keep working (a warning says what is wrong); asking for the broken one is the error."""
    monkeypatch.setattr(registry, "_loaded", None)
    monkeypatch.setattr(registry, "_broken", {})
    good = EntryPoint(name="qk", value="layerclaims.studies.qk:STUDY", group=registry.GROUP)
    monkeypatch.setattr(registry, "entry_points", lambda group: [_entry(value), good])
    with caplog.at_level("WARNING", logger="layerclaims.study"):
        assert registry.names() == ("qk",)
    assert re.search(f"study 'broken' of broken-study .*{problem}.*; fix: reinstall", caplog.text), caplog.text
    with pytest.raises(UsageError, match=problem) as exc:
        registry.get("broken")
    assert "broken-study" in exc.value.message
    assert "pip install --upgrade broken-study" in (exc.value.fix or "") and value in (exc.value.fix or "")


def test_nothing_outside_a_study_package_names_the_study() -> None:
    """The package's studies are named only inside their own package (and in pyproject.toml's entry points): no
    name as code names it (quoted, dotted, a path) anywhere else in src/ (the English word "punctuation" may stay)."""
    names = [n for n, st in registry.registry().items() if st.run.__module__.startswith("layerclaims.studies.")]
    assert set(names) >= {"qk", "punctuation"}
    found = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).as_posix()
        text = path.read_text(encoding="utf-8")
        for name in names:
            if rel.startswith(f"studies/{name}/"):
                continue
            for i, line in enumerate(text.splitlines(), start=1):
                if re.search(rf"[`\"'./]{re.escape(name)}(?![\w-])|(?<![\w-]){re.escape(name)}[`\"'.:]", line):
                    found.append(f"{rel}:{i}: {line.strip()}")
    assert not found, "study names outside their package:\n" + "\n".join(found)


def test_an_installed_broken_study_leaves_the_others_working(tmp_path: Path) -> None:
    """A distribution whose entry point names a missing module: every command still runs (one warning line naming
    it and the fix), and asking for that study is the usage error."""
    info = tmp_path / "broken_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[layerclaims.studies]\nbad = no_such_module_xyz:STUDY\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    run = [sys.executable, "-m", "layerclaims"]
    listed = subprocess.run([*run, "claims"], capture_output=True, text=True, env=env, check=False)
    assert listed.returncode == 0 and "B4" in listed.stdout, listed.stderr
    assert "study 'bad' of broken-plugin cannot be loaded: ModuleNotFoundError" in listed.stderr
    assert "pip install --upgrade broken-plugin" in listed.stderr
    asked = subprocess.run(
        [*run, "reproduce", "--model", "tiny-gpt2", "--study", "bad", "--out", str(tmp_path / "o")],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert asked.returncode == 2 and "error: study 'bad' of broken-plugin cannot be loaded" in asked.stderr
    assert "fix: reinstall or upgrade broken-plugin" in asked.stderr
