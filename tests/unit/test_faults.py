"""Faults during a run: each leaves the earlier results folder byte for byte as it was (file hashes compared).

Fast tier: in-process runs on the fake studies of test_cli (interrupts raised at several points, real SIGINT and
SIGTERM delivered to this process, a full disk, a read-only folder). Slow tier: real ``python -m layerclaims
reproduce --model tiny-gpt2`` subprocesses, held at a known stage by the pipeline's test hook
(``LAYERCLAIMS_TEST_PAUSE_AT``) and sent SIGINT there, and two concurrent runs on one folder.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from test_cli import Recorder, error_lines, fake, run_cli, tree_hashes  # noqa: F401  (fake: the fixture)

from layerclaims import pipeline, runfolder

REPO = Path(__file__).resolve().parents[2]


def _leftovers(out: Path) -> list[str]:
    """Anything beside ``out`` that a run may create: stage, moved-aside copy, lock."""
    return sorted(p.name for p in out.parent.iterdir() if p.name != out.name and out.name in p.name)


@pytest.fixture
def earlier(fake: Recorder, tmp_path: Path) -> tuple[Path, dict[str, str]]:  # noqa: F811
    """A folder holding a complete earlier run, and its file hashes."""
    out = tmp_path / "run"
    assert run_cli("reproduce", "--model", "m", "--out", str(out), "-q") == 0
    return out, tree_hashes(out)


def _raise_in(monkeypatch: pytest.MonkeyPatch, where: str, exc: BaseException | None = None) -> None:
    def boom(*args: Any, **kwargs: Any) -> Any:
        if exc is None:
            signal.raise_signal(signal.SIGINT)  # a real Ctrl-C, through Python's own handler
        raise exc  # type: ignore[misc]

    if where == "study A":
        monkeypatch.setattr(sys.modules["layerclaims.studies.punctuation"], "run", boom)
    elif where == "figures":
        monkeypatch.setattr(pipeline, "draw_table", boom)
    elif where == "report":
        monkeypatch.setattr(pipeline, "write_report", boom)
    elif where == "commit":
        monkeypatch.setattr(runfolder.RunFolder, "commit", boom)


@pytest.mark.parametrize("where", ["study A", "figures", "report", "commit"])
def test_an_interrupt_at_any_stage_leaves_the_folder_as_it_was(
    earlier: tuple[Path, dict[str, str]],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    where: str,
) -> None:
    out, before = earlier
    _raise_in(monkeypatch, where, KeyboardInterrupt())
    assert run_cli("reproduce", "--model", "m", "--out", str(out), "--seed", "3", "-q") == 130
    assert tree_hashes(out) == before and _leftovers(out) == []
    assert f"interrupted: {out} was left as it was" in capsys.readouterr().err


def test_a_real_sigint_leaves_the_folder_as_it_was(
    earlier: tuple[Path, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    out, before = earlier
    _raise_in(monkeypatch, "study A")  # SIGINT delivered to this process
    assert run_cli("reproduce", "--model", "m", "--out", str(out), "-q") == 130
    assert tree_hashes(out) == before and _leftovers(out) == []


def test_a_real_sigterm_leaves_the_folder_as_it_was(
    earlier: tuple[Path, dict[str, str]], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    out, before = earlier

    def term(*args: Any, **kwargs: Any) -> Any:
        signal.raise_signal(signal.SIGTERM)  # the CLI turns it into the same clean-up, exit 143

    monkeypatch.setattr(pipeline, "write_report", term)
    previous = signal.getsignal(signal.SIGTERM)
    assert run_cli("reproduce", "--model", "m", "--out", str(out), "-q") == 143
    assert signal.getsignal(signal.SIGTERM) == previous  # the CLI puts the handler back
    assert tree_hashes(out) == before and _leftovers(out) == []
    assert f"terminated: {out} was left as it was" in capsys.readouterr().err


def test_a_full_disk_while_staging_leaves_the_folder_as_it_was(
    earlier: tuple[Path, dict[str, str]], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    out, before = earlier

    def full(*args: Any, **kwargs: Any) -> Any:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(out.parent / "run.staging-1" / "report.html"))

    monkeypatch.setattr(pipeline, "write_report", full)
    assert run_cli("reproduce", "--model", "m", "--out", str(out), "-q") == 2
    err = error_lines(capsys.readouterr().err)
    assert "the run could not be written" in err[0] and "No space left on device" in err[0]
    assert err[1].startswith("fix: free disk space, or give a folder on another disk: `layerclaims reproduce")
    assert tree_hashes(out) == before and _leftovers(out) == []


def test_a_read_only_out_is_refused_before_loading(
    fake: Recorder,  # noqa: F811
    earlier: tuple[Path, dict[str, str]],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out, before = earlier
    loads = len(fake.loads)
    # os.access is what check_out_folder asks (it answers EROFS on a read-only mount); faked here because the tests
    # may run as root, for whom a chmod-ed folder stays writable (the real chmod case: tests/unit/test_runfolder.py).
    monkeypatch.setattr(runfolder.os, "access", lambda path, mode: False)
    assert run_cli("reproduce", "--model", "m", "--out", str(out), "-q") == 2
    assert "is not writable" in capsys.readouterr().err
    assert len(fake.loads) == loads and tree_hashes(out) == before


# ------------------------------------------------------------------------------------------------ real processes

QK_FAST = ["--study", "qk", "--set", "qk.n_boot=20", "--set", "qk.n_perm=50"]


def _start(out: Path, *extra: str, pause: str | None = None) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    if pause:
        env[pipeline.PAUSE_ENV] = pause
        env["LAYERCLAIMS_TEST_PAUSE_S"] = "60"
    argv = [sys.executable, "-m", "layerclaims", "reproduce", "--model", "tiny-gpt2", "--out", str(out), *QK_FAST]
    return subprocess.Popen([*argv, *extra, "-q"], env=env, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def _wait_for_pause(proc: subprocess.Popen[str], stage: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    assert proc.stderr is not None
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            raise AssertionError(f"the run ended before {stage}: rc={proc.wait()}")
        if f"paused at {stage}" in line:
            return
    raise AssertionError(f"no pause at {stage} within {timeout} s")


@pytest.fixture(scope="module")
def real_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("real") / "run"
    proc = _start(out)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    return out


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["locked", "loaded", "studied", "staged"])
def test_sigint_to_a_real_run_at_each_stage(real_run: Path, tmp_path: Path, stage: str) -> None:
    out = tmp_path / "run"
    shutil.copytree(real_run, out)
    before = tree_hashes(out)
    proc = _start(out, "--seed", "5", pause=stage)
    _wait_for_pause(proc, stage)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert tree_hashes(out) == before and _leftovers(out) == []


@pytest.mark.slow
def test_two_concurrent_runs_on_one_folder(real_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    shutil.copytree(real_run, out)
    before = tree_hashes(out)
    first = _start(out, "--seed", "5", pause="loaded")
    _wait_for_pause(first, "loaded")
    second = _start(out, "--seed", "6")
    _, err = second.communicate(timeout=300)
    assert second.returncode == 2
    assert f"is being written by process {first.pid}" in err
    waiting = _start(out, "--seed", "7", "--wait", "1")  # waits 1 s, then refuses the same way
    _, err = waiting.communicate(timeout=300)
    assert waiting.returncode == 2 and f"process {first.pid}" in err
    first.send_signal(signal.SIGINT)
    first.communicate(timeout=120)
    assert first.returncode == 130
    assert tree_hashes(out) == before and _leftovers(out) == []
    # a run killed outright leaves a stale lock and stage behind; the next run takes them over
    killed = _start(out, "--seed", "8", pause="staged")
    _wait_for_pause(killed, "staged")
    killed.kill()
    killed.wait()
    assert tree_hashes(out) == before
    assert sorted(_leftovers(out)) == [".run.lock", f"run.staging-{killed.pid}"]
    after = _start(out, "--seed", "9")
    _, err = after.communicate(timeout=300)
    assert after.returncode == 0, err
    assert _leftovers(out) == [] and tree_hashes(out) != before
