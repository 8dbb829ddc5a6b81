"""The massive-activation study's computation: extraction, statistics, intervals, controls and its result
(method in the package docstring, :mod:`layerclaims.studies.massive`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from layerclaims import results
from layerclaims.errors import UsageError
from layerclaims.metrics.bootstrap import bootstrap_indices, item_counts, percentile_interval
from layerclaims.metrics.massive_activations import massive_mask, onset_layer
from layerclaims.results import Control, Measurement
from layerclaims.studies.massive import NAME, Config
from layerclaims.windows import corpus_windows

if TYPE_CHECKING:
    from layerclaims.models import ModelHandle

LEVEL = 0.95
AT_LAYER = ("massive_share", "log10_top_ratio")
OVER_LAYERS = (
    "max_massive_share",
    "n_massive_dims",
    "top_massive_dim",
    "share_at_first_position",
    "share_at_first_or_delimiter",
    "onset_depth",
    "persistence",
    "zero_loss_increase",
    "mean_loss_increase",
)
REINIT = "re-initialised weights (same architecture, seed {seed}, {n} windows)"


# ------------------------------------------------------------------------------------------------- summaries


@dataclass(frozen=True, eq=False)
class Summary:
    """What the statistics need of one model's hidden states on ``n`` windows (no hidden state kept).

    ``present``: bool ``[L+1, n]``, a massive entry in that window's hidden state at that layer; ``log_ratio``:
    ``[L+1, n]`` ``log10(max |a| / median |a|)``; ``top_value``/``top_dim``: ``[L+1, n]`` the largest ``|a|`` and
    its dimension; ``median``: ``[L+1, n]`` the median ``|a|``; ``dims``: the dimensions with any massive entry;
    ``dim_present``: bool ``[L+1, n, len(dims)]``; ``entries``: int ``[m, 4]`` (layer, window, position, dim) of
    every massive entry and ``values`` their signed values ``[m]``."""

    present: np.ndarray
    log_ratio: np.ndarray
    top_value: np.ndarray
    top_dim: np.ndarray
    median: np.ndarray
    dims: np.ndarray
    dim_present: np.ndarray
    entries: np.ndarray
    values: np.ndarray


def summarise(H: np.ndarray, config: Config) -> Summary:
    """:class:`Summary` of hidden states ``H`` ``[L+1, n, T, d]`` under the config's rule."""
    a = np.abs(H)
    flat = a.reshape(*a.shape[:2], -1)
    median = np.median(flat, axis=-1)
    top_flat = flat.argmax(axis=-1)
    top_value = np.take_along_axis(flat, top_flat[..., None], axis=-1)[..., 0]
    with np.errstate(divide="ignore", invalid="ignore"):
        log_ratio = np.where(top_value > 0, np.log10(top_value / median), 0.0)
    mask = massive_mask(H, abs_threshold=config.abs_threshold, ratio=config.ratio)
    entries = np.argwhere(mask).astype(np.int64)
    dims = np.unique(entries[:, 3])
    dim_present = np.zeros((*mask.shape[:2], len(dims)), dtype=bool)
    for k, d in enumerate(dims):
        dim_present[..., k] = mask[..., d].any(axis=-1)
    return Summary(
        present=np.asarray(mask.any(axis=(-2, -1))),
        log_ratio=log_ratio,
        top_value=top_value,
        top_dim=top_flat % H.shape[-1],
        median=median,
        dims=dims,
        dim_present=dim_present,
        entries=entries,
        values=H[mask].astype(np.float64),
    )


def delimiter_positions(tokenizer: Any, ids: np.ndarray) -> np.ndarray:
    """Each window's first delimiter position after position 0: a token whose text, spaces stripped, is "." or that
    holds a newline (Sun et al.: "the first period or newline token"); -1 when the window has none."""
    vocab = {int(t) for t in np.unique(ids)}
    is_delim = {t: (s := tokenizer.decode([t])).strip() == "." or "\n" in s for t in vocab}
    out = np.full(ids.shape[0], -1, dtype=np.int64)
    for w, row in enumerate(ids):
        hits = [p for p in range(1, len(row)) if is_delim[int(row[p])]]
        if hits:
            out[w] = hits[0]
    return out


# ------------------------------------------------------------------------------------------------ statistics


def _weighted_share(flags: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Share of windows with ``flags`` under window multiplicities ``counts`` ``[B, n]``: ``[..., B]``."""
    return np.einsum("...n,bn->...b", flags.astype(np.float64), counts) / counts.sum(axis=1)


def layer_statistics(s: Summary, counts: np.ndarray, config: Config, n_blocks: int) -> dict[str, np.ndarray]:
    """Every statistic under window multiplicities ``counts`` ``[B, n]`` (a row of ones: the full sample).
    Returns arrays with a trailing axis ``B``."""
    share = _weighted_share(s.present, counts)  # [L+1, B]
    b = counts.shape[0]
    has = share >= config.presence
    onset = np.array([onset_layer(has[:, i]) for i in range(b)], dtype=object)
    onset_depth = np.array([(n_blocks + 1 if o is None else o) / n_blocks for o in onset], dtype=np.float64)
    persistence = np.array([0.0 if o is None else float(has[o:, i].mean()) for i, o in enumerate(onset)])
    dim_share = (
        _weighted_share(s.dim_present.transpose(0, 2, 1), counts) if len(s.dims) else np.zeros((share.shape[0], 0, b))
    )
    n_dims = (dim_share >= config.presence).any(axis=0).sum(axis=0).astype(np.float64)  # [B]
    w = counts[:, s.entries[:, 1]].astype(np.float64)  # [B, m]: each entry weighted by its window's count
    if len(s.dims):
        per_dim = np.stack([w[:, s.entries[:, 3] == d].sum(axis=1) for d in s.dims], axis=1)  # [B, k]
        top_dim = np.where(per_dim.sum(axis=1) > 0, s.dims[per_dim.argmax(axis=1)], -1).astype(np.float64)
    else:
        top_dim = np.full(b, -1.0)
    log_ratio = np.array([_weighted_median(s.log_ratio, counts[i]) for i in range(b)]).T  # [L+1, B]
    return {
        "massive_share": share,
        "log10_top_ratio": log_ratio,
        "n_massive_dims": n_dims,
        "top_massive_dim": top_dim,
        "onset_depth": onset_depth,
        "persistence": persistence,
        "total_weight": w.sum(axis=1),
    }


def _weighted_median(x: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Median over axis 1 of ``x`` ``[L, n]`` with integer multiplicities ``weights`` ``[n]``."""
    rep = np.repeat(np.arange(x.shape[1]), weights.astype(np.int64))
    return np.median(x[:, rep], axis=1)


def position_shares(
    s: Summary, counts: np.ndarray, delimiter: np.ndarray, positions: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Shares of massive entries at position 0 and at position 0 or the window's first delimiter, ``[B]`` each
    (NaN when no entry). ``positions``: the entries' positions to use instead of their own (the shuffled control)."""
    if len(s.entries) == 0:
        nan = np.full(counts.shape[0], np.nan)
        return nan, nan
    pos = s.entries[:, 2] if positions is None else positions
    win = s.entries[:, 1]
    w = counts[:, win].astype(np.float64)
    total = w.sum(axis=1)
    first = pos == 0
    either = first | (pos == delimiter[win])
    with np.errstate(invalid="ignore", divide="ignore"):
        return (w * first).sum(axis=1) / total, (w * either).sum(axis=1) / total


# ---------------------------------------------------------------------------------------------- intervention


@dataclass(frozen=True, eq=False)
class Intervention:
    """The zero/mean intervention at the onset: ``block`` patched (its output is hidden state ``block + 1``),
    ``dims`` and each window's ``positions`` (a list per window), the ``mean_values`` written by the mean variant;
    per-window mean cross-entropy (nats) ``clean``, ``zero``, ``mean`` and ``random`` (the same number of random
    other dimensions zeroed at the same positions: the control), ``random_dims`` those dimensions."""

    block: int
    dims: tuple[int, ...]
    positions: tuple[tuple[int, ...], ...]
    mean_values: tuple[float, ...]
    random_dims: tuple[int, ...]
    clean: np.ndarray
    zero: np.ndarray
    mean: np.ndarray
    random: np.ndarray


def intervene(handle: ModelHandle, ids: np.ndarray, s: Summary, layer: int, config: Config) -> Intervention:
    """Run the intervention at hidden state ``layer`` (>= 1) on the windows ``ids`` (the first windows of the
    summary ``s``): the dimensions and their mean values come from every window's massive entries at that layer
    (the mean over as many inputs as the run has, as Sun et al.'s), the positions from each patched window's own."""
    from layerclaims.intervene import Patch, next_token_losses  # here: a worker drawing figures needs no torch

    at = s.entries[s.entries[:, 0] == layer]
    vals = s.values[s.entries[:, 0] == layer]
    dims = tuple(int(d) for d in np.unique(at[:, 3]))
    positions = tuple(tuple(sorted({int(p) for p in at[at[:, 1] == w, 2]})) for w in range(len(ids)))
    means = tuple(float(vals[at[:, 3] == d].mean()) for d in dims)
    rng = np.random.default_rng([config.seed, 7477])
    others = np.setdiff1d(np.arange(handle.d_model), np.array(dims))
    size = min(len(dims), len(others))  # every dimension massive (a degenerate rule): fewer random ones, maybe none
    random_dims = tuple(int(d) for d in np.sort(rng.choice(others, size=size, replace=False))) if size else ()
    block = layer - 1
    groups: dict[tuple[int, ...], list[int]] = {}  # windows patched at the same positions run together
    for w, pos in enumerate(positions):
        if pos:
            groups.setdefault(pos, []).append(w)
    settings: dict[str, tuple[float | tuple[float, ...], tuple[int, ...]]] = {
        "zero": (0.0, dims),
        "mean": (means, dims),
        "random": (0.0, random_dims),
    }
    # the clean run, then every setting's patched groups: all in one call, their batches in lanes on a CPU
    runs: list[tuple[np.ndarray, list[Patch]]] = [(ids, [])]
    for values, which in settings.values():
        runs += [(ids[members], [Patch(block, which, pos, values)]) for pos, members in groups.items() if which]
    losses = iter(next_token_losses(handle, runs, batch_size=config.batch_size))
    clean = next(losses).per_sequence
    patched: dict[str, np.ndarray] = {}
    for name, (_, which) in settings.items():
        patched[name] = clean.copy()
        for members in groups.values() if which else ():
            patched[name][members] = next(losses).per_sequence

    return Intervention(
        block=block,
        dims=dims,
        positions=positions,
        mean_values=means,
        random_dims=random_dims,
        clean=clean,
        zero=patched["zero"],
        mean=patched["mean"],
        random=patched["random"],
    )


# ----------------------------------------------------------------------------------------------------- result


@dataclass(frozen=True, eq=False)
class MassiveResult(results.SavedResult):
    """The massive-activation study on one model.

    Per hidden state (axis 0, ``0..n_blocks``): ``massive_share`` and ``log10_top_ratio`` (values), their bootstrap
    ``replicates`` ``[L+1, B]`` and the re-initialised control's values (``control_share``, ``control_log_ratio``;
    NaN without control); ``top_value``/``top_dim``/``median_abs``: per-window medians of the largest ``|a|``,
    the dimension of the largest ``|a|`` in most windows, median ``|a|``. ``dims``: the dimensions with any massive
    entry; ``entries`` ``[m, 4]`` (layer, window, position, dim) and ``values`` of the massive entries;
    ``delimiters``: each window's first delimiter position (-1: none). ``over``: the statistics over layers as
    :class:`~layerclaims.results.Measurement` (with replicates and controls). ``intervention``: the zero/mean
    intervention (None when none ran: an encoder, no massive activation, or ``intervene=False``)."""

    study: ClassVar[str] = NAME

    model: str
    n_blocks: int
    provenance: dict[str, Any]
    n_windows: int
    length: int
    massive_share: np.ndarray
    log10_top_ratio: np.ndarray
    top_value: np.ndarray
    top_dim: np.ndarray
    median_abs: np.ndarray
    control_share: np.ndarray
    control_log_ratio: np.ndarray
    dims: np.ndarray
    entries: np.ndarray
    values: np.ndarray
    delimiters: np.ndarray
    over: dict[str, Measurement] = field(default_factory=dict)
    replicates: dict[str, np.ndarray] = field(default_factory=dict)
    intervention: Intervention | None = None
    control_name: str = ""

    def measure(self, statistic: str, *, layer: int | None, kind: str | None = None) -> Measurement:
        """``massive_share`` or ``log10_top_ratio`` at hidden state ``layer``; the statistics over layers
        (:data:`OVER_LAYERS`) with ``layer=None``. KeyError for an unknown statistic; UsageError for a layer out of
        range or given where none is read."""
        if statistic in AT_LAYER:
            if layer is None or not 0 <= layer <= self.n_blocks:
                raise UsageError(
                    f"{statistic} is read at one hidden state: pass layer=0..{self.n_blocks} for {self.model}"
                )
            values = self.massive_share if statistic == "massive_share" else self.log10_top_ratio
            reps = self.replicates.get(statistic)
            r = None if reps is None else reps[layer]
            ci = None if r is None else percentile_interval(r, LEVEL)
            ctl_values = self.control_share if statistic == "massive_share" else self.control_log_ratio
            ctl = None if np.isnan(ctl_values[layer]) else Control(self.control_name, float(ctl_values[layer]))
            details = {
                "layer": layer,
                "n_windows": self.n_windows,
                "top_value_median": float(self.top_value[layer]),
                "top_dim": int(self.top_dim[layer]),
                "median_abs": float(self.median_abs[layer]),
            }
            return Measurement(float(values[layer]), ci, None, details, r, ctl)
        if statistic in OVER_LAYERS:
            if layer is not None:
                raise UsageError(f"{statistic} is over all layers: pass layer=None")
            if statistic not in self.over:
                raise UsageError(
                    f"{statistic} was not measured on {self.model}: "
                    + (
                        "the intervention needs a causal LM with massive activations (and intervene=True)"
                        if "loss" in statistic
                        else "no massive activation was found"
                    )
                )
            return self.over[statistic]
        raise KeyError(f"unknown statistic {statistic!r} for study massive: use one of {AT_LAYER + OVER_LAYERS}")


def _measurement(
    value: float, reps: np.ndarray | None, details: dict[str, Any], control: Control | None, discrete: bool = False
) -> Measurement:
    ci = None
    if reps is not None:
        lo, hi = percentile_interval(reps, LEVEL, discrete=discrete)
        ci = None if np.isnan(lo) and np.isnan(hi) else (lo, hi)
    return Measurement(float(value), ci, None, details, reps, control)


# -------------------------------------------------------------------------------------------------------- run


def run(handle: ModelHandle, config: Config | None = None, progress: Callable[[str], None] | None = None) -> Any:
    """Run the study on a loaded model (:func:`layerclaims.models.load_model`)."""
    from layerclaims import activations  # here: a worker drawing figures needs no torch
    from layerclaims.extract import hidden_state_maps
    from layerclaims.models import reinitialising

    config = config or Config()
    say = progress or (lambda _msg: None)
    t0 = time.perf_counter()
    # the control's weights are drawn in a background thread while the model's own windows run
    pending = reinitialising(handle, config.seed) if config.control_windows else None
    windows = corpus_windows(
        handle.tokenizer, config.corpus, config.n_windows, config.length, config.seed, config.add_bos
    )
    say(f"hidden states of {config.n_windows} windows")
    H = activations.hidden_state_maps(handle, windows.ids, batch_size=config.batch_size, final="pre_norm")
    s = summarise(H, config)
    del H
    t1 = time.perf_counter()
    n = config.n_windows
    full = np.ones((1, n))
    idx = bootstrap_indices(n, config.n_boot, seed=config.seed) if config.n_boot else None
    counts = item_counts(idx, n).astype(np.float64) if idx is not None else None
    point = layer_statistics(s, full, config, handle.n_blocks)
    reps = layer_statistics(s, counts, config, handle.n_blocks) if counts is not None else None
    delim = delimiter_positions(handle.tokenizer, windows.ids)
    first, either = position_shares(s, full, delim)
    first_r, either_r = position_shares(s, counts, delim) if counts is not None else (None, None)
    rng = np.random.default_rng([config.seed, 104729])
    perms = np.stack([rng.permutation(config.length) for _ in range(n)])
    shuffled = perms[s.entries[:, 1], s.entries[:, 2]] if len(s.entries) else None
    sh_first, sh_either = position_shares(s, full, delim, shuffled) if shuffled is not None else (None, None)
    t2 = time.perf_counter()

    control_share = np.full(handle.n_blocks + 1, np.nan)
    control_log = np.full(handle.n_blocks + 1, np.nan)
    ctl_point: dict[str, np.ndarray] = {}
    ctl_reps: dict[str, np.ndarray] = {}
    control_name = ""
    if pending is not None:
        say("re-initialised control")
        control = pending.result()
        k = config.control_windows
        Hc = hidden_state_maps(control, windows.ids[:k], batch_size=config.batch_size, final="pre_norm")
        sc = summarise(Hc, config)
        del Hc
        ctl_point = layer_statistics(sc, np.ones((1, k)), config, handle.n_blocks)
        if config.n_boot:  # the control's own interval: its windows resampled as the model's are
            c_counts = item_counts(bootstrap_indices(k, config.n_boot, seed=config.seed), k).astype(np.float64)
            ctl_reps = layer_statistics(sc, c_counts, config, handle.n_blocks)
        control_share = ctl_point["massive_share"][:, 0]
        control_log = ctl_point["log10_top_ratio"][:, 0]
        control_name = REINIT.format(seed=config.seed, n=k)
    t3 = time.perf_counter()

    def ctl(key: str) -> Control | None:
        if key not in ctl_point:
            return None
        reps_c = ctl_reps.get(key)
        ci = None if reps_c is None else percentile_interval(reps_c, LEVEL)
        return Control(control_name, float(ctl_point[key][0]), ci, reps_c)

    def r(key: str) -> np.ndarray | None:
        return None if reps is None else reps[key]

    base = {"n_windows": n, "presence": config.presence, "dims": [int(d) for d in s.dims]}
    best = int(np.argmax(point["massive_share"][:, 0]))
    over: dict[str, Measurement] = {
        "max_massive_share": _measurement(
            float(point["massive_share"][best, 0]),
            None if reps is None else reps["massive_share"].max(axis=0),
            base | {"layer": best},
            Control(
                control_name,
                float(np.nanmax(control_share)),
                None
                if "massive_share" not in ctl_reps
                else percentile_interval(ctl_reps["massive_share"].max(0), LEVEL),
                None if "massive_share" not in ctl_reps else ctl_reps["massive_share"].max(axis=0),
            )
            if control_name
            else None,
        ),
        "n_massive_dims": _measurement(
            point["n_massive_dims"][0], r("n_massive_dims"), base, ctl("n_massive_dims"), True
        ),
        "top_massive_dim": _measurement(point["top_massive_dim"][0], r("top_massive_dim"), base, None, True),
        "onset_depth": _measurement(
            point["onset_depth"][0],
            r("onset_depth"),
            base | {"onset_layer": _onset(point, config), "never": (handle.n_blocks + 1) / handle.n_blocks},
            ctl("onset_depth"),
        ),
        "persistence": _measurement(point["persistence"][0], r("persistence"), base, ctl("persistence")),
    }
    if len(s.entries) and sh_first is not None and sh_either is not None:
        shuffle_name = "positions shuffled within each window (one permutation per window)"
        over["share_at_first_position"] = _measurement(
            first[0], first_r, base | {"n_entries": len(s.entries)}, Control(shuffle_name, float(sh_first[0]))
        )
        over["share_at_first_or_delimiter"] = _measurement(
            either[0],
            either_r,
            base | {"n_entries": len(s.entries), "windows_without_delimiter": int((delim < 0).sum())},
            Control(shuffle_name, float(sh_either[0])),
        )
    inter = None
    # the first block output with massive activations (the embeddings, hidden state 0, are no block's output)
    onset = onset_layer(point["massive_share"][1:, 0] >= config.presence)
    onset = None if onset is None else onset + 1
    if config.intervene and handle.arch.causal and onset is not None:
        say(f"intervention at hidden state {onset}")
        k = min(config.intervene_windows, n)
        inter = intervene(handle, windows.ids[:k], s, onset, config)
        inter_idx = bootstrap_indices(k, config.n_boot, seed=config.seed) if config.n_boot else None
        over.update(_intervention_measurements(inter, inter_idx, config))
    t4 = time.perf_counter()
    prov = results.provenance(
        study=NAME,
        **results.model_provenance(handle),
        windows=windows.provenance,
        config={k: getattr(config, k) for k in config.__dataclass_fields__},
        rule=f"|a| > {config.abs_threshold} and |a| >= {config.ratio} x median |a| of the window's hidden state",
        hidden_states="raw block outputs (final='pre_norm'); 0 = embeddings",
        bootstrap=f"percentile {LEVEL:.0%}, windows resampled, {config.n_boot} resamples",
        timings={
            "extract_s": round(t1 - t0, 3),
            "statistics_s": round(t2 - t1, 3),
            "control_s": round(t3 - t2, 3),
            "intervention_s": round(t4 - t3, 3),
        },
    )
    replicates = (
        {} if reps is None else {"massive_share": reps["massive_share"], "log10_top_ratio": reps["log10_top_ratio"]}
    )
    return MassiveResult(
        model=handle.name,
        n_blocks=handle.n_blocks,
        provenance=prov,
        n_windows=n,
        length=config.length,
        massive_share=point["massive_share"][:, 0],
        log10_top_ratio=point["log10_top_ratio"][:, 0],
        top_value=np.median(s.top_value, axis=1),
        top_dim=np.array([np.bincount(row).argmax() for row in s.top_dim]),
        median_abs=np.median(s.median, axis=1),
        control_share=control_share,
        control_log_ratio=control_log,
        dims=s.dims,
        entries=s.entries,
        values=s.values,
        delimiters=delim,
        over=over,
        replicates=replicates,
        intervention=inter,
        control_name=control_name,
    )


def _onset(point: dict[str, np.ndarray], config: Config) -> int | None:
    return onset_layer(point["massive_share"][:, 0] >= config.presence)


def _intervention_measurements(inter: Intervention, idx: np.ndarray | None, config: Config) -> dict[str, Measurement]:
    """``zero_loss_increase`` and ``mean_loss_increase`` (nats per token, patched minus unpatched mean over
    windows), intervals from the windows' paired resamples; control: random dimensions zeroed."""
    out: dict[str, Measurement] = {}
    details = {
        "block": inter.block,
        "hidden_state": inter.block + 1,
        "dims": list(inter.dims),
        "mean_values": list(inter.mean_values),
        "windows_patched": sum(1 for p in inter.positions if p),
        "clean_loss": float(inter.clean.mean()),
        "clean_perplexity": float(np.exp(inter.clean.mean())),
        "units": "nats per token (mean cross-entropy)",
    }
    random_name = f"zeroing {len(inter.random_dims)} random other dimension(s) {list(inter.random_dims)} instead"
    random_diff = inter.random - inter.clean
    random_reps = None if idx is None else random_diff[idx].mean(axis=1)
    random_ci = None if random_reps is None else percentile_interval(random_reps, LEVEL)
    ctl = Control(random_name, float(random_diff.mean()), random_ci, random_reps)
    for key, patched in (("zero_loss_increase", inter.zero), ("mean_loss_increase", inter.mean)):
        diff = patched - inter.clean
        reps = None if idx is None else diff[idx].mean(axis=1)
        extra = {"patched_loss": float(patched.mean()), "patched_perplexity": float(np.exp(patched.mean()))}
        out[key] = _measurement(float(diff.mean()), reps, details | extra, ctl)
    return out


def with_details(m: Measurement, **extra: Any) -> Measurement:
    """``m`` with more details (used by the report)."""
    return replace(m, details=m.details | extra)
