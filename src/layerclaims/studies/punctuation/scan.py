"""Study A's streaming scan for punctuation marks over the incremental tokenisation of :mod:`layerclaims.tokens`
(no BOS/EOS).

The flag rule (the notebook's): from token index ``start`` on, a token whose decoded text, stripped, is in the
internal set (``","``; extended ``, ; :``) is internal; one in the terminal set (``"."``; extended ``. ? !``) is
terminal, except a ``"."`` whose previous decoded token ends with a digit or whose next decoded token starts with
one (``str.isdigit`` on the unstripped decoded text, as the original; no neighbour = no digit). A mark is usable
with a full window (20 tokens before, 10 after). ``selection="first"``: one pass that stops once the selection is
complete; ``"random"``: one pass counts the marks (keeping their token indices only) and a second gathers the
drawn ones' windows, stopping at the last. ``tests/oracles/marks.py`` is the same rule on the whole stream.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from layerclaims.errors import UsageError
from layerclaims.studies.punctuation.config import Config, kind_seeds
from layerclaims.studies.punctuation.marks import AFTER, BEFORE, CONTEXT, KINDS, MARK_SETS
from layerclaims.tokens import TokenChunk, iter_token_chunks

Pieces = str | Iterable[str] | Callable[[], Iterable[str]]  # a text, its pieces, or a callable returning fresh pieces
_FLAGS = np.dtype([(name, bool) for name in ("known", "internal", "terminal", "period", "ends_digit", "starts_digit")])


class _FlagTable:
    """Per-token-id flags of the notebook's rule (``table[flag][id]``, grown as needed; ``known``: the id has been
    decoded), each distinct id decoded once, lazily, as it first appears."""

    def __init__(self, tokenizer: Any, marks: str) -> None:
        if marks not in MARK_SETS:
            raise UsageError(f"unknown marks {marks!r}: use 'original' or 'extended'")
        self.tok = tokenizer
        self.sets = MARK_SETS[marks]
        size = max(
            int(getattr(tokenizer, "vocab_size", 0) or 0), len(tokenizer) if hasattr(tokenizer, "__len__") else 0
        )
        self.table = np.zeros(max(size, 1), dtype=_FLAGS)

    def update(self, ids: np.ndarray) -> None:
        if ids.size and int(ids.max()) >= self.table.size:
            grown = np.zeros(int(ids.max()) + 1, dtype=_FLAGS)
            grown[: self.table.size] = self.table
            self.table = grown
        for u in np.unique(ids[~self.table["known"][ids]]):
            d = self.tok.decode([int(u)])
            s = d.strip()
            digits = (bool(d) and d[-1].isdigit(), bool(d) and d[0].isdigit())
            self.table[u] = (True, s in self.sets["internal"], s in self.sets["terminal"], s == ".", *digits)


@dataclass(eq=False)
class KindScan:
    """What the scan found for one kind. ``found``: marks flagged (over the part scanned); ``skipped_start``/
    ``skipped_end``: without a full 20-before/10-after window; ``usable``: with one. ``selected``: token indices of
    the selected marks (text order); ``windows`` ``[n, 31]`` their contexts (the mark at index 20); ``chars``: the
    character offset in the text of each selected mark's last character (-1 without offsets)."""

    found: int = 0
    skipped_start: int = 0
    skipped_end: int = 0
    usable: int = 0
    selected: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    windows: np.ndarray = field(default_factory=lambda: np.zeros((0, CONTEXT), dtype=np.int64))
    chars: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))


@dataclass(eq=False)
class MarkScan:
    """What :func:`scan_marks` found: per kind, ``n_tokens`` tokens scanned, ``complete``: the whole text was
    tokenised (else ``found``/``usable`` count marks up to token ``n_tokens``)."""

    kinds: dict[str, KindScan]
    n_tokens: int
    complete: bool


class _Scanner:
    """Walks token chunks, flags marks, and hands each decided mark (with its window) to a callback. A mark at
    index ``p`` is decided once the tokens up to ``p + AFTER`` are known (or the text ended)."""

    def __init__(self, tokenizer: Any, start: int, marks: str) -> None:
        self.flags = _FlagTable(tokenizer, marks)
        self.start = start
        self.buf = np.zeros(0, dtype=np.int64)
        self.buf_ends = np.zeros(0, dtype=np.int64)
        self.b0 = 0  # stream index of buf[0]
        self.frontier = 0  # marks at stream indices < frontier are decided

    def feed(self, chunk: TokenChunk | None) -> list[tuple[int, np.ndarray, int, int, bool]]:
        """Add a chunk (None = end of text); return decided marks ``(kind index, window or empty, char, index,
        usable)`` in text order."""
        if chunk is not None:
            self.flags.update(chunk.ids)
            self.buf = np.concatenate([self.buf, chunk.ids])
            self.buf_ends = np.concatenate([self.buf_ends, chunk.ends])
        b1 = self.b0 + self.buf.size
        stop = b1 if chunk is None else b1 - AFTER  # exclusive end of decidable positions
        out: list[tuple[int, np.ndarray, int, int, bool]] = []
        if stop > self.frontier:
            lo, hi = self.frontier - self.b0, stop - self.b0
            f = self.flags.table
            ids = self.buf
            pos = np.arange(lo, hi)
            cand = ids[lo:hi]
            # a neighbour's flag where there is a neighbour (the index clamped where there is none)
            prev_digit = (pos > 0) & f["ends_digit"][ids[np.maximum(pos - 1, 0)]]
            next_digit = (pos + 1 < ids.size) & f["starts_digit"][ids[np.minimum(pos + 1, ids.size - 1)]]
            gpos = pos + self.b0
            in_range = gpos >= self.start
            internal = f["internal"][cand] & in_range
            terminal = f["terminal"][cand] & in_range & ~(f["period"][cand] & (prev_digit | next_digit))
            for local in np.flatnonzero(internal | terminal):
                p = int(pos[local])
                g = int(gpos[local])
                k = 0 if internal[local] else 1
                ok = g >= BEFORE and (chunk is not None or p + AFTER <= ids.size - 1)
                win = ids[p - BEFORE : p + AFTER + 1].copy() if ok else np.zeros(0, dtype=np.int64)
                out.append((k, win, int(self.buf_ends[p]) - 1 if self.buf_ends[p] >= 0 else -1, g, ok))
            self.frontier = stop
        keep_from = max(self.frontier - BEFORE - 1, self.b0) - self.b0
        if keep_from > 0:
            self.buf = self.buf[keep_from:]
            self.buf_ends = self.buf_ends[keep_from:]
            self.b0 += keep_from
        return out


def _pass(tokenizer: Any, pieces: Pieces, start: int, marks: str, visit: Any, **kwargs: Any) -> tuple[int, bool]:
    """One tokenisation pass; ``visit(kind, window, char, index, usable) -> bool`` returns True to stop.
    Returns ``(tokens seen, complete)``."""
    sc = _Scanner(tokenizer, start, marks)
    n = 0
    for chunk in iter_token_chunks(tokenizer, pieces() if callable(pieces) else pieces, **kwargs):
        n += chunk.ids.size
        for item in sc.feed(chunk):
            if visit(*item):
                return n, False
    for item in sc.feed(None):
        if visit(*item):
            break
    return n, True


def scan_marks(
    tokenizer: Any,
    pieces: Pieces,
    *,
    n: int,
    selection: Literal["first", "random"] = "first",
    seed: int = 0,
    start: int = 400,
    marks: Literal["original", "extended"] = "original",
    stop_early: bool = True,
    kind_seeds: Sequence[int] | None = None,
    **kwargs: Any,
) -> MarkScan:
    """Select ``n`` usable marks per kind by streaming the text (module docstring).

    ``pieces``: a string, or a callable returning a fresh iterable of the text's consecutive pieces (needed for
    ``"random"``, which reads the text twice). ``stop_early=False``: a ``"first"`` scan reads on to count every mark.
    ``"random"`` draws ``np.random.default_rng(seeds[k]).choice(usable, n, replace=False)`` for kind ``k`` (0
    internal, 1 terminal; ``seeds`` = ``kind_seeds``, default ``seed + k``), sorted. Raises UsageError when a kind
    has fewer than ``n`` usable marks."""
    if selection not in ("first", "random"):
        raise UsageError(f"unknown selection {selection!r}: use 'first' (the notebook) or 'random' (the write-up)")
    if n < 3:
        raise UsageError(f"n={n}: at least 3 marks are needed for pairs and a correlation; use n >= 3")

    scans = {kind: KindScan() for kind in KINDS}
    picked: list[list[tuple[int, np.ndarray, int]]] = [[], []]  # per kind: (token index, window, char) selected

    def count(k: int, ok: bool, g: int) -> None:
        s = scans[KINDS[k]]
        s.found += 1
        if ok:
            s.usable += 1
        elif g < BEFORE:
            s.skipped_start += 1
        else:
            s.skipped_end += 1

    if selection == "first":

        def visit_first(k: int, win: np.ndarray, ch: int, g: int, ok: bool) -> bool:
            count(k, ok, g)
            if ok and len(picked[k]) < n:
                picked[k].append((g, win, ch))
            return stop_early and len(picked[0]) >= n and len(picked[1]) >= n

        n_tok, complete = _pass(tokenizer, pieces, start, marks, visit_first, **kwargs)
    else:
        usable: dict[int, list[int]] = {0: [], 1: []}

        def visit_count(k: int, win: np.ndarray, ch: int, g: int, ok: bool) -> bool:
            count(k, ok, g)
            if ok:
                usable[k].append(g)
            return False

        n_tok, complete = _pass(tokenizer, pieces, start, marks, visit_count, **kwargs)
        drawn: dict[int, set[int]] = {}
        for k, kind in enumerate(KINDS):
            u = np.asarray(usable[k], dtype=np.int64)
            _check_enough(n, u.size, kind)
            kind_seed = int(kind_seeds[k]) if kind_seeds is not None else seed + k
            drawn[k] = {int(x) for x in np.random.default_rng(kind_seed).choice(u, size=n, replace=False)}
        last = max(max(d) for d in drawn.values())

        def visit_gather(k: int, win: np.ndarray, ch: int, g: int, ok: bool) -> bool:
            if g in drawn[k]:
                picked[k].append((g, win, ch))
            return g >= last

        _pass(tokenizer, pieces, start, marks, visit_gather, **kwargs)
    for k, kind in enumerate(KINDS):
        s = scans[kind]
        _check_enough(n, len(picked[k]), kind)
        s.selected = np.asarray([p[0] for p in picked[k]], dtype=np.int64)
        s.windows = np.asarray([p[1] for p in picked[k]], dtype=np.int64).reshape(-1, CONTEXT)
        s.chars = np.asarray([p[2] for p in picked[k]], dtype=np.int64)
    return MarkScan(kinds=scans, n_tokens=n_tok, complete=complete)


def count_usable(
    tokenizer: Any,
    pieces: Pieces,
    *,
    n: int,
    start: int = 400,
    marks: Literal["original", "extended"] = "original",
    **kwargs: Any,
) -> dict[str, int]:
    """Usable marks per kind (:func:`scan_marks`'s rule), counted by streaming ``pieces`` until every kind has ``n``
    (so ``n`` means "at least n") or the text ends: a selection of ``n`` marks per kind succeeds exactly when every
    count is ``n`` (the check before the weights load)."""
    usable = [0] * len(KINDS)

    def visit(k: int, win: np.ndarray, ch: int, g: int, ok: bool) -> bool:
        if ok:
            usable[k] += 1
        return min(usable) >= n

    _pass(tokenizer, pieces, start, marks, visit, **kwargs)
    return {kind: min(usable[k], n) for k, kind in enumerate(KINDS)}


def _check_enough(n: int, have: int, kind: str) -> None:
    if have < n:
        raise UsageError(
            f"asked for {n} {kind} marks but only {have} usable ones exist (with a full 20-before/10-after "
            f"context): use n <= {have}"
        )


def lf_body_positions(crlf_text: str, body: str, chars: np.ndarray) -> np.ndarray:
    """Map character offsets in a served CRLF text to offsets in its LF body (``data.StudyText.body``: header and
    licence stripped, ``\\n`` endings); -1 for an offset outside the body. Offset ``q`` in the CRLF text is
    ``q - (carriage returns before q)`` in the LF text, minus where the body starts in it."""
    chars = np.asarray(chars, dtype=np.int64)
    served_lf = crlf_text.replace("\r\n", "\n")
    start = served_lf.find(body)
    if start < 0:
        return np.full(chars.shape, -1, dtype=np.int64)
    cr = np.array([i for i, c in enumerate(crlf_text) if c == "\r"], dtype=np.int64) if "\r" in crlf_text else None
    q = chars - (np.searchsorted(cr, chars) if cr is not None else 0) - start
    return np.where((chars >= 0) & (q >= 0) & (q < len(body)), q, -1)


def shared_marks(crlf_chars: np.ndarray, crlf_text: str, body: str, lf_chars: np.ndarray) -> int:
    """How many marks selected on the CRLF stream (by their last character's offset) are also selected on the LF
    body's stream: the same character of the book."""
    mapped = lf_body_positions(crlf_text, body, crlf_chars)
    return int(np.intersect1d(mapped[mapped >= 0], np.asarray(lf_chars, dtype=np.int64)).size)


def study_marks(tokenizer: Any, config: Config) -> tuple[MarkScan, dict[str, Any]]:
    """Study A's marks (:func:`scan_marks` with ``config``'s rule and selection) in the study's text
    (:func:`layerclaims.data.load_study_text`), and the text's provenance, with ``start`` and, on the CRLF path of a
    text read whole, ``shared_marks_with_lf``: per kind, how many selected marks the body-only LF path selects too."""
    from layerclaims.data import load_study_text

    text = load_study_text(config.corpus, line_endings=config.line_endings)
    opts: dict[str, Any] = {
        "n": config.n,
        "selection": config.selection,
        "start": config.start,
        "marks": config.marks,
        "kind_seeds": [kind_seeds(config.seed, kind).selection for kind in KINDS],
    }
    scan = scan_marks(tokenizer, text.pieces, **opts)
    prov = {**text.provenance(), "start": config.start}
    if config.line_endings == "crlf" and text.text is not None and text.body is not None:
        try:
            lf = scan_marks(tokenizer, text.body, **opts)
        except UsageError as exc:  # the LF body may hold fewer marks: say so rather than fail the study
            prov["shared_marks_with_lf"] = f"not computed: {exc}"
        else:
            prov["shared_marks_with_lf"] = {
                kind: shared_marks(scan.kinds[kind].chars, text.text, text.body, lf.kinds[kind].chars) for kind in KINDS
            }
            prov["shared_marks_of"] = config.n
    else:
        prov["shared_marks_with_lf"] = None if config.line_endings == "lf" else "not computed for a streamed text"
    prov["tokens_scanned"] = scan.n_tokens
    prov["scan_complete"] = scan.complete
    return scan, prov
