"""Incremental tokenisation: memory bounded by the work, not the corpus.

Why. A study that reads a few hundred positions of a long text (the first 250 marks of a 50 MB book) should not
tokenise it whole: here the text arrives in pieces, is tokenised chunk by chunk, and the caller stops reading once
it has what it needs.

Chunking that equals whole-text tokenisation (:func:`iter_token_chunks`). A byte-level BPE tokenizer first splits
the text into pieces with a regular expression (the pre-tokenizer: words, number runs, punctuation runs, whitespace
runs; Hugging Face ``tokenizers`` calls them words, ``Encoding.word_ids``), then merges bytes within each piece. A
piece's extent depends on the text up to one character past it (the ``\\s+(?!\\S)`` look-ahead), and the expression
has no look-behind, so a chunk tokenised on its own gives the whole text's tokens for every piece that ends well
before the chunk's end (``margin`` characters, 64 by default; one would do). Each chunk therefore keeps the tokens
of the pieces that end before ``len(chunk) - margin`` and the next chunk restarts at the first character of the first
piece dropped (a piece boundary, found from the fast tokenizer's offsets and word ids, where the previous token ends
exactly where the next starts). A piece longer than the chunk (a megabyte of spaces) grows the chunk. Tokenizers
without ``word_ids`` (slow, pure-Python ones) are given the whole text in one call. The equality is tested on
pg219 with the GPT-2 and SmolLM2 tokenizers and on adversarial texts (CRLF runs, long whitespace runs, no newline).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from layerclaims.errors import UsageError

CHUNK_CHARS = 1 << 16
MARGIN_CHARS = 64


@dataclass(frozen=True, eq=False)
class TokenChunk:
    """Consecutive tokens of the stream: ``ids`` (int64), ``ends`` (int64: the character offset in the whole text
    where each token ends, -1 where the tokenizer gives no offsets) and ``first`` (the index in the whole stream of
    ``ids[0]``)."""

    ids: np.ndarray
    ends: np.ndarray
    first: int


def _backend(tokenizer: Any) -> Any | None:
    """The ``tokenizers.Tokenizer`` of a fast tokenizer whose encodings carry word ids, else None."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None or not hasattr(backend, "encode"):
        return None
    return backend


def _encode_whole(tokenizer: Any, text: str) -> list[int]:
    try:
        return list(tokenizer.encode(text, add_special_tokens=False, verbose=False))
    except TypeError:
        return list(tokenizer.encode(text, add_special_tokens=False))


def _as_pieces(text_or_pieces: str | Iterable[str], size: int) -> Iterator[str]:
    if isinstance(text_or_pieces, str):
        for i in range(0, len(text_or_pieces), size):
            yield text_or_pieces[i : i + size]
    else:
        yield from text_or_pieces


def iter_token_chunks(
    tokenizer: Any,
    text_or_pieces: str | Iterable[str],
    *,
    chunk_chars: int = CHUNK_CHARS,
    margin: int = MARGIN_CHARS,
) -> Iterator[TokenChunk]:
    """Tokenise a text (a string or an iterable of consecutive pieces of it) chunk by chunk; the chunks' ids
    concatenated equal ``tokenizer.encode(whole_text, add_special_tokens=False)`` (see the module docstring).

    At most about ``chunk_chars`` characters (plus the text carried over) are tokenised at a time; stop iterating
    whenever enough has been seen, and the rest of the text is never read."""
    if chunk_chars < 2 * margin + 1 or margin < 1:
        raise UsageError(f"chunk_chars={chunk_chars}, margin={margin}: need margin >= 1 and chunk_chars > 2 * margin")
    backend = _backend(tokenizer)
    if backend is None:
        text = "".join(_as_pieces(text_or_pieces, CHUNK_CHARS))
        ids = np.asarray(_encode_whole(tokenizer, text), dtype=np.int64)
        yield TokenChunk(ids, np.full(ids.size, -1, dtype=np.int64), 0)
        return
    pieces = _as_pieces(text_or_pieces, max(1, chunk_chars // 4))
    buf = ""
    base = 0  # character offset of buf[0] in the whole text
    n_tok = 0
    want = chunk_chars
    eof = False
    while True:
        while not eof and len(buf) < want:
            nxt = next(pieces, None)
            if nxt is None:
                eof = True
            else:
                buf += nxt
        if not buf:
            return
        enc = backend.encode(buf, add_special_tokens=False)
        ids = np.asarray(enc.ids, dtype=np.int64)
        if ids.size == 0:
            if eof:
                return
            want = 2 * len(buf)
            continue
        offsets = np.asarray(enc.offsets, dtype=np.int64).reshape(-1, 2)
        if eof:
            yield TokenChunk(ids, offsets[:, 1] + base, n_tok)
            return
        cut = _safe_cut(offsets, enc.word_ids, len(buf) - margin)
        if cut == 0:  # one piece spans the whole chunk: read more
            want = 2 * len(buf)
            continue
        want = chunk_chars
        cut_char = int(offsets[cut, 0])
        yield TokenChunk(ids[:cut], offsets[:cut, 1] + base, n_tok)
        n_tok += cut
        base += cut_char
        buf = buf[cut_char:]


def _safe_cut(offsets: np.ndarray, word_ids: list[int | None], limit: int) -> int:
    """The index of the first token to drop: the first token of a piece (word) at or after the first token that
    ends past ``limit``, where the previous token ends exactly where it starts (contiguous offsets: nothing trimmed
    or shared between them). 0 when no such boundary exists."""
    late = np.flatnonzero(offsets[:, 1] > limit)
    c = int(late[0]) if late.size else offsets.shape[0]
    if c >= offsets.shape[0]:
        c = offsets.shape[0] - 1  # every token ends before the limit: still keep the last piece for the next chunk
    while c > 0:
        w = word_ids[c]
        if w is not None and word_ids[c - 1] != w and offsets[c - 1, 1] == offsets[c, 0]:
            return c
        c -= 1
    return 0
