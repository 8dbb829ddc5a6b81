"""The claims, as data: a statistic, a comparison and a threshold on a named model and layer, pointing to an
installed study (:mod:`layerclaims.study`) whose result computes the statistic (``../shared/docs/claims.md``).

The package's claims are the TOML files beside this module (read in name order); a user's are files of the same
schema (README, "Claims as files"). Every mistake in a file is a UsageError naming the file, the claim, the field
and the fix; the valid statistics, kinds and settings are what each study declares (importable without torch).

Layers on other models (relative depth, :func:`map_layer`; the identity on the claim's own model): a hidden-state
index ``L`` (0 = embeddings) maps to ``L' = clamp(round_half_up(L * n_target / n_ref), 1, n_target)``, 0 stays 0;
a 0-based block ``b`` is mapped through its output, hidden state ``b + 1``: ``b' = map_hidden_state(b + 1) - 1``.
"""

from __future__ import annotations

import difflib
import math
import operator
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal, cast

from layerclaims import study as registry
from layerclaims.errors import UsageError

Comparison = Literal[">", "<", "==", ">=", "<="]
COMPARISONS: tuple[Comparison, ...] = (">", "<", "==", ">=", "<=")
_OPS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    "<": operator.lt,
    ">=": operator.ge,
    "<=": operator.le,
    "==": lambda a, b: math.isclose(a, b, rel_tol=0.0, abs_tol=1e-12),
}

Settings = tuple[tuple[str, Any], ...]


@dataclass(frozen=True)
class Condition:
    """``statistic comparison threshold``, e.g. ``rsa_qk > 0.8``."""

    statistic: str
    comparison: Comparison
    threshold: float

    def holds(self, value: float) -> bool:
        return bool(_OPS[self.comparison](value, self.threshold))

    def __str__(self) -> str:
        return format_condition(self.statistic, self.comparison, self.threshold)


def format_condition(statistic: str, comparison: str, threshold: float) -> str:
    """``statistic comparison threshold`` as a claim writes it (an integral threshold without its ``.0``)."""
    t = int(threshold) if float(threshold).is_integer() else threshold
    return f"{statistic} {comparison} {t}"


def as_comparison(value: str) -> Comparison:
    """``value`` as a :data:`Comparison`; ValueError when it is none of :data:`COMPARISONS`."""
    if value in COMPARISONS:
        return cast(Comparison, value)
    raise ValueError(f"unknown comparison {value!r}: use one of {', '.join(COMPARISONS)}")


@dataclass(frozen=True)
class Claim:
    """One published claim. ``layer`` is on the claim's own ``model`` (``model_blocks`` blocks); ``None``: the
    statistic reads all layers. ``kind``: the study's kind of mark. ``settings``: sorted ``(Config field, value)``
    pairs, lists as tuples (empty: the original method). ``beats_control``: the claim holds only when its
    statistic also beats its control (``docs/verdicts.md``, "Controls"). ``file``: the claims file it came from."""

    id: str
    text: str
    source: str
    model: str
    model_blocks: int
    study: str
    layer: int | None
    layer_unit: Literal["hidden_state", "block"]
    conditions: tuple[Condition, ...]
    kind: str | None = None
    presupposes: tuple[str, ...] = ()
    settings: Settings = ()
    beats_control: bool = False
    file: str | None = field(default=None, compare=False)

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.settings)

    @property
    def statistic(self) -> str:
        return self.conditions[0].statistic

    @property
    def threshold(self) -> float:
        return self.conditions[0].threshold

    @property
    def comparison(self) -> str:
        return self.conditions[0].comparison


# --------------------------------------------------------------------------------------------------- files

_REQUIRED = ("id", "text", "source", "model", "study", "conditions")
_FIELDS = (*_REQUIRED, "model_blocks", "layer", "layer_unit", "kind", "presupposes", "settings", "beats_control")
_CONDITION_FIELDS = ("statistic", "comparison", "threshold")


@dataclass(frozen=True)
class _Where:
    """Formats a claims-file error: file, claim, field, problem and fix in one message."""

    file: str
    claim: str

    def error(self, field_name: str | None, problem: str, fix: str) -> UsageError:
        where = f"{self.file}: claim {self.claim}"
        if field_name is not None:
            where += f", field {field_name!r}"
        stop = "" if problem.endswith(("?", ".")) else "."
        return UsageError(f"{where}: {problem}{stop} Fix: {fix}")

    def check_keys(self, prefix: str, keys: Iterable[str], valid: Sequence[str], what: str) -> None:
        """UsageError for the first (sorted) key not in ``valid``, with the nearest valid one (``treshold``)."""
        unknown = sorted(set(keys) - set(valid))
        if not unknown:
            return
        key = unknown[0]
        near = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
        if near:
            raise self.error(
                f"{prefix}{key}", f"unknown key {key!r}; did you mean {near[0]!r}?", f"rename {key} to {near[0]}"
            )
        raise self.error(f"{prefix}{key}", f"unknown key {key!r}: not {what}", f"use only {', '.join(valid)}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _string(where: _Where, table: Mapping[str, Any], name: str) -> str:
    value = table[name]
    if not isinstance(value, str) or not value.strip():
        raise where.error(name, f"{value!r} is not a non-empty string", f'write {name} = "..."')
    return value.strip() if name != "text" else value


def _freeze(where: _Where, name: str, value: Any) -> Any:
    """A setting's TOML value (a number, list or table) as a hashable value, lists as tuples (recursively);
    UsageError for a number that is not finite."""
    if isinstance(value, float) and not math.isfinite(value):
        raise where.error(name, f"{value} is not a finite number", f"give {name} a finite value (no nan or inf)")
    if isinstance(value, list | tuple):
        return tuple(_freeze(where, name, v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _freeze(where, f"{name}.{k}", v)) for k, v in value.items()))
    return value


def _settings(where: _Where, study: str, raw: Any) -> Settings:
    if not isinstance(raw, dict):
        raise where.error("settings", f"{raw!r} is not a table", "write [claim.settings] with key = value lines")
    declared = registry.get(study)
    allowed = declared.settings
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in allowed:
            near = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            raise where.error(
                f"settings.{key}",
                f"study {study!r} has no setting {key!r}{hint}",
                f"use one of {', '.join(allowed)} (the fields of the study's Config), or remove the line",
            )
        frozen = _freeze(where, f"settings.{key}", value)
        expand = declared.shorthands.get(key)
        if expand is not None:
            try:
                fields = expand(value)
            except UsageError as exc:
                raise where.error(f"settings.{key}", exc.message, exc.fix or "see the study's settings") from None
            both = sorted(set(fields) & set(raw))
            if both:
                raise where.error(f"settings.{key}", f"{key} and {'/'.join(both)} both given", f"give {key} alone")
            out.update(fields)
            continue
        out[key] = frozen
    return tuple(sorted(out.items()))


def _condition(where: _Where, study: str, has_layer: bool, i: int, raw: Any) -> Condition:
    name = f"conditions[{i}]"
    if not isinstance(raw, dict):
        raise where.error(
            name, f"{raw!r} is not a table", 'write { statistic = "...", comparison = ">", threshold = 0 }'
        )
    where.check_keys(f"{name}.", raw, _CONDITION_FIELDS, "a condition field")
    for key in _CONDITION_FIELDS:
        if key not in raw:
            raise where.error(f"{name}.{key}", "missing", f"add {key} = ... to the condition")
    declared = registry.get(study)
    at_layer, over_layers = declared.statistic_names(over_layers=False), declared.statistic_names(over_layers=True)
    statistic = raw["statistic"]
    if statistic not in at_layer + over_layers:
        raise where.error(
            f"{name}.statistic",
            f"unknown statistic {statistic!r} for study {study!r}",
            f"use one of {', '.join(at_layer + over_layers)}",
        )
    if has_layer and statistic in over_layers:
        raise where.error(
            f"{name}.statistic",
            f"{statistic} reads every layer but the claim names a layer",
            "remove `layer` from the claim, or use a per-layer statistic: " + ", ".join(at_layer),
        )
    if not has_layer and statistic in at_layer:
        raise where.error(
            "layer",
            f"missing: {statistic} is read at one layer",
            f"add layer = N (a {declared.layer_unit.replace('_', ' ')} of the claim's model)",
        )
    comparison = raw["comparison"]
    if comparison not in _OPS:
        raise where.error(f"{name}.comparison", f"unknown comparison {comparison!r}", f"use one of {', '.join(_OPS)}")
    threshold = raw["threshold"]
    if isinstance(threshold, bool) or not isinstance(threshold, int | float):
        raise where.error(f"{name}.threshold", f"{threshold!r} is not a number", "write threshold = 0.8 (no quotes)")
    if not math.isfinite(threshold):
        raise where.error(
            f"{name}.threshold",
            f"{threshold} is not a finite number: no value can be decided against it",
            "write a finite threshold (e.g. threshold = 0.8); for 'any value' leave the condition out",
        )
    return Condition(statistic, comparison, threshold)


def _claim(where: _Where, raw: Mapping[str, Any]) -> Claim:
    where.check_keys("", raw, _FIELDS, "a claim field")
    for key in _REQUIRED:
        if key not in raw:
            raise where.error(key, "missing", f"add {key} = ... to the claim (or to the file's [defaults])")
    cid = _string(where, raw, "id")
    study = raw["study"]
    if study not in registry.names():
        raise where.error(
            "study",
            f"unknown study {study!r}",
            f"use one of {', '.join(registry.names())}, or install the package that registers {study!r}",
        )
    from layerclaims.identity import known_blocks

    declared = registry.get(study)
    model = _string(where, raw, "model")
    known = known_blocks(model)
    blocks = raw.get("model_blocks", known)
    if blocks is None:
        raise where.error(
            "model_blocks",
            f"missing: the number of blocks of {model} is not known here",
            f"add model_blocks = N (the transformer blocks of {model}; e.g. its config's n_layer/num_hidden_layers)",
        )
    if not _is_int(blocks) or blocks < 1:
        raise where.error("model_blocks", f"{blocks!r} is not a positive whole number", "write model_blocks = 24")
    if known is not None and blocks != known:
        raise where.error(
            "model_blocks",
            f"{blocks}, but {model} has {known} blocks: the claim's layers would be remapped silently",
            f"write model_blocks = {known} or leave it out (it is known for {model})",
        )
    layer_unit = raw.get("layer_unit", declared.layer_unit)
    if layer_unit != declared.layer_unit:
        raise where.error(
            "layer_unit",
            f"study {study!r} reads {declared.layer_unit!r} layers, not {layer_unit!r}",
            f'write layer_unit = "{declared.layer_unit}" or leave it out',
        )
    layer = raw.get("layer")
    if layer is not None:
        top = blocks if layer_unit == "hidden_state" else blocks - 1
        if not _is_int(layer) or not 0 <= layer <= top:
            what = "hidden states" if layer_unit == "hidden_state" else "0-based blocks"
            raise where.error(
                "layer",
                f"{layer!r} is outside the {what} 0..{top} of {model} ({blocks} blocks)",
                f"give a layer in 0..{top}, or correct model_blocks",
            )
    kind = raw.get("kind")
    kinds = declared.kinds
    if kind is not None and (kinds is None or kind not in kinds):
        fix = f"use one of {', '.join(kinds)}" if kinds else f"remove `kind`: study {study!r} has no kinds"
        raise where.error("kind", f"{kind!r} is not a kind of study {study!r}", fix)
    conditions = raw["conditions"]
    if not isinstance(conditions, list) or not conditions:
        raise where.error(
            "conditions", "no condition", "add one or more [[claim.conditions]] with statistic, comparison, threshold"
        )
    conds = tuple(_condition(where, study, layer is not None, i, c) for i, c in enumerate(conditions))
    presupposes = raw.get("presupposes", [])
    if not isinstance(presupposes, list) or not all(isinstance(p, str) for p in presupposes):
        raise where.error("presupposes", f"{presupposes!r} is not a list of claim ids", 'write presupposes = ["A1"]')
    settings = _settings(where, study, raw["settings"]) if "settings" in raw else ()
    beats = raw.get("beats_control", False)
    if not isinstance(beats, bool):
        raise where.error("beats_control", f"{beats!r} is not true or false", "write beats_control = true (no quotes)")
    return Claim(
        cid,
        _string(where, raw, "text"),
        _string(where, raw, "source"),
        model,
        int(blocks),
        study,
        layer,
        layer_unit,
        conds,
        kind=kind,
        presupposes=tuple(presupposes),
        settings=settings,
        beats_control=beats,
        file=where.file,
    )


def parse_claims(text: str, file: str = "<claims>") -> tuple[Claim, ...]:
    """The claims of one TOML document (``[defaults]`` and ``[[claim]]`` tables). ``file`` names it in errors."""
    top = _Where(file, "-")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(
            f"{file}: not valid TOML ({exc}). Fix: correct the line named; see README 'Claims as files'"
        ) from None
    top.check_keys("", data, ("defaults", "claim"), "a top-level table ([defaults], [[claim]])")
    defaults = data.get("defaults", {})
    if not isinstance(defaults, dict):
        raise top.error("defaults", "not a table", "write [defaults] with key = value lines")
    top.check_keys("defaults.", defaults, _FIELDS, "a claim field")
    shared = sorted(set(defaults) & {"id", "conditions"})
    if shared:
        raise top.error(f"defaults.{shared[0]}", "not a field a claim can share", "move it into each [[claim]]")
    raws = data.get("claim", [])
    if not isinstance(raws, list) or not raws:
        raise top.error("claim", "no claim in the file", "add one or more [[claim]] tables")
    claims: list[Claim] = []
    for i, raw in enumerate(raws, start=1):
        label = str(raw.get("id")) if isinstance(raw, dict) and isinstance(raw.get("id"), str) else f"#{i}"
        if not isinstance(raw, dict):
            raise _Where(file, label).error(None, f"{raw!r} is not a table", "write each claim as a [[claim]] table")
        claims.append(_claim(_Where(file, label), {**defaults, **raw}))
    _check_unique(claims)
    _check_no_cycle(claims)
    return tuple(claims)


def _check_no_cycle(claims: Sequence[Claim]) -> None:
    """UsageError naming the cycle when claims presuppose each other in a circle (U1 -> U2 -> U1, or U1 -> U1):
    each would "fail because its premise fails", and its own result would never be shown."""
    by_id = {c.id: c for c in claims}
    done: set[str] = set()

    def visit(cid: str, path: list[str]) -> None:
        if cid in path:
            cycle = [*path[path.index(cid) :], cid]
            first = by_id[cycle[0]]
            raise _Where(first.file or "<claims>", first.id).error(
                "presupposes",
                f"the presuppositions form a cycle {' -> '.join(cycle)}: each claim would fail because its premise "
                "fails",
                f"remove {cycle[1]!r} from the presupposes of {cycle[0]}"
                + ("" if len(cycle) == 2 else " (or break another link of the cycle)"),
            )
        if cid in done or cid not in by_id:
            return
        for premise in by_id[cid].presupposes:
            visit(premise, [*path, cid])
        done.add(cid)

    for c in claims:
        visit(c.id, [])


def _check_unique(claims: Iterable[Claim], base: Iterable[Claim] = ()) -> None:
    seen: dict[str, Claim] = {c.id: c for c in base}
    for c in claims:
        if c.id in seen:
            other = seen[c.id].file or "the package's claims"
            other = "an earlier claim of this file" if other == c.file else other
            raise _Where(c.file or "<claims>", c.id).error(
                "id", f"duplicate id {c.id!r}, also used in {other}", "give each claim its own id"
            )
        seen[c.id] = c


def load_claims(path: str | Path) -> tuple[Claim, ...]:
    """The claims of a TOML file, or of every ``*.toml`` file in a folder and its subfolders (in path order)."""
    p = Path(path).expanduser()
    if p.is_dir():
        files = sorted(p.rglob("*.toml"))
        if not files:
            raise UsageError(f"{p}: no *.toml claims file in this folder. Fix: pass a claims file or a folder of them")
    elif p.is_file():
        files = [p]
    else:
        raise UsageError(f"{p}: no such claims file or folder. Fix: pass the path of a .toml claims file or folder")
    claims: list[Claim] = []
    for f in files:
        try:
            text = f.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError:
            from layerclaims.data import check_text_file

            check_text_file(f, what="claims file")  # names the encoding (UTF-16, Latin-1, ...) and the iconv command
            raise UsageError(f"{f}: not UTF-8 text", fix="save it as UTF-8") from None
        except OSError as exc:
            raise UsageError(
                f"{f}: cannot be read ({exc.strerror or exc})", fix="check its permissions, or pass another file"
            ) from None
        claims.extend(parse_claims(text, str(f)))
    _check_unique(claims)
    _check_no_cycle(claims)
    return tuple(claims)


def _package_claims() -> tuple[Claim, ...]:
    folder = resources.files(__name__)
    files = sorted((f for f in folder.iterdir() if f.name.endswith(".toml")), key=lambda f: f.name)
    claims = [c for f in files for c in parse_claims(f.read_text(encoding="utf-8"), f"layerclaims/claims/{f.name}")]
    _check_unique(claims)
    return tuple(claims)


CLAIMS: tuple[Claim, ...] = _package_claims()

CLAIMS_BY_ID: dict[str, Claim] = {c.id: c for c in CLAIMS}


def combine_claims(
    paths: Sequence[str | Path] | str | Path | None = None,
    *,
    only: bool = False,
    extra: Sequence[Claim] = (),
) -> tuple[Claim, ...]:
    """The package's claims plus the user's (claims files or folders in ``paths``, and ``extra`` records); with
    ``only``, the user's alone. UsageError for a user's id the package already uses or an unknown premise."""
    if isinstance(paths, str | Path):
        paths = [paths]
    user: list[Claim] = list(extra)
    for p in paths or ():
        user.extend(load_claims(p))
    if only and not user:
        raise UsageError("--only-claims needs --claims PATH: with neither, there would be no claim to check")
    base: tuple[Claim, ...] = () if only else CLAIMS
    _check_unique(user, base)
    combined = (*base, *user)
    ids = {c.id for c in combined}
    for c in user:
        missing = [p for p in c.presupposes if p not in ids]
        if missing:
            raise _Where(c.file or "<claims>", c.id).error(
                "presupposes", f"names {missing}, which no claim has", "remove them or add those claims"
            )
    _check_no_cycle(combined)
    return combined


def group_runs(claims: Iterable[Claim]) -> list[tuple[str, dict[str, Any], tuple[Claim, ...]]]:
    """The study runs that ``claims`` need: one ``(study, settings, claims)`` per distinct study and settings, in
    order of first appearance."""
    groups: dict[tuple[str, Settings], list[Claim]] = {}
    for c in claims:
        groups.setdefault((c.study, c.settings), []).append(c)
    return [(study, dict(settings), tuple(cs)) for (study, settings), cs in groups.items()]


def claims_for(study: str | None = None, claims: Sequence[Claim] | None = None) -> tuple[Claim, ...]:
    """The claims of one study, or all of them; from ``claims`` (default: the package's)."""
    pool = CLAIMS if claims is None else tuple(claims)
    if study is None:
        return pool
    registry.get(study)  # UsageError naming the installed studies for an unknown one
    return tuple(c for c in pool if c.study == study)


def map_hidden_state(layer: int, n_ref: int, n_target: int) -> int:
    """Hidden-state index ``layer`` of an ``n_ref``-block model on an ``n_target``-block one (module docstring)."""
    if not 0 <= layer <= n_ref:
        raise UsageError(f"hidden-state index {layer} is outside 0..{n_ref} of the claim's model")
    if layer == 0 or n_ref == n_target:
        return layer
    return min(max(math.floor(layer * n_target / n_ref + 0.5), 1), n_target)  # rounded half up


def map_layer(claim: Claim, n_target: int) -> int | None:
    """The layer (hidden-state index or 0-based block, per ``claim.layer_unit``) to read on an ``n_target`` model."""
    if claim.layer is None:
        return None
    if claim.layer_unit == "hidden_state":
        return map_hidden_state(claim.layer, claim.model_blocks, n_target)
    return map_hidden_state(claim.layer + 1, claim.model_blocks, n_target) - 1


def claim_reads(claims: Iterable[Claim], n_blocks: int) -> tuple[registry.ClaimRead, ...]:
    """What a study's figures read of ``claims`` on an ``n_blocks`` model: one record per condition, layer mapped."""
    return tuple(
        registry.ClaimRead(c.id, k.statistic, k.comparison, k.threshold, map_layer(c, n_blocks), c.kind)
        for c in claims
        for k in c.conditions
    )
