"""Benchmarks: ``python -m layerclaims.benchmarks NAME [options]``.

Each benchmark prints its figures (ratios measured within one run, never timed assertions) and ends with one
summary line. ``BENCHMARKS`` maps a name to ``"module:function"``; the function takes ``argv`` (the options after
NAME, a list of strings) and returns an exit code (``None`` counts as 0). Modules are imported only when run. A
study's own benchmarks are declared by the study (``Study.benchmarks``) and listed beside these.
"""

from __future__ import annotations

BENCHMARKS: dict[str, str] = {
    "calibration": "layerclaims.benchmarks.calibration:main",
    "pairwise-mi": "layerclaims.benchmarks.pairwise_mi:main",
    "mark-clusters": "layerclaims.benchmarks.mark_clusters:main",
    "robustness": "layerclaims.benchmarks.robustness:main",
    "figures": "layerclaims.benchmarks.figures:main",
}

__all__ = ["BENCHMARKS"]
