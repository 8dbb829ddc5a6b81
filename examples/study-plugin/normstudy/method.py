"""The norm study's method: hidden states at every position of the sequences, the first token's norm over the mean
norm of the others per sequence, its bootstrap over sequences, and a control (the second token in its place)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from layerclaims import results
from layerclaims.extract import hidden_states
from layerclaims.results import Control, Measurement
from normstudy import TEXTS, Config


@dataclass(frozen=True, eq=False)
class NormResult(results.SavedResult):
    """``ratio[L]``: mean over sequences of |h_0| / mean_p>0 |h_p| at hidden state ``L`` (0 = embeddings);
    ``replicates[L, b]``: its bootstrap over sequences; ``control[L]`` and ``control_replicates``: the same with the
    second token in the first one's place (|h_1| / mean_p!=1 |h_p|): a position that is not the first."""

    study: ClassVar[str] = "norm"

    model: str
    n_blocks: int
    provenance: dict[str, Any]
    n_sequences: int
    length: int
    ratio: np.ndarray
    replicates: np.ndarray
    control: np.ndarray
    control_replicates: np.ndarray = field(repr=False)

    def measure(self, statistic: str, *, layer: int | None, kind: str | None = None) -> Measurement:
        """``first_token_norm_ratio`` at hidden state ``layer``; KeyError for another statistic."""
        if statistic != "first_token_norm_ratio":
            raise KeyError(f"unknown statistic {statistic!r} for study norm: use first_token_norm_ratio")
        if layer is None or not 0 <= layer <= self.n_blocks:
            raise KeyError(f"layer {layer}: hidden states are 0..{self.n_blocks} on {self.model}")
        reps, creps = self.replicates[layer], self.control_replicates[layer]
        control = Control("the second token against the others", float(self.control[layer]), _ci(creps), creps)
        details = {"layer": layer, "n_sequences": self.n_sequences, "length": self.length}
        return Measurement(float(self.ratio[layer]), _ci(reps), None, details, reps if reps.size else None, control)


def _ci(replicates: np.ndarray) -> tuple[float, float] | None:
    if replicates.size == 0:
        return None
    low, high = np.percentile(replicates, [2.5, 97.5])
    return float(low), float(high)


def _ratios(norms: np.ndarray, position: int) -> np.ndarray:
    """``[n_layers, n_sequences]``: the norm at ``position`` over the mean norm at the other positions."""
    others = np.delete(norms, position, axis=2).mean(axis=2)
    return norms[:, :, position] / others


def run(handle: Any, config: Config, progress: Any = None) -> NormResult:
    """The study on a loaded model (``layerclaims.models.load_model``)."""
    t0 = time.perf_counter()
    sequences = [handle.tokenizer.encode(t, add_special_tokens=False)[: config.length] for t in TEXTS]
    sequences = [s for s in sequences if len(s) == config.length]
    if len(sequences) < 3:
        from layerclaims.errors import UsageError

        raise UsageError(f"only {len(sequences)} sentences have {config.length} tokens", fix="use a smaller length")
    # [n_layers, n_sequences, length, d]: one position per call, every layer (0 = embeddings .. n_blocks)
    states = np.stack(
        [hidden_states(handle, sequences, p, batch_size=config.batch_size) for p in range(config.length)], axis=2
    )
    norms = np.linalg.norm(states.astype(np.float64), axis=-1)
    first, second = _ratios(norms, 0), _ratios(norms, 1)
    rng = np.random.default_rng(config.seed)
    idx = rng.integers(0, len(sequences), size=(config.n_boot, len(sequences)))
    provenance = results.provenance(
        study="norm",
        model=handle.name,
        texts=len(TEXTS),
        sequences=[list(map(int, s)) for s in sequences],
        length=config.length,
        n_boot=config.n_boot,
        seed=config.seed,
        seconds=time.perf_counter() - t0,
    )
    return NormResult(
        model=handle.name,
        n_blocks=int(handle.n_blocks),
        provenance=provenance,
        n_sequences=len(sequences),
        length=config.length,
        ratio=first.mean(axis=1),
        replicates=first[:, idx].mean(axis=2),
        control=second.mean(axis=1),
        control_replicates=second[:, idx].mean(axis=2),
    )
