"""Benchmark: ``layerclaims robustness`` end to end on one model: total time, forward passes vs analysis, and the
model runs the activation cache saved.

``python -m benchmarks robustness [--model smollm2-135m] [--out DIR] [--n-specs 0] [--workers N]
[--executor local|inline|ray] [--cold]``

Runs :func:`layerclaims.robustness.run` (both studies, the original path, every single-choice departure and
``--n-specs`` random combinations) and prints: wall seconds of the whole grid, the sum over jobs of forward-pass
seconds and of analysis seconds (jobs run in parallel, so the sums can exceed the wall time), the activation-cache
counters (entries read vs computed, extraction calls answered entirely from disk = model runs saved), and the
"holds in k of n" line of every claim. ``--cold`` points the cache at an empty temporary folder first (otherwise an
earlier run's entries are reused and the forward share shrinks further). The machine's load average is printed,
since wall times on shared cores depend on everyone else's work.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks robustness", description=__doc__)
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--out", default=None, help="output folder (default: a temporary one)")
    p.add_argument("--n-specs", type=int, default=0)
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--executor", default="local", choices=("local", "inline", "ray"))
    p.add_argument("--cold", action="store_true", help="start from an empty activation cache")
    args = p.parse_args(argv)
    from layerclaims import robustness

    tmp = tempfile.mkdtemp(prefix="layerclaims-robustness-")
    if args.cold:
        from layerclaims.data import CACHE_ENV, cache_dir

        models = cache_dir() / "models"  # keep converted weights: only the activations start empty
        os.environ[CACHE_ENV] = os.path.join(tmp, "cache")
        os.makedirs(os.environ[CACHE_ENV], exist_ok=True)
        if models.is_dir():
            os.symlink(models, os.path.join(os.environ[CACHE_ENV], "models"))
    out = args.out or os.path.join(tmp, "out")
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    o = robustness.run(
        args.model,
        out,
        n_specs=args.n_specs,
        workers=args.workers,
        executor=args.executor,
        progress=lambda m: print(m, flush=True),
    )
    wall = time.perf_counter() - t0
    t = o.stats
    print(f"model {args.model}: {len(o.rows)} claim evaluations, {len(o.failed)} failed jobs, folder {o.out}")
    print(
        f"wall {wall:.1f} s (load average {load0:.1f} at start, {os.getloadavg()[0]:.1f} at end, "
        f"{os.cpu_count()} cores)"
    )
    print(f"forward passes {t['forward_s']:.1f} s vs analysis {t['analysis_s']:.1f} s (sums over jobs)")
    print(
        f"activation cache: {t['cache_hits']} entries read, {t['cache_misses']} computed; "
        f"{t['model_runs_saved']} study runs needed no forward pass"
    )
    for line in o.lines:
        print(line)
    return 0
