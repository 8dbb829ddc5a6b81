"""Checks before any weights load: the corrected command, setting types and ranges, corpora, model configs."""

from __future__ import annotations

import logging
import os
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import pytest

from layerclaims import data, models, validate
from layerclaims.errors import DataNotFoundError, LayerclaimsError, ModelNotFoundError, UsageError
from layerclaims.validate import Command, RunRequest, check_run, type_problem

CMD = Command(
    (
        "reproduce",
        "--model",
        "tiny-gpt2",
        "--n",
        "1",
        "--set",
        "punctuation.n_boot=50",
        "--set=qk.blocks=[9]",
        "--out",
        "out/x",
        "--seed",
        "-3",
        "-q",
    )
)


def test_command_changes_one_option_and_keeps_the_others() -> None:
    assert str(CMD.with_option("--n", "250")).startswith("layerclaims reproduce --model tiny-gpt2 --n 250 --set")
    assert "--seed 0 -q" in str(CMD.with_option("--seed", "0"))  # a negative value is the option's value
    assert "--seed" not in str(CMD.without("--seed")) and str(CMD.without("--seed")).endswith("--out out/x -q")
    no_blocks = CMD.without("--set qk.blocks")
    assert "qk.blocks" not in str(no_blocks) and "--set punctuation.n_boot=50" in str(no_blocks)
    assert "--set 'qk.blocks=[1]'" in str(CMD.with_option("--set qk.blocks", "[1]"))
    assert str(CMD.with_option("--study", "qk")).endswith("-q --study qk")  # absent: appended
    assert str(Command(("diff", "a b", "c"))) == "layerclaims diff 'a b' c"  # shell-quoted


def test_a_request_from_the_python_api_names_every_option_in_its_command() -> None:
    request = RunRequest(
        "tiny-gpt2",
        out=Path("o"),
        study_names=("qk",),
        dtype="bfloat16",
        options={"n": 30, "corpus": None},
        overrides=("qk.n_boot=5",),
    )
    assert (
        str(request.command())
        == "layerclaims reproduce --model tiny-gpt2 --out o --study qk --dtype bfloat16 --n 30 --set qk.n_boot=5"
    )
    assert str(RunRequest("tiny-gpt2").command()) == "layerclaims reproduce --model tiny-gpt2"  # defaults: unsaid


@pytest.mark.parametrize(
    ("value", "hint", "problem"),
    [
        (3, int, None),
        (True, int, "a whole number"),
        (2.5, int, "a whole number"),
        (2, float, None),
        ("x", float, "a number"),
        ((1, 2), tuple[int, ...] | None, None),
        ((1, "a"), tuple[int, ...] | None, "a list of whole numbers or null"),
        (None, tuple[int, ...] | None, None),
        (3, int | tuple[int, ...] | None, None),
        ("first", Literal["first", "random"], None),
        ("last", Literal["first", "random"], "one of 'first', 'random'"),
        (1, bool, "true or false"),
        (object(), Any, None),
    ],
)
def test_type_problem(value: Any, hint: Any, problem: str | None) -> None:
    assert type_problem(value, hint) == problem


def _check(*overrides: str, n: int | None = None, study: str = "punctuation") -> dict[str, Any]:
    return validate.check_study_settings(study, {"n": n}, list(overrides), n_blocks=4, model="tiny-gpt2", command=CMD)


def test_settings_are_checked_against_the_models_depth() -> None:
    with pytest.raises(UsageError) as info:
        _check("punctuation.detail_layers=[10000]")
    assert "layer 10000 is out of range: hidden-state layers are 0..4 on tiny-gpt2" in info.value.message
    assert info.value.fix is not None and "punctuation.detail_layers" not in info.value.fix
    assert "--set punctuation.n_boot=50" in info.value.fix  # the other options are kept
    with pytest.raises(UsageError, match="block 4 is out of range: blocks are 0..3"):
        _check("qk.blocks=[0, 4]", study="qk")
    with pytest.raises(UsageError, match="block 9 is out of range"):
        _check("qk.blocks=9", study="qk")
    with pytest.raises(UsageError, match="no layers selected"):
        _check("punctuation.layers=[]")
    assert _check("punctuation.layers=[0, 4]", "punctuation.detail_layers=[4]") == {
        "layers": (0, 4),
        "detail_layers": (4,),
    }
    with pytest.raises(UsageError, match=r"detail layers \[2\] are not among the layers analysed"):
        _check("punctuation.layers=[1]", "punctuation.detail_layers=[2]")


@pytest.mark.parametrize(
    ("overrides", "n", "message"),
    [
        ((), 1, "--n 1: punctuation setting 'n' must be at least 3"),
        (("punctuation.bins=1",), None, "'bins' must be at least 2"),
        (("punctuation.bins=2.5",), None, "'bins' must be a whole number"),
        (("punctuation.batch_size=0",), None, "'batch_size' must be at least 1"),
        (("punctuation.n_boot=-5",), None, "'n_boot' must be at least 0"),
        (('punctuation.selection="best"',), None, "must be one of 'first', 'random'"),
        (('punctuation.z_threshold="high"',), None, "'z_threshold' must be a number"),
        (("punctuation.nope=1",), None, "has no setting 'nope'"),
    ],
)
def test_bad_settings_are_refused_with_a_fix(overrides: tuple[str, ...], n: int | None, message: str) -> None:
    with pytest.raises(UsageError) as info:
        _check(*overrides, n=n)
    assert message in info.value.message
    assert info.value.fix and "layerclaims reproduce --model tiny-gpt2" in info.value.fix


def test_the_configs_own_checks_run_too() -> None:
    with pytest.raises(UsageError, match="labels are needed with a custom word list"):
        _check('qk.words=["a", "b", "c", "d"]', study="qk")
    with pytest.raises(UsageError, match="must contain '{w}' exactly once"):
        _check('qk.template="no slot"', study="qk")


# --------------------------------------------------------------------------------------------------- corpora


def test_corpus_files_that_are_not_text(tmp_path: Path) -> None:
    cases = {
        "latin1.txt": ("caf\xe9, na\xefve.".encode("latin-1"), "reads as WINDOWS-1252", "iconv -f WINDOWS-1252"),
        "utf16.txt": ("text, more.".encode("utf-16"), "is UTF-16 text", "iconv -f UTF-16"),
        "binary.bin": (bytes(range(256)) * 4, "is not a text file", "plain-text file"),
        "empty.txt": (b"  \n", "is empty", "holds the punctuation"),
    }
    for name, (raw, message, fix) in cases.items():
        path = tmp_path / name
        path.write_bytes(raw)
        with pytest.raises(UsageError) as info:
            data.check_text_file(path)
        assert message in info.value.message, name
        assert fix in (info.value.fix or ""), name
        assert "delete" not in str(info.value)  # the user's file is never to be deleted
    with pytest.raises(UsageError, match="is a folder"):
        data.check_text_file(tmp_path)
    with pytest.raises(UsageError, match="does not exist"):
        data.check_text_file(tmp_path / "missing.txt")
    ok = tmp_path / "ok.txt"
    ok.write_text("fine, text.", encoding="utf-8")
    data.check_text_file(ok)


def test_n_is_checked_against_the_marks_the_corpus_can_hold(tmp_path: Path) -> None:
    book = tmp_path / "book.txt"
    book.write_text("one, two, three. four, five. " * 4)  # 12 commas, 8 periods
    marks = {"original": {"internal": (",",), "terminal": (".",)}}
    kw: dict[str, Any] = dict(mark_sets=marks, marks="original", origin="--corpus", command=CMD)
    with pytest.raises(UsageError) as info:
        validate.check_corpus(str(book), n=9, **kw)
    assert (
        info.value.message
        == f"--n 9: {book} holds at most 8 terminal marks (.), fewer than the 9 of each kind asked for"
    )
    assert "--n 8 --set punctuation.n_boot=50" in (info.value.fix or "")  # the fewer kind bounds N; options kept
    assert validate.check_corpus(str(book), n=8, **kw) == {"internal": 12, "terminal": 8}
    book.write_text("no marks at all ")
    with pytest.raises(UsageError) as info:
        validate.check_corpus(str(book), n=3, **kw)
    assert "give a longer text" in (info.value.fix or "")  # not "use n <= 0"


# --------------------------------------------------------------------------------------------------- models


def test_model_shape_without_weights(tmp_path: Path) -> None:
    assert (models.model_shape("tiny-gpt2").n_blocks, models.model_shape("tiny-llama").d_model) == (4, 64)
    folder = tmp_path / "m"
    folder.mkdir()
    with pytest.raises(DataNotFoundError, match="no config.json"):
        models.model_shape(str(folder))
    (folder / "config.json").write_text('{"model_type": "gpt2", "n_layer": 24, "n_embd": 1024}')
    shape = models.model_shape(str(folder))
    assert (shape.n_blocks, shape.d_model, shape.model_type) == (24, 1024, "gpt2")
    (folder / "config.json").write_text('{"model_type": "mamba", "num_hidden_layers": 2, "hidden_size": 8}')
    with pytest.raises(ModelNotFoundError, match="'mamba' has no entry"):
        models.model_shape(str(folder))
    with pytest.raises(ModelNotFoundError) as info:
        models.model_shape("no-such-model")
    assert "tiny-gpt2" in (info.value.fix or "")


def test_check_run_refuses_before_loading(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_loading(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("weights were loaded")

    monkeypatch.setattr(models, "load_model", no_loading)
    base = RunRequest("tiny-gpt2", out=tmp_path / "o", study_names=("qk",))
    plan = check_run(base, CMD)
    assert plan.shape.n_blocks == 4 and plan.options == {"qk": {}}
    with pytest.raises(UsageError, match="unknown dtype"):
        check_run(replace(base, dtype="float8"), CMD)
    if not models.torch.cuda.is_available():
        with pytest.raises(LayerclaimsError) as info:
            check_run(replace(base, device="cuda"), CMD)
        assert "--device cpu" in (info.value.fix or "")
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(UsageError, match="is a file, not a folder") as info:
        check_run(replace(base, out=tmp_path / "a-file"))  # without a typed command: the request's own
    assert "--out NEW_FOLDER" in (info.value.fix or "") and "--study qk" in (info.value.fix or "")
    if os.environ.get(data.DATA_ENV):  # the default corpus is in the shared data folder
        with pytest.raises(UsageError, match=r"--n 99999: heart-of-darkness holds \d+ usable \w+ marks"):
            check_run(replace(base, study_names=("punctuation",), options={"n": 99999}), CMD)


def test_float16_on_the_cpu_warns() -> None:
    with pytest.warns(UserWarning, match="float16 on the CPU is slower than float32 there .* less exact"):
        handle = models.load_model("tiny-gpt2", dtype="float16")
    assert handle.dtype == "float16"


def test_n_below_the_cluster_minimum_is_warned_about_before_loading(caplog: pytest.LogCaptureFixture) -> None:
    from layerclaims.studies.punctuation import config

    with caplog.at_level(logging.WARNING, logger="layerclaims.validate"):
        validate._warn_below_minimum(config.Config(n=config.MIN_MARKS_COUNT - 1))
        validate._warn_below_minimum(config.Config(n=config.MIN_MARKS_COUNT))
    assert len(caplog.records) == 1
    assert f"below {config.MIN_MARKS_COUNT} the cluster counts are not evaluated" in caplog.records[0].getMessage()


def test_corpus_check_reads_in_blocks_and_counts_marks(tmp_path: Path) -> None:
    block = 1 << 20
    path = tmp_path / "long.txt"
    # "é" (2 bytes in UTF-8) straddles the first 1 MB block boundary: the incremental decoder must join it
    path.write_bytes(b"a" * (block - 1) + "é, x. y,".encode())
    assert data.check_text_file(path, count=(",", ".")) == {",": 2, ".": 1}
    path.write_bytes(b"a, b. " * (block // 3) + b"\xe9 latin")  # the bad byte lies in the third block
    with pytest.raises(UsageError) as info:
        data.check_text_file(path)
    assert f"(byte {6 * (block // 3)}: b'\\xe9')" in info.value.message and "WINDOWS-1252" in info.value.message
