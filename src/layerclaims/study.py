"""A study is a plug-in that declares itself: one :class:`Study` object per study, found through entry points.

A study package (the package's own, under ``layerclaims/studies/``, or a third party's) defines a module-level
:class:`Study` and registers it in its ``pyproject.toml``::

    [project.entry-points."layerclaims.studies"]
    norm = "normstudy:STUDY"

Everything the rest of the package needs of a study is read from that object: its name, its ``Config`` (the
defaults, defined there once; a claim's ``settings`` are its fields), the statistics its result measures (at one
layer or over layers), what a claim's layer counts (``"block"``: a 0-based block; ``"hidden_state"``: an index into
``hidden_states``), the mark kinds a claim may select, how to run it, its figures, its report section and its
robustness choices. Importing a declaration must not import torch: ``run``, ``figures``, ``report_section`` and
the robustness run import their heavy modules when called (``docs/architecture.md``, "Writing a study").

This module imports nothing of the package but :mod:`layerclaims.errors`.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Literal

from layerclaims.errors import UsageError

GROUP = "layerclaims.studies"
log = logging.getLogger("layerclaims.study")
LayerUnit = Literal["block", "hidden_state"]
Progress = Callable[[str], None]
Draw = Callable[[Path], Path]
# (handle, run-choice values, analysis variants, claim layers, grid settings, the claims' own settings)
#   -> (one result per variant, timings)
RobustnessRun = Callable[
    [Any, Mapping[str, str], Sequence[Mapping[str, str]], Sequence[int], Mapping[str, Any], Mapping[str, Any]],
    tuple[list[Any], dict[str, Any]],
]


@dataclass(frozen=True)
class Statistic:
    """A statistic the study's result measures: ``name`` (what a claim's condition names), ``over_layers`` (False:
    read at the layer the claim names; True: read over every layer, the claim names none) and ``description``."""

    name: str
    over_layers: bool
    description: str


@dataclass(frozen=True)
class ClaimRead:
    """What a figure needs of one claim of the run: its id, condition and the layer it reads on this model (mapped
    by relative depth; None over layers). Studies never read claims: the pipeline hands these over."""

    id: str
    statistic: str
    comparison: str
    threshold: float
    layer: int | None
    kind: str | None = None


@dataclass(frozen=True)
class Robustness:
    """A study's choices for ``layerclaims robustness``. ``choices``: choice -> its values, the original's first.
    ``offset``: the choice (values ``"0"``, ``"-1"``, ``"+1"``) that reads the same run at a neighbouring layer.
    ``run_choices``: the choices that need a run of their own; the others are analysis variants of one run.
    ``grid``: the grid's reduced resampling settings (Config fields). ``run(handle, values, variants, layers, grid,
    settings)``: one run for the ``run_choices`` values with ``grid`` over the claims' own ``settings`` (a choice
    that departs from its original value overrides them), for the claims' ``layers`` and their neighbours; one
    result per analysis variant (a dict of the other choices' values) and the timings. ``notes``: what
    robustness.json says about the grid's approximations."""

    choices: Mapping[str, tuple[str, ...]]
    offset: str
    run_choices: tuple[str, ...]
    grid: Mapping[str, int]
    run: RobustnessRun
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Study:
    """One study, as the rest of the package sees it.

    ``name``: the study's name (``--study NAME``, ``study = "NAME"`` in a claims file, the result's file stem).
    ``config``: its ``Config`` class, a frozen dataclass whose defaults are the study's method. ``statistics``: what
    its result's ``measure(statistic, *, layer, kind)`` reads. ``layer_unit``: what a claim's layer counts.
    ``kinds``: the mark kinds a claim may select (``kind = "internal"``), None when it has none. ``run(handle,
    config, progress)``: the result (a :class:`~layerclaims.results.SavedResult` with ``model``, ``n_blocks``,
    ``provenance``, ``measure`` and ``save``). ``result``: returns the result class (for loading a saved one).
    ``figures(result, claims)``: file name -> drawing function (``claims``: the run's :class:`ClaimRead`), or None.
    ``report_section(result)``: Markdown the report adds, or None. ``robustness``: its choices, or None.
    ``shorthands``: claim-file settings written another way: name -> a function of the TOML value returning the
    Config fields it stands for (UsageError with the fix for a bad value).
    ``index_settings``: the Config fields that index the model (a ``layer_unit`` each), checked against its depth.
    ``minimums``: the smallest value each setting can take and still mean something. ``spec_prefix``: the letter of
    its robustness specification ids. ``count_usable(config, tokenizer, corpus, n)``: for a study that reads a
    corpus, the units of each kind it can select from it by its own rule (at most ``n`` counted), checked against
    ``n`` before any weights load."""

    name: str
    config: type
    statistics: tuple[Statistic, ...]
    layer_unit: LayerUnit
    run: Callable[[Any, Any, Progress | None], Any]
    result: Callable[[], Any]
    kinds: tuple[str, ...] | None = None
    figures: Callable[[Any, Sequence[ClaimRead]], Mapping[str, Draw]] | None = None
    report_section: Callable[[Any], str] | None = None
    robustness: Robustness | None = None
    shorthands: Mapping[str, Callable[[Any], Mapping[str, Any]]] = field(default_factory=dict)
    index_settings: Mapping[str, LayerUnit] = field(default_factory=dict)
    minimums: Mapping[str, float] = field(default_factory=dict)
    spec_prefix: str = ""
    count_usable: Callable[[Any, Any, str, int], Mapping[str, int]] | None = None

    @property
    def settings(self) -> tuple[str, ...]:
        """The settings a claim may fix: the Config's fields, then the shorthands."""
        return (*(f.name for f in dataclasses.fields(self.config)), *self.shorthands)

    def statistic_names(self, *, over_layers: bool) -> tuple[str, ...]:
        return tuple(s.name for s in self.statistics if s.over_layers == over_layers)

    def load(self, directory: str | Path) -> Any:
        """The result this study saved in ``directory`` (``<name>.json`` and ``.npz``)."""
        return self.result().load(directory)


_loaded: dict[str, Study] | None = None
_broken: dict[str, UsageError] = {}


def registry() -> dict[str, Study]:
    """Every installed study by name, the package's own first, each group by name; loaded once. An entry point that
    cannot be loaded is left out with a warning (distribution and fix); :func:`get` of its name raises that."""
    global _loaded
    if _loaded is None:
        found: dict[str, Study] = {}
        eps = entry_points(group=GROUP)
        for ep in sorted(eps, key=lambda e: (e.value.split(".")[0] != "layerclaims", e.name)):
            dist = getattr(getattr(ep, "dist", None), "name", None) or "an unknown distribution"
            fix = (
                f"reinstall or upgrade {dist} (pip install --upgrade {dist}), or uninstall it; its entry point "
                f'{ep.name} = "{ep.value}" is in group {GROUP}'
            )
            try:
                obj = ep.load()
                problem = "" if isinstance(obj, Study) else f"is a {type(obj).__name__}, not a Study"
            except Exception as exc:  # any error while importing a third party's module
                obj, problem = None, f"cannot be loaded: {type(exc).__name__}: {exc}"
            if not problem and (obj.name != ep.name or obj.name in found):
                problem = "is registered twice" if obj.name in found else f"calls itself {obj.name!r}"
            if problem:
                _broken[ep.name] = UsageError(f"study {ep.name!r} of {dist} {problem}", fix=fix)
                log.warning("%s; fix: %s", _broken[ep.name].message, fix)
                continue
            found[obj.name] = obj
        _loaded = found
    return _loaded


def names() -> tuple[str, ...]:
    """The names of the installed studies that load (:func:`registry` order)."""
    return tuple(registry())


def get(name: str) -> Study:
    """Study ``name``; UsageError naming the installed ones (or why ``name``'s cannot be loaded) otherwise."""
    studies = registry()
    if name in _broken:
        raise _broken[name]
    if name not in studies:
        raise UsageError(
            f"unknown study {name!r}: the installed studies are {', '.join(studies) or 'none'}",
            fix=f"use one of those, or install the package that registers {name!r} in the entry-point group {GROUP}",
        )
    return studies[name]


def make_config(study: Study, options: Mapping[str, Any]) -> Any:
    """``study.config(**options)``; UsageError for an option its Config has not."""
    try:
        return study.config(**options)
    except TypeError as exc:
        raise UsageError(f"bad option for study {study.name!r}: {exc}") from None


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
    """A :attr:`Robustness.run` for a study whose every choice is a run choice: one run with ``grid`` and the Config
    fields of ``values`` (choice -> value, via ``table``, the original value first) over the claims' own settings
    ``base`` (a choice at its original value keeps a field the claims set, one that departs overrides it); every
    analysis variant reads that one result."""
    fields: dict[str, Any] = {**base, **grid}
    for choice, value in values.items():
        if choice not in table or value not in table[choice]:
            raise UsageError(f"unknown robustness value {choice}={value!r}: valid are {dict(table)}")
        original = value == next(iter(table[choice]))
        fields.update({k: v for k, v in table[choice][value].items() if not (original and k in base)})
    t0 = time.perf_counter()
    result = run(handle, config(**fields), None)
    return [result] * max(len(variants), 1), {"forward_s": time.perf_counter() - t0, "analysis_s": 0.0}
