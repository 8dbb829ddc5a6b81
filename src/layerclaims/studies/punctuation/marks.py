"""Study A's marks: the two kinds, the mark characters of each set, and the 31-token window around a mark (20
before, the mark at index 20, 10 after). :mod:`.scan` flags and selects them."""

from __future__ import annotations

KINDS: tuple[str, ...] = ("internal", "terminal")
BEFORE = 20
AFTER = 10
CONTEXT = BEFORE + 1 + AFTER
MARK_INDEX = BEFORE
MARK_SETS: dict[str, dict[str, tuple[str, ...]]] = {
    "original": {"internal": (",",), "terminal": (".",)},
    "extended": {"internal": (",", ";", ":"), "terminal": (".", "?", "!")},
}
