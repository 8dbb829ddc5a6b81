"""Output errors are output errors: stdout closed early (``| head -1``) or full (``> /dev/full``) never costs a
finished run, never blames the disk the run was written to, never prints a traceback. Closed pipe: exit 141 and no
message; anything else: exit 74 and one line on stderr. Real processes for the commands, in-process for the logic."""

from __future__ import annotations

import errno
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_cli import Recorder, fake, run_cli  # noqa: F401  (fake: the fixture)

from layerclaims import cli, runfolder

REPO = Path(__file__).resolve().parents[2]
QK_FAST = ["--study", "qk", "--set", "qk.n_boot=20", "--set", "qk.n_perm=50"]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO / "src")}


def _closed_pipe_run(args: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """``layerclaims ARGS | head -0``: stdout is a pipe whose reader is gone before the first write."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run(
            [sys.executable, "-m", "layerclaims", *args],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(),
            cwd=cwd,
            timeout=timeout,
        )
    finally:
        os.close(write_end)


def _full_device_run(args: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """``layerclaims ARGS > /dev/full``: every write to stdout fails with ENOSPC."""
    with open("/dev/full", "w") as full:
        return subprocess.run(
            [sys.executable, "-m", "layerclaims", *args],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(),
            cwd=cwd,
            timeout=timeout,
        )


needs_dev_full = pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full on this system")


# ------------------------------------------------------------------------------------------------ claims


def test_claims_into_a_closed_pipe_exits_141_without_a_traceback(tmp_path: Path) -> None:
    proc = _closed_pipe_run(["claims"], tmp_path)
    assert proc.returncode == cli.EXIT_SIGPIPE == 141
    assert proc.stderr == ""  # no traceback, no "Exception ignored ... BrokenPipeError"


def test_claims_read_by_head_gives_its_first_line_and_no_traceback(tmp_path: Path) -> None:
    """The real shell pipeline: `layerclaims claims --format json | head -1` (json: longer than a pipe's buffer)."""
    cmd = f"{sys.executable} -m layerclaims claims --format json | head -1; echo rc=${{PIPESTATUS[0]}}"
    proc = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, env=_env(), cwd=tmp_path, timeout=120)
    lines = proc.stdout.splitlines()
    assert lines[0] == "[" and lines[-1] in ("rc=0", "rc=141")  # 0 when it all fitted in the pipe first
    assert "Traceback" not in proc.stderr and "Error" not in proc.stderr


@needs_dev_full
def test_claims_into_a_full_device_says_so_in_one_line(tmp_path: Path) -> None:
    proc = _full_device_run(["claims"], tmp_path)
    assert proc.returncode == cli.EXIT_IOERR == 74
    assert proc.stderr.splitlines() == [
        "layerclaims claims: error: could not write to standard output (No space left on device); the command finished"
    ]


# ------------------------------------------------------------------------------------------------ in process


class _FailingStdout(io.StringIO):
    """A stdout whose writes fail with ``error`` after ``ok`` writes (what a closed pipe or a full disk does)."""

    def __init__(self, error: OSError, ok: int = 1) -> None:
        super().__init__()
        self.error, self.ok = error, ok

    def write(self, text: str) -> int:
        if self.ok <= 0:
            raise self.error
        self.ok -= 1
        return super().write(text)


@pytest.mark.parametrize(
    ("error", "code"),
    [(BrokenPipeError(errno.EPIPE, "Broken pipe"), 141), (OSError(errno.ENOSPC, "No space left on device"), 74)],
)
def test_stdout_failing_during_a_run_keeps_the_run(
    fake: Recorder,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    error: OSError,
    code: int,
) -> None:
    """The verdict lines print while the run is still staging: their failure must not become a run error."""
    out = tmp_path / "o"
    stdout = _FailingStdout(error)
    monkeypatch.setattr(sys, "stdout", stdout)
    assert run_cli("reproduce", "--model", "m", "--out", str(out)) == code
    assert sys.stdout is stdout  # put back
    err = capsys.readouterr().err
    assert "free disk space" not in err and "could not be written" not in err and "Traceback" not in err
    assert (code == 141) == ("could not write to standard output" not in err)
    # the whole run, written
    assert runfolder.manifest_kind(out) == runfolder.RUN and runfolder.foreign_entries(out) == []
    assert (out / "report.html").is_file()


def test_a_failing_stderr_does_not_stop_the_run_either(
    fake: Recorder,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`reproduce 2>&1 | head -1`: the progress lines (stderr) fail too."""
    out = tmp_path / "o"
    monkeypatch.setattr(sys, "stderr", _FailingStdout(BrokenPipeError(errno.EPIPE, "Broken pipe"), ok=0))
    monkeypatch.setattr(sys, "stdout", _FailingStdout(BrokenPipeError(errno.EPIPE, "Broken pipe"), ok=0))
    assert run_cli("reproduce", "--model", "m", "--out", str(out)) == 141
    assert runfolder.manifest_kind(out) == runfolder.RUN


def test_a_real_error_keeps_its_exit_code_when_stdout_fails_too(
    fake: Recorder,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(sys, "stdout", _FailingStdout(BrokenPipeError(errno.EPIPE, "Broken pipe"), ok=0))
    (tmp_path / "mine.txt").write_text("x")
    assert run_cli("reproduce", "--model", "m", "--out", str(tmp_path), "--study", "qk") == 2
    assert "not a folder layerclaims wrote" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------ real runs


def _assert_complete_run(out: Path) -> None:
    assert runfolder.manifest_kind(out) == runfolder.RUN and runfolder.foreign_entries(out) == []
    assert {"report.md", "report.html", "verdicts.json", "run.json"} <= {p.name for p in out.iterdir()}
    assert sorted(p.name for p in out.parent.iterdir() if p.name.startswith(("run.", ".run"))) == []  # no stage, lock


@pytest.mark.slow
def test_reproduce_into_a_closed_pipe_keeps_the_finished_run(tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = _closed_pipe_run(["reproduce", "--model", "tiny-gpt2", "--out", str(out), *QK_FAST], tmp_path)
    assert proc.returncode == 141, proc.stderr
    assert "free disk space" not in proc.stderr and "Traceback" not in proc.stderr and "error" not in proc.stderr
    _assert_complete_run(out)


@needs_dev_full
@pytest.mark.slow
def test_reproduce_into_a_full_device_keeps_the_finished_run(tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = _full_device_run(["reproduce", "--model", "tiny-gpt2", "--out", str(out), *QK_FAST], tmp_path)
    assert proc.returncode == 74, proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if not ln.startswith("layerclaims [")]
    assert errors == [
        "layerclaims reproduce: error: could not write to standard output (No space left on device); the command "
        f"finished and its results are in {out}"
    ]
    _assert_complete_run(out)


def test_a_stdout_closed_before_the_start_is_no_error(tmp_path: Path) -> None:
    """`layerclaims claims >&-`: Python starts with sys.stdout None; printing drops the text, as plain print does."""
    proc = subprocess.run(
        ["bash", "-c", f"{sys.executable} -m layerclaims claims >&-"],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode == 0 and proc.stderr == ""
