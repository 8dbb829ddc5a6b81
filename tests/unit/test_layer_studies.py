"""The layer studies (massive, anisotropy, sink): statistics on planted data with known answers, end-to-end runs
on tiny-gpt2 (small settings), save/load round trips, figures and report sections, and the declarations."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from layerclaims import study as registry
from layerclaims.errors import UsageError
from layerclaims.intervene import Patch, next_token_loss
from layerclaims.models import ModelHandle
from layerclaims.studies.anisotropy import Config as AConfig
from layerclaims.studies.anisotropy import analysis as aniso
from layerclaims.studies.massive import Config as MConfig
from layerclaims.studies.massive import analysis as massive
from layerclaims.studies.sink import Config as SConfig
from layerclaims.studies.sink import analysis as sink

# ------------------------------------------------------------------------------------------------- massive


def _planted(n_layers: int = 6, n: int = 5, t: int = 8, d: int = 10) -> np.ndarray:
    """Hidden states |a| ~ 1 with one massive entry (dim 3, position 0) from layer 2 to 4 in every window, and one
    more (dim 7, position 5) in window 0 at layer 3."""
    rng = np.random.default_rng(0)
    H = rng.uniform(0.5, 1.5, size=(n_layers, n, t, d)) * rng.choice([-1, 1], size=(n_layers, n, t, d))
    H[2:5, :, 0, 3] = 5000.0
    H[3, 0, 5, 7] = -4000.0
    return H


def test_massive_statistics_on_planted_activations() -> None:
    config = MConfig(n_windows=5, length=8)
    s = massive.summarise(_planted(), config)
    np.testing.assert_array_equal(s.dims, [3, 7])
    assert len(s.entries) == 3 * 5 + 1
    stats = massive.layer_statistics(s, np.ones((1, 5)), config, n_blocks=5)
    np.testing.assert_allclose(stats["massive_share"][:, 0], [0, 0, 1, 1, 1, 0])
    assert stats["onset_depth"][0] == pytest.approx(2 / 5)
    assert stats["persistence"][0] == pytest.approx(3 / 4)  # hidden states 2, 3, 4 of 2..5
    assert stats["n_massive_dims"][0] == 1  # dim 7 is massive in 1 of 5 windows only: below presence 0.5
    assert stats["top_massive_dim"][0] == 3
    delim = np.array([5, -1, 2, 3, 4])  # window 0's first delimiter is position 5
    first, either = massive.position_shares(s, np.ones((1, 5)), delim)
    assert first[0] == pytest.approx(15 / 16) and either[0] == pytest.approx(1.0)
    # resampling window 0 three times weighs its entries three times
    counts = np.array([[3.0, 0, 1, 1, 0]])
    first_w, _ = massive.position_shares(s, counts, delim)
    assert first_w[0] == pytest.approx((3 * 3 + 3 + 3) / (3 * 4 + 3 + 3))  # window 0: 3 of its 4 entries at 0
    none = massive.layer_statistics(massive.summarise(_planted() * 0 + 1.0, config), np.ones((1, 5)), config, 5)
    assert none["onset_depth"][0] == pytest.approx(6 / 5) and none["persistence"][0] == 0.0


def test_delimiter_positions(tiny_gpt2: ModelHandle) -> None:
    tok = tiny_gpt2.tokenizer
    ids = np.array([tok.encode("A cat sat. Then")[:5], tok.encode(". one two three four")[:5]])
    got = massive.delimiter_positions(tok, ids)
    assert got[0] == 3 and got[1] == -1  # position 0 never counts as the first delimiter


def test_massive_run_with_an_intervention_matches_a_hand_patch(tiny_gpt2: ModelHandle, shared_data: Path) -> None:
    # tiny-gpt2 has no massive activation; a low ratio makes its largest entries "massive" to exercise every path
    config = MConfig(n_windows=4, length=16, abs_threshold=0.0, ratio=5.0, n_boot=50, control_windows=2)
    result = massive.run(tiny_gpt2, config)
    inter = result.intervention
    assert inter is not None and len(inter.dims) >= 1
    patched = np.array(
        [
            next_token_loss(tiny_gpt2, [ids], [Patch(inter.block, inter.dims, pos or (999,), 0.0)]).per_sequence[0]
            for ids, pos in zip(
                massive.corpus_windows(tiny_gpt2.tokenizer, config.corpus, 4, 16, 0, True).ids,
                inter.positions,
                strict=True,
            )
        ]
    )
    np.testing.assert_allclose(inter.zero, patched, rtol=0, atol=1e-6)
    m = result.measure("zero_loss_increase", layer=None)
    assert m.value == pytest.approx(float((inter.zero - inter.clean).mean()))
    assert m.replicates is not None and len(m.replicates) == 50 and m.control is not None
    assert m.control.replicates is not None and m.control.ci is not None  # random dims zeroed, windows resampled
    assert m.control.value == pytest.approx(float((inter.random - inter.clean).mean()))
    premise = result.measure("max_massive_share", layer=None)
    assert premise.control is not None and premise.control.replicates is not None
    share = result.measure("massive_share", layer=1)
    assert 0 <= share.value <= 1 and share.control is not None
    with pytest.raises(UsageError, match="pass layer=None"):
        result.measure("onset_depth", layer=2)
    with pytest.raises(KeyError):
        result.measure("nope", layer=None)


def test_massive_on_a_random_model_finds_none_and_says_so(
    tiny_gpt2: ModelHandle, shared_data: Path, tmp_path: Path
) -> None:
    result = massive.run(tiny_gpt2, MConfig(n_windows=3, length=16, n_boot=20, control_windows=0))
    assert result.intervention is None and not len(result.entries)
    assert result.measure("n_massive_dims", layer=None).value == 0
    with pytest.raises(UsageError, match="intervention needs"):
        result.measure("zero_loss_increase", layer=None)
    result.save(tmp_path)
    again = massive.MassiveResult.load(tmp_path)
    np.testing.assert_array_equal(again.massive_share, result.massive_share)
    assert again.measure("onset_depth", layer=None).value == result.measure("onset_depth", layer=None).value
    assert "No massive activation" in registry.get("massive").report_section(result)  # type: ignore[misc]


# ---------------------------------------------------------------------------------------------- anisotropy


def test_cross_window_cosine_equals_brute_force() -> None:
    rng = np.random.default_rng(1)
    X = rng.normal(size=(2, 4, 3, 5)) + 0.5  # [L, n windows, k tokens, d]
    counts = np.array([[2.0, 0, 1, 1], [1, 1, 1, 1]])
    got = aniso.mean_cross_window_cosine(aniso.window_sums(X), 3, counts)
    for b, c in enumerate(counts):
        rows = np.repeat(np.arange(4), c.astype(int))  # the resample, duplicates kept
        for layer in range(2):
            u = X[layer] / np.linalg.norm(X[layer], axis=-1, keepdims=True)
            total, pairs = 0.0, 0
            for i, wi in enumerate(rows):
                for j, wj in enumerate(rows):
                    if i != j and wi != wj:  # copies of one window are not a pair of different windows
                        total += float((u[wi] @ u[wj].T).sum())
                        pairs += 9
            assert got[layer, b] == pytest.approx(total / pairs)


def test_anisotropy_run(tiny_gpt2: ModelHandle, shared_data: Path, tmp_path: Path) -> None:
    result = aniso.run(tiny_gpt2, AConfig(n_windows=4, length=16, per_window=3, n_boot=30))
    assert result.mean_cosine.shape == (tiny_gpt2.n_blocks + 1,)
    m = result.measure("mean_cosine", layer=tiny_gpt2.n_blocks)
    assert m.ci is not None and m.control is not None and abs(m.control.value) < 0.2
    rise = result.measure("last_minus_min_cosine", layer=None)
    assert rise.value == pytest.approx(result.mean_cosine[-1] - result.mean_cosine.min())
    result.save(tmp_path)
    again = aniso.AnisotropyResult.load(tmp_path)
    np.testing.assert_array_equal(again.mean_cosine, result.mean_cosine)
    assert "Anisotropy by depth" in registry.get("anisotropy").report_section(result)  # type: ignore[misc]
    with pytest.raises(UsageError, match="per_window"):
        AConfig(length=4, per_window=4, skip_first=True)


# ---------------------------------------------------------------------------------------------------- sinks


def test_sink_run(tiny_gpt2: ModelHandle, shared_data: Path, tmp_path: Path) -> None:
    result = sink.run(tiny_gpt2, SConfig(n_windows=4, length=16, n_boot=30, control_windows=2, epsilon=0.1))
    assert result.alpha.shape == (4, tiny_gpt2.n_blocks, 4)
    m = result.measure("sink_share", layer=None)
    assert m.value == pytest.approx(float((result.alpha > 0.1).mean()))
    assert m.control is not None and m.replicates is not None and len(m.replicates) == 30
    assert m.control.replicates is not None and len(m.control.replicates) == 30
    at = result.measure("sink_share_at_block", layer=1)
    assert at.value == pytest.approx(float((result.alpha[:, 1] > 0.1).mean()))
    mean = result.measure("mean_first_token_attention", layer=None)
    assert mean.value == pytest.approx(float(result.alpha.mean()))
    result.save(tmp_path)
    again = sink.SinkResult.load(tmp_path)
    assert again.measure("sink_share", layer=None).value == m.value
    assert "Sink_1" in registry.get("sink").report_section(result)  # type: ignore[misc]


def test_figures_are_drawn(tiny_gpt2: ModelHandle, shared_data: Path, tmp_path: Path) -> None:
    from layerclaims.figures import draw_table

    results = {
        "massive": massive.run(
            tiny_gpt2, MConfig(n_windows=3, length=16, abs_threshold=0, ratio=5.0, n_boot=10, control_windows=1)
        ),
        "anisotropy": aniso.run(tiny_gpt2, AConfig(n_windows=3, length=16, per_window=2, n_boot=10)),
        "sink": sink.run(tiny_gpt2, SConfig(n_windows=3, length=16, n_boot=10, control_windows=1)),
    }
    for name, result in results.items():
        figures = registry.get(name).figures
        assert figures is not None
        paths = draw_table(figures(result, ()), tmp_path / name)
        assert paths and all(p.is_file() and p.stat().st_size > 1000 for p in paths)


# ------------------------------------------------------------------------------------------------ declarations


def test_declarations_match_the_results() -> None:
    for name, module in (("massive", massive), ("anisotropy", aniso), ("sink", sink)):
        st = registry.get(name)
        assert st.statistic_names(over_layers=False) == module.AT_LAYER
        assert st.statistic_names(over_layers=True) == module.OVER_LAYERS


@pytest.mark.parametrize(
    ("config", "kwargs", "match"),
    [
        (MConfig, {"n_windows": 1}, "n_windows must be an integer >= 2"),
        (MConfig, {"presence": 0}, r"presence must be in \(0, 1\]"),
        (MConfig, {"control_windows": 20}, "cannot exceed n_windows"),
        (SConfig, {"epsilon": 1.0}, r"epsilon must be in \[0, 1\)"),
        (AConfig, {"final": "after"}, "final must be"),
    ],
)
def test_bad_configs(config: type, kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(UsageError, match=match):
        config(**kwargs)


# -------------------------------------------------------------------------------------------------- robustness


def test_robustness_choices_map_to_config_fields() -> None:
    from layerclaims import robustness
    from layerclaims.study import GridRun, run_each

    for name in ("massive", "anisotropy", "sink"):
        st = registry.get(name)
        rob = st.robustness
        assert rob is not None and rob.offset in rob.choices
        specs = robustness.plan([name])
        assert specs[0].origin == "original"
        n_single = sum(len(v) - 1 for v in rob.choices.values())
        assert len(specs) == 1 + n_single
        module = __import__(f"layerclaims.studies.{name}", fromlist=["ROBUSTNESS_VALUES"])
        each = run_each(lambda h, c, p: c, st.config, module.ROBUSTNESS_VALUES)
        for choice in rob.run_choices:
            for value in rob.choices[choice]:
                out, timings = each(None, GridRun({choice: value}, [{}, {}], [], rob.grid, {}))
                assert len(out) == 2 and out[0] is out[1] and "forward_s" in timings
                for field_name, expected in module.ROBUSTNESS_VALUES[choice][value].items():
                    assert getattr(out[0], field_name) == expected
                for field_name, expected in rob.grid.items():
                    assert getattr(out[0], field_name) == expected
            # a claim's own setting is the original path: kept at the original value, overridden by a departure
            original, *others = rob.choices[choice]
            field_name, own = next(iter(module.ROBUSTNESS_VALUES[choice][others[0]].items()))
            base = {field_name: own}
            kept, _ = each(None, GridRun({choice: original}, [{}], [], {}, base))
            assert getattr(kept[0], field_name) == own
        with pytest.raises(UsageError, match="unknown robustness value"):
            each(None, GridRun({"nope": "1"}, [{}], [], {}, {}))


def test_cross_window_cosine_with_left_out_tokens_equals_brute_force() -> None:
    rng = np.random.default_rng(2)
    X = rng.normal(size=(1, 3, 3, 4))
    keep = np.array([[True, False, True], [True, True, True], [False, True, False]])
    got = aniso.mean_cross_window_cosine(aniso.window_sums(X, keep), keep.sum(axis=1), np.ones((1, 3)))[0, 0]
    u = X[0] / np.linalg.norm(X[0], axis=-1, keepdims=True)
    pairs = [
        float(u[i, a] @ u[j, b])
        for i in range(3)
        for j in range(3)
        if i != j
        for a in range(3)
        for b in range(3)
        if keep[i, a] and keep[j, b]
    ]
    assert got == pytest.approx(np.mean(pairs))
