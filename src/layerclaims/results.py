"""Saved results: frozen dataclasses <-> ``NAME.json`` + ``NAME.npz`` (every array), so a report, a claim or a diff
never re-runs a model; provenance; the ``Measurement`` type. Nested dataclasses are tagged with their import path and
only classes inside ``layerclaims`` are rebuilt (a saved file cannot make us import arbitrary code); arrays load with
``allow_pickle=False``.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import math
import os
import platform
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np

from layerclaims.errors import UsageError

FORMAT_VERSION = 1
_DC = "__dataclass__"
_ARR = "__array__"
_TUPLE = "__tuple__"


@dataclass(frozen=True)
class Control:
    """The same statistic where the claimed structure is absent by construction (e.g. random projections of the
    same block input for Q/K/V statistics; a Gaussian surrogate of the marks, same mean and covariance, for study
    A): ``value``, ``ci`` (over the control's seeds or resamples), ``replicates`` where there is a distribution."""

    name: str
    value: float
    ci: tuple[float, float] | None = None
    replicates: np.ndarray | None = field(default=None, repr=False, compare=False)
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Measurement:
    """One statistic measured on one result, what a claim's condition is compared against: ``value`` on all items,
    ``ci`` a bootstrap interval over the sampled items (None where not meaningful), ``p_value`` a permutation p where
    the statistic has a null model, ``details`` what a reader needs to trust the number (stability of a cluster
    count, the blocks used, ...), ``replicates`` the bootstrap distribution the decision rules read."""

    value: float
    ci: tuple[float, float] | None = None
    p_value: float | None = None
    details: dict[str, Any] = field(default_factory=dict)
    replicates: np.ndarray | None = field(default=None, repr=False, compare=False)
    control: Control | None = None


@dataclass(frozen=True, eq=False)
class BlockStatistic:
    """One statistic at every studied layer or block, arrays ``[n_sel]``: ``value``, the bootstrap interval
    ``ci_low``..``ci_high`` (NaN without bootstrap), a permutation ``p_value`` (NaN where there is no test)."""

    value: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    p_value: np.ndarray

    def at(self, i: int, details: dict[str, Any] | None = None) -> Measurement:
        """The :class:`Measurement` at index ``i`` of the studied layers or blocks."""
        lo, hi, p = float(self.ci_low[i]), float(self.ci_high[i]), float(self.p_value[i])
        ci = None if np.isnan(lo) and np.isnan(hi) else (lo, hi)
        return Measurement(float(self.value[i]), ci, None if np.isnan(p) else p, dict(details or {}))


def _encode(obj: Any, arrays: dict[str, np.ndarray], path: str) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        cls = type(obj)
        out: dict[str, Any] = {_DC: f"{cls.__module__}:{cls.__qualname__}"}
        for f in dataclasses.fields(obj):
            out[f.name] = _encode(getattr(obj, f.name), arrays, f"{path}.{f.name}" if path else f.name)
        return out
    if isinstance(obj, np.ndarray):
        key = path or "array"
        if obj.dtype == object:
            raise UsageError(f"cannot save an object array at {key!r}: convert it to a numeric or string array")
        arrays[key] = obj
        return {_ARR: key}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return {"__float__": repr(obj)}
    if isinstance(obj, tuple | list):
        items = [_encode(v, arrays, f"{path}.{i}") for i, v in enumerate(obj)]
        return {_TUPLE: items} if isinstance(obj, tuple) else items
    if isinstance(obj, dict):
        bad = [k for k in obj if not isinstance(k, str)]
        if bad:
            raise UsageError(f"cannot save dict keys {bad[:3]!r} at {path!r}: use string keys")
        return {k: _encode(v, arrays, f"{path}.{k}") for k, v in obj.items()}
    if obj is None or isinstance(obj, str | int | float | bool):
        return obj
    raise UsageError(f"cannot save a {type(obj).__name__} at {path!r}: results hold arrays, numbers, strings")


def _decode(obj: Any, arrays: Any, allowed: tuple[str, ...]) -> Any:
    if isinstance(obj, list):
        return [_decode(v, arrays, allowed) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if _ARR in obj:
        return np.asarray(arrays[obj[_ARR]])
    if "__float__" in obj:
        return float(obj["__float__"])
    if _TUPLE in obj:
        return tuple(_decode(v, arrays, allowed) for v in obj[_TUPLE])
    if _DC in obj:
        module, _, qualname = str(obj[_DC]).partition(":")
        if not any(module == a or module.startswith(a + ".") for a in allowed):
            raise UsageError(f"refusing to rebuild {obj[_DC]!r}: saved results may only name layerclaims classes")
        try:
            cls: Any = importlib.import_module(module)
            for part in qualname.split("."):
                cls = getattr(cls, part)
        except (ImportError, AttributeError):
            raise UsageError(
                f"the saved result names {obj[_DC]!r}, which this version of layerclaims does not have",
                fix="re-run the study with this version (`layerclaims reproduce --out` the same folder)",
            ) from None
        kwargs = {k: _decode(v, arrays, allowed) for k, v in obj.items() if k != _DC}
        try:
            return cls(**kwargs)
        except TypeError as exc:
            raise UsageError(
                f"the saved result's {qualname} does not fit this version of layerclaims ({exc})",
                fix="re-run the study with this version (`layerclaims reproduce --out` the same folder)",
            ) from None
    return {k: _decode(v, arrays, allowed) for k, v in obj.items()}


def file_mode() -> int:
    """The mode a plain ``open(path, "w")`` would give a new file, 0o666 less the umask (mkstemp's 0o600 is wrong for
    results a group shares): read from /proc where it exists (no race), else by setting and restoring the umask."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write(path: Path, write: Callable[[str], object], *, mode: int | None = None) -> None:
    """``write(tmp)`` into a temporary file beside ``path`` (mode ``mode``, else :func:`file_mode`), then renamed over
    it: a reader never sees half a file, and nothing is left behind on an error."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    os.chmod(tmp, file_mode() if mode is None else mode)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def save(result: Any, directory: str | os.PathLike[str], name: str) -> Path:
    """Save a result dataclass as ``directory/name.json`` (+ ``name.npz`` if it holds arrays). Returns the JSON path."""
    if not (dataclasses.is_dataclass(result) and not isinstance(result, type)):
        raise UsageError(f"save() takes a result dataclass, got {type(result).__name__}")
    directory = Path(directory)
    arrays: dict[str, np.ndarray] = {}
    tree = {"format_version": FORMAT_VERSION, "result": _encode(result, arrays, "")}
    json_path = directory / f"{name}.json"
    npz_path = directory / f"{name}.npz"
    if arrays:
        # allow_pickle: the default, named so that no key of ``arrays`` can take its place (what mypy checks)
        atomic_write(npz_path, lambda tmp: np.savez_compressed(open(tmp, "wb"), allow_pickle=True, **arrays))
    atomic_write(json_path, lambda tmp: Path(tmp).write_text(json.dumps(tree, indent=1, allow_nan=False)))
    return json_path


def load(directory: str | os.PathLike[str], name: str, *, allowed_modules: tuple[str, ...] = ("layerclaims",)) -> Any:
    """Load what :func:`save` wrote, rebuilding only dataclasses of ``allowed_modules`` (and their submodules);
    UsageError naming the file when it is missing or of another format."""
    directory = Path(directory)
    json_path = directory / f"{name}.json"
    if not json_path.is_file():
        raise UsageError(f"no saved result {json_path}: run `layerclaims reproduce --out {directory}` first")
    tree = json.loads(json_path.read_text())
    if tree.get("format_version") != FORMAT_VERSION:
        raise UsageError(f"{json_path} has format {tree.get('format_version')!r}, expected {FORMAT_VERSION}: re-run")
    npz_path = directory / f"{name}.npz"
    if npz_path.is_file():
        with np.load(npz_path, allow_pickle=False) as arrays:
            return _decode(tree["result"], dict(arrays), allowed_modules)
    return _decode(tree["result"], {}, allowed_modules)


def package_versions() -> dict[str, str]:
    """Versions of the packages whose behaviour can move a number."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in ("layerclaims", "torch", "transformers", "numpy", "scipy", "scikit-learn"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def provenance(**facts: Any) -> dict[str, Any]:
    """A saved result's provenance record: the facts given (model id, corpus sha256, seed, timings, ...), package
    versions and the platform."""
    return {**facts, "packages": package_versions(), "platform": platform.platform()}


def model_provenance(handle: Any) -> dict[str, Any]:
    """The loaded model's facts a study's provenance records (``architecture``: its architecture row's family)."""
    return {
        "model": handle.name,
        "revision": handle.revision,
        "source": handle.source,
        "architecture": handle.arch.family,
        "device": handle.device,
        "dtype": handle.dtype,
    }


class SavedResult:
    """Mixin for a study's result dataclass: ``save(directory)`` writes ``directory/<study>.json`` (+ ``.npz``) and
    ``Cls.load(directory)`` reads it back, checking that the file holds this class. ``study`` names the file stem."""

    study: ClassVar[str]

    def save(self, directory: str | os.PathLike[str]) -> Path:
        return save(self, directory, self.study)

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> Self:
        """Read what :meth:`save` wrote (rebuilding classes of this package and of the result's own package)."""
        out = load(directory, cls.study, allowed_modules=("layerclaims", cls.__module__.split(".")[0]))
        if not isinstance(out, cls):
            raise UsageError(f"{directory}/{cls.study}.json holds a {type(out).__name__}, not a {cls.__name__}")
        return out
