"""Study B's method (the steps of :mod:`layerclaims.studies.qk`): tokenise the prompts, read Q, K and V, the
cosine matrices and their statistics with paired bootstrap intervals, permutation p-values and the controls."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import numpy as np
from threadpoolctl import threadpool_limits

from layerclaims import results
from layerclaims.errors import ModelNotFoundError, UsageError
from layerclaims.metrics.bootstrap import bootstrap_indices, item_counts, pair_moments, percentile_interval
from layerclaims.metrics.similarity import (
    cosine_matrix,
    mantel_test,
    mean_offdiagonal,
    rsa,
    rsa_by_category,
    selectivity_index,
    selectivity_permutation_test,
)
from layerclaims.results import BlockStatistic, Control, Measurement
from layerclaims.studies.qk import LEVEL, PAIRS, PROJECTIONS, Config, MultiToken
from layerclaims.tasks import submit
from layerclaims.tokens import encode_plain

# ---------------------------------------------------------------------------------------------- tokenisation


@dataclass(frozen=True)
class Prompts:
    """Tokenised prompts: ``ids[i]`` the token ids of word ``i``'s prompt, the word's tokens at ``start[i]`` ..
    ``stop[i] - 1``."""

    ids: list[list[int]]
    start: np.ndarray
    stop: np.ndarray

    @property
    def n_tokens(self) -> np.ndarray:
        """Tokens per word."""
        return self.stop - self.start


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))


def tokenize_prompts(tokenizer: Any, words: Sequence[str], template: str, add_bos: bool) -> Prompts:
    """Token ids of ``template.format(w=word)`` for each word and where the word's tokens are: those of the prompt
    that differ from the tokens of the text before the word (trailing spaces removed: GPT-2-style BPE attaches the
    space to the word) and that the text up to the end of the word produces. UsageError if a word has no token."""
    head, _, _tail = template.partition("{w}")
    head_ids = encode_plain(tokenizer, head.rstrip())
    bos_id = getattr(tokenizer, "bos_token_id", None) if add_bos else None
    if add_bos and bos_id is None:
        raise UsageError("add_bos=True but this tokenizer has no bos_token_id: use add_bos=False")
    bos: list[int] = [] if bos_id is None else [bos_id]
    ids: list[list[int]] = []
    span: list[tuple[int, int]] = []
    for w in words:
        full = encode_plain(tokenizer, template.replace("{w}", w))
        s, e = _common_prefix(full, head_ids), _common_prefix(full, encode_plain(tokenizer, head + w))
        if e <= s:
            raise UsageError(f"word {w!r} yields no token of its own in {template!r}: check the template or word")
        ids.append(bos + full)
        span.append((s + len(bos), e + len(bos)))
    start, stop = np.array(span, dtype=np.int64).reshape(-1, 2).T
    return Prompts(ids, start, stop)


def word_vectors(
    handle: Any, prompts: Prompts, blocks: list[int], multi_token: MultiToken, batch_size: int
) -> dict[str, np.ndarray]:
    """``{q, k, v: float64 [n_blocks_sel, n_words, d]}``: each word's vector at each block (see ``multi_token``),
    and ``x``: the normed input of the attention block at the same positions (what the controls project).
    ``"mean"`` passes a split word's prompt once more per extra token, at that token's position (``qkv`` reads one
    position per sequence)."""
    from layerclaims.extract import qkv  # here: the study's tasks run in worker processes that need no torch

    last = prompts.stop - 1
    if multi_token == "last" or prompts.n_tokens.max() == 1:
        out = qkv(handle, prompts.ids, last, blocks=blocks, batch_size=batch_size, block_input=True)
        return {k: v.astype(np.float64) for k, v in out.items()}
    extra = [(i, int(p)) for i in range(len(prompts.ids)) for p in range(prompts.start[i], last[i])]
    seqs = prompts.ids + [prompts.ids[i] for i, _ in extra]
    pos = np.concatenate([last, np.array([p for _, p in extra], dtype=np.int64)])
    out = qkv(handle, seqs, pos, blocks=blocks, batch_size=batch_size, block_input=True)
    owner = np.concatenate([np.arange(len(prompts.ids)), np.array([i for i, _ in extra], dtype=np.int64)])
    mean = {}
    for k, v in out.items():  # each token's vector is added to its word's row (axis 1)
        sums = np.zeros((v.shape[0], len(prompts.ids), v.shape[2]))
        np.add.at(sums, (slice(None), owner), v.astype(np.float64))  # type: ignore[arg-type]  # stub omits tuples
        mean[k] = sums / prompts.n_tokens[None, :, None]
    return mean


def extract(handle: Any, config: Config, blocks: list[int]) -> tuple[Prompts, dict[str, np.ndarray]]:
    """``config``'s prompts, tokenised, and their word vectors at ``blocks`` (:func:`word_vectors`)."""
    prompts = tokenize_prompts(handle.tokenizer, config.words, config.template, config.add_bos)
    return prompts, word_vectors(handle, prompts, blocks, config.multi_token, config.batch_size)


def similarity_matrices(vecs: dict[str, np.ndarray], vectors: str, similarity: str) -> dict[str, np.ndarray]:
    """``{q,k,v: [n_blocks, n_words, n_words]}`` from word vectors ``[n_blocks, n_words, d]`` (``x``, the block
    input, is left out): ``vectors`` ``"centred"`` subtracts the mean over words first; ``similarity``
    ``"pearson"`` centres each vector over its own dimensions before the cosine (each entry a Pearson r).
    ``"raw"`` and ``"cosine"``: the study's cosine matrices."""
    out = {}
    for k, X in vecs.items():
        if k not in PROJECTIONS:
            continue
        Y = X - X.mean(axis=1, keepdims=True) if vectors == "centred" else X
        if similarity == "pearson":
            Y = Y - Y.mean(axis=2, keepdims=True)
        out[k] = np.stack([cosine_matrix(Yb) for Yb in Y])
    return out


# ----------------------------------------------------------------------------------------------- the result


@dataclass(frozen=True, eq=False)
class BlockControl:
    """A statistic at every studied block where the claimed structure is absent by construction: ``name``,
    ``value [n_sel]`` (mean over the control's seeds), ``replicates [n_sel, n_seeds * n_boot_per_seed]`` (each
    seed's bootstrap replicates, pooled; columns paired across blocks), ``details``."""

    name: str
    value: np.ndarray
    replicates: np.ndarray
    details: dict[str, Any] = field(default_factory=dict)

    def at(self, i: int) -> Control:
        return self._control(float(self.value[i]), self.replicates[i], self.replicates[i], dict(self.details))

    def over_blocks(self, blocks: Sequence[int]) -> Control:
        """The control of "at every block": minimum over blocks, with the per-block replicates for the band."""
        details = dict(self.details) | {"part_values": self.value.tolist(), "parts": [f"block {b}" for b in blocks]}
        return self._control(float(self.value.min()), self.replicates.min(axis=0), self.replicates, details)

    def _control(self, value: float, reps: np.ndarray, kept: np.ndarray, details: dict[str, Any]) -> Control:
        ok = reps[np.isfinite(reps)]
        return Control(self.name, value, percentile_interval(ok, LEVEL) if ok.size else None, kept, details)


@dataclass(frozen=True, eq=False)
class QKResult(results.SavedResult):
    """The result of study B on one model.

    ``blocks``: the studied 0-based blocks (axis 0 of every per-block array); ``categories`` in order of first
    appearance; ``split_words``: the words split into several tokens, handled as ``multi_token`` says; ``dims``:
    width of q, k, v. ``cos_q``/``cos_k``/``cos_v``: cosine matrices ``[n_sel, n_words, n_words]``. ``mean_cosine``
    and ``selectivity`` per projection, ``rsa`` per pair (p-values: the package docstring), ``rsa_by_category[pair]``:
    ``[n_sel, n_categories]`` within-category RSA. ``over_blocks``: the statistics over all studied blocks, intervals
    from the same paired resamples. ``replicates``: the bootstrap replicates ``[n_sel, n_boot]`` of ``k_minus_q``,
    ``rsa_qk`` and ``min_selectivity_qk`` (what the verdicts decide on); ``controls``: the same three on random
    projections of the block input (:func:`projection_controls`); ``centred_k_minus_q``: K minus Q mean cosine after
    removing the mean key and the mean query over the words (a shared offset raises every cosine without changing
    attention)."""

    study: ClassVar[str] = "qk"

    model: str
    n_blocks: int
    provenance: dict[str, Any]
    blocks: tuple[int, ...]
    words: tuple[str, ...]
    labels: tuple[str, ...]
    categories: tuple[str, ...]
    n_tokens: tuple[int, ...]
    split_words: tuple[str, ...]
    multi_token: str
    dims: dict[str, int]
    cos_q: np.ndarray
    cos_k: np.ndarray
    cos_v: np.ndarray
    mean_cosine: dict[str, BlockStatistic]
    selectivity: dict[str, BlockStatistic]
    rsa: dict[str, BlockStatistic]
    rsa_by_category: dict[str, np.ndarray]
    k_minus_q: BlockStatistic
    min_selectivity_qk: BlockStatistic
    over_blocks: dict[str, Measurement] = field(default_factory=dict)
    replicates: dict[str, np.ndarray] = field(default_factory=dict)
    controls: dict[str, BlockControl] = field(default_factory=dict)
    centred_k_minus_q: BlockStatistic | None = None

    def cos(self, projection: str) -> np.ndarray:
        if projection not in PROJECTIONS:
            raise UsageError(f"unknown projection {projection!r}: use one of {PROJECTIONS}")
        return {"q": self.cos_q, "k": self.cos_k, "v": self.cos_v}[projection]

    def index(self, block: int | None) -> int:
        """Position of 0-based ``block`` among the studied blocks; UsageError naming the fix otherwise."""
        if block is None:
            raise UsageError("this statistic is read at one block: pass layer=<0-based block>")
        if not 0 <= block < self.n_blocks:
            raise UsageError(f"block {block} is out of range: blocks are 0..{self.n_blocks - 1} for {self.model}")
        if block not in self.blocks:
            raise UsageError(f"block {block} was not studied (studied: {list(self.blocks)}): run with blocks=None")
        return self.blocks.index(block)

    def measure(self, statistic: str, *, layer: int | None, kind: str | None = None) -> Measurement:
        """The statistics the claims read; ``layer``: a 0-based block, or None for the statistics over all blocks;
        ``kind`` is unused (this study has none). KeyError for an unknown statistic."""
        if statistic in _AT_BLOCK:
            i = self.index(layer)
            details: dict[str, Any] = {
                "block": self.blocks[i],
                "n_items": len(self.words),
                "split_words": list(self.split_words),
                "multi_token": self.multi_token,
            }
            if statistic == "k_minus_q_mean_cosine":
                key, stat = "k_minus_q", self.k_minus_q
                details |= {f"mean_cosine_{k}": float(self.mean_cosine[k].value[i]) for k in ("q", "k")}
                if self.centred_k_minus_q is not None:
                    c = self.centred_k_minus_q.at(i)
                    details["k_minus_q_mean_removed"] = {"value": c.value, "ci": list(c.ci) if c.ci else None}
            elif statistic == "rsa_qk":
                key, stat = "rsa_qk", self.rsa["qk"]
                by_cat = dict(zip(self.categories, self.rsa_by_category["qk"][i].tolist(), strict=True))
                details |= {"method": "pearson", "p_name": "Mantel test", "rsa_by_category": by_cat}
            else:
                key, stat = "min_selectivity_qk", self.min_selectivity_qk
                details |= {f"selectivity_{k}": float(self.selectivity[k].value[i]) for k in ("q", "k")}
                details["p_name"] = "label permutation, max of Q's and K's p (intersection-union)"
            reps = self.replicates[key][i] if key in self.replicates else None
            control = self.controls[key].at(i) if key in self.controls else None
            return replace(stat.at(i, details), replicates=reps, control=control)
        if statistic in _OVER_BLOCKS:
            if layer is not None:
                raise UsageError(f"{statistic} is over all blocks: pass layer=None")
            missing = sorted(set(range(self.n_blocks)) - set(self.blocks))
            if missing:
                raise UsageError(f"{statistic} needs every block; blocks {missing} were not studied: run blocks=None")
            m = self.over_blocks[statistic]
            if statistic == "min_rsa_qk_over_blocks" and "rsa_qk" in self.replicates:
                control = self.controls["rsa_qk"].over_blocks(self.blocks) if "rsa_qk" in self.controls else None
                details = m.details | {
                    "n_items": len(self.words),
                    "parts": [f"block {b}" for b in self.blocks],
                    "part_values": self.rsa["qk"].value.tolist(),
                    "rule": "simultaneous band over blocks (max-type bootstrap)",
                }
                return replace(m, details=details, replicates=self.replicates["rsa_qk"], control=control)
            return m
        raise KeyError(f"unknown statistic {statistic!r} for study qk: use one of {_AT_BLOCK + _OVER_BLOCKS}")


_AT_BLOCK = ("k_minus_q_mean_cosine", "rsa_qk", "min_selectivity_qk")
_OVER_BLOCKS = ("min_rsa_qk_over_blocks", "fraction_blocks_v_most_selective")


# ----------------------------------------------------------------------------------------------- statistics


def resampled_offdiagonal_means(
    S: np.ndarray, counts: np.ndarray, codes: np.ndarray, n_cat: int
) -> tuple[np.ndarray, np.ndarray]:
    """Mean off-diagonal value and selectivity index of bootstrap resamples, all matrices and resamples at once.

    ``S``: ``[m, n, n]`` symmetric matrices; ``counts``: ``[n_boot, n]`` multiplicity of each item in each resample
    (:func:`~layerclaims.metrics.bootstrap.item_counts`); ``codes``: category index of each item. In a resample the
    distinct-item pair ``{i, j}`` appears ``c_i c_j`` times and copies of one item form no pair, so every block sum
    is a quadratic form in the counts. Returns ``(mean [m, n_boot], selectivity [m, n_boot])``, equal (to rounding)
    to ``mean_offdiagonal`` and ``selectivity_index`` of the same resample's matrices (tested against
    ``tests/oracles/bootstrap.py``)."""
    m, n = S.shape[0], S.shape[-1]
    b = counts.shape[0]
    onehot = np.eye(n_cat)[codes]  # [n, c]
    W = (counts[:, :, None] * onehot[None, :, :]).transpose(1, 0, 2).reshape(n, b * n_cat)  # counts by category
    off = 1.0 - np.eye(n)

    def block_sums(M: np.ndarray) -> np.ndarray:  # [b, c, c]: sum_ij W[i, b, a] M[i, j] W[j, b, c]
        Y = (M @ W).reshape(n, b, n_cat) * counts.T[:, :, None]
        return (onehot.T @ Y.reshape(n, b * n_cat)).reshape(n_cat, b, n_cat).transpose(1, 0, 2)

    sums = np.stack([block_sums(S[i] * off) for i in range(m)])  # [m, b, c, c]
    cnt = block_sums(off)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = sums / cnt
        mean = sums.sum(axis=(-2, -1)) / cnt.sum(axis=(-2, -1))
        iu = np.triu_indices(n_cat, 1)
        within = np.diagonal(means, axis1=-2, axis2=-1).mean(axis=-1)
        between = means[..., iu[0], iu[1]].mean(axis=-1)
        return mean, within / between


def _stat(value: np.ndarray, reps: np.ndarray | None, p: np.ndarray | None) -> BlockStatistic:
    """``value [n_sel]`` with the percentile interval of each row of ``reps [n_sel, n_boot]`` and ``p`` (or NaN)."""
    nan = np.full(value.shape, np.nan)
    lo_hi = np.array([percentile_interval(r, LEVEL) for r in reps]).reshape(-1, 2) if reps is not None else None
    lo, hi = (nan, nan) if lo_hi is None else (lo_hi[:, 0], lo_hi[:, 1])
    return BlockStatistic(value, lo, hi, nan if p is None else p)


Stats = dict[str, dict[str, np.ndarray]]


def _paired(cos: dict[str, np.ndarray], pair: str) -> Any:
    """The two projections' matrices of ``pair``, block by block."""
    return zip(cos[pair[0]], cos[pair[1]], strict=True)


def _estimates(
    cos: dict[str, np.ndarray], labels: Sequence[str], pairs: Sequence[str], n_boot: int, seed: int
) -> tuple[Stats, Stats | None]:
    """Per block: ``mean`` off-diagonal cosine and ``sel``-ectivity of each projection of ``cos``, ``rsa`` of each
    of ``pairs``; then the same on ``n_boot`` stratified resamples of the words (``[n_sel, n_boot]`` each; None
    without resamples), the same resamples for every statistic and block (at least 2 distinct words per category;
    copy pairs excluded: ``pair_moments``)."""
    values = {
        "mean": {k: np.array([mean_offdiagonal(S) for S in C]) for k, C in cos.items()},
        "sel": {k: np.array([selectivity_index(S, labels) for S in C]) for k, C in cos.items()},
        "rsa": {p: np.array([rsa(a, b) for a, b in _paired(cos, p)]) for p in pairs},
    }
    if not n_boot:
        return values, None
    n_sel, n = next(iter(cos.values())).shape[:2]
    cats = list(dict.fromkeys(labels))
    codes = np.array([cats.index(lab) for lab in labels])
    counts = item_counts(bootstrap_indices(n, n_boot, seed=seed, strata=labels, min_distinct=2), n)
    stacked = np.concatenate(list(cos.values()))  # [n_projections n_sel, n, n]
    mean_r, sel_r = resampled_offdiagonal_means(stacked, counts.astype(np.float64), codes, len(cats))
    rows = {k: slice(i * n_sel, (i + 1) * n_sel) for i, k in enumerate(cos)}
    return values, {
        "mean": {k: mean_r[r] for k, r in rows.items()},
        "sel": {k: sel_r[r] for k, r in rows.items()},
        "rsa": {p: np.array([pair_moments(counts, a, b).r for a, b in _paired(cos, p)]) for p in pairs},
    }


def _claimed(st: Stats) -> dict[str, np.ndarray]:
    """The three statistics the block-level claims read, from either of :func:`_estimates`' results."""
    return {
        "k_minus_q": st["mean"]["k"] - st["mean"]["q"],
        "rsa_qk": st["rsa"]["qk"],
        "min_selectivity_qk": np.minimum(st["sel"]["q"], st["sel"]["k"]),
    }


def _permutation_p(
    cos: dict[str, np.ndarray], labels: Sequence[str], config: Config
) -> Callable[[], dict[str, np.ndarray]]:
    """Per block: the label-permutation p of each projection's selectivity and the Mantel p of each pair's RSA; NaN
    for those ``config.tests`` leaves out. One task per tested projection or pair (:mod:`layerclaims.tasks`), so
    that the tests run while the bootstrap does; the function returned collects them."""
    tested = PROJECTIONS + PAIRS if config.tests == "all" else ("q", "k", "qk")
    tasks = {
        key: submit(_selectivity_p, list(cos[key]), labels, config)
        if key in PROJECTIONS
        else submit(_mantel_p, list(_paired(cos, key)), config)
        for key in tested
    }
    absent = np.full(cos["q"].shape[0], np.nan)
    return lambda: {key: tasks[key].result()[0] if key in tasks else absent for key in PROJECTIONS + PAIRS}


def _selectivity_p(matrices: list[np.ndarray], labels: Sequence[str], config: Config) -> np.ndarray:
    """The label-permutation p of each cosine matrix's selectivity."""
    return np.array(
        [selectivity_permutation_test(S, labels, n_perm=config.n_perm, seed=config.seed).p_value for S in matrices]
    )


def _mantel_p(pairs: list[tuple[np.ndarray, np.ndarray]], config: Config) -> np.ndarray:
    """The Mantel p of each pair of cosine matrices' RSA."""
    return np.array([mantel_test(a, b, n_perm=config.n_perm, seed=config.seed).p_value for a, b in pairs])


def warm() -> None:
    """What the study's first tasks would otherwise load (``Study.warm``): the permutation kernels, on 6 words."""
    x = np.random.default_rng(0).normal(size=(6, 8))
    s = x @ x.T
    config = Config(n_perm=9)
    _selectivity_p([s], ["a", "a", "a", "b", "b", "b"], config)
    _mantel_p([(s, s)], config)


def analyse(
    cos: dict[str, np.ndarray],
    labels: Sequence[str],
    blocks: Sequence[int],
    config: Config,
    vecs: dict[str, np.ndarray] | None = None,
) -> dict[str, Any]:
    """Every statistic of the study from the cosine matrices ``cos[projection]: [n_sel, n, n]``. With ``vecs`` (the
    word vectors ``q``, ``k`` and the block input ``x``, ``[n_sel, n, d]``): also K minus Q after removing the mean
    key and query, and the random-projection controls."""
    n_sel = cos["q"].shape[0]
    p_tasks = _permutation_p(cos, labels, config) if config.n_perm else None
    value, reps = _estimates(cos, labels, PAIRS, config.n_boot, config.seed)
    claimed, claimed_reps = _claimed(value), _claimed(reps) if reps is not None else {}

    def stat(group: str, key: str, p: dict[str, np.ndarray] | None) -> BlockStatistic:
        return _stat(value[group][key], None if reps is None else reps[group][key], None if p is None else p[key])

    v_top = value["sel"]["v"] > np.maximum(value["sel"]["q"], value["sel"]["k"])
    extra: dict[str, Any] = {}
    frac_reps = min_rsa_ci = frac_ci = None
    if reps is not None:
        frac_reps = (reps["sel"]["v"] > np.maximum(reps["sel"]["q"], reps["sel"]["k"])).mean(axis=0)
        min_rsa_ci = percentile_interval(reps["rsa"]["qk"].min(axis=0), LEVEL)
        frac_ci = percentile_interval(frac_reps, LEVEL)
    if vecs is not None and "q" in vecs and "k" in vecs:
        centred = {k: np.stack([cosine_matrix(X - X.mean(axis=0)) for X in vecs[k]]) for k in ("q", "k")}
        c_val, c_reps = _estimates(centred, labels, (), config.n_boot, config.seed)
        c_boot = None if c_reps is None else c_reps["mean"]["k"] - c_reps["mean"]["q"]
        extra["centred_k_minus_q"] = _stat(c_val["mean"]["k"] - c_val["mean"]["q"], c_boot, None)
    if vecs is not None and "x" in vecs and config.n_control_seeds:
        dims = {k: int(vecs[k].shape[-1]) for k in ("q", "k")}
        extra["controls"] = projection_controls(vecs["x"], dims, labels, config)
    p_values = None if p_tasks is None else p_tasks()
    p_min_sel = None if p_values is None else np.maximum(p_values["q"], p_values["k"])  # intersection-union
    worst = int(np.argmin(value["rsa"]["qk"]))
    v_blocks = [int(b) for b, t in zip(blocks, v_top, strict=True) if t]
    over = {
        "min_rsa_qk_over_blocks": Measurement(
            float(value["rsa"]["qk"][worst]), min_rsa_ci, None, {"block": int(blocks[worst]), "n_blocks": n_sel}
        ),
        "fraction_blocks_v_most_selective": Measurement(
            float(v_top.mean()), frac_ci, None, {"blocks_v_most_selective": v_blocks, "n_blocks": n_sel}, frac_reps
        ),
    }
    return {
        "categories": tuple(dict.fromkeys(labels)),
        "mean_cosine": {k: stat("mean", k, None) for k in PROJECTIONS},
        "selectivity": {k: stat("sel", k, p_values) for k in PROJECTIONS},
        "rsa": {pair: stat("rsa", pair, p_values) for pair in PAIRS},
        "rsa_by_category": {
            pair: np.array([list(rsa_by_category(a, b, labels).values()) for a, b in _paired(cos, pair)])
            for pair in PAIRS
        },
        "k_minus_q": _stat(claimed["k_minus_q"], claimed_reps.get("k_minus_q"), None),
        "min_selectivity_qk": _stat(claimed["min_selectivity_qk"], claimed_reps.get("min_selectivity_qk"), p_min_sel),
        "over_blocks": over,
        "replicates": claimed_reps,
        **extra,
    }


CONTROL_NAME = "random projections of the block input"


def projection_controls(
    x: np.ndarray, dims: dict[str, int], labels: Sequence[str], config: Config
) -> dict[str, BlockControl]:
    """The claims' statistics where learned Q/K structure is absent by construction: Q and K replaced by random
    Gaussian projections of the same block input ``x`` ``[n_sel, n, d_model]`` (what the real W_Q, W_K project).

    ``dims``: the widths of Q and K. For each of ``config.n_control_seeds`` seeds, ``W_Q ~ N(0, 1)^{d_model x d_q}``
    and ``W_K`` of its own shape (no bias; the scale does not matter for cosines), one draw per seed shared by all
    blocks; then the three statistics as for the real Q and K, with ``n_boot / n_seeds`` (at least 50) stratified
    word resamples per seed, the same at every block so the columns stay paired. Random projections nearly preserve
    cosines (Johnson-Lindenstrauss): the control reads the input's own RSA and selectivity."""
    seeds = config.n_control_seeds
    n_boot = max(config.n_boot // seeds, 50) if config.n_boot else 0
    draws = []
    for s in range(seeds):
        rng = np.random.default_rng([config.seed, 7919, s])
        w = {k: rng.standard_normal((x.shape[-1], dims[k])) for k in ("q", "k")}
        cos = {k: np.stack([cosine_matrix(X @ w[k]) for X in x]) for k in ("q", "k")}
        value, boot = _estimates(cos, labels, ("qk",), n_boot, config.seed + 1000 + s)
        draws.append((_claimed(value), None if boot is None else _claimed(boot)))
    details = {
        "n_seeds": seeds,
        "n_boot_per_seed": n_boot,
        "widths": dict(dims),
        "bias": False,
        "absent": "learned W_Q or W_K (random maps of the same block input instead)",
    }
    return {
        key: BlockControl(
            f"{CONTROL_NAME} ({seeds} seeds)",
            np.mean([value[key] for value, _ in draws], axis=0),
            np.concatenate([value[key][:, None] if boot is None else boot[key] for value, boot in draws], axis=1),
            details,
        )
        for key in draws[0][0]
    }


# ------------------------------------------------------------------------------------------------------- run


def check_model(handle: Any) -> None:
    """ModelNotFoundError when the model's architecture row does not say where Q, K and V live."""
    sites = {s.name for s in getattr(handle.arch, "qkv", ())}
    missing = [k for k in PROJECTIONS if k not in sites]
    if missing:
        raise ModelNotFoundError(
            f"the {getattr(handle.arch, 'family', '?')!r} architecture of {handle.name} has no Q/K/V table "
            f"(missing {missing}): add its q/k/v sites to layerclaims.models.ARCHITECTURES"
        )


def run(handle: Any, config: Config | None = None) -> QKResult:
    """Run study B on a loaded model (:func:`layerclaims.models.load_model`)."""
    config = config or Config()
    check_model(handle)
    blocks = handle.check_blocks(config.blocks)
    t0 = time.perf_counter()
    prompts, vecs = extract(handle, config, blocks)
    t1 = time.perf_counter()
    # BLAS on one thread: the matrices are 34 x 34, where threads only add contention (3-10x slower on a busy
    # machine), and one thread makes the analysis independent of the machine's thread count.
    with threadpool_limits(limits=1, user_api="blas"):
        cos = similarity_matrices(vecs, "raw", "cosine")
        stats = analyse(cos, config.word_labels, blocks, config, vecs)
    t2 = time.perf_counter()
    prov = results.provenance(
        study="qk",
        **results.model_provenance(handle),
        words=list(config.words),
        labels=list(config.word_labels),
        template=config.template,
        multi_token=config.multi_token,
        add_bos=config.add_bos,
        token_ids=[list(map(int, ids)) for ids in prompts.ids],
        word_token_span=[[int(s), int(e)] for s, e in zip(prompts.start, prompts.stop, strict=True)],
        seed=config.seed,
        n_boot=config.n_boot,
        n_perm=config.n_perm,
        n_control_seeds=config.n_control_seeds,
        control=f"{CONTROL_NAME}: Gaussian W_Q, W_K of the real widths, no bias, one draw per seed",
        tests=config.tests,
        bootstrap="stratified by category, >= 2 distinct words per category, copy pairs excluded, percentile 95%",
        timings={"extract_s": round(t1 - t0, 3), "statistics_s": round(t2 - t1, 3)},
    )
    return make_result(handle, config, blocks, prompts, vecs, cos, stats, prov)


def make_result(
    handle: Any,
    config: Config,
    blocks: Sequence[int],
    prompts: Prompts,
    vecs: dict[str, np.ndarray],
    sims: dict[str, np.ndarray],
    stats: dict[str, Any],
    provenance: dict[str, Any],
) -> QKResult:
    """The :class:`QKResult` of the word vectors ``vecs``, their similarity matrices ``sims`` and the statistics
    :func:`analyse` drew from them."""
    return QKResult(
        model=handle.name,
        n_blocks=handle.n_blocks,
        provenance=provenance,
        blocks=tuple(int(b) for b in blocks),
        words=config.words,
        labels=config.word_labels,
        n_tokens=tuple(int(m) for m in prompts.n_tokens),
        split_words=tuple(w for w, m in zip(config.words, prompts.n_tokens, strict=True) if m > 1),
        multi_token=config.multi_token,
        dims={k: int(vecs[k].shape[-1]) for k in PROJECTIONS},
        cos_q=sims["q"],
        cos_k=sims["k"],
        cos_v=sims["v"],
        **stats,
    )
