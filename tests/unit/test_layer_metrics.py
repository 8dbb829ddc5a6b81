"""Massive-activation and attention-sink metrics on small arrays computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from layerclaims.errors import UsageError
from layerclaims.metrics.massive_activations import (
    massive_dims,
    massive_mask,
    onset_layer,
    top_ratio,
)
from layerclaims.metrics.sink import sink_share, uniform_alpha

# ------------------------------------------------------------------------------------------------- massive


def _state() -> np.ndarray:
    """4 positions x 5 dims, |a| = 0.1 everywhere except three large entries (median 0.1)."""
    h = np.full((4, 5), 0.1)
    h[0, 3] = -2500.0  # > 100 and >= 1000 x 0.1: massive (sign ignored)
    h[2, 1] = 150.0  # > 100 and 1500 x median: massive
    h[1, 4] = 99.0  # 990 x median but not > 100: not massive
    return h


def test_massive_rule_by_hand() -> None:
    h = _state()
    mask = massive_mask(h)
    assert mask.sum() == 2 and mask[0, 3] and mask[2, 1] and not mask[1, 4]
    np.testing.assert_array_equal(massive_dims(mask), [1, 3])
    # the relative rule alone: 150 < 1000 x median once the median is 0.2
    h2 = h.copy()
    h2[np.abs(h2) == 0.1] = 0.2
    assert not massive_mask(h2)[2, 1] and massive_mask(h2)[0, 3]
    assert top_ratio(h) == pytest.approx(2500.0 / 0.1)


def test_massive_median_is_per_leading_index() -> None:
    quiet, loud = np.full((2, 3), 0.01), np.full((2, 3), 1.0)
    quiet[0, 0] = loud[0, 0] = 200.0  # 20,000 x the quiet median but only 200 x the loud one
    mask = massive_mask(np.stack([quiet, loud]))
    assert mask[0, 0, 0] and not mask[1, 0, 0]


def test_massive_edge_cases() -> None:
    zero = np.zeros((3, 4))
    assert not massive_mask(zero).any() and top_ratio(zero) == 1.0
    assert massive_dims(massive_mask(zero)).size == 0
    assert math.isinf(float(top_ratio(np.array([[0.0, 0.0, 5.0]]))))
    with pytest.raises(UsageError, match="2-D or more"):
        massive_mask(np.ones(4))
    with pytest.raises(UsageError, match="NaN or infinite"):
        massive_mask(np.array([[1.0, np.nan]]))
    with pytest.raises(UsageError, match=">= 0"):
        massive_mask(np.ones((2, 2)), ratio=-1)


def test_onset_layer() -> None:
    present = np.array([False, False, True, True, False, True])
    assert onset_layer(present) == 2
    assert onset_layer(np.zeros(3, bool)) is None
    with pytest.raises(UsageError, match="1-D"):
        onset_layer(np.zeros((2, 2), bool))


# ---------------------------------------------------------------------------------------------------- sinks


def test_sink_share_by_hand() -> None:
    alpha = np.array([[[0.9, 0.1], [0.31, 0.3]], [[0.05, 0.5], [0.2, 1.0]]])  # [sample, layer, head]
    assert sink_share(alpha) == pytest.approx(4 / 8)  # 0.9, 0.31, 0.5, 1.0 (0.3 itself is not > 0.3)
    assert [sink_share(alpha[:, layer]) for layer in range(2)] == [2 / 4, 2 / 4]  # per layer, as studies/sink reads it
    assert sink_share(alpha, epsilon=0.0) == 1.0
    with pytest.raises(UsageError, match=r"\[0, 1\]"):
        sink_share(np.array([1.5]))
    with pytest.raises(UsageError, match="epsilon"):
        sink_share(alpha, epsilon=1.0)


def test_uniform_alpha() -> None:
    assert uniform_alpha(1) == 1.0
    assert uniform_alpha(3) == pytest.approx((1 + 1 / 2 + 1 / 3) / 3)
    assert uniform_alpha(64) == pytest.approx(4.7439 / 64, abs=1e-5)  # H_64 = 4.7439
    assert uniform_alpha(64, causal=False) == 1 / 64
