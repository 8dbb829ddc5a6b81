"""The attention-sink study's computation and result (method in :mod:`layerclaims.studies.sink`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from layerclaims import results
from layerclaims.errors import UsageError
from layerclaims.metrics.bootstrap import bootstrap_indices, percentile_interval
from layerclaims.metrics.sink import sink_share, uniform_alpha
from layerclaims.results import Control, Measurement
from layerclaims.studies.sink import NAME, Config
from layerclaims.windows import corpus_windows

if TYPE_CHECKING:
    from layerclaims.models import ModelHandle

LEVEL = 0.95
AT_LAYER = ("sink_share_at_block",)
OVER_LAYERS = ("sink_share", "mean_first_token_attention")
REINIT = "re-initialised weights (same architecture, seed {seed}, {n} windows)"


@dataclass(frozen=True, eq=False)
class SinkResult(results.SavedResult):
    """The attention-sink study on one model. ``alpha``: ``alpha_1`` per (window, block, head) ``[n, blocks,
    heads]``; ``control_alpha``: the same on the re-initialised model (``[k, blocks, heads]``, k = 0 without
    control); ``epsilon``: the threshold; ``replicate_windows``: the bootstrap's window resamples ``[B, n]``."""

    study: ClassVar[str] = NAME

    model: str
    n_blocks: int
    provenance: dict[str, Any]
    epsilon: float
    length: int
    alpha: np.ndarray
    control_alpha: np.ndarray
    replicate_windows: np.ndarray | None = None
    control_name: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    def _statistic(self, name: str, alpha: np.ndarray, block: int | None) -> float:
        a = alpha if block is None else alpha[:, block : block + 1]
        if name == "mean_first_token_attention":
            return float(a.mean())
        return sink_share(a, self.epsilon)

    def measure(self, statistic: str, *, layer: int | None, kind: str | None = None) -> Measurement:
        """``sink_share`` / ``mean_first_token_attention`` over every block (``layer=None``), or
        ``sink_share_at_block`` at 0-based block ``layer``."""
        if statistic in OVER_LAYERS:
            if layer is not None:
                raise UsageError(f"{statistic} is over all blocks: pass layer=None")
            block = None
            name = statistic
        elif statistic in AT_LAYER:
            if layer is None or not 0 <= layer < self.n_blocks:
                raise UsageError(f"{statistic} is read at one block: pass layer=0..{self.n_blocks - 1}")
            block, name = layer, "sink_share"
        else:
            raise KeyError(f"unknown statistic {statistic!r} for study sink: use one of {OVER_LAYERS + AT_LAYER}")
        value = self._statistic(name, self.alpha, block)
        reps = None
        ci = None
        if self.replicate_windows is not None:
            reps = np.array([self._statistic(name, self.alpha[row], block) for row in self.replicate_windows])
            ci = percentile_interval(reps, LEVEL)
        control = None
        k = self.control_alpha.shape[0]
        if k:
            c_reps = c_ci = None
            if self.replicate_windows is not None and k >= 2:  # the control's windows resampled as the model's
                rows = bootstrap_indices(k, len(self.replicate_windows), seed=0)
                c_reps = np.array([self._statistic(name, self.control_alpha[r], block) for r in rows])
                c_ci = percentile_interval(c_reps, LEVEL)
            control = Control(self.control_name, self._statistic(name, self.control_alpha, block), c_ci, c_reps)
        details = {
            "epsilon": self.epsilon,
            "n_windows": int(self.alpha.shape[0]),
            "n_heads": int(self.alpha.shape[2]),
            "uniform_alpha": uniform_alpha(self.length),
            **({"block": block} if block is not None else {}),
            **self.details,
        }
        return Measurement(value, ci, None, details, reps, control)


def run(handle: ModelHandle, config: Config | None = None, progress: Callable[[str], None] | None = None) -> Any:
    """Run the study on a loaded model."""
    from layerclaims.extract import first_token_attention, window_pass  # here: a worker drawing figures needs no torch
    from layerclaims.models import reinitialising

    config = config or Config()
    say = progress or (lambda _msg: None)
    t0 = time.perf_counter()
    # the control's weights are drawn in a background thread while the model's own windows run
    pending = reinitialising(handle, config.seed) if config.control_windows else None
    windows = corpus_windows(
        handle.tokenizer, config.corpus, config.n_windows, config.length, config.seed, config.add_bos
    )
    say(f"attention of {config.n_windows} windows")
    alpha = window_pass(handle, windows.ids, batch_size=config.batch_size).first_attention.transpose(1, 0, 2)
    t1 = time.perf_counter()
    control_alpha = np.zeros((0, *alpha.shape[1:]), dtype=np.float32)
    control_name = ""
    if pending is not None:
        say("re-initialised control")
        control = pending.result()
        k = config.control_windows
        control_alpha = first_token_attention(control, windows.ids[:k], batch_size=config.batch_size).transpose(1, 0, 2)
        control_name = REINIT.format(seed=config.seed, n=k)
    t2 = time.perf_counter()
    idx = bootstrap_indices(config.n_windows, config.n_boot, seed=config.seed) if config.n_boot else None
    prov = results.provenance(
        study=NAME,
        **results.model_provenance(handle),
        causal=handle.arch.causal,
        windows=windows.provenance,
        config={f: getattr(config, f) for f in config.__dataclass_fields__},
        attention="eager; alpha_1 = mean over all queries of the weight on position 0",
        bootstrap=f"percentile {LEVEL:.0%}, windows resampled, {config.n_boot} resamples",
        timings={"extract_s": round(t1 - t0, 3), "control_s": round(t2 - t1, 3)},
    )
    details = {} if handle.arch.causal else {"encoder": "bidirectional: every query sees every token"}
    return SinkResult(
        model=handle.name,
        n_blocks=handle.n_blocks,
        provenance=prov,
        epsilon=float(config.epsilon),
        length=config.length,
        alpha=alpha,
        control_alpha=control_alpha,
        replicate_windows=idx,
        control_name=control_name,
        details=details,
    )
