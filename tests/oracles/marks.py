"""Study A's whole-stream mark path: tokenise the whole text, flag every mark, keep those with a full window, select
``n``, cut the windows. The streaming scan (:mod:`layerclaims.studies.punctuation.scan`) is tested against it (and
the ``streaming`` and ``punctuation`` benchmarks time it as the old way)."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from layerclaims.errors import UsageError
from layerclaims.studies.punctuation.marks import AFTER, BEFORE, MARK_SETS


def _decoded_table(token_ids: np.ndarray, tokenizer: Any) -> tuple[np.ndarray, list[str]]:
    """``(inverse, decoded)``: each distinct id decoded once; ``decoded[inverse[t]]`` is token ``t`` decoded."""
    uniq, inverse = np.unique(token_ids, return_inverse=True)
    decoded = [tokenizer.decode([int(u)]) for u in uniq]
    return inverse.reshape(-1), decoded


def find_marks(
    token_ids: Any,
    tokenizer: Any,
    *,
    start: int = 400,
    marks: Literal["original", "extended"] = "original",
) -> tuple[np.ndarray, np.ndarray]:
    """Token indices of internal and terminal punctuation, the notebook's flag rule vectorised.

    ``token_ids``: 1-D ids of the whole text. From index ``start`` on, a token whose decoded text, stripped, is in the
    internal set (``","``; extended ``, ; :``) is internal; one in the terminal set (``"."``; extended ``. ? !``) is
    terminal, except a ``"."`` whose previous decoded token ends with a digit or whose next decoded token starts
    with one (``str.isdigit`` on the unstripped decoded text, as the original; no neighbour = no digit). Each distinct
    id is decoded once (a lookup table over the unique ids). Returns two sorted int64 arrays.
    """
    if marks not in MARK_SETS:
        raise UsageError(f"unknown marks {marks!r}: use 'original' (',' and '.') or 'extended' (', ; :' and '. ? !')")
    ids = np.asarray(token_ids, dtype=np.int64).reshape(-1)
    if ids.size == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty
    inverse, decoded = _decoded_table(ids, tokenizer)
    stripped = np.array([d.strip() for d in decoded], dtype=object)
    internal_u = np.isin(stripped, MARK_SETS[marks]["internal"])
    terminal_u = np.isin(stripped, MARK_SETS[marks]["terminal"])
    period_u = stripped == "."
    ends_digit_u = np.array([bool(d) and d[-1].isdigit() for d in decoded])
    starts_digit_u = np.array([bool(d) and d[0].isdigit() for d in decoded])

    prev_digit = np.r_[False, ends_digit_u[inverse][:-1]]
    next_digit = np.r_[starts_digit_u[inverse][1:], False]
    in_range = np.arange(ids.size) >= start
    internal = internal_u[inverse] & in_range
    terminal = terminal_u[inverse] & in_range & ~(period_u[inverse] & (prev_digit | next_digit))
    return np.flatnonzero(internal).astype(np.int64), np.flatnonzero(terminal).astype(np.int64)


def usable_marks(mark_idx: np.ndarray, n_tokens: int) -> tuple[np.ndarray, int, int]:
    """Marks with a full 20-before / 10-after window: ``(kept, n_skipped_start, n_skipped_end)``."""
    mark_idx = np.asarray(mark_idx, dtype=np.int64)
    too_early = mark_idx < BEFORE
    too_late = mark_idx + AFTER > n_tokens - 1
    return mark_idx[~too_early & ~too_late], int(too_early.sum()), int(too_late.sum())


def select_marks(
    usable: np.ndarray, n: int, selection: Literal["first", "random"], seed: int, *, kind: str = "marks"
) -> np.ndarray:
    """``n`` marks from ``usable``: the first ``n`` (notebook) or ``n`` at random without replacement (write-up),
    seeded, returned in text order. Raises UsageError stating how many exist when ``n`` is too large."""
    if n < 3:
        raise UsageError(f"n={n}: at least 3 marks are needed for pairs and a correlation; use n >= 3")
    if n > usable.size:
        raise UsageError(
            f"asked for {n} {kind} marks but only {usable.size} usable ones exist (with a full 20-before/10-after "
            f"context): use n <= {usable.size}"
        )
    if selection == "first":
        return usable[:n].copy()
    if selection == "random":
        rng = np.random.default_rng(seed)
        return np.sort(rng.choice(usable, size=n, replace=False))
    raise UsageError(f"unknown selection {selection!r}: use 'first' (the notebook) or 'random' (the write-up)")


def contexts(token_ids: np.ndarray, marks: np.ndarray) -> np.ndarray:
    """``[n_marks, 31]`` windows, the mark at index 20."""
    offsets = np.arange(-BEFORE, AFTER + 1)
    return np.asarray(token_ids, dtype=np.int64)[np.asarray(marks)[:, None] + offsets[None, :]]


def tokenize(tokenizer: Any, text: str) -> np.ndarray:
    """The whole text as ids, no special tokens (no BOS/EOS), as study A tokenises it."""
    try:
        ids = tokenizer.encode(text, add_special_tokens=False, verbose=False)
    except TypeError:
        ids = tokenizer.encode(text, add_special_tokens=False)
    return np.asarray(ids, dtype=np.int64)
