"""Benchmark: all-pairs histogram MI + covariance, naive per-pair loop vs :func:`pairwise_mi_cov`.

``python -m benchmarks pairwise-mi [--n 250] [--d 1024] [--device cpu|cuda] [--pairs 500] [--full]``

On CPU both paths are timed: ``numba`` (the default; its first call, which compiles or loads the on-disk
cache, is timed separately and not counted) and ``torch`` on the CPU; with ``--device cuda``, torch on the GPU.

Data: N x D float64, seeded: standard Gaussian with 2 % of the dims Student t (2 dof) scaled by 10 and one
massive dim (x 100, like GPT-2's outlier dims), so trimming happens and per-pair ranges differ.
The naive loop is ``mi_cov_pair`` of ``tests/oracles/information.py`` (the original code, ``np.histogram2d``
per pair). By default it runs over a random subset of ``--pairs`` pairs and its time is extrapolated to all
N (N - 1) / 2 pairs (said so in the output); ``--full`` times the whole loop (minutes at N = 250). The
time of each backend is the median of ``--repeat`` runs in the same process, after a warm-up call. Wall times give
the last line; CPU times of the process (all threads) are printed too, since on shared cores wall time depends on
everyone else's load. The max abs diff is over the compared pairs (MI in bits and covariance). Last line, for the
default backend (numba on CPU, torch with ``--device cuda``): ``speedup <ratio>x, max abs diff <d>``.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from layerclaims.errors import UsageError
from layerclaims.metrics.information import pairwise_mi_cov
from tests.oracles.information import mi_cov_pair


def _threads(backend: str) -> str:
    if backend != "numba":
        import torch

        return f"{torch.get_num_threads()} torch threads"
    import numba

    try:
        layer = numba.threading_layer()  # known once a parallel function has run
    except ValueError:
        layer = numba.config.THREADING_LAYER  # type: ignore[attr-defined]  # numba sets its options by setattr
    return f"{numba.get_num_threads()} numba threads, {layer} layer"


def make_data(n: int, d: int, seed: int = 0) -> np.ndarray:
    """Gaussian N x D with 2 % heavy-tailed dims (Student t, 2 dof, x 10) and one massive dim (x 100)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    heavy = rng.choice(d, size=max(1, d // 50), replace=False)
    X[:, heavy] = 10.0 * rng.standard_t(2, (n, len(heavy)))
    X[:, heavy[0]] = 100.0 + rng.standard_normal(n)
    return X


def _time(fn: Callable[[], Any], repeat: int) -> tuple[float, float, Any]:
    """Median wall time, median CPU time of this process (all threads), last result."""
    walls, cpus, out = [], [], None
    for _ in range(repeat):
        c0, t0 = time.process_time(), time.perf_counter()
        out = fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return statistics.median(walls), statistics.median(cpus), out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks pairwise-mi", description=__doc__)
    ap.add_argument("--n", type=int, default=250, help="vectors (default 250)")
    ap.add_argument("--d", type=int, default=1024, help="dims per vector = samples per pair (default 1024)")
    ap.add_argument(
        "--device",
        choices=["cpu", "cuda"],
        default="cpu",
        help="cpu: the numba kernel (default) and torch on the CPU; cuda: torch on the GPU",
    )
    ap.add_argument("--pairs", type=int, default=500, help="random pairs timed in the naive loop (default 500)")
    ap.add_argument("--full", action="store_true", help="time the naive loop over every pair (slow)")
    ap.add_argument("--repeat", type=int, default=3, help="runs of the vectorised version (median)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(list(argv) if argv is not None else None)

    X = make_data(args.n, args.d, args.seed)
    iu, ju = np.triu_indices(args.n, 1)
    n_pairs = len(iu)
    print(
        f"pairwise-mi: N={args.n} vectors x D={args.d} dims, float64, seed {args.seed} "
        f"(Gaussian; {max(1, args.d // 50)} Student-t(2) dims x10, one of them massive x100)"
    )

    if args.full or args.pairs >= n_pairs:
        sel = np.arange(n_pairs)
    else:
        sel = np.sort(np.random.default_rng(args.seed + 1).choice(n_pairs, size=args.pairs, replace=False))
    c0, t0 = time.process_time(), time.perf_counter()
    naive = np.array([mi_cov_pair(X[iu[p]], X[ju[p]]) for p in sel])
    t_subset = time.perf_counter() - t0
    t_naive = t_subset * n_pairs / len(sel)
    c_naive = (time.process_time() - c0) * n_pairs / len(sel)
    if len(sel) == n_pairs:
        print(f"naive per-pair loop (np.histogram2d per pair): all {n_pairs} pairs in {t_naive:.2f} s")
    else:
        print(
            f"naive per-pair loop (np.histogram2d per pair): {len(sel)} random pairs in {t_subset:.2f} s "
            f"= {1e3 * t_subset / len(sel):.3f} ms/pair -> {t_naive:.1f} s for all {n_pairs} pairs "
            f"(EXTRAPOLATED; --full times them all)"
        )

    if args.device == "cpu":
        backends: list[tuple[str, str | None]] = [("numba", None), ("torch", "cpu")]
    else:
        backends = [("torch", "cuda")]
    results = {}
    for backend, device in backends:
        t0 = time.perf_counter()
        try:
            pairwise_mi_cov(X[: min(args.n, 8)], device=device)  # compile / load cache, CUDA init
        except UsageError as err:
            print(f"{backend}: not available ({err})")
            continue
        t_first = time.perf_counter() - t0
        t_fast, c_fast, (mi, cov) = _time(functools.partial(pairwise_mi_cov, X, device=device), args.repeat)
        d_mi = float(np.max(np.abs(mi[iu[sel], ju[sel]] - naive[:, 0])))
        d_cov = float(np.max(np.abs(cov[iu[sel], ju[sel]] - naive[:, 1])))
        results[backend] = (t_fast, c_fast, max(d_mi, d_cov))
        where = "CUDA" if device == "cuda" else f"CPU, {_threads(backend)}"
        print(
            f"pairwise_mi_cov backend={backend} ({where}): first call {t_first:.2f} s "
            f"({'compile or load the on-disk cache' if backend == 'numba' else 'warm-up'}; not counted), then "
            f"median of {args.repeat}: {t_fast:.3f} s wall, {c_fast:.3f} s CPU for all {n_pairs} pairs (+ diagonal); "
            f"speedup {t_naive / t_fast:.1f}x wall, {c_naive / c_fast:.1f}x CPU; "
            f"max abs diff MI {d_mi:.3g} bits, covariance {d_cov:.3g}"
        )
    if args.device == "cpu":
        try:
            import torch

            if torch.cuda.is_available():
                pairwise_mi_cov(X[:8], device="cuda")
                t_gpu, _, _ = _time(lambda: pairwise_mi_cov(X, device="cuda"), args.repeat)
                print(f"pairwise_mi_cov backend=torch (CUDA; median of {args.repeat}): {t_gpu:.3f} s")
            else:
                print("GPU: torch sees no CUDA device; GPU time not measured")
        except ImportError:
            print("GPU: torch not installed; GPU time not measured")
    if not results:
        print("no backend ran")
        return 1
    default = next(iter(results))
    t_fast, c_fast, diff = results[default]
    print(
        f"covariance values up to {float(np.max(np.abs(naive[:, 1]))):.3g}; "
        f"max abs diffs are over the {len(sel)} compared pairs"
    )
    print(
        f"CPU time of this process (all threads): naive {c_naive:.1f} s, {default} {c_fast:.3f} s, "
        f"ratio {c_naive / c_fast:.1f}x (less sensitive to other load on shared cores than wall time)"
    )
    print(f"speedup {t_naive / t_fast:.1f}x, max abs diff {diff:.3g}")
    return 0
