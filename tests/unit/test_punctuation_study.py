"""Study A (punctuation): flags, contexts, selection, the mark bootstrap, and a small run on tiny-gpt2."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest

from layerclaims.errors import UsageError
from layerclaims.studies.punctuation import Config
from layerclaims.studies.punctuation import result as result_module
from layerclaims.studies.punctuation.config import VARIANTS
from layerclaims.studies.punctuation.explain import markdown
from layerclaims.studies.punctuation.marks import KINDS, MARK_INDEX
from layerclaims.studies.punctuation.method import run
from layerclaims.studies.punctuation.result import MEASURES, PunctuationResult
from tests.oracles.marks import contexts, find_marks, select_marks, tokenize, usable_marks

needs_data = pytest.mark.skipif(
    not os.environ.get("LAYERCLAIMS_DATA"),
    reason="LAYERCLAIMS_DATA is not set: point it at ../shared/data (holds corpora/heart_of_darkness_pg219.txt)",
)


class FakeTokenizer:
    """decode([id]) -> vocab[id]; enough for the flag rule."""

    def __init__(self, vocab: list[str]) -> None:
        self.vocab = vocab
        self.calls = 0

    def decode(self, ids: list[int]) -> str:
        self.calls += 1
        return "".join(self.vocab[i] for i in ids)


VOCAB = ["the", ",", ".", " 3", "5", " cat", " .", ";", "?", "!", ":", "1.", " ,"]
T = {s: i for i, s in enumerate(VOCAB)}


def ids(*toks: str) -> np.ndarray:
    return np.array([T[t] for t in toks])


# ------------------------------------------------------------------------------------------------ flags


def test_flags_comma_and_period_with_strip() -> None:
    seq = ids("the", ",", " cat", ".", "the", " .", " cat", " ,")
    internal, terminal = find_marks(seq, FakeTokenizer(VOCAB), start=0)
    assert internal.tolist() == [1, 7]
    assert terminal.tolist() == [3, 5]


def test_flags_exclude_decimal_points() -> None:
    # "5" "." -> previous ends with a digit; "." " 3" -> next starts with a space, not a digit (kept);
    # "." "5" -> next starts with a digit
    seq = ids("the", "5", ".", " cat", ".", " 3", "the", ".", "5", " cat", "1.", ".", " cat")
    _, terminal = find_marks(seq, FakeTokenizer(VOCAB), start=0)
    # index 2 (after "5") and 7 (before "5") are excluded; 11 follows "1.", which ends with "." (kept)
    assert terminal.tolist() == [4, 11]


def test_flags_at_text_ends_and_start() -> None:
    seq = ids(".", "the", ",", " cat", ".")
    internal, terminal = find_marks(seq, FakeTokenizer(VOCAB), start=0)
    assert terminal.tolist() == [0, 4]  # no neighbour means no digit
    internal, terminal = find_marks(seq, FakeTokenizer(VOCAB), start=3)
    assert internal.tolist() == [] and terminal.tolist() == [4]


def test_flags_extended_marks() -> None:
    seq = ids("the", ";", ":", "?", "!", ",", ".", " cat")
    internal, terminal = find_marks(seq, FakeTokenizer(VOCAB), start=0, marks="extended")
    assert internal.tolist() == [1, 2, 5]
    assert terminal.tolist() == [3, 4, 6]
    internal, terminal = find_marks(seq, FakeTokenizer(VOCAB), start=0)
    assert internal.tolist() == [5] and terminal.tolist() == [6]
    with pytest.raises(UsageError, match="unknown marks"):
        find_marks(seq, FakeTokenizer(VOCAB), marks="all")  # type: ignore[arg-type]


def test_each_distinct_id_is_decoded_once() -> None:
    tok = FakeTokenizer(VOCAB)
    seq = np.tile(ids("the", ",", " cat", "."), 500)
    find_marks(seq, tok, start=0)
    assert tok.calls == 4


def test_explanation_reads_the_marks_windows() -> None:
    from layerclaims.studies.punctuation.explain import mark_attributes

    seq = np.random.default_rng(0).integers(0, len(VOCAB), 200)
    marks = np.array([30, 95, 160])
    attrs, texts = mark_attributes(contexts(seq, marks), marks, seq.size, FakeTokenizer(VOCAB))
    text = [VOCAB[i] for i in seq]
    assert texts[0] == "".join(text[10:30]) + f"⟦{text[30]}⟧" + "".join(text[31:41])
    assert attrs["token before"][1] == repr(text[94]) and attrs["token after"][2] == repr(text[161])
    assert attrs["place in book"] == ["decile 2", "decile 5", "decile 9"]


# ------------------------------------------------------------------------------------------------ contexts, selection


def test_usable_marks_and_contexts() -> None:
    marks = np.array([5, 19, 20, 50, 89, 90])
    kept, early, late = usable_marks(marks, n_tokens=100)
    assert kept.tolist() == [20, 50, 89] and early == 2 and late == 1
    text = np.arange(100)
    ctx = contexts(text, kept)
    assert ctx.shape == (3, 31)
    assert (ctx[:, MARK_INDEX] == kept).all()
    assert ctx[0, 0] == 0 and ctx[2, -1] == 99


def test_selection_first_random_and_too_many() -> None:
    usable = np.arange(100, 400, 3)
    assert select_marks(usable, 10, "first", 0).tolist() == usable[:10].tolist()
    a = select_marks(usable, 10, "random", 7)
    b = select_marks(usable, 10, "random", 7)
    c = select_marks(usable, 10, "random", 8)
    assert a.tolist() == b.tolist() and a.tolist() != c.tolist()
    assert np.all(np.diff(a) > 0) and set(a.tolist()) <= set(usable.tolist())
    with pytest.raises(UsageError, match=f"only {usable.size} usable"):
        select_marks(usable, usable.size + 1, "first", 0, kind="internal")
    with pytest.raises(UsageError, match="unknown selection"):
        select_marks(usable, 5, "every", 0)  # type: ignore[arg-type]


@needs_data
def test_counts_on_pg219_with_gpt2_tokenizer() -> None:
    from layerclaims.data import gpt2_tokenizer, load_corpus

    tok = gpt2_tokenizer()
    token_ids = tokenize(tok, load_corpus("heart-of-darkness").text)
    assert token_ids.size == 55_663  # shared/data/README.md
    internal, terminal = find_marks(token_ids, tok)
    assert (internal.size, terminal.size) == (2821, 2146)  # shared/data/README.md, the notebook's rule


# ------------------------------------------------------------------------------------------------ mark bootstrap


def test_seeds_are_independent_streams_from_one_place() -> None:
    from layerclaims.studies.punctuation.config import entry_seeds, kind_seeds

    a, b = kind_seeds(0, "internal"), kind_seeds(0, "terminal")
    assert len({a.selection, a.weights, a.draw, b.selection, b.weights, b.draw}) == 6
    again = kind_seeds(0, "internal")  # deterministic
    assert (again.selection, again.weights, again.draw) == (a.selection, a.weights, a.draw)
    assert entry_seeds(a.layer, 3) == entry_seeds(a.layer, 3) != entry_seeds(a.layer, 4)
    assert entry_seeds(a.layer, 3) != entry_seeds(b.layer, 3)


def test_gaussian_surrogate_keeps_mean_and_covariance_and_has_no_groups() -> None:
    from layerclaims.metrics.mark_cases import covariance
    from layerclaims.metrics.mark_clusters import cluster_marks
    from layerclaims.studies.punctuation.analysis import gaussian_surrogate
    from tests.oracles.mark_cases import CASES

    case = CASES["two groups 125/125"](np.random.default_rng(0))
    x = case.x[:, :64]  # few dimensions: the check of the covariance below is then precise
    s = np.stack([gaussian_surrogate(x, seed) for seed in range(40)])
    # the surrogate's expected mean and covariance over its N x N normal draws equal the marks' own: over 40 draws,
    # worst deviation measured 0.029 (means) and 0.054 (covariances, entries of size ~1) on 3 data seeds
    np.testing.assert_allclose(s.mean(axis=(0, 1)), x.mean(axis=0), atol=0.1)
    cov_s = np.mean([np.cov(si, rowvar=False) for si in s], axis=0)
    np.testing.assert_allclose(cov_s, np.cov(x, rowvar=False), atol=0.15)
    assert cluster_marks(covariance(case.x), n_boot=0).n_clusters == 3
    assert cluster_marks(covariance(gaussian_surrogate(case.x, 1)), n_boot=0).n_clusters == 1


# -------------------------------------------------------------------------------- the study on tiny-gpt2

N_SMALL = 40


@pytest.fixture(scope="module")
def tiny() -> tuple[object, PunctuationResult, Config]:
    if not os.environ.get("LAYERCLAIMS_DATA"):
        pytest.skip("LAYERCLAIMS_DATA is not set: point it at ../shared/data for the pg219 corpus")
    from layerclaims.models import load_model

    handle = load_model("tiny-gpt2")
    config = Config(n=N_SMALL, n_boot=50, n_boot_clusters=3, n_perm=20, detail_layers=(1,))
    messages: list[str] = []
    res = run(handle, config, progress=messages.append)
    assert any("layer 1 " in m for m in messages) and any(m.startswith("punctuation terminal") for m in messages)
    return handle, res, config


def test_tiny_result_shape_and_provenance(tiny: tuple[object, PunctuationResult, Config]) -> None:
    _handle, res, _ = tiny
    n = res.n_blocks
    assert res.model == "tiny-gpt2"
    pre = res.layers[~res.post_norm].tolist()
    assert pre == list(range(n + 1))
    if res.last_is_post_norm:
        assert res.layers[res.post_norm].tolist() == [n]
    for kind in KINDS:
        k = res.kind_result(kind)
        assert k.marks.size == N_SMALL and k.n_found >= k.n_usable >= N_SMALL
        assert k.mean_mi.value.shape == res.layers.shape
        # layer 0: every mark is the same token at the same position, so all vectors (and pairs) are identical
        assert k.degenerate[res.entry(0)] and np.isnan(k.pooled_r.value[res.entry(0)]) and k.cov_clusters[0] == 1
        assert np.all(np.isfinite(k.pooled_r.value[res.layers > 0]))
        assert [d.layer for d in k.details] == [1]
        assert k.details[0].cov_values.shape == (N_SMALL * (N_SMALL - 1) // 2,)
        assert k.groups_cov.shape == (res.layers.size, N_SMALL)
    prov = res.provenance
    assert prov["corpus"]["sha256"] and prov["selection"] == "first"
    assert {"tokenize_s", "forward_s", "analysis_s"} <= set(prov["timings"])
    assert prov["norm_entries"]["last_hidden_state_post_norm"] == res.last_is_post_norm


def test_tiny_vectors_equal_hf_hidden_states(tiny: tuple[object, PunctuationResult, Config]) -> None:
    """The study's mark vectors are hidden_states[L][:, 20, :] of a plain HF forward pass on the same contexts;
    its pair statistics are pairwise_mi_cov of those vectors."""
    import torch

    from layerclaims.metrics.information import pairwise_mi_cov

    handle, res, config = tiny
    k = res.internal
    from layerclaims.data import load_study_text

    text = load_study_text(config.corpus, line_endings=config.line_endings).text  # the text the study tokenised
    token_ids = tokenize(handle.tokenizer, text)
    ctx = contexts(token_ids, k.marks)
    from layerclaims.studies.punctuation.extraction import extract_marks

    X = extract_marks(handle, ctx, res.layers, res.post_norm, batch_size=7)
    with torch.no_grad():
        out = handle.model(torch.as_tensor(ctx), output_hidden_states=True)
    hs = [h[:, MARK_INDEX, :].double().numpy() for h in out.hidden_states]
    for e, (L, post) in enumerate(zip(res.layers, res.post_norm, strict=True)):
        if post or L < res.n_blocks or not res.last_is_post_norm:
            np.testing.assert_allclose(X[e], hs[L], rtol=1e-5, atol=1e-5)
    if res.last_is_post_norm:
        pre = X[res.entry(res.n_blocks, post_norm=False)]
        assert not np.allclose(pre, hs[-1], atol=1e-3)  # the pre-norm block output is not the post-norm entry
    iu = np.triu_indices(N_SMALL, 1)
    for d in k.details:
        MI, COV = pairwise_mi_cov(X[d.entry], bins=config.bins, z_threshold=config.z_threshold)
        np.testing.assert_allclose(d.cov_values, np.asarray(COV)[iu], rtol=1e-5)
        np.testing.assert_allclose(d.mi_values, np.asarray(MI)[iu], rtol=1e-5, atol=1e-6)


def test_tiny_measure_every_statistic(tiny: tuple[object, PunctuationResult, Config]) -> None:
    _, res, _ = tiny
    for stat in MEASURES:
        layer = None if stat.startswith("spearman") else 1
        for kind in KINDS:
            m = res.measure(stat, layer=layer, kind=kind)
            assert isinstance(m.value, float)
    m = res.measure("cov_clusters", layer=1, kind="internal")
    assert m.value >= 1 and "stability" in m.details and "literal_count" in m.details
    # count claims are decided on the integer counts refit over resamples of marks
    assert m.replicates is not None and m.replicates.dtype.kind == "i" and m.replicates.size == 3
    assert m.control is not None and m.control.value >= 1
    for stat in ("pooled_r", "min_within_cluster_slope"):
        got = res.measure(stat, layer=1, kind="internal")
        assert got.replicates is not None and got.control is not None
    r = res.measure("pooled_r", layer=1, kind="internal")
    assert -1 <= r.value <= 1 and r.ci is not None and r.ci[0] <= r.ci[1]
    s = res.measure("spearman_mean_cov_vs_depth", layer=None, kind="internal")
    assert s.details["layers"] == list(range(1, res.n_blocks + 1))
    # A7 has no control, and says why; its growth is the ratio of the last block output's mean to the first's,
    # with the ratio on every resample
    k = res.internal
    depth = res.depth_entries()
    for what in ("mi", "cov"):
        sp = res.measure(f"spearman_mean_{what}_vs_depth", layer=None, kind="internal")
        assert sp.control is None and sp.details["control"].startswith("none exists")
        ratio = res.measure(f"ratio_mean_{what}_last_first", layer=None, kind="internal")
        means = getattr(k, f"mean_{what}").value
        if means[depth[0]] > 0:
            assert ratio.value == pytest.approx(means[depth[-1]] / means[depth[0]])
            assert ratio.replicates is not None and ratio.replicates.size == k.mean_mi_boot.shape[0]
        else:
            assert ratio.ci is None and "not positive" in ratio.details["not_evaluated"]
    # A7's MI statistics on the dimension variants (every block output: this run computes everything)
    mi_var = k.mean_mi_variants
    assert mi_var.shape == (len(VARIANTS), res.layers.size)
    assert np.isfinite(mi_var[:, depth]).all()
    assert (mi_var[:, [depth[0], depth[-1]]] >= 0).all()  # plug-in MI is never negative
    ratio = res.measure("ratio_mean_mi_last_first", layer=None, kind="internal")
    expect = mi_var[:, depth[-1]] / mi_var[:, depth[0]]
    assert list(ratio.details["without_top_dimensions"].values()) == pytest.approx(list(expect))
    trend = res.measure("spearman_mean_mi_vs_depth", layer=None, kind="internal").details["without_top_dimensions"]
    assert set(trend) == set(VARIANTS) and all(-1 <= v <= 1 for v in trend.values())
    with pytest.raises(KeyError):
        res.measure("no_such_statistic", layer=1, kind="internal")
    with pytest.raises(UsageError):
        res.measure("pooled_r", layer=res.n_blocks + 5, kind="internal")


def test_tiny_save_load_round_trip(tiny: tuple[object, PunctuationResult, Config], tmp_path: Path) -> None:
    _, res, _ = tiny
    path = res.save(tmp_path)
    assert path.name == "punctuation.json"
    back = PunctuationResult.load(tmp_path)
    assert back.model == res.model and back.n_blocks == res.n_blocks
    np.testing.assert_array_equal(back.layers, res.layers)
    np.testing.assert_array_equal(back.internal.details[0].cov_values, res.internal.details[0].cov_values)
    assert back.internal.details[0].cov.pair_types == res.internal.details[0].cov.pair_types
    for stat in ("cov_clusters", "pooled_r", "min_within_cluster_slope"):
        assert back.measure(stat, layer=1, kind="terminal") == res.measure(stat, layer=1, kind="terminal")
    assert back.provenance == res.provenance


def test_tiny_figures_are_written_from_a_saved_result(
    tiny: tuple[object, PunctuationResult, Config], tmp_path: Path
) -> None:
    """Every figure the study's table names is drawn from the saved (reloaded) result, as the report reads it."""
    from layerclaims.figures import draw_table
    from layerclaims.studies.punctuation.figures import figures

    _, res, _ = tiny
    res.save(tmp_path)
    back = PunctuationResult.load(tmp_path)
    paths = draw_table(figures(back), tmp_path / "figs")
    assert (
        [p.name for p in paths]
        == list(figures(back))
        == [
            "punct_scatter_claim_layers.png",
            "punct_grid_internal.png",
            "punct_hist_internal.png",
            "punct_grid_terminal.png",
            "punct_hist_terminal.png",
            "punct_means_depth.png",
        ]
    )
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 10_000


def test_too_many_marks_is_a_clear_error() -> None:
    if not os.environ.get("LAYERCLAIMS_DATA"):
        pytest.skip("LAYERCLAIMS_DATA is not set: point it at ../shared/data for the pg219 corpus")
    from layerclaims.models import load_model

    with pytest.raises(UsageError, match="usable ones exist"):
        run(load_model("tiny-gpt2"), Config(n=100_000))


def test_old_saved_results_ask_for_a_re_run(tmp_path: Path) -> None:
    import json

    (tmp_path / "punctuation.json").write_text(
        json.dumps(
            {
                "format_version": 1,
                "result": {"__dataclass__": f"{result_module.__name__}:PunctuationResult", "model": "x"},
            }
        )
    )
    with pytest.raises(UsageError, match="re-run"):
        PunctuationResult.load(tmp_path)


def test_markdown_lists_counts_groups_and_literal(tiny: tuple[object, PunctuationResult, Config]) -> None:
    _, res, _ = tiny
    md = markdown(res)
    assert "internal marks, layer 1" in md and "terminal marks, layer 1" in md
    assert "literal count of the pair values" in md and "| pair type (groups) |" in md


def test_small_samples_are_not_evaluated() -> None:
    if not os.environ.get("LAYERCLAIMS_DATA"):
        pytest.skip("LAYERCLAIMS_DATA is not set: point it at ../shared/data for the pg219 corpus")
    from layerclaims.models import load_model

    res = run(load_model("tiny-gpt2"), Config(n=3, n_boot=10, n_boot_clusters=2, n_perm=5, detail_layers=(1,)))
    for stat in ("cov_clusters", "mi_clusters", "pooled_r", "min_within_cluster_slope"):
        m = res.measure(stat, layer=1, kind="internal")
        assert m.ci is None and "--n" in m.details["not_evaluated"]
    for stat in ("spearman_mean_mi_vs_depth", "spearman_mean_cov_vs_depth"):  # means of 3 pairs per layer
        m = res.measure(stat, layer=None, kind="internal")
        assert m.ci is None and "--n" in m.details["not_evaluated"]


def test_control_has_replicates_and_sees_no_groups() -> None:
    from layerclaims.studies.punctuation.analysis import combine_controls, submit_controls
    from tests.oracles.mark_cases import CASES

    x = CASES["two groups 125/125"](np.random.default_rng(0)).x
    futures = submit_controls(x, Config(n_boot_clusters=4), seed=3, blocks=np.arange(x.shape[0]))
    got = combine_controls([f.result()[0] for f in futures])
    assert got["cov_clusters"].value == 1.0  # the groups that make 3 clusters in x are gone in the surrogate
    assert got["cov_clusters"].replicates is not None and got["cov_clusters"].replicates.dtype.kind == "i"
    assert got["pooled_r"].ci is not None and -1 <= got["pooled_r"].value <= 1


def test_simpson_on_mark_groups_with_groups_refit_in_each_resample() -> None:
    """A known paradox: MI falls across the pair types (pooled r < 0) but rises with covariance inside each one.
    The within-group slopes and the paradox flag hold in the resamples too, with the groups refit each time."""
    from layerclaims.metrics.bootstrap import block_counts
    from layerclaims.metrics.mark_cases import covariance
    from layerclaims.metrics.mark_clusters import cluster_marks
    from layerclaims.studies.punctuation.analysis import Layer, detail_resamples, paradox, within_slopes
    from tests.oracles.mark_cases import CASES

    rng = np.random.default_rng(0)
    case = CASES["two groups 125/125"](rng)
    cov = covariance(case.x)
    lab = case.labels
    level = np.choose(lab[:, None] + lab[None, :], [0.25, 0.5, 1.0])  # a_g a_h of the loadings 0.5 and 1.0
    noise = rng.normal(0, 0.01, cov.shape)
    mi = -2.0 * level + 0.5 * (cov - level) + (noise + noise.T)
    iu = np.triu_indices(250, 1)
    layer = Layer(cov, mi, cov[iu], mi[iu], False)
    groups = cluster_marks(cov, n_boot=0)
    slopes, sizes, pooled = within_slopes(layer, groups)
    assert groups.n_clusters == 3 and sizes.sum() == iu[0].size
    assert np.all(slopes[0] > 0) and pooled[0] < 0 and paradox(slopes, pooled)[0]
    reps = detail_resamples(layer, block_counts(np.arange(250), 5, seed=1).astype(float))
    assert np.all(reps["cov"] == 3) and np.all(reps["slope"] > 0) and reps["paradox"].all()


def test_massive_dimensions_of_the_marks_found_by_sun_et_al_rule() -> None:
    """A planted massive dimension (|a| = 500 in 7 of 50 marks whose other entries are ~N(0, 0.1)) is found in
    those marks only; without it there is none, and the report section says which."""
    from layerclaims.studies.punctuation.analysis import massive_dimensions
    from layerclaims.studies.punctuation.explain import _dimensions_md

    x = np.random.default_rng(0).normal(0, 0.1, (50, 64))
    plain = massive_dimensions(x)
    assert plain["dims"] == [] and plain["top_ratio"] < 1000
    x[:7, 12] = -500.0
    x[7:9, 30] = 50.0  # >= 1000x the median but not above 100: not massive
    got = massive_dimensions(x)
    assert got["dims"] == [12] and got["n_marks"] == [7] and got["top_ratio"] > 1000
    text = _dimensions_md({"dims": [12], "variance_share": [0.9], "massive_activations": got})
    assert "massive-activation dimensions" in text and "12 (in 7 marks)" in text
    assert "no massive-activation dimension" in _dimensions_md({"massive_activations": plain})


# ------------------------------------------------------------------------------------- what the claims read


def test_run_options_fills_the_reads_from_the_claims() -> None:
    from layerclaims.run import plan_runs, run_options
    from layerclaims.validate import RunPlan

    (only,) = plan_runs(("punctuation",))
    opts = run_options(only, RunPlan(shape=None), 30)
    assert opts["detail_layers"] == (1, 25)
    reads = set(opts["reads"])
    assert {("internal", 1, "cov_clusters"), ("internal", 1, "mi_clusters"), ("internal", 1, "pooled_r")} <= reads
    assert {("internal", 25, "cov_clusters"), ("terminal", 1, "cov_clusters")} <= reads
    assert not any(k == "terminal" and x == 25 for k, x, _ in reads)  # nothing reads it: not computed
    assert not any(k == "internal" and x == 25 and st.startswith("mi_") for k, x, st in reads)
    assert ("internal", None, "spearman_mean_mi_vs_depth") in reads  # A7 reads the MI trend over layers
    # layers the user set: everything is computed at them
    user = run_options(only, RunPlan(shape=None, options={"punctuation": {"detail_layers": (1, 20)}}), 30)
    assert user["detail_layers"] == (1, 20) and user.get("reads") is None


def test_detail_reads_are_checked() -> None:
    assert Config(reads=[[None, 1, "cov_clusters"]]).reads == (("internal", 1, "cov_clusters"),)
    with pytest.raises(UsageError, match="reads"):
        Config(reads=[("neither", 1, "cov_clusters")])


@pytest.fixture(scope="module")
def with_reads(tiny: tuple[object, PunctuationResult, Config]) -> tuple[PunctuationResult, PunctuationResult]:
    """The tiny result with every claim layer in full, and the same run computing only what the claims read."""
    from dataclasses import replace

    from layerclaims.run import plan_runs, run_options
    from layerclaims.validate import RunPlan

    handle, _, config = tiny
    opts = run_options(plan_runs(("punctuation",))[0], RunPlan(shape=None), int(handle.n_blocks))  # type: ignore[attr-defined]
    full = run(handle, replace(config, detail_layers=opts["detail_layers"]))
    return full, run(handle, replace(config, detail_layers=opts["detail_layers"], reads=opts["reads"]))


def test_what_no_claim_reads_is_not_computed_and_says_so(
    with_reads: tuple[PunctuationResult, PunctuationResult],
) -> None:
    _, res = with_reads
    reads = res.config["reads"]
    layers = sorted({int(x) for _, x, _ in reads if x is not None})
    unread = [(k, x, st) for k in KINDS for x in layers for st in ("cov_clusters", "mi_clusters", "pooled_r")]
    unread = [r for r in unread if tuple(r) not in {tuple(q) for q in reads}]
    assert unread  # the package's claims leave some of the detail unread
    for kind, layer, stat in unread:
        m = res.measure(stat, layer=layer, kind=kind)
        assert m.ci is None and m.control is None and np.isnan(m.value)
        assert m.details["not_evaluated"].startswith("not computed in this run: no claim read it")
        assert "--set punctuation.detail_layers=[" in m.details["not_evaluated"]
    md = markdown(res)
    assert "not computed: no claim reads it" in md.lower()
    # the MI of the dimension variants: at every block output where A7 reads the trend (internal), else at the ends
    depth = res.depth_entries()
    assert np.isfinite(res.internal.mean_mi_variants[:, depth]).all()
    assert np.isnan(res.terminal.mean_mi_variants[:, depth[1:-1]]).all()
    said = res.measure("spearman_mean_mi_vs_depth", layer=None, kind="terminal").details["without_top_dimensions"]
    assert said.startswith("not computed in this run: no claim read it") and "--set punctuation.detail_layers=[" in said
    ratio = res.measure("ratio_mean_mi_last_first", layer=None, kind="terminal").details["without_top_dimensions"]
    assert set(ratio) == set(VARIANTS)


def test_verdicts_are_the_same_with_and_without_the_reads(
    with_reads: tuple[PunctuationResult, PunctuationResult],
) -> None:
    from layerclaims.claims import claims_for
    from layerclaims.verdicts import evaluate

    full, res = with_reads
    for claim in claims_for("punctuation"):
        a, b = evaluate(claim, full), evaluate(claim, res)
        assert (a.verdict, a.reason) == (b.verdict, b.reason), claim.id
        for ca, cb in zip(a.conditions, b.conditions, strict=True):
            assert repr((ca.value, ca.ci, ca.verdict)) == repr((cb.value, cb.ci, cb.verdict)), claim.id
    for kind, layer, stat in res.config["reads"]:
        ma, mb = full.measure(stat, layer=layer, kind=kind), res.measure(stat, layer=layer, kind=kind)
        assert repr((ma.value, ma.ci, ma.p_value)) == repr((mb.value, mb.ci, mb.p_value))
        assert (ma.control is None) == (mb.control is None)
        if ma.control is not None and mb.control is not None:
            assert (ma.control.value, ma.control.ci) == (mb.control.value, mb.control.ci)


def test_mi_count_outside_the_detail_layers_is_not_a_number(tmp_path: Path) -> None:
    """MI groups are fit only at the detail layers: elsewhere the MI count is not evaluated (never a count of 0),
    and the fix names the layer to add; the covariance count stays, without an interval."""
    from layerclaims.models import load_model
    from layerclaims.studies.punctuation.config import Config
    from layerclaims.studies.punctuation.method import run

    handle = load_model("tiny-gpt2")
    result = run(handle, Config(n=40, n_boot=20, n_boot_clusters=0, n_perm=0, detail_layers=(1,), detect_sims=0))
    m = result.measure("mi_clusters", layer=2, kind="internal")
    assert math.isnan(m.value) and m.ci is None
    assert "detail_layers=[1,2]" in m.details["not_evaluated"]
    cov = result.measure("cov_clusters", layer=2, kind="internal")
    assert cov.value >= 1 and "not a detail layer" in cov.details["note"]


@pytest.mark.parametrize("given", ["abc", "0", "-2", "1.5"])
def test_a_bad_worker_count_is_named_with_its_fix(given: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from layerclaims.errors import UsageError
    from layerclaims.tasks import workers

    monkeypatch.setenv("LAYERCLAIMS_WORKERS", given)
    with pytest.raises(UsageError, match="LAYERCLAIMS_WORKERS=.* is not a number of processes") as info:
        workers()
    assert "whole number >= 1" in (info.value.fix or "")
    monkeypatch.setenv("LAYERCLAIMS_WORKERS", "3")
    assert workers() == 3


@pytest.mark.slow
def test_results_do_not_depend_on_the_worker_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    """The detail tasks (refits in chunks, controls, detection limits, A7's variants) give the same numbers run
    here and in two spawned worker processes: a task's randomness comes from its arguments only."""
    if not os.environ.get("LAYERCLAIMS_DATA"):
        pytest.skip("LAYERCLAIMS_DATA is not set: point it at ../shared/data for the pg219 corpus")
    from layerclaims.models import load_model

    handle = load_model("tiny-gpt2")
    config = Config(n=24, n_boot=20, n_boot_clusters=60, n_perm=10, detail_layers=(1,), detect_sims=2)
    got = []
    for n_workers in ("1", "2"):
        monkeypatch.setenv("LAYERCLAIMS_WORKERS", n_workers)
        got.append(run(handle, config))
    for kind in KINDS:
        one, two = got[0].kind_result(kind), got[1].kind_result(kind)
        a, b = one.details[0], two.details[0]
        assert a.cov.boot_counts == b.cov.boot_counts and len(a.cov.boot_counts) == 60
        np.testing.assert_array_equal(a.slope_replicates, b.slope_replicates)
        assert a.detectability == b.detectability and a.dimensions == b.dimensions
        assert {k: c.replicates.tolist() for k, c in a.controls.items() if c.replicates is not None} == {
            k: c.replicates.tolist() for k, c in b.controls.items() if c.replicates is not None
        }
        np.testing.assert_array_equal(one.mean_mi_variants, two.mean_mi_variants)


def test_refits_in_chunks_equal_the_refits_in_one_task() -> None:
    """The fast representative of the worker test: a layer's refits split into chunks (as the tasks run them)
    equal the refits of all the resamples at once."""
    from layerclaims.studies.punctuation.analysis import _chunks, _counts, detail_resamples, pair_matrices
    from tests.oracles.mark_cases import groups

    case = groups([20, 20], [0.3, 1.2], np.random.default_rng(3), 3)
    layer = pair_matrices(case.x[:, :96], Config())
    counts = _counts(np.arange(40), 120, 7)
    whole = detail_resamples(layer, counts)
    parts = [detail_resamples(layer, c) for c in _chunks(counts)]
    assert len(parts) == 3
    for k, v in whole.items():
        np.testing.assert_array_equal(v, np.concatenate([p[k] for p in parts]))
