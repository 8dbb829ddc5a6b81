"""Study B's controls: the block input captured by extraction, random projections of it, K minus Q after removing
the shared mean, and the measurements that carry replicates and controls to the verdicts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from layerclaims.claims import claims_for
from layerclaims.extract import qkv
from layerclaims.metrics.similarity import cosine_matrix, mean_offdiagonal
from layerclaims.models import load_model
from layerclaims.studies import qk
from layerclaims.studies.qk import analysis
from layerclaims.verdicts import apply_family, apply_presuppositions, evaluate


@pytest.mark.parametrize("name", ["tiny-gpt2", "tiny-llama", "tiny-bert"])
def test_block_input_is_what_the_projections_map(name: str) -> None:
    handle = load_model(name)
    out = qkv(handle, [[1, 2, 3, 4], [5, 6, 7]], -1, blocks=[0, 1], block_input=True)
    assert out["x"].shape == (2, 2, handle.d_model)
    for slot, b in enumerate((0, 1)):
        for name_ in ("q", "k", "v"):
            site = handle.arch.site(name_)
            module = handle.blocks[b].get_submodule(site.module)
            with torch.no_grad():
                full = module(torch.from_numpy(out["x"][slot])).numpy()
            width = full.shape[-1] // site.n_chunks
            got = full[:, site.chunk * width : (site.chunk + 1) * width]
            # float32 matmul of the same numbers in another order: measured worst 1.2e-7 absolute
            np.testing.assert_allclose(got, out[name_][slot], atol=1e-5, rtol=1e-5)
    plain = qkv(handle, [[1, 2, 3, 4], [5, 6, 7]], -1, blocks=[0, 1])
    assert "x" not in plain and np.array_equal(plain["q"], out["q"])  # additive: the default is unchanged


@pytest.fixture(scope="module")
def tiny_result() -> analysis.QKResult:
    return analysis.run(load_model("tiny-llama"), qk.Config(n_boot=200, n_perm=99, n_control_seeds=4))


def test_controls_are_projections_of_the_block_input(tiny_result: analysis.QKResult) -> None:
    r = tiny_result
    n_sel = len(r.blocks)
    assert set(r.controls) == {"k_minus_q", "rsa_qk", "min_selectivity_qk"}
    for ctrl in r.controls.values():
        assert ctrl.value.shape == (n_sel,) and ctrl.replicates.shape == (n_sel, 4 * 50)  # 200 // 4 = 50 per seed
        assert ctrl.details["n_seeds"] == 4 and ctrl.details["widths"] == {"q": r.dims["q"], "k": r.dims["k"]}
    assert set(r.replicates) == {"k_minus_q", "rsa_qk", "min_selectivity_qk"}
    assert r.replicates["rsa_qk"].shape == (n_sel, 200)
    assert r.centred_k_minus_q is not None and r.centred_k_minus_q.value.shape == (n_sel,)


def test_centred_k_minus_q_removes_a_shared_offset() -> None:
    rng = np.random.default_rng(0)
    labels = qk.LABELS
    x = rng.standard_normal((1, 34, 16))
    q = x @ rng.standard_normal((16, 16))
    k = q + 50.0  # a huge common offset: raw K cosines near 1, centred K equals centred Q
    cos = {"q": cosine_matrix(q[0])[None], "k": cosine_matrix(k[0])[None], "v": cosine_matrix(q[0])[None]}
    stats = analysis.analyse(cos, labels, [0], qk.Config(n_boot=50, n_perm=0, n_control_seeds=0), {"q": q, "k": k})
    raw = mean_offdiagonal(cos["k"][0]) - mean_offdiagonal(cos["q"][0])
    assert stats["k_minus_q"].value[0] == pytest.approx(raw) and raw > 0.5
    assert abs(stats["centred_k_minus_q"].value[0]) < 1e-12


def test_measurements_carry_replicates_and_controls_to_verdicts(tiny_result: analysis.QKResult) -> None:
    block = 0
    m = tiny_result.measure("rsa_qk", layer=block, kind=None)
    assert m.replicates is not None and m.replicates.shape == (200,) and m.control is not None
    assert "random projections" in m.control.name and m.control.replicates is not None
    band = tiny_result.measure("min_rsa_qk_over_blocks", layer=None, kind=None)
    assert band.replicates is not None and band.replicates.ndim == 2
    assert band.details["part_values"] == tiny_result.rsa["qk"].value.tolist()
    verdicts = apply_family(apply_presuppositions([evaluate(c, tiny_result) for c in claims_for("qk")]))
    for v in verdicts:
        assert v.verdict in ("holds", "holds on control too", "fails", "inconclusive")
        assert v.control is not None and v.control.value is not None
        row = v.to_row()
        assert row["control"]["name"].startswith("random projections") and row["p_adjusted"] is not None
        if v.verdict in ("holds", "holds on control too"):  # every holds has its interval wholly past its threshold
            for c in v.conditions:
                assert c.ci is not None and (c.ci[0] > c.threshold if c.comparison == ">" else c.ci[1] < c.threshold)
    b4 = next(v for v in verdicts if v.claim == "B4")
    assert b4.conditions[0].rule == "band" and b4.conditions[1].rule == "threshold"


def test_a_negative_number_of_control_seeds_is_refused() -> None:
    with pytest.raises(Exception, match="n_control_seeds"):
        qk.Config(n_control_seeds=-1)
