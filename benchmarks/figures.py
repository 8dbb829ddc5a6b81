"""Benchmark: the time to draw the report's figures from a saved run.

``python -m benchmarks figures RUN_DIR [--repeat 3]``

RUN_DIR is a ``layerclaims reproduce --out`` folder. For each study saved there (``<study>.json``) the benchmark
draws every figure its ``figures`` table names (for the package's claims of the study) into a temporary folder,
``--repeat`` times, and prints each figure's fastest time; first the import of matplotlib (the first figure of a
run pays it). Last line: ``figures <total> s for <n> figures (import included); budget 3 s: <total/3>x``. The
budget is issue 13's: the report's figures take at most 3 s of a run. Times are this machine's; compare them
within one run.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

BUDGET_S = 3.0


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks figures", description=__doc__)
    ap.add_argument("run", type=Path, help="a folder written by `layerclaims reproduce --out`")
    ap.add_argument("--repeat", type=int, default=3, help="draws per figure; the fastest is reported (default 3)")
    args = ap.parse_args(list(argv) if argv is not None else None)
    from layerclaims import study as registry
    from layerclaims.claims import claim_reads, claims_for

    names = [name for name, st in registry.registry().items() if st.figures is not None]
    saved = [s for s in names if (args.run / f"{s}.json").is_file()]
    if not saved:
        sys.stderr.write(
            f"{args.run} holds no saved study ({', '.join(f'{s}.json' for s in names)}). "
            f"Fix: run `layerclaims reproduce --model tiny-gpt2 --out {args.run}` first.\n"
        )
        return 2
    if args.repeat < 1:
        sys.stderr.write("--repeat must be at least 1.\n")
        return 2

    t0 = time.perf_counter()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot  # the import a run's first figure pays

    import_s = time.perf_counter() - t0
    print(f"{'import matplotlib':<46} {import_s:7.3f} s")
    total = import_s
    n = 0
    with tempfile.TemporaryDirectory() as tmp:
        for study in saved:
            declared = registry.get(study)
            result = declared.load(args.run)
            assert declared.figures is not None
            reads = claim_reads(claims_for(study), int(result.n_blocks))
            for name, draw in declared.figures(result, reads).items():
                best = float("inf")
                for _ in range(args.repeat):
                    start = time.perf_counter()
                    draw(Path(tmp) / name)
                    best = min(best, time.perf_counter() - start)
                print(f"{study + ': ' + name:<46} {best:7.3f} s")
                total += best
                n += 1
    print(f"figures {total:.2f} s for {n} figures (import included); budget {BUDGET_S:g} s: {total / BUDGET_S:.2f}x")
    return 0
