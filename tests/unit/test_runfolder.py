"""The run folder: lock (live, stale, waited for), staging, the swap, and the repair of a swap that was killed."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from layerclaims import results, runfolder
from layerclaims.errors import RunLockedError, UsageError
from layerclaims.runfolder import RunFolder


def _write_run(folder: Path, text: str, *, manifest: bool = True) -> None:
    """A folder as a run writes it: a verdicts file and (unless ``manifest`` is False) the manifest of its files."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "verdicts.json").write_text(text)
    if manifest:
        runfolder.write_manifest(folder, runfolder.RUN)


def _dead_pid() -> int:
    """The pid of a process that has exited (reaped), so no process has it for the length of the test."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_committed_run_replaces_the_folder_as_one_step(tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "figures").mkdir(parents=True)
    (out / "figures" / "orphan.png").write_text("from the old run")
    _write_run(out, "old")
    with RunFolder(out) as folder:
        assert folder.stage.parent == out.parent and folder.stage.name == f"out.staging-{os.getpid()}"
        assert folder.lock.is_file() and runfolder.read_holder(folder.lock) == os.getpid()
        _write_run(folder.stage, "new", manifest=False)
        assert (out / "verdicts.json").read_text() == "old"  # nothing visible until the commit
        folder.commit()
    assert (out / "verdicts.json").read_text() == "new"
    assert not (out / "figures").exists()  # the folder is the new run, not a mix
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no stage, no old copy, no lock


def test_an_exception_before_the_commit_leaves_the_folder_as_it_was(tmp_path: Path) -> None:
    out = tmp_path / "out"
    _write_run(out, "old")
    with pytest.raises(KeyboardInterrupt), RunFolder(out) as folder:
        _write_run(folder.stage, "half", manifest=False)
        raise KeyboardInterrupt
    assert (out / "verdicts.json").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_live_holder_is_named_and_refused_or_waited_for(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with RunFolder(out) as first, pytest.raises(RunLockedError) as info:
        RunFolder(out, wait_s=0.3).acquire()  # flock conflicts between two open files, even in one process
    assert f"being written by process {os.getpid()}" in info.value.message
    assert "--wait SECONDS" in (info.value.fix or "")
    assert not first.lock.exists()  # released when the first run ended
    second = RunFolder(out)
    second.acquire()  # free again
    second.release()


def test_a_stale_lock_of_a_dead_process_is_taken_over(tmp_path: Path) -> None:
    out = tmp_path / "out"
    _write_run(out, "old")
    dead = _dead_pid()
    (tmp_path / ".out.lock").write_text(f"{dead}\n")  # left by a run that was killed (SIGKILL: no clean-up)
    stale_stage = tmp_path / f"out.staging-{dead}"
    _write_run(stale_stage, "half-written", manifest=False)
    (stale_stage / runfolder.STAGE_MARK).write_text(f"{dead}\n")
    with RunFolder(out) as folder:
        assert runfolder.read_holder(folder.lock) == os.getpid()
        assert not stale_stage.exists()  # a killed run's stage is cleaned up under the lock
        _write_run(folder.stage, "new", manifest=False)
        folder.commit()
    assert (out / "verdicts.json").read_text() == "new"


def test_a_swap_killed_between_its_two_renames_is_repaired_by_the_next_run(tmp_path: Path) -> None:
    out = tmp_path / "out"
    moved_aside = tmp_path / "out.old-12345"
    _write_run(moved_aside, "old")  # the earlier run, renamed aside; the stage never got renamed in
    with RunFolder(out):
        assert (out / "verdicts.json").read_text() == "old"  # renamed back before anything else
    assert not moved_aside.exists()


def test_out_folders_a_run_must_not_replace_are_refused(tmp_path: Path) -> None:
    a_file = tmp_path / "f.txt"
    a_file.write_text("x")
    with pytest.raises(UsageError, match="is a file"):
        runfolder.check_out_folder(a_file)
    home_like = tmp_path / "home"
    home_like.mkdir()
    (home_like / "thesis.tex").write_text("x")
    with pytest.raises(UsageError, match="not a folder layerclaims wrote") as info:
        runfolder.check_out_folder(home_like, fix_command="layerclaims reproduce --model m --out NEW_FOLDER")
    assert "--out NEW_FOLDER" in (info.value.fix or "")
    runfolder.check_out_folder(tmp_path / "new" / "deeper")  # a new folder is fine
    _write_run(tmp_path / "earlier", "x")
    runfolder.check_out_folder(tmp_path / "earlier")  # so is an earlier run


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_parent_is_refused(tmp_path: Path) -> None:
    parent = tmp_path / "ro"
    parent.mkdir()
    parent.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        with pytest.raises(UsageError, match="not writable"):
            runfolder.check_out_folder(parent / "out")
    finally:
        parent.chmod(stat.S_IRWXU)


def test_result_files_follow_the_umask(tmp_path: Path) -> None:
    """mkstemp makes 0600 files; saved results get what open() would give (0o666 less the umask)."""
    old = os.umask(0o022)
    try:
        assert results.file_mode() == 0o644
        path = tmp_path / "r.json"
        results.atomic_write(path, lambda tmp: Path(tmp).write_text("{}"))
        assert stat.S_IMODE(path.stat().st_mode) == 0o644
        os.umask(0o007)
        assert results.file_mode() == 0o660
    finally:
        os.umask(old)


def test_an_interrupt_arriving_during_the_swap_waits_until_it_is_done(tmp_path: Path) -> None:
    out = tmp_path / "out"
    _write_run(out, "old")
    with pytest.raises(KeyboardInterrupt) as info, RunFolder(out) as folder:
        _write_run(folder.stage, "new", manifest=False)
        real_rename = os.rename

        def rename_then_interrupt(src: Any, dst: Any) -> None:
            real_rename(src, dst)
            os.kill(os.getpid(), signal.SIGINT)  # held back until both renames are done

        runfolder.os.rename = rename_then_interrupt  # type: ignore[assignment]
        try:
            folder.commit()
        finally:
            runfolder.os.rename = real_rename
    assert (out / "verdicts.json").read_text() == "new"  # the swap completed as one step
    assert getattr(info.value, "layerclaims_committed", False)  # and the CLI can say so
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_symlinked_out_swaps_the_folder_it_points_to(tmp_path: Path) -> None:
    real = tmp_path / "real"
    _write_run(real, "old")
    link = tmp_path / "link"
    link.symlink_to(real)
    with RunFolder(link) as folder:
        _write_run(folder.stage, "new", manifest=False)
        folder.commit()
    assert link.is_symlink() and (link / "verdicts.json").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link", "real"]
