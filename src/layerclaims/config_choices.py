"""A robustness-grid run for a study whose every choice is a run choice: each choice value maps to Config fields
(the study's table), so one grid job is one run of the study with those fields and the grid's reduced settings,
and every analysis variant of the job reads that one result. Studies import it; it imports no study."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from layerclaims.errors import UsageError


def run_each(
    run: Callable[[Any, Any, Any], Any],
    config: type,
    table: Mapping[str, Mapping[str, Mapping[str, Any]]],
    handle: Any,
    values: Mapping[str, str],
    variants: Sequence[Mapping[str, str]],
    grid: Mapping[str, Any],
    base: Mapping[str, Any],
) -> tuple[list[Any], dict[str, Any]]:
    """One run of the study with ``grid`` and the Config fields of ``values`` (choice -> value, via ``table``, the
    original value first) over the claims' own settings ``base``: a choice at its original value keeps a field the
    claims set, one that departs from it overrides it."""
    fields: dict[str, Any] = {**base, **grid}
    for choice, value in values.items():
        if choice not in table or value not in table[choice]:
            raise UsageError(f"unknown robustness value {choice}={value!r}: valid are {dict(table)}")
        original = value == next(iter(table[choice]))
        fields.update({k: v for k, v in table[choice][value].items() if not (original and k in base)})
    t0 = time.perf_counter()
    result = run(handle, config(**fields), None)
    return [result] * max(len(variants), 1), {"forward_s": time.perf_counter() - t0, "analysis_s": 0.0}
