"""Study B (Q/K grouping and RSA) on tiny-gpt2: the vectors it reads, its statistics, save/load, bad input."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from layerclaims.claims import Condition, claims_for
from layerclaims.errors import ModelNotFoundError, UsageError
from layerclaims.metrics.similarity import (
    cosine_matrix,
    mantel_test,
    mean_offdiagonal,
    rsa,
    rsa_by_category,
    selectivity_index,
    selectivity_permutation_test,
)
from layerclaims.results import Measurement
from layerclaims.studies import qk
from layerclaims.studies.qk import analysis
from layerclaims.verdicts import evaluate
from tests.oracles.bootstrap import bootstrap_similarity

N_BOOT, N_PERM = 200, 200
FAST = {"n_boot": N_BOOT, "n_perm": N_PERM}


@pytest.fixture(scope="module")
def gpt2(tiny_gpt2: Any) -> Any:
    return tiny_gpt2


@pytest.fixture(scope="module")
def result(gpt2: Any) -> analysis.QKResult:
    return analysis.run(gpt2, qk.Config(tests="all", **FAST))


def manual_qkv(handle: Any, ids: list[list[int]], positions: list[int], block: int) -> dict[str, np.ndarray]:
    """Q, K, V recomputed from the weights: ln_1 of the block's input (``hidden_states[block]`` of a plain forward
    pass), then c_attn (Conv1D: ``x @ W + b``), split in three. The prompts must have one length (no padding)."""
    assert len({len(seq) for seq in ids}) == 1
    blk = handle.model.transformer.h[block]
    with torch.no_grad():
        out = handle.model.transformer(input_ids=torch.tensor(ids), output_hidden_states=True)
        x = blk.ln_1(out.hidden_states[block][torch.arange(len(ids)), torch.tensor(positions)])
        qkv_out = x @ blk.attn.c_attn.weight + blk.attn.c_attn.bias
    parts = qkv_out.double().numpy()
    d = handle.d_model
    return {"q": parts[:, :d], "k": parts[:, d : 2 * d], "v": parts[:, 2 * d :]}


# ---------------------------------------------------------------------------------------------- word list


def test_default_words_follow_the_original() -> None:
    assert len(qk.WORDS) == 34 and len(set(qk.WORDS)) == 34
    assert {c: len(w) for c, w in qk.CATEGORIES.items()} == {"space": 10, "furniture": 13, "fruit": 11}
    assert " ".join(qk.WORDS[:3]) == "galaxy asteroid comet"
    assert qk.WORDS[10] == "ceiling" and qk.WORDS[23] == "pear" and qk.WORDS[-1] == "fruit"
    assert qk.LABELS.count("furniture") == 13 and qk.LABELS[10] == "furniture"


def test_gpt2_prompts_are_five_tokens_with_the_word_last(gpt2: Any) -> None:
    p = analysis.tokenize_prompts(gpt2.tokenizer, qk.WORDS, qk.TEMPLATE, add_bos=False)
    assert all(len(ids) == 5 for ids in p.ids)
    assert (p.start == 4).all() and (p.stop == 5).all()
    assert p.ids[0] == gpt2.tokenizer("The next word is galaxy")["input_ids"]


# --------------------------------------------------------------------------------------------- extraction


@pytest.mark.parametrize("block", [0, 3])
def test_qkv_equal_an_independent_computation(gpt2: Any, result: analysis.QKResult, block: int) -> None:
    p = analysis.tokenize_prompts(gpt2.tokenizer, qk.WORDS, qk.TEMPLATE, add_bos=False)
    ref = manual_qkv(gpt2, p.ids, [4] * len(p.ids), block)
    got = analysis.word_vectors(gpt2, p, [block], "last", batch_size=7)
    for k in "qkv":
        np.testing.assert_allclose(got[k][0], ref[k], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(result.cos(k)[block], cosine_matrix(ref[k]), atol=1e-5)


def test_multi_token_policy(gpt2: Any) -> None:
    words = ("xylophone", "guitar", "violin", "apple", "pear", "banana")
    labels = ("instrument",) * 3 + ("fruit",) * 3
    p = analysis.tokenize_prompts(gpt2.tokenizer, words, qk.TEMPLATE, add_bos=False)
    assert p.n_tokens.tolist() == [3, 1, 1, 1, 1, 1]  # " xylophone" -> " x", "yl", "ophone"
    last = analysis.run(gpt2, qk.Config(words=words, labels=labels, n_boot=0, n_perm=0, blocks=2))
    mean = analysis.run(gpt2, qk.Config(words=words, labels=labels, n_boot=0, n_perm=0, blocks=2, multi_token="mean"))
    assert last.split_words == mean.split_words == ("xylophone",)
    assert last.n_tokens == (3, 1, 1, 1, 1, 1)
    ref = {pos: manual_qkv(gpt2, [p.ids[0]], [pos], 2) for pos in (4, 5, 6)}
    ref_rest = manual_qkv(gpt2, p.ids[1:], [4] * 5, 2)
    for k in "qkv":
        x_last = np.vstack([ref[6][k], ref_rest[k]])
        x_mean = np.vstack([np.mean([ref[pos][k][0] for pos in (4, 5, 6)], axis=0), ref_rest[k]])
        np.testing.assert_allclose(last.cos(k)[0], cosine_matrix(x_last), atol=1e-5)
        np.testing.assert_allclose(mean.cos(k)[0], cosine_matrix(x_mean), atol=1e-5)
    assert not np.allclose(last.cos_q[0, 0], mean.cos_q[0, 0], atol=1e-3)
    assert mean.provenance["word_token_span"][0] == [4, 7]


def test_add_bos_prepends_the_tokenizer_bos(gpt2: Any) -> None:
    p = analysis.tokenize_prompts(gpt2.tokenizer, qk.WORDS[:2], qk.TEMPLATE, add_bos=True)
    assert p.ids[0][0] == gpt2.tokenizer.bos_token_id and len(p.ids[0]) == 6
    assert (p.start == 5).all()


def test_grouped_query_keys_have_fewer_dims_and_repeating_heads_keeps_cosines(tiny_llama: Any) -> None:
    llama = tiny_llama
    r = analysis.run(llama, qk.Config(n_boot=0, n_perm=0, blocks=1))
    assert r.dims == {"q": 64, "k": 32, "v": 32}
    p = analysis.tokenize_prompts(llama.tokenizer, qk.WORDS, qk.TEMPLATE, add_bos=False)
    k = analysis.word_vectors(llama, p, [1], "last", batch_size=64)["k"][0]
    repeated = np.repeat(k.reshape(len(k), 2, 16), 2, axis=1).reshape(len(k), 64)  # as attention expands K
    np.testing.assert_allclose(cosine_matrix(repeated), r.cos_k[0], atol=1e-12)


# --------------------------------------------------------------------------------------------- statistics


def test_statistics_agree_with_the_metrics(result: analysis.QKResult) -> None:
    labels = list(qk.LABELS)
    for i in range(result.n_blocks):
        S = {k: result.cos(k)[i] for k in "qkv"}
        for k in "qkv":
            assert result.mean_cosine[k].value[i] == pytest.approx(mean_offdiagonal(S[k]), abs=1e-12)
            assert result.selectivity[k].value[i] == pytest.approx(selectivity_index(S[k], labels), abs=1e-12)
            p = selectivity_permutation_test(S[k], labels, n_perm=N_PERM, seed=0).p_value
            assert result.selectivity[k].p_value[i] == p
        for pair in qk.PAIRS:
            a, b = S[pair[0]], S[pair[1]]
            assert result.rsa[pair].value[i] == pytest.approx(rsa(a, b), abs=1e-12)
            assert result.rsa[pair].p_value[i] == mantel_test(a, b, n_perm=N_PERM, seed=0).p_value
            np.testing.assert_allclose(result.rsa_by_category[pair][i], list(rsa_by_category(a, b, labels).values()))
        assert result.k_minus_q.value[i] == pytest.approx(mean_offdiagonal(S["k"]) - mean_offdiagonal(S["q"]))
        assert result.min_selectivity_qk.p_value[i] == max(
            result.selectivity["q"].p_value[i], result.selectivity["k"].p_value[i]
        )
    assert result.categories == ("space", "furniture", "fruit")


@pytest.mark.parametrize("block", [0, 2])
def test_vectorised_bootstrap_equals_the_generic_one(result: analysis.QKResult, block: int) -> None:
    """Same seed, same stratified draws: the study's batched intervals equal bootstrap_similarity's."""
    labels = list(qk.LABELS)
    Sq, Sk, Sv = (result.cos(k)[block] for k in "qkv")
    common = {"labels": labels, "stratify": True, "n_boot": N_BOOT, "seed": 0}

    kq = bootstrap_similarity(lambda q, k, labels: mean_offdiagonal(k) - mean_offdiagonal(q), [Sq, Sk], **common)
    np.testing.assert_allclose([result.k_minus_q.ci_low[block], result.k_minus_q.ci_high[block]], kq.ci, rtol=1e-10)
    sel = bootstrap_similarity(
        lambda q, k, labels: min(selectivity_index(q, labels), selectivity_index(k, labels)), [Sq, Sk], **common
    )
    np.testing.assert_allclose(
        [result.min_selectivity_qk.ci_low[block], result.min_selectivity_qk.ci_high[block]], sel.ci, rtol=1e-10
    )
    sv = bootstrap_similarity(lambda v, labels: selectivity_index(v, labels), [Sv], **common)
    np.testing.assert_allclose(
        [result.selectivity["v"].ci_low[block], result.selectivity["v"].ci_high[block]], sv.ci, rtol=1e-10
    )
    r = bootstrap_similarity(lambda q, k, labels: rsa(q, k), [Sq, Sk], **common)
    np.testing.assert_allclose([result.rsa["qk"].ci_low[block], result.rsa["qk"].ci_high[block]], r.ci, rtol=1e-8)


def test_resampled_means_with_every_item_once_are_the_statistics(result: analysis.QKResult) -> None:
    codes = np.array([list(qk.CATEGORIES).index(c) for c in qk.LABELS])
    mean, sel = analysis.resampled_offdiagonal_means(result.cos_v, np.ones((1, 34)), codes, 3)
    np.testing.assert_allclose(mean[:, 0], result.mean_cosine["v"].value, rtol=1e-12)
    np.testing.assert_allclose(sel[:, 0], result.selectivity["v"].value, rtol=1e-12)


def test_claims_tests_skip_the_laminar_p_values(gpt2: Any) -> None:
    r = analysis.run(gpt2, qk.Config(blocks=(1, 2), **FAST))
    assert np.isnan(r.rsa["qv"].p_value).all() and np.isnan(r.selectivity["v"].p_value).all()
    assert not np.isnan(r.rsa["qk"].p_value).any() and not np.isnan(r.selectivity["k"].p_value).any()
    assert not np.isnan(r.rsa["qv"].ci_low).any()


def test_same_seed_same_result_other_seed_other_interval(gpt2: Any, result: analysis.QKResult) -> None:
    again = analysis.run(gpt2, qk.Config(tests="all", blocks=(0,), **FAST))
    np.testing.assert_array_equal(again.rsa["qk"].ci_low, result.rsa["qk"].ci_low[:1])
    other = analysis.run(gpt2, qk.Config(blocks=(0,), seed=1, **FAST))
    assert other.rsa["qk"].ci_low[0] != result.rsa["qk"].ci_low[0]
    assert other.rsa["qk"].value[0] == result.rsa["qk"].value[0]


# ----------------------------------------------------------------------------------------------- measure


def test_measure_every_statistic(result: analysis.QKResult) -> None:
    m = result.measure("k_minus_q_mean_cosine", layer=1, kind=None)
    assert m.value == result.k_minus_q.value[1] and m.p_value is None and m.details["block"] == 1
    assert m.ci == (result.k_minus_q.ci_low[1], result.k_minus_q.ci_high[1])
    m = result.measure("rsa_qk", layer=2, kind=None)
    assert m.value == result.rsa["qk"].value[2] and m.p_value == result.rsa["qk"].p_value[2]
    assert set(m.details["rsa_by_category"]) == {"space", "furniture", "fruit"}
    m = result.measure("min_selectivity_qk", layer=3, kind=None)
    assert m.value == min(result.selectivity["q"].value[3], result.selectivity["k"].value[3])
    assert 0 < m.p_value <= 1
    m = result.measure("min_rsa_qk_over_blocks", layer=None, kind=None)
    assert m.value == result.rsa["qk"].value.min()
    assert m.details["block"] == int(np.argmin(result.rsa["qk"].value))
    assert m.ci[0] <= m.value + 1e-12
    m = result.measure("fraction_blocks_v_most_selective", layer=None, kind=None)
    sel = result.selectivity
    top = sel["v"].value > np.maximum(sel["q"].value, sel["k"].value)
    assert m.value == top.mean() and m.details["blocks_v_most_selective"] == np.flatnonzero(top).tolist()
    with pytest.raises(KeyError, match="unknown statistic"):
        result.measure("cov_clusters", layer=1, kind=None)
    with pytest.raises(UsageError, match="layer="):
        result.measure("rsa_qk", layer=None, kind=None)
    with pytest.raises(UsageError, match="out of range"):
        result.measure("rsa_qk", layer=4, kind=None)
    with pytest.raises(UsageError, match="over all blocks"):
        result.measure("min_rsa_qk_over_blocks", layer=2, kind=None)


def test_measure_needs_the_blocks_it_reads(gpt2: Any) -> None:
    r = analysis.run(gpt2, qk.Config(blocks=[2], n_boot=0, n_perm=0))
    assert r.blocks == (2,)
    m = r.measure("rsa_qk", layer=2, kind=None)
    assert m.ci is None and m.p_value is None
    with pytest.raises(UsageError, match="not studied"):
        r.measure("rsa_qk", layer=1, kind=None)
    with pytest.raises(UsageError, match="needs every block"):
        r.measure("fraction_blocks_v_most_selective", layer=None, kind=None)
    verdicts = {c.id: evaluate(c, r) for c in claims_for("qk")}
    assert verdicts["B4"].holds is None and "needs every block" in verdicts["B4"].reason


def test_every_claim_evaluates(result: analysis.QKResult) -> None:
    for claim in claims_for("qk"):
        v = evaluate(claim, result)
        assert v.holds is not None, v.describe()
        assert v.layer == (None if claim.layer is None else 0)  # block 5 of 24 -> block 0 of 4


# ------------------------------------------------------------------------------------------- save / load


def _assert_same(a: Any, b: Any, path: str = "result") -> None:
    if dataclasses.is_dataclass(a):
        assert type(a) is type(b), path
        for f in dataclasses.fields(a):
            _assert_same(getattr(a, f.name), getattr(b, f.name), f"{path}.{f.name}")
    elif isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray) and a.dtype == b.dtype, path
        np.testing.assert_array_equal(a, b, err_msg=path)
    elif isinstance(a, dict):
        assert isinstance(b, dict) and list(a) == list(b), path
        for k in a:
            _assert_same(a[k], b[k], f"{path}[{k!r}]")
    elif isinstance(a, list | tuple):
        assert type(a) is type(b) and len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_same(x, y, f"{path}[{i}]")
    else:
        assert a == b or (a != a and b != b), f"{path}: {a!r} != {b!r}"


def test_save_load_round_trip(result: analysis.QKResult, tmp_path: Path) -> None:
    path = result.save(tmp_path)
    assert path == tmp_path / "qk.json" and (tmp_path / "qk.npz").is_file()
    loaded = analysis.QKResult.load(tmp_path)
    _assert_same(result, loaded)
    assert isinstance(loaded.over_blocks["min_rsa_qk_over_blocks"], Measurement)
    for stat in ("rsa_qk", "min_selectivity_qk", "k_minus_q_mean_cosine"):
        assert loaded.measure(stat, layer=1, kind=None) == result.measure(stat, layer=1, kind=None)
    assert result.provenance["model"] == "tiny-gpt2" and "timings" in result.provenance
    assert result.provenance["revision"] and result.provenance["packages"]["numpy"]


# ----------------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"words": (), "labels": ()}, "word list is empty"),
        ({"words": ("a", "b", "c"), "labels": ("x", "x", "x")}, "only one category"),
        ({"words": ("a", "b", "c"), "labels": ("x", "x", "y")}, r"\['y'\] have one word"),
        ({"words": ("a", "b", "a", "c"), "labels": ("x", "x", "y", "y")}, r"duplicate words \['a'\]"),
        ({"words": ("a", "b", "c", "d"), "labels": ("x", "y")}, "2 labels for 4 words"),
        ({"words": ("a", "b", "c", "d")}, "labels are needed"),
        ({"words": "galaxy"}, "one string"),
        ({"template": "The next word is"}, "exactly once"),
        ({"multi_token": "first"}, "multi_token"),
        ({"n_perm": -1}, "n_perm"),
        ({"tests": "some"}, "tests"),
    ],
)
def test_bad_config(options: dict[str, Any], match: str) -> None:
    with pytest.raises(UsageError, match=match):
        qk.Config(**options)


def test_bad_blocks_and_architecture(gpt2: Any) -> None:
    with pytest.raises(UsageError, match="block 4 is out of range"):
        analysis.run(gpt2, qk.Config(blocks=4, n_boot=0, n_perm=0))
    with pytest.raises(UsageError, match="block -1 is out of range"):
        analysis.run(gpt2, qk.Config(blocks=(0, -1), n_boot=0, n_perm=0))
    no_table = dataclasses.replace(gpt2, arch=dataclasses.replace(gpt2.arch, qkv=()))
    with pytest.raises(ModelNotFoundError, match="no Q/K/V table"):
        analysis.run(no_table, qk.Config(n_boot=0, n_perm=0))


def test_run_study_converts_lists(gpt2: Any) -> None:
    from layerclaims.run import run_study

    r = run_study("qk", gpt2, blocks=[0, 1], words=list(qk.WORDS), n_boot=0, n_perm=0)
    assert r.blocks == (0, 1) and r.words == qk.WORDS and r.labels == qk.LABELS
    with pytest.raises(UsageError, match="bad option"):
        run_study("qk", gpt2, block=3)


# ------------------------------------------------------------------------------------------------- figures


def test_figures_are_written(result: analysis.QKResult, tmp_path: Path) -> None:
    from layerclaims.claims import claim_reads
    from layerclaims.figures import draw_table
    from layerclaims.studies.qk.figures import claim_block, figures

    reads = claim_reads(claims_for("qk"), result.n_blocks)
    assert claim_block(result, reads) == 0  # B1's block 5 of 24 -> block 0 of 4
    paths = draw_table(figures(result, reads), tmp_path / "figs")
    assert [p.name for p in paths] == ["qk_matrices_block0.png", "qk_scatter_block0.png", "qk_laminar.png"]
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 10_000


def test_figures_read_the_runs_claims_not_the_packages(result: analysis.QKResult) -> None:
    """A run whose claims read another block and claim other thresholds draws those (not B1's block, B2's and B4's
    thresholds of the package)."""
    from layerclaims.claims import CLAIMS_BY_ID, claim_reads
    from layerclaims.studies.qk.figures import claim_block, figures

    mine = [
        dataclasses.replace(CLAIMS_BY_ID["B2"], id="U2", layer=23, conditions=(Condition("rsa_qk", ">", 0.42),)),
        dataclasses.replace(CLAIMS_BY_ID["B4"], id="U4", conditions=(Condition("min_rsa_qk_over_blocks", ">", 0.3),)),
    ]
    reads = claim_reads(mine, result.n_blocks)
    block = claim_block(result, reads)
    assert block == 3  # block 23 of 24 -> block 3 of 4
    table = figures(result, reads)
    assert set(table) == {"qk_matrices_block3.png", "qk_scatter_block3.png", "qk_laminar.png"}
    assert [c.threshold for c in table["qk_scatter_block3.png"].args[2] if c.statistic == "rsa_qk"] == [0.42]
    assert table["qk_laminar.png"].keywords["claim"].id == "U4"
    assert table["qk_laminar.png"].keywords["claim"].threshold == 0.3


def test_the_scatter_shows_one_interval_per_number_labelled_95(
    result: analysis.QKResult, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The title gives RSA alone; the one interval drawn for it is labelled as a 95% bootstrap interval (the
    decision interval, at the claim's family level, is the report's)."""
    import matplotlib.axes

    from layerclaims.claims import claim_reads
    from layerclaims.figures import draw_table
    from layerclaims.studies.qk.figures import figures

    texts: list[str] = []
    for name in ("set_title", "set_xlabel"):
        original = getattr(matplotlib.axes.Axes, name)

        def record(self: Any, label: str, *args: Any, _original: Any = original, **kwargs: Any) -> Any:
            texts.append(label)
            return _original(self, label, *args, **kwargs)

        monkeypatch.setattr(matplotlib.axes.Axes, name, record)
    draw_table(figures(result, claim_reads(claims_for("qk"), result.n_blocks)), tmp_path / "figs")
    title = next(t for t in texts if "RSA Q-K r =" in t)
    assert "CI" not in title and "[" not in title
    assert any("95% bootstrap intervals" in t and "decision interval" in t for t in texts)
