"""Every fix line, followed, works: each test makes a bad input, takes the fix the check gives, does what it says
(its shell step, then its command, literally) and sees the command pass the check before the weights load (and, for
the number of marks, the study's own selection after them)."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from layerclaims import cli, data, models, validate
from layerclaims import study as registry
from layerclaims.errors import EncodingError, LayerclaimsError
from layerclaims.studies.punctuation.scan import count_usable, scan_marks
from layerclaims.validate import STUDY_OPTIONS, Command, RunRequest

COMMAND = re.compile(r"`(layerclaims [^`]+)`")
CONVERT = re.compile(r"convert it: (iconv [^;]+);")
needs_iconv = pytest.mark.skipif(shutil.which("iconv") is None, reason="no iconv on this system")


@pytest.fixture(autouse=True)
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shared_data: Path) -> Path:
    """Each test in its own folder (a fix's relative paths and NEW_FOLDER land there), with the shared data."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def check(argv: list[str]) -> None:
    """What `layerclaims ARGV` (a reproduce command) checks before any weights load, as the CLI and the pipeline
    call it: the arguments parsed, then :func:`layerclaims.validate.check_run`."""
    args = cli.build_parser().parse_args(argv)
    names = registry.names() if args.study == "all" else (args.study,)
    given = {k: getattr(args, k) for k in STUDY_OPTIONS}
    out = Path(args.out) if args.out else None
    request = RunRequest(args.model, out, names, args.device, args.dtype, args.device_map, given, tuple(args.set))
    validate.check_run(request, Command(tuple(argv)))


def refused(argv: list[str]) -> LayerclaimsError:
    with pytest.raises(LayerclaimsError) as info:
        check(argv)
    assert info.value.fix, info.value.message
    return info.value


def follow(error: LayerclaimsError, which: int = 0) -> list[str]:
    """Do what the fix says: its shell step (an ``iconv`` conversion), then return its ``which``-th command's argv."""
    fix = error.fix or ""
    step = CONVERT.search(fix)
    if step:
        subprocess.run(["bash", "-c", step.group(1)], check=True, timeout=60)
    commands = COMMAND.findall(fix)
    assert len(commands) > which, f"no command to follow in: {fix}"
    argv = shlex.split(commands[which])
    assert argv[0] == "layerclaims"
    return argv[1:]


BASE = ["reproduce", "--model", "tiny-gpt2", "--out", "out"]


# ------------------------------------------------------------------------------------------------ encodings


def _book(marks: int) -> str:
    """``marks`` sentences of 40 words, a comma in each: every mark far from the text's start and end."""
    words = " ".join(["word"] * 20)
    return f"{words} " * 25 + "".join(f"{words}, caf\xe9 {words}. " for _ in range(marks)) + f"{words} " * 5


@needs_iconv
@pytest.mark.parametrize("encoding", ["latin-1", "utf-16"])
@pytest.mark.parametrize("option", ["--corpus", "--set"])
def test_a_corpus_in_another_encoding_converted_and_rerun_as_the_fix_says(
    in_tmp: Path, encoding: str, option: str
) -> None:
    (in_tmp / "book.txt").write_bytes(_book(40).encode(encoding))
    raw = (in_tmp / "book.txt").read_bytes()
    given = ["--corpus", "book.txt"] if option == "--corpus" else ["--set", "punctuation.corpus=book.txt"]
    argv = [*BASE, "--study", "punctuation", *given, "--n", "30"]
    error = refused(argv)
    assert isinstance(error, EncodingError) and "book.txt" in error.message
    again = follow(error)
    assert (in_tmp / "book.utf8.txt").is_file() and (in_tmp / "book.txt").read_bytes() == raw  # converted, kept
    assert (
        ("book.utf8.txt" in again[again.index("--corpus") + 1])
        if option == "--corpus"
        else ("punctuation.corpus=book.utf8.txt" in again)
    )
    check(again)  # the re-run names the converted file, and passes
    check(follow(refused(argv), which=1))  # the other way out: study B alone (its command drops the corpus)


def test_the_conversion_never_overwrites_a_file(in_tmp: Path) -> None:
    (in_tmp / "book.txt").write_bytes(_book(5).encode("latin-1"))
    (in_tmp / "book.utf8.txt").write_text("the user's own file")
    error = refused([*BASE, "--study", "punctuation", "--corpus", "book.txt"])
    assert "> book.utf8-2.txt" in (error.fix or "") and "--corpus book.utf8-2.txt" in (error.fix or "")


# ------------------------------------------------------------------------------------------------ marks


def _usable_by_the_study(corpus: str, n: int) -> bool:
    """The oracle: does the study's own selection (with the model's tokenizer) find ``n`` marks of each kind?"""
    text = data.load_study_text(corpus, line_endings="crlf")
    try:
        scan_marks(data.gpt2_tokenizer(), text.pieces, n=n)  # tiny-gpt2's tokenizer (models._tiny_gpt2)
    except LayerclaimsError:
        return False
    return True


def test_too_few_usable_marks_the_suggested_n_is_one_the_study_can_select(in_tmp: Path) -> None:
    """The issue's case: a corpus whose mark characters promise more than the study can use (marks before token
    400 or without a full window do not count): the fix's --n is the study's own count, and it works."""
    words = " ".join(["word"] * 45)
    (in_tmp / "commas.txt").write_text("".join(f"{words}, {words}. " for _ in range(10)))
    assert data.check_text_file("commas.txt", count=(",", ".")) == {",": 10, ".": 10}  # what the old check promised
    argv = [*BASE, "--study", "punctuation", "--corpus", "commas.txt", "--set", "punctuation.n_boot=0"]
    error = refused(argv)
    assert "usable" in error.message and "counted by study punctuation's own selection rule" in error.message
    again = follow(error)
    n = int(again[again.index("--n") + 1])
    assert 3 <= n < 10 and "--set" in again  # fewer than the characters; the user's other options kept
    check(again)
    assert _usable_by_the_study("commas.txt", n) and not _usable_by_the_study("commas.txt", n + 1)


def test_a_corpus_too_short_for_study_a_gets_study_b_alone(in_tmp: Path) -> None:
    (in_tmp / "short.txt").write_text("One, two. " * 30)
    error = refused([*BASE, "--corpus", "short.txt", "--n", "5"])
    assert "--n" not in (COMMAND.findall(error.fix or "") or [""])[0]  # no --n to suggest below the minimum
    again = follow(error)
    assert again[again.index("--study") + 1] == "qk" and "--corpus" not in again and "--n" not in again
    check(again)


def test_n_set_through_set_is_fixed_through_set(in_tmp: Path) -> None:
    (in_tmp / "book.txt").write_text(_book(40).replace("\xe9", "e"))
    error = refused([*BASE, "--study", "punctuation", "--corpus", "book.txt", "--set", "punctuation.n=60"])
    again = follow(error)
    assert any(a.startswith("punctuation.n=") for a in again) and "--n" not in again
    check(again)


@pytest.mark.slow
def test_the_suggested_n_runs_the_study_after_the_weights_load(in_tmp: Path) -> None:
    """End to end on tiny-gpt2: the command the fix gives runs study A to its verdicts (exit 0)."""
    words = " ".join(["word"] * 45)
    (in_tmp / "commas.txt").write_text("".join(f"{words}, {words}. " for _ in range(10)))
    fast = [f"--set=punctuation.{k}=0" for k in ("n_boot", "n_boot_clusters", "n_perm", "cluster_n_boot")]
    argv = [*BASE, "--study", "punctuation", "--corpus", "commas.txt", *fast, "-q"]
    again = follow(refused(argv))
    assert cli.main(again) == 0
    assert (in_tmp / "out" / "report.md").is_file()


# ------------------------------------------------------------------------------------------------ every other fix


def _project(folder: Path) -> str:
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    return str(folder)


CASES: dict[str, list[str]] = {
    "n below its minimum": ["--study", "punctuation", "--n", "2"],
    "n below its minimum through --set": ["--study", "punctuation", "--set", "punctuation.n=2"],
    "a layer out of range": ["--study", "punctuation", "--set", "punctuation.layers=[9]"],
    "a setting of the wrong type": ["--study", "qk", "--set", 'qk.n_boot="many"'],
    "a setting the study lacks": ["--study", "qk", "--set", "qk.bins=3"],
    "detail layers outside the layers": [
        "--study",
        "punctuation",
        "--set",
        "punctuation.layers=[1,2]",
        "--set",
        "punctuation.detail_layers=[3]",
    ],
    "a misspelt model": ["--model", "tiny-gtp2", "--study", "qk"],
    "a binary corpus": ["--study", "punctuation", "--corpus", "binary.bin"],
    "an empty corpus": ["--study", "punctuation", "--corpus", "empty.txt"],
    "a folder as the corpus": ["--study", "punctuation", "--set", "punctuation.corpus=folder"],
    "a corpus that does not exist": ["--study", "punctuation", "--corpus", "nowhere.txt"],
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_fix_command_passes_the_check(in_tmp: Path, case: str) -> None:
    (in_tmp / "binary.bin").write_bytes(bytes(range(256)) * 8)
    (in_tmp / "empty.txt").write_text(" \n")
    (in_tmp / "folder").mkdir()
    argv = [*BASE, *CASES[case]]
    error = refused(argv)
    again = follow(error)
    assert again != argv
    check(again)


@pytest.mark.skipif(models.torch.cuda.is_available(), reason="a machine with CUDA accepts --device cuda")
def test_the_device_fix_passes_the_check() -> None:
    check(follow(refused([*BASE, "--study", "qk", "--device", "cuda"])))


@pytest.mark.parametrize("what", ["a file", "a folder of the user's files"])
def test_the_out_fix_passes_the_check(in_tmp: Path, what: str) -> None:
    if what == "a file":
        (in_tmp / "taken").write_text("x")
        out = "taken"
    else:
        out = _project(in_tmp / "project")
    error = refused(["reproduce", "--model", "tiny-gpt2", "--study", "qk", "--out", out])
    again = follow(error)
    check(again)  # --out NEW_FOLDER, literally: a new folder
    assert again[again.index("--out") + 1] == "NEW_FOLDER"


def test_a_missing_registry_corpus_is_found_once_the_fix_is_followed(
    in_tmp: Path, monkeypatch: pytest.MonkeyPatch, shared_data: Path
) -> None:
    monkeypatch.delenv(data.DATA_ENV)
    monkeypatch.setenv(data.CACHE_ENV, str(in_tmp / "empty-cache"))
    monkeypatch.setenv("LAYERCLAIMS_GUTENBERG_URL", "http://127.0.0.1:9")  # no network: refused at once
    argv = [*BASE, "--study", "punctuation"]
    error = refused(argv)
    assert f"set {data.DATA_ENV} to a folder holding corpora/" in (error.fix or "")
    monkeypatch.setenv(data.DATA_ENV, str(shared_data))  # what the fix says
    check(argv)
    assert os.environ[data.DATA_ENV] == str(shared_data)


def test_count_usable_agrees_with_the_selection_on_the_book() -> None:
    """The check's count and the study's selection are one rule: on the default book, a count of n is a selection
    of n (and the count stops there: it never reads the whole book for the default)."""
    tok = models.load_tokenizer("tiny-gpt2")
    text = data.load_study_text("heart-of-darkness", line_endings="crlf")
    counts = count_usable(tok, text.pieces, n=250)
    assert counts == {"internal": 250, "terminal": 250}
    scan = scan_marks(tok, text.pieces, n=250)
    assert {k: int(s.selected.size) for k, s in scan.kinds.items()} == counts


def test_without_a_tokenizer_before_the_load_the_count_is_made_after_it_before_any_study(
    in_tmp: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A model whose tokenizer comes only with its weights (SmolLM2 before its first conversion, a hub id not yet
    cached): the character count passes, then the study's count with the loaded tokenizer stops the run before any
    study runs, with an --n that works (not the one just refused)."""
    words = " ".join(["word"] * 45)
    (in_tmp / "commas.txt").write_text("".join(f"{words}, {words}. " for _ in range(10)))
    monkeypatch.setattr(models, "load_tokenizer", lambda name: None)
    argv = [*BASE, "--study", "punctuation", "--corpus", "commas.txt", "--n", "10"]
    check(argv)  # the characters promise 10
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "punctuation: run" not in err  # stopped before the study ran
    fix = next(line for line in err.splitlines() if line.startswith("fix: "))
    again = shlex.split(COMMAND.findall(fix)[0])[1:]
    n = int(again[again.index("--n") + 1])
    assert n < 10 and _usable_by_the_study("commas.txt", n) and not _usable_by_the_study("commas.txt", n + 1)
    assert not (in_tmp / "out").exists()
