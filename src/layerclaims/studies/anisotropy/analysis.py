"""The anisotropy study's computation and result (method in :mod:`layerclaims.studies.anisotropy`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from layerclaims import results
from layerclaims.errors import UsageError
from layerclaims.metrics.bootstrap import bootstrap_indices, item_counts, percentile_interval
from layerclaims.results import Control, Measurement
from layerclaims.studies.anisotropy import NAME, Config
from layerclaims.windows import corpus_windows

if TYPE_CHECKING:
    from layerclaims.models import ModelHandle

LEVEL = 0.95
AT_LAYER = ("mean_cosine",)
OVER_LAYERS = ("last_minus_min_cosine",)
CENTRED = "mean-centred representations (each layer's mean over the drawn tokens, first token left out, removed)"


def draw_positions(config: Config, rng: np.random.Generator) -> np.ndarray:
    """``per_window`` distinct positions per window ``[n_windows, per_window]`` (position 0 excluded with
    ``skip_first``; with a BOS token, position 1, the first text token, too)."""
    low = (1 + (1 if config.add_bos else 0)) if config.skip_first else 0
    return np.stack(
        [
            np.sort(rng.choice(np.arange(low, config.length), config.per_window, replace=False))
            for _ in range(config.n_windows)
        ]
    )


def window_sums(X: np.ndarray, keep: np.ndarray | None = None) -> np.ndarray:
    """``S[l, i, j]``: the sum of the cosines between every drawn representation of window ``i`` and of window ``j``
    at layer ``l``, from ``X`` ``[L, n, k, d]``: with unit vectors ``u``, ``sum_{a,b} u_ia . u_jb = (sum_a u_ia) .
    (sum_b u_jb)``. ``keep`` (bool ``[n, k]``): only those representations count. UsageError for a zero vector."""
    norms = np.linalg.norm(X, axis=-1, keepdims=True)
    mask = np.ones(X.shape[1:3], dtype=bool) if keep is None else keep
    if (norms[:, mask] == 0).any():
        raise UsageError("a drawn representation is the zero vector: its cosine is undefined")
    U = np.where(mask[None, :, :, None], X / np.where(norms == 0, 1.0, norms), 0.0)
    V = U.sum(axis=2)  # [L, n, d]
    return np.einsum("lid,ljd->lij", V, V)


def mean_cross_window_cosine(S: np.ndarray, k: np.ndarray | int, counts: np.ndarray) -> np.ndarray:
    """Mean cosine over pairs from different windows under window multiplicities ``counts`` ``[B, n]``, window ``i``
    contributing ``k_i`` representations: ``sum_{i != j} c_i c_j S_ij / sum_{i != j} c_i c_j k_i k_j``; ``[L, B]``.
    NaN when a resample holds one window."""
    kv = np.broadcast_to(np.asarray(k, dtype=np.float64), (S.shape[-1],))
    off = S - np.einsum("lii->li", S)[:, :, None] * np.eye(S.shape[-1])
    num = np.einsum("bi,lij,bj->lb", counts, off, counts)
    ck = counts * kv[None, :]
    den = ck.sum(axis=1) ** 2 - (ck**2).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return num / den[None, :]


@dataclass(frozen=True, eq=False)
class AnisotropyResult(results.SavedResult):
    """The anisotropy study on one model: ``mean_cosine`` ``[L+1]`` per hidden state, its bootstrap
    ``replicates`` ``[L+1, B]``, the centred control ``centred_cosine`` ``[L+1]`` (and its replicates);
    ``positions``: the drawn positions ``[n_windows, per_window]``; ``norm_mean``: mean norm of the drawn
    representations per layer; ``over``: the statistics over layers."""

    study: ClassVar[str] = NAME

    model: str
    n_blocks: int
    provenance: dict[str, Any]
    n_windows: int
    positions: np.ndarray
    mean_cosine: np.ndarray
    centred_cosine: np.ndarray
    norm_mean: np.ndarray
    replicates: np.ndarray | None = None
    centred_replicates: np.ndarray | None = None
    over: dict[str, Measurement] = field(default_factory=dict)

    def measure(self, statistic: str, *, layer: int | None, kind: str | None = None) -> Measurement:
        """``mean_cosine`` at hidden state ``layer``; ``last_minus_min_cosine`` over layers (``layer=None``)."""
        if statistic == "mean_cosine":
            if layer is None or not 0 <= layer <= self.n_blocks:
                raise UsageError(f"mean_cosine is read at one hidden state: pass layer=0..{self.n_blocks}")
            reps = None if self.replicates is None else self.replicates[layer]
            ci = None if reps is None else percentile_interval(reps, LEVEL)
            c_reps = None if self.centred_replicates is None else self.centred_replicates[layer]
            c_ci = None if c_reps is None else percentile_interval(c_reps, LEVEL)
            control = Control(CENTRED, float(self.centred_cosine[layer]), c_ci, c_reps)
            details = {
                "layer": layer,
                "n_windows": self.n_windows,
                "per_window": int(self.positions.shape[1]),
                "norm_mean": float(self.norm_mean[layer]),
            }
            return Measurement(float(self.mean_cosine[layer]), ci, None, details, reps, control)
        if statistic in OVER_LAYERS:
            if layer is not None:
                raise UsageError(f"{statistic} is over all layers: pass layer=None")
            return self.over[statistic]
        raise KeyError(f"unknown statistic {statistic!r} for study anisotropy: use one of {AT_LAYER + OVER_LAYERS}")


def _rise(values: np.ndarray) -> np.ndarray:
    """Last layer minus the smallest over layers, along axis 0."""
    return values[-1] - np.nanmin(values, axis=0)


def run(handle: ModelHandle, config: Config | None = None, progress: Callable[[str], None] | None = None) -> Any:
    """Run the study on a loaded model."""
    from layerclaims.extract import window_pass  # here: a worker drawing figures needs no torch

    config = config or Config()
    say = progress or (lambda _msg: None)
    t0 = time.perf_counter()
    windows = corpus_windows(
        handle.tokenizer, config.corpus, config.n_windows, config.length, config.seed, config.add_bos
    )
    rng = np.random.default_rng([config.seed, 6151])
    positions = draw_positions(config, rng)
    say(f"hidden states of {config.n_windows} windows")
    H = window_pass(handle, windows.ids, batch_size=config.batch_size).hidden(config.final)
    rows = np.arange(config.n_windows)[:, None]
    X = H[:, rows, positions].astype(np.float64)  # [L+1, n, k, d]
    del H
    t1 = time.perf_counter()
    k = config.per_window
    n = config.n_windows
    S = window_sums(X)
    # The control centres the tokens other than the first text token: its massive activations (Sun et al. 2024)
    # would dominate a mean over a few dozen tokens, and centring would then align every other token with minus it.
    keep = positions > (1 if config.add_bos else 0)
    Xc = np.stack([np.where(keep[:, :, None], layer - layer[keep].mean(axis=0), 0.0) for layer in X])
    Sc = window_sums(Xc, keep)
    kc = keep.sum(axis=1)
    full = np.ones((1, n))
    value = mean_cross_window_cosine(S, k, full)[:, 0]
    centred_value = mean_cross_window_cosine(Sc, kc, full)[:, 0]
    reps = c_reps = None
    if config.n_boot:
        counts = item_counts(bootstrap_indices(n, config.n_boot, seed=config.seed, min_distinct=2), n).astype(float)
        reps = mean_cross_window_cosine(S, k, counts)
        c_reps = mean_cross_window_cosine(Sc, kc, counts)
    rise_reps = None if reps is None else _rise(reps)
    c_rise_reps = None if c_reps is None else _rise(c_reps)
    rise_ci = None if rise_reps is None else percentile_interval(rise_reps, LEVEL)
    c_rise_ci = None if c_rise_reps is None else percentile_interval(c_rise_reps, LEVEL)
    over = {
        "last_minus_min_cosine": Measurement(
            float(_rise(value)),
            rise_ci,
            None,
            {
                "last": float(value[-1]),
                "min": float(np.nanmin(value)),
                "min_layer": int(np.nanargmin(value)),
                "n_windows": n,
            },
            rise_reps,
            Control(CENTRED, float(_rise(centred_value)), c_rise_ci, c_rise_reps),
        )
    }
    t2 = time.perf_counter()
    prov = results.provenance(
        study=NAME,
        **results.model_provenance(handle),
        windows=windows.provenance,
        config={f: getattr(config, f) for f in config.__dataclass_fields__},
        pairs="every pair of drawn tokens from two different windows",
        bootstrap=f"percentile {LEVEL:.0%}, windows resampled (>= 2 distinct), {config.n_boot} resamples",
        timings={"extract_s": round(t1 - t0, 3), "statistics_s": round(t2 - t1, 3)},
    )
    return AnisotropyResult(
        model=handle.name,
        n_blocks=handle.n_blocks,
        provenance=prov,
        n_windows=n,
        positions=positions,
        mean_cosine=value,
        centred_cosine=centred_value,
        norm_mean=np.linalg.norm(X, axis=-1).mean(axis=(1, 2)),
        replicates=reps,
        centred_replicates=c_reps,
        over=over,
    )
