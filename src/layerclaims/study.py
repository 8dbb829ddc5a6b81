"""A study is a plug-in that declares itself: one module-level :class:`Study` object per study (the package's own
under ``layerclaims/studies/``, or a third party's), registered in the entry-point group ``layerclaims.studies``
(``norm = "normstudy:STUDY"``); the rest of the package reads everything it needs of a study from that object.
Importing a declaration must not import torch (``docs/architecture.md``, "Writing a study").
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


@dataclass(frozen=True)
class GridRun:
    """One run of the robustness grid: ``values`` (each run choice's value), ``variants`` (the analysis variants
    that read the run, one result each), ``layers`` (the claims' layers and their neighbours), ``grid`` (the reduced
    resampling settings) over ``base`` (the claims' own settings: their original path, a departing choice overrides
    them)."""

    values: Mapping[str, str]
    variants: Sequence[Mapping[str, str]]
    layers: Sequence[int]
    grid: Mapping[str, Any]
    base: Mapping[str, Any]


# (handle, the run) -> (one result per variant, timings)
RobustnessRun = Callable[[Any, GridRun], tuple[list[Any], dict[str, Any]]]


@dataclass(frozen=True)
class Statistic:
    """``name``: what a claim's condition names; ``over_layers``: read over every layer (the claim names none)."""

    name: str
    over_layers: bool
    description: str


@dataclass(frozen=True)
class ClaimRead:
    """What a figure needs of one claim of the run (studies never read claims): its id, condition and the layer it
    reads on this model (mapped by relative depth; None over layers)."""

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
    ``grid``: the reduced resampling settings (Config fields). ``run``: :data:`RobustnessRun`, one run of the grid
    (:class:`GridRun`). ``notes``: what robustness.json says about the grid's approximations."""

    choices: Mapping[str, tuple[str, ...]]
    offset: str
    run_choices: tuple[str, ...]
    grid: Mapping[str, int]
    run: RobustnessRun
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Study:
    """One study. ``name``: ``--study NAME``, ``study = "NAME"`` in a claims file, the result's file stem.
    ``config``: a frozen dataclass whose defaults are the method (a claim's ``settings`` are its fields).
    ``statistics``: what the result's ``measure(statistic, *, layer, kind)`` reads. ``layer_unit``: what a claim's
    layer counts (``"block"``: a 0-based block; ``"hidden_state"``: an index into ``hidden_states``). ``kinds``: the
    mark kinds a claim may select, or None. ``run(handle, config, progress)``: the result (a
    :class:`~layerclaims.results.SavedResult`); ``result``: returns its class. ``figures(result, claims)``: file
    name -> drawing function (``claims``: :class:`ClaimRead`). ``report_section(result)``: Markdown for the report.
    ``shorthands``: claim-file setting -> a function of its TOML value returning the Config fields it stands for.
    ``index_settings``: the Config fields that index the model (a ``layer_unit`` each). ``minimums``: the smallest
    meaningful value of each setting. ``spec_prefix``: the letter of its robustness specification ids.
    ``count_usable(config, tokenizer, corpus, n)``: for a study that reads a corpus, the units of each kind its own
    rule selects (at most ``n`` counted), checked against ``n`` before any weights load. ``warm()``: for a study that
    runs tasks (:mod:`layerclaims.tasks`), a module-level function each worker process calls as a run starts, while
    the model loads: it imports and compiles what the tasks use, so that the first task does not."""

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
    warm: Callable[[], None] | None = None

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
    """Every installed study by name, the package's own first; loaded once. One that cannot be loaded is left out
    with a warning; :func:`get` of its name raises it."""
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
    run: Callable[[Any, Any, Any], Any], config: type, table: Mapping[str, Mapping[str, Mapping[str, Any]]]
) -> RobustnessRun:
    """A :attr:`Robustness.run` for a study whose every choice is a run choice: one run with the grid and the Config
    fields of the run's values (via ``table``: choice -> value -> fields, the original value first) over the claims'
    own settings (only a departing choice overrides a field they set); every variant reads that result."""

    def each(handle: Any, job: GridRun) -> tuple[list[Any], dict[str, Any]]:
        fields: dict[str, Any] = {**job.base, **job.grid}
        for choice, value in job.values.items():
            if choice not in table or value not in table[choice]:
                raise UsageError(f"unknown robustness value {choice}={value!r}: valid are {dict(table)}")
            original = value == next(iter(table[choice]))
            fields.update({k: v for k, v in table[choice][value].items() if not (original and k in job.base)})
        t0 = time.perf_counter()
        result = run(handle, config(**fields), None)
        return [result] * max(len(job.variants), 1), {"forward_s": time.perf_counter() - t0, "analysis_s": 0.0}

    return each
