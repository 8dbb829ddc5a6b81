"""Saved results: JSON + npz round trips, refusal to rebuild foreign classes, provenance."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from layerclaims.errors import UsageError
from layerclaims.results import Measurement, load, provenance, save


@dataclass(frozen=True)
class Inner:
    name: str
    matrix: np.ndarray


@dataclass(frozen=True)
class Outer:
    model: str
    n_blocks: int
    values: tuple[float, ...]
    inner: list[Inner]
    table: dict
    m: Measurement
    missing: float | None


def _example() -> Outer:
    rng = np.random.default_rng(0)
    return Outer(
        "tiny",
        4,
        (1.0, float("nan"), float("inf")),
        [Inner("a", rng.normal(size=(3, 3))), Inner("b", np.arange(5, dtype=np.int32))],
        {"x": {"y": [1, 2]}, "arr": np.ones(2, dtype=np.float32)},
        Measurement(0.5, (0.1, 0.9), 0.01, {"stability": 0.95}),
        None,
    )


def test_round_trip_restores_every_field(tmp_path: Path) -> None:
    obj = _example()
    path = save(obj, tmp_path, "study")
    assert path == tmp_path / "study.json" and (tmp_path / "study.npz").is_file()
    back = load(tmp_path, "study", allowed_modules=("layerclaims", __name__))
    assert isinstance(back, Outer) and isinstance(back.inner[0], Inner) and isinstance(back.m, Measurement)
    assert back.model == "tiny" and back.n_blocks == 4 and back.missing is None
    assert back.values[0] == 1.0 and np.isnan(back.values[1]) and back.values[2] == np.inf
    np.testing.assert_array_equal(back.inner[0].matrix, obj.inner[0].matrix)
    assert back.inner[1].matrix.dtype == np.int32
    assert back.table["x"] == {"y": [1, 2]} and back.table["arr"].dtype == np.float32
    assert back.m == obj.m and isinstance(back.m.ci, tuple)
    json.loads((tmp_path / "study.json").read_text())  # strict JSON: no NaN literals


def test_load_refuses_classes_outside_the_package(tmp_path: Path) -> None:
    (tmp_path / "evil.json").write_text(json.dumps({"format_version": 1, "result": {"__dataclass__": "os:system"}}))
    with pytest.raises(UsageError, match="may only name layerclaims classes"):
        load(tmp_path, "evil")


def test_missing_and_foreign_format_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no saved result"):
        load(tmp_path, "nothing")
    (tmp_path / "old.json").write_text(json.dumps({"format_version": 99, "result": {}}))
    with pytest.raises(UsageError, match="format 99"):
        load(tmp_path, "old")


def test_classes_this_version_lacks_or_that_changed_ask_for_a_re_run(tmp_path: Path) -> None:
    """A class this version does not have (one that moved, metrics.clusters:PairType, or never was) is a clear
    error asking for a re-run, not a traceback; so is a class whose fields changed."""
    for name in ("layerclaims.metrics.clusters:PairType", "layerclaims.metrics.clusters:NoSuchThing"):
        (tmp_path / "gone.json").write_text(json.dumps({"format_version": 1, "result": {"__dataclass__": name}}))
        with pytest.raises(UsageError, match=f"{name.split(':')[1]}.*does not have") as info:
            load(tmp_path, "gone")
        assert "re-run" in (info.value.fix or "")
    changed = {"__dataclass__": "layerclaims.metrics.mark_clusters:PairType", "a": 0, "flavour": "x"}
    (tmp_path / "changed.json").write_text(json.dumps({"format_version": 1, "result": changed}))
    with pytest.raises(UsageError, match="PairType does not fit this version"):
        load(tmp_path, "changed")


def test_save_rejects_what_cannot_be_saved(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="result dataclass"):
        save({"a": 1}, tmp_path, "x")
    with pytest.raises(UsageError, match="cannot save a set"):
        save(Measurement(1.0, details={"s": {1, 2}}), tmp_path, "x")
    with pytest.raises(UsageError, match="string keys"):
        save(Measurement(1.0, details={1: 2}), tmp_path, "x")


def test_provenance_records_facts_and_versions() -> None:
    p = provenance(model="tiny", seed=3)
    assert p["model"] == "tiny" and p["seed"] == 3
    assert {"python", "numpy", "torch"} <= set(p["packages"]) and p["platform"]


def test_saved_result_load_checks_the_class(tmp_path: Path) -> None:
    from layerclaims.studies.qk.analysis import QKResult

    save(Measurement(1.0), tmp_path, "qk")  # a file named like a qk result that holds something else
    with pytest.raises(UsageError, match="holds a Measurement, not a QKResult"):
        QKResult.load(tmp_path)
