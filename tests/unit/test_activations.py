"""layerclaims.activations: cached vectors equal the extraction's, a fully cached request runs no model, missing
layers only are computed, corrupt entries are rebuilt with one warning line, and the folder stays within budget."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from layerclaims import activations, extract
from layerclaims.activations import STATS, ActivationCache
from layerclaims.models import ModelHandle

SEQS = [[464, 3290, 11, 290, 262, 1334, 13], [40, 716, 257, 1332, 11, 1312, 13], [15496, 995, 11, 2, 3, 4, 5]]


@pytest.fixture
def cache(tmp_path: Path) -> ActivationCache:
    STATS.reset()
    return ActivationCache(tmp_path / "act", budget=64)


def _forbid_model(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*_: Any, **__: Any) -> None:
        raise AssertionError("the model ran although every vector was cached")

    monkeypatch.setattr(extract, "hidden_states", boom)


def test_hidden_states_cached_equal_and_second_call_runs_no_model(
    tiny_gpt2: ModelHandle, cache: ActivationCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    ref = extract.hidden_states(tiny_gpt2, SEQS, 4, [0, 2, 4], final="pre_norm")
    first = activations.hidden_states(tiny_gpt2, SEQS, 4, [0, 2, 4], final="pre_norm", cache=cache)
    assert np.array_equal(first, ref)
    assert (STATS.misses, STATS.model_runs) == (3, 1)
    _forbid_model(monkeypatch)
    again = activations.hidden_states(tiny_gpt2, SEQS, 4, [4, 0], final="pre_norm", cache=cache)
    assert np.array_equal(again, ref[[2, 0]])
    assert STATS.runs_saved == 1 and STATS.hits == 2


def test_every_position_maps_are_cached_apart_from_one_position(
    tiny_gpt2: ModelHandle, cache: ActivationCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The every-position maps (anisotropy, massive activations) go through the cache too, under their own key."""
    ref = extract.hidden_state_maps(tiny_gpt2, SEQS, [1, 3], final="pre_norm")
    activations.hidden_states(tiny_gpt2, SEQS, 4, [1, 3], final="pre_norm", cache=cache)  # one position: another key
    STATS.reset()
    first = activations.hidden_states(tiny_gpt2, SEQS, None, [1, 3], final="pre_norm", cache=cache)
    assert first.shape == (2, len(SEQS), len(SEQS[0]), tiny_gpt2.d_model) and np.array_equal(first, ref)
    assert (STATS.hits, STATS.model_runs) == (0, 1)
    _forbid_model(monkeypatch)
    again = activations.hidden_states(tiny_gpt2, SEQS, None, [3, 1], final="pre_norm", cache=cache)
    assert np.array_equal(again, ref[[1, 0]]) and STATS.runs_saved == 1


def test_only_missing_layers_are_computed(tiny_gpt2: ModelHandle, cache: ActivationCache) -> None:
    activations.hidden_states(tiny_gpt2, SEQS, 4, [1], cache=cache)
    STATS.reset()
    calls: list[list[int]] = []
    real = extract.hidden_states

    def spy(handle: Any, seqs: Any, pos: Any, layers: Any, *a: Any, **k: Any) -> Any:
        calls.append(list(layers))
        return real(handle, seqs, pos, layers, *a, **k)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(extract, "hidden_states", spy)
        out = activations.hidden_states(tiny_gpt2, SEQS, 4, [1, 3], cache=cache)
    assert calls == [[3]]
    assert np.array_equal(out, real(tiny_gpt2, SEQS, 4, [1, 3]))


def test_key_separates_tokens_positions_and_final(tiny_gpt2: ModelHandle, cache: ActivationCache) -> None:
    a = activations.hidden_states(tiny_gpt2, SEQS, 4, [4], cache=cache)
    b = activations.hidden_states(tiny_gpt2, SEQS, 4, [4], final="pre_norm", cache=cache)
    c = activations.hidden_states(tiny_gpt2, SEQS[:2], 4, [4], cache=cache)
    d = activations.hidden_states(tiny_gpt2, SEQS, 3, [4], cache=cache)
    assert STATS.model_runs == 4  # four different keys: nothing read from another's entry
    assert not np.array_equal(a, b) and c.shape[1] == 2 and not np.array_equal(a, d)


def _flip_a_byte(blob: bytes) -> bytes:
    return blob[:-3] + bytes([blob[-3] ^ 0xFF]) + blob[-2:]


@pytest.mark.parametrize("damage", [_flip_a_byte, lambda blob: blob[:40]], ids=["flipped", "truncated"])
def test_corrupt_entry_is_rebuilt_with_one_warning_line(
    tiny_gpt2: ModelHandle, cache: ActivationCache, damage: Any
) -> None:
    ref = activations.hidden_states(tiny_gpt2, SEQS, 4, [2], cache=cache)
    (entry,) = cache.root.glob("*.npyc")
    entry.write_bytes(damage(entry.read_bytes()))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        again = activations.hidden_states(tiny_gpt2, SEQS, 4, [2], cache=cache)
    msgs = [str(w.message) for w in caught]
    assert len(msgs) == 1 and "corrupt" in msgs[0] and "\n" not in msgs[0]
    assert np.array_equal(again, ref) and STATS.rebuilt == 1
    assert cache.get({"nothing": 1}) is None  # a missing entry is a plain miss


def test_lru_eviction_keeps_the_folder_within_budget(tmp_path: Path) -> None:
    arr = np.zeros(60_000, dtype=np.float32)  # ~240 kB an entry
    cache = ActivationCache(tmp_path / "lru", budget=1.0)  # 1 MB: room for 4
    for i in range(6):
        cache.put({"i": i}, arr + i)
        if i == 3:
            import os
            import time

            time.sleep(0.01)
            assert cache.get({"i": 0}) is not None  # used: now the most recent
            os.utime(cache.path({"i": 0}))
    assert sum(size for _, size, _ in cache.entries()) <= 2**20
    kept = {i for i in range(6) if cache.path({"i": i}).exists()}
    assert 0 in kept and 5 in kept and 1 not in kept


def test_budget_zero_turns_the_cache_off(
    tiny_gpt2: ModelHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(activations.BUDGET_ENV, "0")
    cache = ActivationCache(tmp_path / "off")
    out = activations.hidden_states(tiny_gpt2, SEQS, 4, [1], cache=cache)
    assert out.shape == (1, 3, tiny_gpt2.d_model) and not cache.root.exists()


def test_bad_budget_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from layerclaims.errors import UsageError

    monkeypatch.setenv(activations.BUDGET_ENV, "lots")
    with pytest.raises(UsageError, match="MB"):
        activations.budget_mb()


def test_selections_sharing_a_prefix_share_its_blocks(tiny_gpt2: ModelHandle, cache: ActivationCache) -> None:
    rng = np.random.default_rng(0)
    seqs = [list(map(int, row)) for row in rng.integers(0, 50_000, size=(140, 4))]
    R = activations.ROWS_PER_ENTRY
    first = activations.hidden_states(tiny_gpt2, seqs[: 2 * R + 2], 3, [1, 3], cache=cache)
    sizes: list[int] = []
    real = extract.hidden_states

    def spy(handle: Any, s: Any, *a: Any, **k: Any) -> Any:
        sizes.append(len(s))
        return real(handle, s, *a, **k)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(extract, "hidden_states", spy)
        prefix = activations.hidden_states(tiny_gpt2, seqs[: 2 * R], 3, [1, 3], cache=cache)
        longer = activations.hidden_states(tiny_gpt2, seqs, 3, [1, 3], cache=cache)
    assert sizes == [len(seqs) - 2 * R]  # the prefix read from disk; only the rows after the shared blocks ran
    assert np.array_equal(prefix, first[:, : 2 * R])
    # float32 rounding may differ with the batch's composition: max |diff| measured 0 on tiny-gpt2; 1e-5 is its scale
    np.testing.assert_allclose(longer, real(tiny_gpt2, seqs, 3, [1, 3]), rtol=1e-5, atol=1e-5)
