"""Benchmarks (developer tooling, not part of the package): ``python -m benchmarks NAME [options]`` from the
repository root.

Each benchmark prints its figures (ratios measured within one run, never timed assertions) and ends with one
summary line. ``BENCHMARKS`` maps a name to ``"module:function"``; the function takes ``argv`` (the options after
NAME, a list of strings) and returns an exit code (``None`` counts as 0). Modules are imported only when run.
"""

from __future__ import annotations

BENCHMARKS: dict[str, str] = {
    "calibration": "benchmarks.calibration:main",
    "pairwise-mi": "benchmarks.pairwise_mi:main",
    "mark-clusters": "benchmarks.mark_clusters:main",
    "robustness": "benchmarks.robustness:main",
    "figures": "benchmarks.figures:main",
    "punctuation": "benchmarks.punctuation:main",
    "reproduce": "benchmarks.reproduce:main",
    "streaming": "benchmarks.streaming:main",
}

__all__ = ["BENCHMARKS"]
