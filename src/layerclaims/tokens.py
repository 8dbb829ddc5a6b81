"""Incremental tokenisation: memory bounded by the work, not the corpus. A study that reads the first 250 marks of a
50 MB book tokenises the text chunk by chunk and stops once it has what it needs.

Chunking equals whole-text tokenisation (:func:`iter_token_chunks`). A byte-level BPE tokenizer first splits the
text into pieces with a regular expression (Hugging Face ``tokenizers``' words, ``Encoding.word_ids``), then merges
bytes within each piece. A piece's extent depends on the text up to one character past it (the ``\\s+(?!\\S)``
look-ahead) and the expression has no look-behind, so a chunk tokenised alone gives the whole text's tokens for
every piece that ends ``margin`` characters (64; one would do) before the chunk's end. Each chunk keeps those
tokens, and the next restarts at the first dropped piece (a boundary where the previous token ends exactly where
the next starts). A piece longer than the chunk grows the chunk. Tokenizers without ``word_ids`` (slow ones) get
the whole text in one call. Tested on pg219 with the GPT-2 and SmolLM2 tokenizers and on adversarial texts.
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
    """Consecutive tokens of the stream: ``ids`` (int64) and ``ends`` (int64: the character offset in the whole text
    where each token ends, -1 where the tokenizer gives no offsets)."""

    ids: np.ndarray
    ends: np.ndarray


def encode_plain(tokenizer: Any, text: str) -> list[int]:
    """``tokenizer.encode(text)`` without special tokens, and without the "longer than the maximum length" warning
    where the tokenizer takes ``verbose`` (the caller cuts the ids into windows)."""
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
    tokenizer: Any, text_or_pieces: str | Iterable[str], *, chunk_chars: int = CHUNK_CHARS, margin: int = MARGIN_CHARS
) -> Iterator[TokenChunk]:
    """Tokenise a text (a string or consecutive pieces of it) about ``chunk_chars`` characters at a time; the chunks'
    ids concatenated equal ``tokenizer.encode(whole_text, add_special_tokens=False)``. Stop iterating whenever enough
    has been seen: the rest of the text is never read."""
    if chunk_chars < 2 * margin + 1 or margin < 1:
        raise UsageError(f"chunk_chars={chunk_chars}, margin={margin}: need margin >= 1 and chunk_chars > 2 * margin")
    backend: Any = getattr(tokenizer, "backend_tokenizer", None)  # a fast tokenizer's: its encodings carry word ids
    if not hasattr(backend, "encode"):
        text = "".join(_as_pieces(text_or_pieces, CHUNK_CHARS))
        ids = np.asarray(encode_plain(tokenizer, text), dtype=np.int64)
        yield TokenChunk(ids, np.full(ids.size, -1, dtype=np.int64))
        return
    pieces = _as_pieces(text_or_pieces, max(1, chunk_chars // 4))
    buf = ""
    base = 0  # character offset of buf[0] in the whole text
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
            yield TokenChunk(ids, offsets[:, 1] + base)
            return
        cut = _safe_cut(offsets, enc.word_ids, len(buf) - margin)
        if cut == 0:  # one piece spans the whole chunk: read more
            want = 2 * len(buf)
            continue
        want = chunk_chars
        cut_char = int(offsets[cut, 0])
        yield TokenChunk(ids[:cut], offsets[:cut, 1] + base)
        base += cut_char
        buf = buf[cut_char:]


def _safe_cut(offsets: np.ndarray, word_ids: list[int | None], limit: int) -> int:
    """The index of the first token to drop: the first token of a piece (word) at or after the first token that
    ends past ``limit``, where the previous token ends exactly where it starts (contiguous offsets: nothing trimmed
    or shared between them). 0 when no such boundary exists."""
    late = np.flatnonzero(offsets[:, 1] > limit)
    # when every token ends before the limit, the last piece is still kept for the next chunk
    c = int(late[0]) if late.size else offsets.shape[0] - 1
    while c > 0:
        w = word_ids[c]
        if w is not None and word_ids[c - 1] != w and offsets[c - 1, 1] == offsets[c, 0]:
            return c
        c -= 1
    return 0
