"""Benchmark: study A (punctuation) end to end on CPU, forward pass vs analysis, and against the original's habits.

``python -m benchmarks punctuation [--model smollm2-135m] [--n 250] [--naive-pairs 300]
[--threads N] [--no-original-memory]``

What it prints (one run, no timed assertions):

1. The whole study (both kinds, every hidden state, ``--n`` marks per kind, the default Config, the claim layers
   as detail layers), through the study's own steps (``marks``, ``extraction.extract_marks``,
   ``analysis.start_kind``): tokenize, forward and analysis wall/CPU seconds, and the analysis split into its
   steps (MI+covariance, cluster counts at every layer, the detail layers' refit resamples, Mantel test, Gaussian
   control, mark bootstrap).
1b. The cluster step before and after issue 11 on the same pair matrices (internal kind): the literal procedure
   as the study ran it (``count_clusters`` on the 31,125 pair values, covariance, MI and 2-D, stability and mark
   resamples at the detail layers) against ``cluster_marks`` on the n x n matrices with the literal 1-D counts
   beside and the refit resamples; the ratio.
2. Analysis vs the original per-pair loop ON THE SAME DATA: the original's ``mutInfo_and_cov`` per pair
   (``mi_cov_pair`` of ``tests/oracles/information.py``, ``np.histogram2d`` per pair) is timed on
   ``--naive-pairs`` random pairs of the layer-1 and last-layer internal vectors and extrapolated to every pair of
   every entry of both kinds (said so in the output); ratios against the vectorised MI+covariance step and against
   the whole analysis (which also does clusters, Simpson and bootstraps that the original never did).
3. Peak memory of extraction (the growth of the process's resident set, ``VmHWM`` after resetting it through
   ``/proc/self/clear_refs``) against the original's way, one forward pass with ``output_hidden_states=True`` that
   keeps every hidden state of every position: its size is computed (2 kinds x (n_blocks+1) x n x 31 x d x 4 bytes)
   and measured for one kind (the other is the same size).

On shared cores wall times depend on everyone else's load; CPU times of the process are printed beside them.
Last line: ``analysis <x>x faster than the per-pair loop (MI+cov step <y>x); extraction peak <a> MB vs <b> MB``.
"""

from __future__ import annotations

import argparse
import functools
import gc
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

MB = 1024.0 * 1024.0


def _status_kb(field: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return float(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False where unsupported."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_growth(fn: Callable[[], Any]) -> tuple[Any, float | None, float, float]:
    """``(result, peak RSS growth in MB or None, wall s, cpu s)`` of ``fn()``."""
    gc.collect()
    ok = _reset_peak()
    base = _status_kb("VmRSS")
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    peak = _status_kb("VmHWM")
    growth = (peak - base) / 1024.0 if ok and peak is not None and base is not None else None
    return out, growth, wall, cpu


def _original_forward(handle: Any, ctx: np.ndarray) -> list[np.ndarray]:
    """The notebook's way: one pass over all contexts with ``output_hidden_states=True``, every layer and
    position kept (as NumPy arrays)."""
    import torch

    with torch.no_grad():
        out = handle.model(torch.as_tensor(ctx, device=handle.device), output_hidden_states=True)
    return [h.detach().cpu().numpy() for h in out.hidden_states]


def n_pairs(n: int) -> int:
    return n * (n - 1) // 2


def _cluster_step_before_after(X: np.ndarray, detail: np.ndarray, config: Any) -> tuple[float, float]:
    """Seconds of the cluster step before this reshape (the literal procedure on the pair values, as the study ran
    it) and now (the study's own functions), on the same pair matrices of one kind."""
    from layerclaims.metrics.bootstrap import bootstrap_indices
    from layerclaims.metrics.clusters import count_clusters
    from layerclaims.studies.punctuation.analysis import _counts, detail_resamples, groups_of, literal, pair_matrices

    mats = [pair_matrices(X[e], config) for e in range(X.shape[0])]
    t0 = time.perf_counter()
    for e, m in enumerate(mats):
        is_detail = bool(np.any(detail == e))
        for pts in (m.cov, m.mi, np.c_[m.cov, m.mi]):
            if not m.degenerate:
                count_clusters(pts, seed=e, n_boot=20 if is_detail else 0)
        if is_detail and not m.degenerate:
            for row in bootstrap_indices(m.cov_m.shape[0], 20, seed=e):
                keep = np.unique(row)
                iu = np.triu_indices(keep.size, 1)
                c, v = m.cov_m[np.ix_(keep, keep)][iu], m.mi_m[np.ix_(keep, keep)][iu]
                for pts in (c, v, np.c_[c, v]):
                    count_clusters(pts, seed=e, n_boot=0)
    t1 = time.perf_counter()
    for e, m in enumerate(mats):
        groups_of(m.cov_m, e, 0)
        if np.any(detail == e):
            groups_of(m.mi_m, e, 0)
            detail_resamples(m, _counts(np.arange(m.cov_m.shape[0]), config.n_boot_clusters, e))
            literal(m.cov, e, 20), literal(m.mi, e, 20)
    return t1 - t0, time.perf_counter() - t1


CLAIM_LAYERS = (1, 20)
"""The hidden states claims A1-A6 read on gpt2-medium (24 blocks); the pipeline maps them by relative depth."""


def _claim_layers(n_blocks: int) -> tuple[int, ...]:
    """:data:`CLAIM_LAYERS` mapped to an ``n_blocks`` model as ``layerclaims.claims.map_hidden_state`` does (a study
    never reads the claims)."""
    return tuple(sorted({min(max(math.floor(layer * n_blocks / 24 + 0.5), 1), n_blocks) for layer in CLAIM_LAYERS}))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; see the module docstring."""
    ap = argparse.ArgumentParser(prog="python -m benchmarks punctuation", description=__doc__)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--n", type=int, default=250, help="marks per kind (default 250)")
    ap.add_argument("--naive-pairs", type=int, default=300, help="pairs timed with the per-pair loop, per layer")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--no-original-memory", action="store_true", help="skip measuring the original's memory")
    args = ap.parse_args(list(argv) if argv is not None else None)

    import torch

    from layerclaims.data import load_corpus
    from layerclaims.models import load_model
    from layerclaims.studies.punctuation import Config
    from layerclaims.studies.punctuation.analysis import start_kind
    from layerclaims.studies.punctuation.config import kind_seeds
    from layerclaims.studies.punctuation.extraction import detail_entries, entries, extract_marks
    from layerclaims.studies.punctuation.marks import CONTEXT, KINDS
    from tests.oracles.marks import contexts, find_marks, select_marks, tokenize, usable_marks

    if args.threads:
        torch.set_num_threads(args.threads)
    handle = load_model(args.model)
    print(
        f"model {handle.name}: {handle.n_blocks} blocks, d={handle.d_model}, {handle.dtype} on {handle.device}, "
        f"torch threads {torch.get_num_threads()}; N={args.n} marks per kind, first-N selection, pg219"
    )

    layers, post_norm = entries(handle, None)
    wanted = _claim_layers(int(handle.n_blocks))
    config = Config(n=args.n, detail_layers=wanted)
    t0, c0 = time.perf_counter(), time.process_time()
    ids = tokenize(handle.tokenizer, load_corpus(config.corpus).text)
    found = find_marks(ids, handle.tokenizer, start=config.start, marks=config.marks)
    t_tok, c_tok = time.perf_counter() - t0, time.process_time() - c0
    detail = detail_entries(layers, post_norm, wanted, int(handle.n_blocks))
    E = layers.size
    steps: dict[str, float] = {}
    fwd_wall = fwd_cpu = an_wall = an_cpu = 0.0
    peaks: list[float | None] = []
    kept_bytes = 0
    vectors: dict[str, np.ndarray] = {}
    ctxs: dict[str, np.ndarray] = {}
    for k, kind in enumerate(KINDS):
        seeds = kind_seeds(config.seed, kind)
        usable, s0, s1 = usable_marks(found[k], ids.size)
        sel = select_marks(usable, config.n, config.selection, seeds.selection, kind=kind)
        ctx = contexts(ids, sel)
        ctxs[kind] = ctx
        X, peak, w, c = peak_growth(functools.partial(extract_marks, handle, ctx, layers, post_norm, config.batch_size))
        fwd_wall, fwd_cpu = fwd_wall + w, fwd_cpu + c
        peaks.append(peak)
        kept_bytes += X.nbytes // 2  # float32 as returned by extraction (X here is float64)
        vectors[kind] = X
        t1, c1 = time.perf_counter(), time.process_time()
        counts = {"found": int(found[k].size), "skipped_start": s0, "skipped_end": s1, "usable": int(usable.size)}
        start_kind(
            X,
            config,
            seeds=seeds,
            layers=layers,
            post_norm=post_norm,
            detail=detail,
            kind=kind,
            counts=counts,
            marks=sel,
            timings=steps,
        )()  # the kind's detail tasks collected
        an_wall, an_cpu = an_wall + time.perf_counter() - t1, an_cpu + time.process_time() - c1

    print(f"\n== whole study (both kinds, all hidden states + the post-norm last entry: {E} entries per kind) ==")
    print(f"tokenize + flags   {t_tok:8.1f} s wall  {c_tok:8.1f} s cpu")
    print(f"forward (extract)  {fwd_wall:8.1f} s wall  {fwd_cpu:8.1f} s cpu")
    print(f"analysis           {an_wall:8.1f} s wall  {an_cpu:8.1f} s cpu")
    for key, val in steps.items():
        print(f"  {key:<16} {val:8.1f} s wall")
    old, new = _cluster_step_before_after(vectors["internal"], detail, config)
    print(
        f"\n== cluster step, internal kind, same pair matrices: before (count_clusters on the {n_pairs(args.n):,} pair "
        f"values: cov, MI, 2-D at every entry; 20 stability resamples and 20 mark resamples x 3 counts at the "
        f"{detail.size} detail entries) {old:.1f} s; now (cluster_marks on the {args.n} x {args.n} covariance at "
        f"every entry; MI, the literal 1-D counts and {config.n_boot_clusters} refit resamples at the detail "
        f"entries) {new:.1f} s -> {old / new:.1f}x faster =="
    )

    # ---- the per-pair loop on the same data
    n = args.n
    n_pairs_total = n * (n - 1) // 2 * E * len(KINDS)
    rng = np.random.default_rng(0)
    iu = np.triu_indices(n, 1)
    X = vectors["internal"]
    per_pair: list[float] = []
    max_diff = 0.0
    from layerclaims.metrics.information import pairwise_mi_cov
    from tests.oracles.information import mi_cov_pair

    for e in (int(np.flatnonzero((layers == 1) & ~post_norm)[0]), int(np.flatnonzero(~post_norm)[-1])):
        pick = rng.choice(iu[0].size, size=min(args.naive_pairs, iu[0].size), replace=False)
        t = time.perf_counter()
        naive = [
            mi_cov_pair(X[e, iu[0][p]], X[e, iu[1][p]], bins=config.bins, z_threshold=config.z_threshold) for p in pick
        ]
        per_pair.append((time.perf_counter() - t) / pick.size)
        MI, COV = pairwise_mi_cov(X[e], bins=config.bins, z_threshold=config.z_threshold)
        nv = np.asarray(naive)
        max_diff = max(
            max_diff,
            float(np.max(np.abs(nv[:, 0] - MI[iu[0][pick], iu[1][pick]]))),
            float(np.max(np.abs(nv[:, 1] - COV[iu[0][pick], iu[1][pick]]))),
        )
    naive_total = float(np.mean(per_pair)) * n_pairs_total
    mi_step = steps.get("mi_cov_s", float("nan"))
    print("\n== analysis vs the original per-pair loop (same vectors) ==")
    print(
        f"per-pair loop: {np.mean(per_pair) * 1e3:.3f} ms/pair, timed on {args.naive_pairs} random pairs at layer 1 "
        f"and at layer {handle.n_blocks}, EXTRAPOLATED to {n_pairs_total:,} pairs "
        f"({n * (n - 1) // 2:,} x {E} entries x 2 kinds): {naive_total:,.0f} s"
    )
    print(
        f"vectorised MI+cov step: {mi_step:.1f} s  -> {naive_total / mi_step:,.0f}x faster "
        f"(max abs diff on the timed pairs {max_diff:.2e})"
    )
    print(
        f"whole analysis (MI+cov, clusters, CIs, Simpson, bootstraps): {an_wall:.1f} s -> "
        f"{naive_total / an_wall:,.0f}x faster than the loop alone"
    )

    # ---- memory
    d = handle.d_model
    orig_bytes = 2 * (handle.n_blocks + 1) * n * CONTEXT * d * 4
    print("\n== extraction memory ==")
    print(f"kept by the study: {kept_bytes / MB:.1f} MB of mark vectors (2 kinds x {E} entries x {n} x {d} x 4 B)")
    for kind, pk in zip(KINDS, peaks, strict=True):
        print(f"peak RSS growth during extraction ({kind}): " + (f"{pk:.0f} MB" if pk is not None else "n/a"))
    print(
        f"original (every hidden state of every position): 2 x {handle.n_blocks + 1} x {n} x {CONTEXT} x {d} x 4 B"
        f" = {orig_bytes / MB:,.0f} MB computed"
    )
    orig_peak = None
    if not args.no_original_memory:
        del vectors, X
        hs, orig_peak, w, _ = peak_growth(lambda: _original_forward(handle, ctxs["internal"]))
        held = sum(h.nbytes for h in hs)
        del hs
        print(
            f"original way measured for one kind: peak RSS growth {orig_peak:.0f} MB, arrays held {held / MB:.0f} MB "
            f"({w:.0f} s); both kinds ~{2 * orig_peak:.0f} MB"
            if orig_peak is not None
            else "n/a"
        )
    ours = max(p for p in peaks if p is not None) if any(p is not None for p in peaks) else float("nan")
    theirs = 2 * orig_peak if orig_peak is not None else orig_bytes / MB
    print(
        f"\nanalysis {naive_total / an_wall:,.0f}x faster than the per-pair loop (MI+cov step "
        f"{naive_total / mi_step:,.0f}x); extraction peak {ours:.0f} MB vs {theirs:,.0f} MB"
    )
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
