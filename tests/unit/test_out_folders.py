"""Nothing of the user's is deleted: a folder is replaced only when this tool wrote all of it (its manifest lists
every file with its sha256), and ``--out`` inside or above a folder this tool wrote is refused. Each case: exit 2
(or UsageError), a message naming the folder and what is foreign in it, the fix, and the folder byte-identical."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_cli import Recorder, error_lines, fake, run_cli, tree_hashes  # noqa: F401  (fake: the fixture)

from layerclaims import runfolder
from layerclaims.errors import UsageError
from layerclaims.runfolder import FILES_MANIFEST, ROBUSTNESS, RUN, RunFolder


def _project(folder: Path) -> Path:
    """A user's project folder: its own report.md, notes and data (the issue's case)."""
    (folder / "data").mkdir(parents=True)
    (folder / "report.md").write_text("# my own report\n")
    (folder / "notes.txt").write_text("do not lose me\n")
    (folder / "data" / "counts.csv").write_text("a,b\n1,2\n")
    return folder


def _robustness_folder(folder: Path, model: str = "m") -> Path:
    """A robustness folder as `layerclaims robustness` leaves it (its files and its manifest)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "robustness.json").write_text(json.dumps({"model": model, "lines": []}))
    (folder / "summary.md").write_text("# Robustness\n")
    runfolder.write_manifest(folder, ROBUSTNESS)
    return folder


# ------------------------------------------------------------------------------------------ through the CLI


def test_a_project_folder_with_its_own_report_md_is_left_byte_identical(
    fake: Recorder,  # noqa: F811
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    project = _project(tmp_path / "project")
    before = tree_hashes(project)
    assert run_cli("reproduce", "--model", "m", "--out", str(project), "-q") == 2
    err = "\n".join(error_lines(capsys.readouterr().err))
    assert f"--out {project}" in err
    for foreign in ("report.md", "notes.txt", "data/"):
        assert foreign in err
    assert "fix: give a new or empty folder" in err and "--out NEW_FOLDER" in err
    assert tree_hashes(project) == before and sorted(p.name for p in tmp_path.iterdir()) == ["project"]
    assert fake.loads == []  # refused before any weights load


def test_an_earlier_run_is_replaced_whole_and_its_manifest_covers_every_file(fake: Recorder, tmp_path: Path) -> None:  # noqa: F811
    out = tmp_path / "o"
    assert run_cli("reproduce", "--model", "m", "--out", str(out), "-q") == 0
    manifest = json.loads((out / FILES_MANIFEST).read_text())
    on_disk = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()} - {FILES_MANIFEST}
    assert manifest["kind"] == RUN and set(manifest["files"]) == on_disk
    assert {"report.md", "run.json", "verdicts.json"} <= on_disk
    assert runfolder.foreign_entries(out) == []
    assert run_cli("reproduce", "--model", "m", "--out", str(out), "-q") == 0  # an earlier run: replaced


def test_an_earlier_run_with_a_users_file_added_is_refused(
    fake: Recorder,  # noqa: F811
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "o"
    assert run_cli("reproduce", "--model", "m", "--out", str(out), "-q") == 0
    (out / "notes.txt").write_text("mine\n")
    (out / "figures" / "annotated.png").write_bytes(b"mine")
    before = tree_hashes(out)
    assert run_cli("reproduce", "--model", "m", "--out", str(out), "-q") == 2
    err = "\n".join(error_lines(capsys.readouterr().err))
    assert "notes.txt" in err and "figures/annotated.png" in err and "did not write" in err
    assert tree_hashes(out) == before


def test_an_earlier_run_with_a_changed_file_is_refused(
    fake: Recorder,  # noqa: F811
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "o"
    assert run_cli("reproduce", "--model", "m", "--out", str(out), "-q") == 0
    with (out / "report.md").open("a") as fh:
        fh.write("\nMy notes on these verdicts.\n")
    before = tree_hashes(out)
    assert run_cli("reproduce", "--model", "m", "--out", str(out), "-q") == 2
    assert "report.md (changed since the run wrote it)" in capsys.readouterr().err
    assert tree_hashes(out) == before


def test_a_folder_without_a_manifest_is_refused_even_with_every_run_file(
    fake: Recorder,  # noqa: F811
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "o"
    assert run_cli("reproduce", "--model", "m", "--out", str(out), "-q") == 0
    (out / FILES_MANIFEST).unlink()  # e.g. a run of an older layerclaims, or a copy made with `cp *`
    before = tree_hashes(out)
    assert run_cli("reproduce", "--model", "m", "--out", str(out), "-q") == 2
    err = capsys.readouterr().err
    assert f"has no {FILES_MANIFEST}" in err and "older layerclaims" in err
    assert tree_hashes(out) == before


def test_out_inside_a_run_folder_is_refused(fake: Recorder, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    good = tmp_path / "good"
    assert run_cli("reproduce", "--model", "m", "--out", str(good), "-q") == 0
    before = tree_hashes(good)
    for inside in (good / "sub", good / "figures" / "deeper", good / "robustness"):
        assert run_cli("reproduce", "--model", "m", "--out", str(inside), "-q") == 2
        err = capsys.readouterr().err
        assert f"is inside {good}, a run folder" in err and "fix: give a folder outside it" in err
        assert not inside.exists()
    assert tree_hashes(good) == before


def test_out_above_a_run_folder_is_refused(fake: Recorder, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    parent = tmp_path / "parent"
    assert run_cli("reproduce", "--model", "m", "--out", str(parent / "x"), "-q") == 0
    before = tree_hashes(parent)
    assert run_cli("reproduce", "--model", "m", "--out", str(parent), "-q") == 2
    err = capsys.readouterr().err
    assert f"holds folder(s) layerclaims wrote ({parent / 'x'})" in err and "would delete them" in err
    assert tree_hashes(parent) == before


def test_a_run_folder_with_its_robustness_folder_is_replaced_and_keeps_it(fake: Recorder, tmp_path: Path) -> None:  # noqa: F811
    """The README's layout: `robustness --out RUN/robustness`, then `reproduce` into RUN keeps it."""
    out = tmp_path / "o"
    assert run_cli("reproduce", "--model", "m", "--out", str(out), "-q") == 0
    rob = out / "robustness"
    runfolder.check_out_folder(rob, kind=ROBUSTNESS)  # the one nested --out allowed
    _robustness_folder(rob)
    assert runfolder.foreign_entries(out) == []  # the run's manifest leaves robustness/ to its own
    kept = tree_hashes(rob)
    assert run_cli("reproduce", "--model", "m", "--out", str(out), "-q") == 0
    assert tree_hashes(rob) == kept and runfolder.foreign_entries(out) == []
    runfolder.check_out_folder(rob, kind=ROBUSTNESS)  # and a later robustness run may replace it


def test_a_users_file_in_the_robustness_folder_is_refused(
    fake: Recorder,  # noqa: F811
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "o"
    assert run_cli("reproduce", "--model", "m", "--out", str(out), "-q") == 0
    rob = _robustness_folder(out / "robustness")
    (rob / "my-plot.py").write_text("print(1)\n")
    before = tree_hashes(out)
    assert run_cli("reproduce", "--model", "m", "--out", str(out), "-q") == 2
    assert "robustness/my-plot.py" in capsys.readouterr().err
    assert tree_hashes(out) == before
    with pytest.raises(UsageError, match=r"my-plot\.py"):
        runfolder.check_out_folder(rob, kind=ROBUSTNESS)


def test_a_robustness_folder_is_not_a_run_folder_and_a_run_folder_not_a_robustness_folder(tmp_path: Path) -> None:
    rob = _robustness_folder(tmp_path / "rob")
    with pytest.raises(UsageError, match="is a robustness folder layerclaims wrote, not a run folder"):
        runfolder.check_out_folder(rob)
    run = tmp_path / "run"
    run.mkdir()
    (run / "report.md").write_text("x")
    runfolder.write_manifest(run, RUN)
    with pytest.raises(UsageError, match="is a run folder layerclaims wrote, not a robustness folder"):
        runfolder.check_out_folder(run, kind=ROBUSTNESS)
    with pytest.raises(UsageError, match="inside"):  # robustness --out elsewhere inside a run: refused
        runfolder.check_out_folder(run / "other", kind=ROBUSTNESS)
    with pytest.raises(UsageError, match="inside"):  # nothing goes inside a robustness folder
        runfolder.check_out_folder(rob / "robustness", kind=ROBUSTNESS)


def test_a_manifest_that_is_not_ours_counts_as_none(tmp_path: Path) -> None:
    folder = tmp_path / "f"
    folder.mkdir()
    (folder / "report.md").write_text("x")
    for text in ("not json", json.dumps({"files": {"report.md": "0" * 64}}), json.dumps([1, 2])):
        (folder / FILES_MANIFEST).write_text(text)
        assert runfolder.read_files_manifest(folder) is None
        assert set(runfolder.foreign_entries(folder)) == {"report.md", FILES_MANIFEST}
        with pytest.raises(UsageError, match="not a folder layerclaims wrote"):
            runfolder.check_out_folder(folder)


# ------------------------------------------------------------------------------------------ under the lock


def test_a_file_added_while_the_run_writes_stops_the_swap(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "verdicts.json").write_text("old")
    runfolder.write_manifest(out, RUN)
    with pytest.raises(UsageError, match=r"changed while the run was writing: it now holds notes\.txt"):
        with RunFolder(out) as folder:
            (folder.stage / "verdicts.json").write_text("new")
            (out / "notes.txt").write_text("written during the run")  # after the check before the run
            folder.commit()
    assert (out / "notes.txt").read_text() == "written during the run" and (out / "verdicts.json").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # stage gone, no lock left


def test_the_repair_after_a_killed_run_touches_only_what_this_tool_made(tmp_path: Path) -> None:
    out = tmp_path / "out"
    users_stage = tmp_path / "out.staging-2024"  # a user's folders whose names look like ours
    users_old = tmp_path / "out.old-7"
    for folder in (users_stage, users_old):
        folder.mkdir()
        (folder / "thesis.tex").write_text("mine")
    run_aside = tmp_path / "out.old-8"  # an earlier run, renamed aside by a swap that was killed
    run_aside.mkdir()
    (run_aside / "verdicts.json").write_text("old")
    runfolder.write_manifest(run_aside, RUN)
    with RunFolder(out) as folder:
        assert (out / "verdicts.json").read_text() == "old"  # the run renamed back
        assert (folder.stage / runfolder.STAGE_MARK).is_file()
    for folder in (users_stage, users_old):
        assert (folder / "thesis.tex").read_text() == "mine"


def test_a_committed_run_has_no_stage_mark_and_a_manifest(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with RunFolder(out) as folder:
        (folder.stage / "figures").mkdir()
        (folder.stage / "figures" / "a.png").write_bytes(b"png")
        (folder.stage / "report.md").write_text("r")
        folder.commit()
    assert not (out / runfolder.STAGE_MARK).exists()
    assert set(json.loads((out / FILES_MANIFEST).read_text())["files"]) == {"figures/a.png", "report.md"}
    assert runfolder.manifest_kind(out) == runfolder.RUN and runfolder.foreign_entries(out) == []


def test_a_real_robustness_run_into_a_run_folder_keeps_that_folder_replaceable(
    tmp_path: Path, shared_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`layerclaims robustness --out RUN/robustness` writes its own manifest; RUN stays exactly an earlier run, and a
    second robustness run may replace RUN/robustness (the README's layout, end to end on tiny-gpt2)."""
    import dataclasses

    from layerclaims import robustness
    from layerclaims import study as registry

    qk = registry.get("qk")
    assert qk.robustness is not None
    light = dataclasses.replace(qk, robustness=dataclasses.replace(qk.robustness, grid={"n_boot": 20, "n_perm": 50}))
    monkeypatch.setitem(registry.registry(), "qk", light)
    run = tmp_path / "run"
    with RunFolder(run) as folder:
        (folder.stage / "report.md").write_text("# a run\n")
        folder.commit()
    rob = run / "robustness"
    robustness.run("tiny-gpt2", rob, study_names=["qk"], only=["rsa"], executor="inline")
    assert runfolder.manifest_kind(rob) == ROBUSTNESS and runfolder.foreign_entries(rob, ROBUSTNESS) == []
    assert runfolder.foreign_entries(run) == []  # a later reproduce into RUN may replace it, keeping robustness/
    runfolder.check_out_folder(rob, kind=ROBUSTNESS)  # a second robustness run may replace it
    assert sorted(p.name for p in run.iterdir()) == [FILES_MANIFEST, "report.md", "robustness"]
    with pytest.raises(UsageError, match="inside"):  # but not into any other folder inside the run
        robustness.run("tiny-gpt2", run / "rob2", study_names=["qk"], only=["rsa"], executor="inline")


def test_a_robustness_folder_made_first_is_kept_by_the_first_run_into_its_parent(
    fake: Recorder,  # noqa: F811
    tmp_path: Path,
) -> None:
    """`robustness --out out/m/robustness` before any `reproduce --out out/m`: the folder holding only it is a place
    a run may write, and the run keeps it."""
    out = tmp_path / "o"
    rob = out / "robustness"
    runfolder.check_out_folder(rob, kind=ROBUSTNESS)  # nothing above it was written by layerclaims
    _robustness_folder(rob)
    kept = tree_hashes(rob)
    assert run_cli("reproduce", "--model", "m", "--out", str(out), "-q") == 0
    assert (
        tree_hashes(rob) == kept
        and runfolder.manifest_kind(out) == runfolder.RUN
        and runfolder.foreign_entries(out) == []
    )


def test_an_empty_folder_the_run_made_is_its_own(tmp_path: Path) -> None:
    """A study whose figures failed leaves an empty figures/ behind: it is the run's, not a foreign folder."""
    out = tmp_path / "out"
    with RunFolder(out) as folder:
        (folder.stage / "figures").mkdir()
        (folder.stage / "report.md").write_text("r")
        folder.commit()
    assert runfolder.foreign_entries(out) == []
    (out / "mine").mkdir()  # an empty folder the run did not make
    assert runfolder.foreign_entries(out) == ["mine/"]
