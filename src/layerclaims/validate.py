"""Everything a run is given, checked before any weights load (:func:`check_run`). The first problem raises a
:class:`~layerclaims.errors.LayerclaimsError` whose ``fix`` is the user's own command (:class:`Command`) with only
the offending option changed.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import json
import logging
import shlex
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from layerclaims import study as registry
from layerclaims.errors import LayerclaimsError, ModelNotFoundError, UsageError

log = logging.getLogger("layerclaims.validate")

# The CLI options that set the Config field of their name, in the studies whose Config has it.
STUDY_OPTIONS = ("corpus", "selection", "seed", "n")
# The options that take no value (every other option is followed by its value, even one that starts with "-").
FLAGS = frozenset({"--strict", "-q", "--quiet", "-v", "--verbose", "--changed-only", "--help", "-h", "--version"})


@dataclass(frozen=True)
class Command:
    """The command a user typed (``argv`` without the program name), to suggest it with one option changed."""

    argv: tuple[str, ...]
    prog: str = "layerclaims"

    def __str__(self) -> str:
        return f"{self.prog} {shlex.join(self.argv)}".rstrip()

    def _spans(self, option: str) -> list[tuple[int, int]]:
        """Index ranges ``[i, j)`` of every occurrence of ``option`` (``--opt VALUE`` or ``--opt=VALUE``); for
        ``--set STUDY.FIELD``, of the ``--set`` items naming that field."""
        if option.startswith("--set "):
            target = option.removeprefix("--set ")
            sets = self._spans("--set")
            items = [self.argv[j - 1] if j - i == 2 else self.argv[i].partition("=")[2] for i, j in sets]
            return [span for span, item in zip(sets, items, strict=True) if item.partition("=")[0].strip() == target]
        out, i, argv = [], 0, self.argv
        while option and i < len(argv):
            tok = argv[i]
            if tok == option:
                takes_value = option not in FLAGS and i + 1 < len(argv)
                out.append((i, i + 2 if takes_value else i + 1))
                i += 2 if takes_value else 1
                continue
            if tok.startswith(option + "="):
                out.append((i, i + 1))
            i += 1
        return out

    def _replace(self, spans: list[tuple[int, int]], new: Sequence[str]) -> Command:
        argv = list(self.argv)
        if not spans:
            return Command((*argv, *new), self.prog)
        first = spans[0][0]
        for i, j in reversed(spans):
            del argv[i:j]
        argv[first:first] = list(new)
        return Command(tuple(argv), self.prog)

    def with_option(self, option: str, value: str | None = None) -> Command:
        """``option value`` in place of every occurrence of ``option`` (appended if absent); a flag if no value.
        ``option`` ``--set STUDY.FIELD``: ``--set STUDY.FIELD=value`` in place of the ``--set`` naming it."""
        if option.startswith("--set "):
            new = ["--set", f"{option.removeprefix('--set ')}={value}"]
        else:
            new = [option] if value is None else [option, value]
        return self._replace(self._spans(option), new)

    def without(self, option: str) -> Command:
        """The command without ``option`` (as :meth:`with_option` finds it; ``""``: the command as it is)."""
        return self._replace(self._spans(option), [])


@dataclass(frozen=True)
class RunRequest:
    """What a run is asked for, as ``layerclaims reproduce`` takes it (``options``: :data:`STUDY_OPTIONS`)."""

    model: str
    out: Path | None = None
    study_names: tuple[str, ...] = field(default_factory=registry.names)
    device: str = "cpu"
    dtype: str = "float32"
    device_map: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    overrides: tuple[str, ...] = ()

    def command(self) -> Command:
        """The ``layerclaims reproduce`` command that asks for this run (the Python API has no argv of its own)."""
        argv = ["reproduce", "--model", self.model]
        for option, value, default in (
            ("--out", self.out, None),
            ("--study", ",".join(self.study_names), ",".join(registry.names())),
            ("--device", self.device, "cpu"),
            ("--dtype", self.dtype, "float32"),
            ("--device-map", self.device_map, None),
            *((f"--{key}", value, None) for key, value in self.options.items()),
        ):
            if value != default:
                argv += [option, str(value)]
        for item in self.overrides:
            argv += ["--set", item]
        return Command(tuple(argv))


def _cmd(command: Command) -> str:
    return f"`{command}`"


def _shown(origin: str, value: Any) -> str:
    """A value as the user gave it: ``--n 30`` or ``--set STUDY.n=30``."""
    return f"{origin}={json.dumps(value)}" if origin.startswith("--set") else f"{origin} {value!r}"


def config_fields(study: str) -> set[str]:
    """The field names of study ``study``'s ``Config``."""
    return {f.name for f in dataclasses.fields(registry.get(study).config)}


def parse_set(item: str) -> tuple[str, Any]:
    """``"STUDY.n_boot=200"`` -> ``("STUDY.n_boot", 200)``; the value is JSON when it parses, else the string."""
    target, sep, raw = item.partition("=")
    name, dot, field_name = target.strip().partition(".")
    if not sep or not dot or not field_name or name not in registry.names():
        raise UsageError(
            f"--set {item!r}: write STUDY.SETTING=VALUE with STUDY one of {', '.join(registry.names())}",
            fix=f"e.g. --set {registry.names()[0]}.n_boot=200 (see `layerclaims reproduce --help`)",
        )
    try:
        value: Any = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    if isinstance(value, list):
        value = tuple(value)
    return f"{name}.{field_name.strip()}", value


def study_options(study: str, given: dict[str, Any], overrides: Sequence[str] = ()) -> dict[str, Any]:
    """The ``Config`` overrides for ``study``: the given CLI options its Config has, then its ``--set`` items."""
    return {name: value for name, (value, _) in _study_options_with_origin(study, given, overrides).items()}


def _study_options_with_origin(
    study: str, given: dict[str, Any], overrides: Sequence[str], command: Command | None = None
) -> dict[str, tuple[Any, str]]:
    """As :func:`study_options`, each value with the option that gave it (``--n`` or ``--set study.field``)."""
    fields = config_fields(study)
    out = {option: (value, f"--{option}") for option, value in given.items() if value is not None and option in fields}
    for item in overrides:
        target, value = parse_set(item)
        name, _, field_name = target.partition(".")
        if name == study and field_name not in fields:
            fix = "use one of those"
            if command is not None:
                fix += f", or leave it out: {_cmd(command.without('--set ' + target))}"
            raise UsageError(
                f"--set {item}: study {study!r} has no setting {field_name!r}; it has: {', '.join(sorted(fields))}",
                fix=fix,
            )
        if name == study:
            out[field_name] = (value, f"--set {target}")
    return out


def type_problem(value: Any, hint: Any) -> str | None:
    """None when ``value`` fits the annotation ``hint`` (int, float, str, bool, None, Literal, tuple[X, ...], and
    unions of these); else what was expected, in words. An int fits float; a bool fits only bool."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        problems = [type_problem(value, h) for h in typing.get_args(hint)]
        return None if any(p is None for p in problems) else " or ".join(p for p in problems if p)
    if origin is Literal:
        choices = typing.get_args(hint)
        return None if value in choices else "one of " + ", ".join(repr(c) for c in choices)
    if origin is tuple:
        item = (typing.get_args(hint) or (Any,))[0]
        if not isinstance(value, tuple):
            return "a list such as [1, 2]"
        words = {int: "whole numbers", float: "numbers", str: "strings", bool: "true/false"}.get(item, str(item))
        return f"a list of {words}" if any(type_problem(v, item) for v in value) else None
    if hint is type(None) or hint is None:
        return None if value is None else "null"
    if hint is Any:
        return None
    if hint is bool:
        return None if isinstance(value, bool) else "true or false"
    if hint is int:
        return None if isinstance(value, int) and not isinstance(value, bool) else "a whole number"
    if hint is float:
        return None if isinstance(value, int | float) and not isinstance(value, bool) else "a number"
    if hint is str:
        return None if isinstance(value, str) else "a string"
    return None  # an annotation this checker does not know: the Config's own checks decide


def _range_words(unit: str, n_blocks: int, model: str) -> str:
    if unit == "layer":
        return f"hidden-state layers are 0..{n_blocks} on {model} (0 = embeddings, {n_blocks} = last block's output)"
    return f"blocks are 0..{n_blocks - 1} on {model}"


def check_study_settings(
    study: str,
    given: dict[str, Any],
    overrides: Sequence[str],
    *,
    n_blocks: int | None,
    model: str,
    command: Command,
) -> dict[str, Any]:
    """The study's Config overrides, each checked (type, minimum, layer/block range against ``n_blocks``), then
    the Config built (its own checks); UsageError with the fix otherwise."""
    declared = registry.get(study)
    with_origin = _study_options_with_origin(study, given, overrides, command)
    hints = typing.get_type_hints(declared.config)
    defaults = {f.name: f.default for f in dataclasses.fields(declared.config)}
    for name, (value, origin) in with_origin.items():
        shown = _shown(origin, value)
        default = defaults.get(name, dataclasses.MISSING)
        default_words = "" if default is dataclasses.MISSING else f" ({default!r})"
        problem = type_problem(value, hints[name]) if name in hints else None
        if problem is not None:
            raise UsageError(
                f"{shown}: {study} setting {name!r} must be {problem}",
                fix=f"give {problem}, or leave it out for the default{default_words}: {_cmd(command.without(origin))}",
            )
        minimum = declared.minimums.get(name)
        values = value if isinstance(value, tuple) else (value,)
        if minimum is not None:
            low = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool) and v < minimum]
            if low:
                suggestion = (
                    command.with_option(origin, str(default if default is not dataclasses.MISSING else minimum))
                    if not origin.startswith("--set")
                    else command.without(origin)
                )
                raise UsageError(
                    f"{shown}: {study} setting {name!r} must be at least {minimum:g}",
                    fix=f"use {name} >= {minimum:g}, e.g. the default{default_words}: {_cmd(suggestion)}",
                )
        unit = {"hidden_state": "layer", "block": "block"}.get(declared.index_settings.get(name, ""))
        if unit is not None and n_blocks is not None and value is not None:
            allowed = range(n_blocks + 1) if unit == "layer" else range(n_blocks)
            bad = [v for v in values if isinstance(v, int) and v not in allowed]
            if bad or not values:
                what = f"{unit} {bad[0]} is out of range" if bad else f"no {unit}s selected"
                raise UsageError(
                    f"{shown}: {what}: {_range_words(unit, n_blocks, model)}",
                    fix=f"give {unit}s in {allowed.start}..{allowed.stop - 1}, or leave it out for all of them: "
                    f"{_cmd(command.without(origin))}",
                )
    _check_detail_within_layers(study, with_origin, command)
    overrides_only = {name: value for name, (value, _) in with_origin.items()}
    try:
        declared.config(**overrides_only)
    except (LayerclaimsError, TypeError, ValueError) as exc:
        message = getattr(exc, "message", None) or str(exc)
        given_words = ", ".join(origin for _, origin in with_origin.values()) or "the defaults"
        raise UsageError(
            f"the {study} settings are not valid ({given_words}): {message}",
            fix=getattr(exc, "fix", None) or f"correct the setting named, then re-run {_cmd(command)}",
        ) from None
    return overrides_only


def _check_detail_within_layers(study: str, with_origin: dict[str, tuple[Any, str]], command: Command) -> None:
    """``detail_layers`` outside ``layers`` would be skipped without a word: refuse."""
    detail, origin = with_origin.get("detail_layers", (None, ""))
    layers = with_origin.get("layers", (None, ""))[0]
    if detail is not None and layers is not None and (missing := sorted(set(detail) - set(layers))):
        raise UsageError(
            f"{origin}: detail layers {missing} are not among the layers analysed ({list(layers)})",
            fix=f"add them to {study}.layers, or drop {origin}: {_cmd(command.without(origin))}",
        )


def check_corpus(
    name_or_path: str,
    *,
    n: int | None,
    mark_sets: dict[str, dict[str, tuple[str, ...]]],
    marks: str,
    origin: str,
    command: Command,
    minimum: float = 3,
    others: Sequence[str] = (),
    n_origin: str = "",
    count_usable: Callable[[Any, int], Mapping[str, int]] | None = None,
    counted_by: str = "the study's own selection rule",
) -> dict[str, int]:
    """The corpus exists, is a non-empty UTF-8 text and holds at least ``n`` usable marks of each kind; returns the
    count of mark characters per kind. ``count_usable(corpus, n)``: the study's own count (with the model's
    tokenizer), so that a fix suggests an ``n`` the run accepts; else the characters are counted (an upper bound).
    ``origin``/``n_origin``: the options that gave the corpus and ``n`` (``""``: the default); ``minimum``: the
    fewest marks the study can use; ``others``: the other studies run (a fix may suggest one alone)."""
    from layerclaims import data

    keep_going = f"then re-run {_cmd(command)}"
    # running the other study alone, without the options only this one reads
    alone = ""
    if others:
        only = command.with_option("--study", others[0]).without(origin).without(n_origin)
        alone = f"; or run only study {others[0]}: {_cmd(only)}"
    kinds = mark_sets.get(marks, {})
    chars = tuple(sorted({m for ms in kinds.values() for m in ms if len(m) == 1}))
    try:
        if name_or_path in data.CORPORA:  # a registry book (< 1 MB): loaded, or downloaded into the cache
            text = data.load_corpus(name_or_path).text
            if not text.strip():
                raise UsageError(
                    f"{name_or_path}: the text is empty once the Gutenberg header and licence are removed",
                    fix="give a text that holds the punctuation to study with --corpus PATH",
                )
            found = {ch: text.count(ch) for ch in chars}
        else:  # a user's file, of any size: read in blocks, never held whole
            if not Path(name_or_path).expanduser().exists():
                raise UsageError(
                    f"corpus {name_or_path!r} is neither a file nor a corpus of the registry",
                    fix=f"give one of {', '.join(data.CORPORA)} or the path of a UTF-8 plain-text file",
                )
            found = data.check_text_file(name_or_path, count=chars)
    except LayerclaimsError as exc:
        fix = exc.fix or "give the path of a UTF-8 text file with --corpus PATH"
        converted = getattr(exc, "converted", None)
        if converted:  # the re-run names the file the conversion writes, not the one refused
            keep_going = f"then re-run {_cmd(command.with_option(origin or '--corpus', converted))}"
        elif name_or_path not in data.CORPORA:  # the same file again would fail again: the re-run names another
            book = command.with_option(origin or "--corpus", data.DEFAULT_CORPUS)
            keep_going = f"then re-run with it, or with the default book: {_cmd(book)}"
        raise type(exc)(
            f"{origin} {name_or_path}: {exc.message}" if origin else exc.message,
            fix=f"{fix.rstrip('.')}; {keep_going}{alone}",
        ) from None
    counts = {kind: sum(found.get(m, 0) for m in ms) for kind, ms in kinds.items()}
    if n is None or not counts:
        return counts
    shown_n = _shown(n_origin or "--n", n)
    if count_usable is not None:
        usable = count_usable(name_or_path, n)
        kind, have = min(usable.items(), key=lambda kv: kv[1])
        what = f"{have} usable {kind} marks ({' '.join(mark_sets[marks][kind])}), counted by {counted_by}"
    else:
        kind, have = min(counts.items(), key=lambda kv: kv[1])
        what = f"at most {have} {kind} marks ({' '.join(mark_sets[marks][kind])})"
    if have < n:
        fix = (
            f"ask for at most {have} per kind: {_cmd(command.with_option(n_origin or '--n', str(have)))}"
            if have >= minimum
            else f"give a longer text with --corpus PATH (at least {minimum:g} usable marks of each kind){alone}"
        )
        raise UsageError(f"{shown_n}: {name_or_path} holds {what}, fewer than the {n} of each kind asked for", fix=fix)
    return counts


def _warn_below_minimum(config: Any) -> None:
    """Warn when the Config's ``n`` is below its ``MIN_MARKS_COUNT``: those statistics will be "not evaluated"."""
    n, minimum = getattr(config, "n", None), getattr(config, "MIN_MARKS_COUNT", None)
    if isinstance(n, int) and isinstance(minimum, int) and n < minimum:
        why = "the cluster counts are not evaluated (their claims say so)"
        log.warning("n=%d marks per kind: below %d %s; use --n %d or more to evaluate them", n, minimum, why, minimum)


@dataclass
class RunPlan:
    """What :func:`check_run` found: the model's shape and each study's Config overrides. ``marks_counted``: the
    marks were only counted as characters (no tokenizer without the weights); :func:`check_marks_with` recounts."""

    shape: Any
    options: dict[str, dict[str, Any]] = field(default_factory=dict)
    marks: dict[str, int] = field(default_factory=dict)
    marks_counted: bool = False


def _with_fix(exc: LayerclaimsError, fix: str) -> LayerclaimsError:
    return type(exc)(exc.message, fix=fix if not exc.fix else f"{exc.fix.rstrip('.')}; {fix}")


def check_corpora(request: RunRequest, plan: RunPlan, command: Command, tokenizer: Any | None) -> None:
    """:func:`check_corpus` for each study run that reads one (with ``tokenizer``: by its own rule)."""
    for study in request.study_names:
        declared = registry.get(study)
        if "corpus" not in config_fields(study):
            continue
        origins = _study_options_with_origin(study, request.options, request.overrides)
        counter = declared.count_usable
        config = registry.make_config(declared, plan.options.get(study, {}))
        plan.marks = check_corpus(
            str(config.corpus),
            n=getattr(config, "n", None),
            mark_sets=getattr(config, "MARK_SETS", {}),
            marks=getattr(config, "marks", None) or "original",
            origin=origins.get("corpus", (None, ""))[1],
            command=command,
            minimum=declared.minimums.get("n", 3),
            # a study that reads no corpus could run alone
            others=[s for s in registry.names() if "corpus" not in config_fields(s)],
            counted_by=f"study {study}'s own selection rule",
            n_origin=origins.get("n", (None, ""))[1],
            count_usable=(
                None
                if counter is None or tokenizer is None
                else lambda corpus, n, c=counter, cfg=config: c(cfg, tokenizer, corpus, n)  # type: ignore[misc]
            ),
        )


def check_marks_with(request: RunRequest, plan: RunPlan, command: Command, tokenizer: Any | None) -> None:
    """Once the weights loaded, recount the marks :func:`check_run` could only bound, by the study's rule with the
    model's ``tokenizer``: a run with too few stops before any study runs."""
    if plan.marks_counted and tokenizer is not None:
        check_corpora(request, plan, command, tokenizer)
        plan.marks_counted = False


def check_run(request: RunRequest, command: Command | None = None) -> RunPlan:
    """Check, in the order a user would fix it, the model's configuration, device and dtype, every study's settings
    (:func:`check_study_settings`), the corpus and its marks, and ``--out``. ``command``: the command as typed
    (default: ``request.command()``)."""
    command = command or request.command()
    model, options, overrides = request.model, request.options, request.overrides
    models = importlib.import_module("layerclaims.models")
    for item in overrides:
        parse_set(item)
    try:
        shape = models.model_shape(model)
    except ModelNotFoundError as exc:  # the same name again would fail again: the re-run names a known one
        known = list(models.REGISTRY)
        closest = (difflib.get_close_matches(model, known, n=1, cutoff=0.5) or [known[0]])[0]
        raise _with_fix(exc, f"e.g. {_cmd(command.with_option('--model', closest))}") from None
    except LayerclaimsError as exc:  # a package to install, a folder to create: then the same command works
        raise _with_fix(exc, f"then re-run {_cmd(command)}") from None
    try:
        models.resolve_device(request.device)
    except LayerclaimsError as exc:
        raise type(exc)(exc.message, fix=f"run on the CPU: {_cmd(command.with_option('--device', 'cpu'))}") from None
    try:
        models.resolve_dtype(request.dtype)
    except LayerclaimsError as exc:
        raise type(exc)(exc.message, fix=f"use float32: {_cmd(command.with_option('--dtype', 'float32'))}") from None
    plan = RunPlan(shape=shape)
    for study in request.study_names:
        plan.options[study] = check_study_settings(
            study, options, overrides, n_blocks=shape.n_blocks, model=model, command=command
        )
    for study in request.study_names:
        _warn_below_minimum(registry.make_config(registry.get(study), plan.options[study]))
    needs_text = any(registry.get(s).count_usable is not None for s in request.study_names)
    tokenizer = models.load_tokenizer(model) if needs_text else None
    plan.marks_counted = needs_text and tokenizer is None
    check_corpora(request, plan, command, tokenizer)
    if request.out is not None:
        from layerclaims.runfolder import check_out_folder

        check_out_folder(Path(request.out), fix_command=str(command.with_option("--out", "NEW_FOLDER")))
    return plan
