"""Benchmark: error rates of :func:`~layerclaims.metrics.clusters.cluster_marks` on the validation cases of issue 11.

``python -m benchmarks mark-clusters [--seeds 20] [--mi]``

For every case of :mod:`tests.oracles.mark_cases` (N = 250 marks, D = 1024 dimensions) and ``--seeds`` seeds:
the fraction of seeds where the count differs from the truth, for cluster_marks and for the literal count of the
pair values (:func:`~layerclaims.metrics.clusters.count_clusters`); the atypical marks missed (not flagged) and the
marks flagged in group cases (false flags). Then the power curve over the separation of two groups, and the
smallest group support: how large is the largest spurious group found with ``min_support=2`` in the one-population
cases (the simulation behind ``MIN_SUPPORT``). ``--mi``: the same on the MI matrices of the study's estimator.
Last line: ``cluster_marks errors <a>/<n> counts; literal count errors <b>/<n>``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import numpy as np

from layerclaims.metrics.clusters import count_clusters
from layerclaims.metrics.mark_cases import covariance
from layerclaims.metrics.mark_clusters import cluster_marks
from tests.oracles.mark_cases import CASES, MarkCase, power_case

NULL_CASES = (
    "one population",
    "heavy-tailed loadings (t3)",
    "lognormal scales (sigma 0.5)",
    "lognormal scales (sigma 1)",
)


def _matrix(case: MarkCase, mi: bool) -> np.ndarray:
    if not mi:
        return covariance(case.x)
    from layerclaims.metrics.information import pairwise_mi_cov

    return np.asarray(pairwise_mi_cov(case.x)[0])


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks mark-clusters", description=__doc__)
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--mi", action="store_true", help="MI matrices (the study's estimator) instead of covariance")
    args = ap.parse_args(list(argv) if argv is not None else None)
    seeds = range(args.seeds)
    what = "MI" if args.mi else "covariance"
    print(f"cluster_marks vs the literal count on {what} matrices, N=250, D=1024, {args.seeds} seeds per case\n")
    print(f"{'case':<36} {'truth':>5} {'errors':>8} {'literal errors':>15} {'missed flags':>13} {'false flags':>12}")
    tot = lit = n = 0
    for name, gen in CASES.items():
        err = lerr = missed = false = 0
        for s in seeds:
            case = gen(np.random.default_rng(s))
            m = _matrix(case, args.mi)
            res = cluster_marks(m, n_boot=0)
            err += res.n_clusters != case.truth
            lerr += count_clusters(m[np.triu_indices(m.shape[0], 1)], n_boot=0).n_clusters != case.truth
            missed += len(set(case.flagged) - set(res.outlier_marks))
            false += len(res.outlier_marks) if case.truth > 1 else 0
        tot, lit, n = tot + err, lit + lerr, n + len(seeds)
        print(
            f"{name:<36} {CASES[name](np.random.default_rng(0)).truth:>5} {err:>4}/{len(seeds):<3} "
            f"{lerr:>11}/{len(seeds):<3} {missed:>13} {false:>12}"
        )
    print("\npower: fraction of seeds with 3 clusters, two groups of 125 with loadings 0.7 and 0.7 + delta")
    for delta in (0.0, 0.1, 0.15, 0.2, 0.225, 0.25, 0.275, 0.3):
        hits = [
            cluster_marks(_matrix(power_case(delta, np.random.default_rng(s)), args.mi), n_boot=0).n_clusters == 3
            for s in seeds
        ]
        print(f"  delta {delta:<5} {np.mean(hits):.2f}")
    print("\nsupport: largest group found with min_support=2 in one-population cases (spurious groups)")
    for name in NULL_CASES:
        sizes = []
        for s in seeds:
            res = cluster_marks(_matrix(CASES[name](np.random.default_rng(s)), args.mi), n_boot=0, min_support=2)
            g = res.diagnostics["group_sizes"]
            sizes.append(min(g) if len(g) > 1 else 0)
        print(f"  {name:<36} smallest group when more than one: max {max(sizes)} over seeds (0 = always one group)")
    print(f"\ncluster_marks errors {tot}/{n} counts; literal count errors {lit}/{n}")
    return 0
