"""Token windows cut from the shared corpus: shape, BOS, no overlap, seeded, and the errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from layerclaims.data import gpt2_tokenizer, load_corpus
from layerclaims.errors import UsageError
from layerclaims.windows import corpus_windows


def test_windows_are_slices_of_the_tokenised_corpus(shared_data: Path) -> None:
    tok = gpt2_tokenizer()
    w = corpus_windows(tok, "heart-of-darkness", 12, 32, seed=0, add_bos=False)
    assert w.ids.shape == (12, 32) and w.bos is None
    ids = tok.encode(load_corpus("heart-of-darkness").text, add_special_tokens=False)
    for row, start in zip(w.ids, w.starts, strict=True):
        assert row.tolist() == ids[start : start + 32]
    assert (np.diff(w.starts) >= 32).all()  # in text order, never overlapping
    again = corpus_windows(tok, "heart-of-darkness", 12, 32, seed=0, add_bos=False)
    np.testing.assert_array_equal(again.ids, w.ids)
    other = corpus_windows(tok, "heart-of-darkness", 12, 32, seed=1, add_bos=False)
    assert not np.array_equal(other.starts, w.starts)


def test_bos_is_prepended_and_length_kept(shared_data: Path) -> None:
    tok = gpt2_tokenizer()
    w = corpus_windows(tok, "heart-of-darkness", 4, 16, seed=0, add_bos=True)
    assert w.ids.shape == (4, 16) and w.bos == 50256
    assert (w.ids[:, 0] == 50256).all()
    assert w.provenance["bos"] == 50256 and len(w.provenance["starts"]) == 4


def test_errors(shared_data: Path, tmp_path: Path) -> None:
    tok = gpt2_tokenizer()
    short = tmp_path / "short.txt"
    short.write_text("only a few words here. " * 5)
    with pytest.raises(UsageError, match="fewer than n_windows=50"):
        corpus_windows(tok, str(short), 50, 16, seed=0, add_bos=False)
    with pytest.raises(UsageError, match="n_windows must be an integer >= 2"):
        corpus_windows(tok, "heart-of-darkness", 1, 16, seed=0, add_bos=False)

    class NoBos:
        bos_token_id = None
        cls_token_id = None

    with pytest.raises(UsageError, match="no BOS or CLS token"):
        corpus_windows(NoBos(), "heart-of-darkness", 2, 16, seed=0, add_bos=True)


def test_an_encoder_starts_with_its_cls_token(shared_data: Path) -> None:
    class Encoder:
        bos_token_id = None
        cls_token_id = 101

        def encode(self, text: str, add_special_tokens: bool = False, verbose: bool = False) -> list[int]:
            return [7] * 500

    w = corpus_windows(Encoder(), "heart-of-darkness", 3, 8, seed=0, add_bos=True)
    assert (w.ids[:, 0] == 101).all() and (w.ids[:, 1:] == 7).all()
