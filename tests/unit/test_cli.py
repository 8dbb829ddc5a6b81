"""The `layerclaims` command: every subcommand and exit code.

Most tests run on fake studies (the registry's studies with a fake ``run`` and ``figures``, read from modules put in
``sys.modules`` under the real study names so that a test can patch them) and a fake model handle; one end-to-end
test runs the real studies on ``tiny-gpt2``.
"""

from __future__ import annotations

import base64
import dataclasses
import inspect
import json
import os
import subprocess
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from layerclaims import cli, data, models, pipeline, results, run, runfolder
from layerclaims import study as registry
from layerclaims.errors import DataNotFoundError, ModelNotFoundError, UsageError
from layerclaims.report import jsonable
from layerclaims.results import Measurement
from layerclaims.runfolder import RunFolder

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="
)
REPO = Path(__file__).resolve().parents[2]

# Values of the fake studies: (value, ci, p). Every claim holds (A1: cov_clusters is 3 at layer 1, 1 elsewhere:
# the fake answers per layer, see FakeResult.measure); every interval lies past its threshold, as a verdict needs.
QK_VALUES = {
    "k_minus_q_mean_cosine": (0.05, (0.01, 0.09), None),
    "rsa_qk": (0.91, (0.88, 0.93), 0.001),
    "min_selectivity_qk": (1.02, (1.01, 1.04), 0.01),
    "min_rsa_qk_over_blocks": (0.86, (0.85, 0.9), None),
    "fraction_blocks_v_most_selective": (0.75, (0.6, 0.9), None),
}
PUNCT_VALUES = {
    "cov_clusters": (1.0, (1.0, 1.0), None),
    "mi_clusters": (1.0, (1.0, 1.0), None),
    "pooled_r": (-0.13, (-0.2, -0.05), None),
    "min_within_cluster_slope": (0.3, (0.1, 0.5), None),
    "spearman_mean_mi_vs_depth": (-0.9, (-1.0, -0.5), None),
    "spearman_mean_cov_vs_depth": (0.8, (0.5, 1.0), None),
    "ratio_mean_mi_last_first": (0.5, (0.4, 0.6), None),
    "ratio_mean_cov_last_first": (300.0, (200.0, 400.0), None),
}

# Bootstrap replicates per statistic, for tests that need a claim decided on them (a p-value, a Holm family); none
# by default: the claims are then decided on their reported intervals.
REPLICATES: dict[str, np.ndarray] = {}


@dataclass(frozen=True)
class FakeResult:
    """A StudyResult: ``values[statistic] = (value, ci, p)``; saveable through results.save."""

    study: str
    model: str
    n_blocks: int
    values: dict[str, Any]
    provenance: dict[str, Any] = field(default_factory=dict)

    def measure(self, statistic: str, *, layer: int | None, kind: str | None) -> Measurement:
        value, ci, p = self.values[statistic]
        if statistic == "cov_clusters" and kind == "internal" and layer == 1:
            value, ci = 3.0, (3.0, 3.0)  # A1 holds (3 clusters at layer 1); A2 (1 at layer 20) and A4 hold
        reps = REPLICATES.get(statistic)
        return Measurement(value, ci, p, {"stability": 0.9} if statistic.endswith("clusters") else {}, reps)

    def save(self, directory: Path) -> Path:
        return results.save(self, directory, self.study)


class Recorder:
    """What the fake studies and the fake loader were called with."""

    def __init__(self) -> None:
        self.configs: dict[str, Any] = {}
        self.loads: list[tuple[str, dict[str, Any]]] = []


def _fake_study(name: str, values: dict[str, Any], rec: Recorder, config_fields: dict[str, Any]) -> types.ModuleType:
    mod = types.ModuleType(f"layerclaims.studies.{name}")
    config_cls = dataclasses.make_dataclass(
        "Config", [(k, Any, dataclasses.field(default=v)) for k, v in config_fields.items()], frozen=True
    )

    def run(handle: Any, config: Any) -> FakeResult:
        rec.configs[name] = dataclasses.asdict(config)
        corpus = getattr(config, "corpus", None)
        if corpus is not None and corpus != "heart-of-darkness" and not Path(corpus).is_file():
            if "with-fix" in corpus:  # the style of data.py's messages: where it looked, then a Fix: paragraph
                raise DataNotFoundError(
                    f"corpus {corpus!r} was not found. Looked in:\n  - {corpus}: missing\nFix: copy the book there."
                )
            raise DataNotFoundError(f"corpus {corpus!r} not found: looked in {corpus}; pass an existing text file")
        prov = {"corpus": corpus, "corpus_sha256": "ab" * 32, "seed": config.seed, "timings": {"forward": 0.01}}
        return FakeResult(name, handle.name, handle.n_blocks, dict(values), prov)

    mod.Config = config_cls  # type: ignore[attr-defined]
    mod.run = run  # type: ignore[attr-defined]
    return mod


def _fake_figures(name: str) -> types.ModuleType:
    mod = types.ModuleType(f"layerclaims.studies.{name}.figures")

    def figures(result: FakeResult, claims: Any) -> dict[str, Any]:
        return {f"{name}_figure.png": lambda path: (path.write_bytes(PNG), path)[1]}

    mod.figures = figures  # type: ignore[attr-defined]
    return mod


def _fake_plugin(name: str, mod: types.ModuleType, figures: types.ModuleType) -> registry.Study:
    """The registered study ``name`` with the fake module's Config and run (looked up at each call, so that a test
    may patch ``mod.run``), the fake figures and no report section."""

    def run(handle: Any, config: Any, progress: Any = None) -> Any:
        if progress is not None and "progress" in inspect.signature(mod.run).parameters:
            return mod.run(handle, config, progress=progress)
        return mod.run(handle, config)

    return dataclasses.replace(
        registry.get(name),
        config=mod.Config,
        run=run,
        figures=lambda result, claims: figures.figures(result, claims),
        report_section=None,
        result=lambda: FakeResult,
    )


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    """Fake studies, figures and model loader; returns what they were called with."""
    rec = Recorder()
    monkeypatch.setitem(
        sys.modules, "layerclaims.studies.qk", _fake_study("qk", QK_VALUES, rec, {"seed": 0, "blocks": None})
    )
    monkeypatch.setitem(
        sys.modules,
        "layerclaims.studies.punctuation",
        _fake_study(
            "punctuation",
            PUNCT_VALUES,
            rec,
            {
                "corpus": "heart-of-darkness",
                "n": 250,
                "selection": "first",
                "seed": 0,
                "n_boot": 1000,
                "layers": None,
                "detail_layers": None,
            },
        ),
    )
    for name in ("qk", "punctuation"):
        monkeypatch.setitem(sys.modules, f"layerclaims.studies.{name}.figures", _fake_figures(name))
    fakes = {
        name: _fake_plugin(
            name, sys.modules[f"layerclaims.studies.{name}"], sys.modules[f"layerclaims.studies.{name}.figures"]
        )
        for name in ("qk", "punctuation")
    }
    # only the two fake studies run (the layer studies are not faked here: their claims are in the package tables)
    monkeypatch.setattr(registry, "_loaded", {name: fakes[name] for name in ("punctuation", "qk")})  # entry-point order

    def load_model(request: Any) -> Any:
        name, device, dtype = request.model, request.device, request.dtype
        rec.loads.append((name, {"device": device, "dtype": dtype, "device_map": request.device_map}))
        if name == "no-such-model":
            raise ModelNotFoundError(f"unknown model {name!r}: use a registry name (tiny-gpt2, ...) or a HF id")
        n_blocks = 24 if name == "gpt2-medium" else 4
        return types.SimpleNamespace(
            name=name, n_blocks=n_blocks, revision="rev-1", source="test", device=device, dtype=dtype
        )

    monkeypatch.setattr(run, "load_model", load_model)

    def model_shape(name: str) -> models.ModelShape:
        if name == "no-such-model":
            raise ModelNotFoundError(f"unknown model {name!r}: use a registry name (tiny-gpt2, ...) or a HF id")
        return models.ModelShape(name, 24 if name == "gpt2-medium" else 4, 64, "gpt2", "test")

    monkeypatch.setattr(models, "model_shape", model_shape)
    real_load_corpus = data.load_corpus

    def load_corpus(name: Any = "heart-of-darkness", **kw: Any) -> data.Corpus:
        if name == "heart-of-darkness":  # the fake default: enough marks of each kind, no data folder needed
            return data.Corpus(name, "word, word. " * 300, "ab" * 32, "test", "unknown")
        return real_load_corpus(name, **kw)

    monkeypatch.setattr(data, "load_corpus", load_corpus)
    return rec


def run_cli(*args: str) -> int:
    return cli.main(list(args))


def error_lines(stderr: str) -> list[str]:
    """stderr without the progress lines."""
    return [ln for ln in stderr.splitlines() if not ln.startswith("layerclaims [")]


def tree_hashes(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder`` by relative path (what "left exactly as it was" compares)."""
    import hashlib

    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


# ------------------------------------------------------------------------------------------------ claims


def test_claims_lists_every_claim(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli("claims") == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:7] == ["id", "model", "layer", "statistic", "comparison", "threshold", "source"]
    layer_claims = [*(f"MA{i}" for i in range(1, 14)), "AN1", "AN2", "AN3", "AN4", "AS1", "AS2"]
    assert [ln.split()[0] for ln in out[1:]] == [
        "A1",
        "A2",
        "A3",
        "A4",
        "A5",
        "A6",
        "A7",
        "B1",
        "B2",
        "B3",
        "B4",
        *layer_claims,
    ]
    b2 = out[9]
    assert "gpt2-medium" in b2 and "block 5" in b2 and "rsa_qk" in b2 and "0.8" in b2 and "seeds/qk" in b2


def test_claims_as_json_and_markdown(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli("claims", "--format", "json") == 0
    rows = json.loads(capsys.readouterr().out)
    b4 = next(r for r in rows if r["id"] == "B4")
    assert (b4["id"], b4["model"], b4["layer"]) == ("B4", "gpt2-large", "all")
    assert b4["statistic"] == "min_rsa_qk_over_blocks and fraction_blocks_v_most_selective"
    assert b4["threshold"] == "0.84 and 0.5"
    assert run_cli("claims", "--format", "markdown") == 0
    md = capsys.readouterr().out
    assert md.startswith("| id | claim | model |") and md.count("\n") == 13 + 19  # 19 layer-study claims


# ------------------------------------------------------------------------------------------------ reproduce


def test_reproduce_writes_every_output_and_exits_0(
    fake: Recorder, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    assert run_cli("reproduce", "--model", "tiny-gpt2", "--out", str(out)) == 0
    assert fake.loads == [("tiny-gpt2", {"device": "cpu", "dtype": "float32", "device_map": None})]  # loaded once
    names = {p.name for p in out.iterdir()}
    assert {"verdicts.json", "verdicts.csv", "report.md", "report.html", "qk.json", "punctuation.json"} <= names
    assert {p.name for p in (out / "figures").iterdir()} == {"qk_figure.png", "punctuation_figure.png"}
    verdicts = json.loads((out / "verdicts.json").read_text())
    assert [v["claim"] for v in verdicts] == ["A1", "A2", "A3", "A4", "A5", "A6", "A7", "B1", "B2", "B3", "B4"]
    assert all(v["holds"] is True for v in verdicts)
    b2 = next(v for v in verdicts if v["claim"] == "B2")
    # block 5 -> 0; the fake has no replicates: decided on its interval, so no p against the threshold, and the
    # Mantel p stays as the secondary test
    assert (b2["value"], b2["ci"], b2["p_secondary"], b2["layer"]) == (0.91, [0.88, 0.93], 0.001, 0)
    assert b2["verdict"] == "holds" and b2["p_value"] is None
    header = (out / "verdicts.csv").read_text().splitlines()[0]
    assert header.startswith(
        "claim,model,layer,statistic,comparison,threshold,value,ci_low,ci_high,p_value,p_adjusted,level,verdict,holds"
    )
    html = (out / "report.html").read_text()
    assert 'src="figures/qk_figure.png"' in html and "ab" * 32 in html  # figure and corpus sha256
    md = (out / "report.md").read_text()
    for stage in ("load model", "qk: run", "punctuation: figures", "punctuation: save result"):
        assert f"| {stage} |" in md
    stdout = capsys.readouterr().out
    assert "B2: HOLDS on tiny-gpt2 at block 0 (the claim's 5)\n      rsa_qk = 0.91" in stdout
    assert "report.html" in stdout
    # the saved result loads back as it was
    loaded = results.load(out, "qk", allowed_modules=(FakeResult.__module__,))
    assert loaded.values["rsa_qk"][0] == 0.91


def test_study_options_go_only_to_the_study_that_has_them(fake: Recorder, tmp_path: Path) -> None:
    corpus = tmp_path / "book.txt"
    corpus.write_text("text")
    code = run_cli(
        "reproduce",
        "--model",
        "tiny-gpt2",
        "--out",
        str(tmp_path / "o"),
        "--corpus",
        str(corpus),
        "--selection",
        "random",
        "--seed",
        "7",
        "--n",
        "30",
        "--set",
        "punctuation.n_boot=20",
        "--set",
        "qk.blocks=[0, 1]",
        "--device-map",
        "auto",
        "--dtype",
        "bfloat16",
        "-q",
    )
    assert code == 0
    assert fake.configs["qk"] == {"seed": 7, "blocks": (0, 1)}
    p = fake.configs["punctuation"]
    assert (p["corpus"], p["selection"], p["seed"], p["n"], p["n_boot"]) == (str(corpus), "random", 7, 30, 20)
    assert fake.loads[0][1] == {"device": "cpu", "dtype": "bfloat16", "device_map": "auto"}


def test_an_option_no_study_reads_is_warned_about(
    fake: Recorder, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert run_cli("reproduce", "--model", "tiny-gpt2", "--study", "qk", "--n", "5", "--out", str(tmp_path)) == 0
    assert "--n applies to none of the studies run (qk): ignored" in capsys.readouterr().err
    assert fake.configs["qk"] == {"seed": 0, "blocks": None}


def test_a_missing_corpus_is_refused_before_the_model_loads_and_the_folder_is_kept(
    fake: Recorder, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "o"
    assert run_cli("reproduce", "--model", "tiny-gpt2", "--out", str(out), "-q") == 0
    before = tree_hashes(out)
    missing = tmp_path / "no-such-corpus.txt"
    argv = ["reproduce", "--model", "tiny-gpt2", "--corpus", str(missing), "--out", str(out), "--set", "qk.seed=5"]
    assert run_cli(*argv) == 2
    assert len(fake.loads) == 1  # only the first run loaded the model
    assert tree_hashes(out) == before
    err = error_lines(capsys.readouterr().err)
    assert err[0] == (
        f"layerclaims reproduce: error: --corpus {missing}: corpus {str(missing)!r} is neither a file nor a corpus "
        "of the registry"
    )
    assert err[1].startswith(
        "fix: give one of heart-of-darkness, heart-of-darkness-526 or the path of a UTF-8 plain-text file; then "
        "re-run with it, or with the default book: `layerclaims reproduce --model tiny-gpt2 --corpus heart-of-darkness"
    )
    # the suggested commands keep every option given
    assert f"--corpus heart-of-darkness --out {out} --set qk.seed=5`" in err[1]  # not the missing file again
    assert f"--out {out} --set qk.seed=5 --study qk`" in err[1]
    assert "Traceback" not in "\n".join(err)


@pytest.mark.parametrize(
    ("bad", "first_line"),
    [
        (["--set", "punctuation.detail_layers=[10000]"], "layer 10000 is out of range: hidden-state layers are 0..4"),
        (["--n", "1"], "--n 1: punctuation setting 'n' must be at least 3"),
        (["--corpus", "BINARY"], "is not a text file (binary data at byte"),
        (["--corpus", "LATIN1"], "it reads as WINDOWS-1252"),
        (["--corpus", "EMPTY"], "is empty"),
        (["--set", "qk.blocks=[9]"], "block 9 is out of range: blocks are 0..3 on m"),
        (["--set", "punctuation.n_boot=-1"], "'n_boot' must be at least 0"),
        (["--seed", "-1"], "'seed' must be at least 0"),
        (["--model", "no-such-model"], "unknown model 'no-such-model'"),
    ],
)
def test_bad_input_exits_2_before_loading_and_keeps_the_earlier_run(
    fake: Recorder, tmp_path: Path, capsys: pytest.CaptureFixture[str], bad: list[str], first_line: str
) -> None:
    out = tmp_path / "o"
    assert run_cli("reproduce", "--model", "m", "--out", str(out), "-q") == 0
    before = tree_hashes(out)
    files = {"BINARY": bytes(range(256)) * 8, "LATIN1": "caf\xe9, na\xefve.".encode("latin-1"), "EMPTY": b""}
    for name, raw in files.items():
        (tmp_path / name).write_bytes(raw)
    bad = [str(tmp_path / b) if b in files else b for b in bad]
    argv = ["reproduce", "--model", "m", "--out", str(out), "--strict", *bad]
    capsys.readouterr()
    assert run_cli(*argv) == 2  # 2, not 1: bad input is not a claim that failed
    err = error_lines(capsys.readouterr().err)
    assert first_line in err[0] and err[1].startswith("fix: ") and "Traceback" not in "\n".join(err)
    assert "delete" not in err[1]
    assert len(fake.loads) == 1 and tree_hashes(out) == before  # refused before loading; the folder as it was


def test_an_error_inside_a_study_stops_the_run_with_its_fix_and_keeps_the_folder(
    fake: Recorder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "o"
    assert run_cli("reproduce", "--model", "m", "--out", str(out), "-q") == 0
    before = tree_hashes(out)

    def failing(handle: Any, config: Any) -> Any:
        raise UsageError("asked for 250 internal marks but only 12 usable ones exist", fix="use n <= 12")

    monkeypatch.setattr(sys.modules["layerclaims.studies.qk"], "run", failing)
    assert run_cli("reproduce", "--model", "m", "--out", str(out), "--n", "250") == 2
    captured = capsys.readouterr()
    assert "study punctuation done" in captured.out  # no verdict line: those come once, after the family decision
    assert "A1: HOLDS" not in captured.out
    err = captured.err.splitlines()
    assert "layerclaims reproduce: error: study qk: asked for 250 internal marks" in err[-2]
    assert err[-1] == (  # not the failing command again, in backticks, as the thing to run
        f"fix: use n <= 12; then run it again with that change (it was: layerclaims reproduce --model m --out {out} "
        "--n 250)"
    )
    assert tree_hashes(out) == before
    assert [p.name for p in tmp_path.iterdir()] == ["o"]  # no stage, no lock left behind


def test_error_fix_is_a_field() -> None:
    exc = DataNotFoundError("corpus x was not found", fix="copy the book there")
    assert (exc.message, exc.fix) == ("corpus x was not found", "copy the book there")
    assert str(exc) == "corpus x was not found\nFix: copy the book there"
    assert str(DataNotFoundError("no fix known")) == "no fix known"


def test_strict_exits_1_when_a_claim_fails_or_is_not_evaluated(
    fake: Recorder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["reproduce", "--model", "tiny-gpt2", "--study", "qk", "-q"]
    assert run_cli(*base, "--out", str(tmp_path / "a"), "--strict") == 0  # everything holds
    monkeypatch.setitem(QK_VALUES, "rsa_qk", (0.5, (0.4, 0.6), 0.2))
    assert run_cli(*base, "--out", str(tmp_path / "b")) == 0  # a failing claim is a finding, not an error
    assert run_cli(*base, "--out", str(tmp_path / "c"), "--strict") == 1
    assert "--strict: 1 claim(s) did not hold or could not be evaluated: B2" in capsys.readouterr().err
    missing = str(tmp_path / "missing.txt")  # bad input is 2 with or without --strict, never 1
    base = ["reproduce", "--model", "m", "--study", "punctuation", "--corpus", missing, "--out", str(tmp_path / "d")]
    assert run_cli(*base, "-q") == 2
    assert run_cli(*base, "--strict", "-q") == 2


def test_bad_input_exits_2_with_one_message_and_no_traceback(
    fake: Recorder, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli("reproduce", "--model", "no-such-model", "--out", str(tmp_path)) == 2
    err = error_lines(capsys.readouterr().err)
    assert err[0] == (
        "layerclaims reproduce: error: unknown model 'no-such-model': use a registry name (tiny-gpt2, ...) or a HF id"
    )
    assert err[1] == f"fix: e.g. `layerclaims reproduce --model tiny-gpt2 --out {tmp_path}`"  # not the same name
    assert run_cli("reproduce", "--model", "m", "--set", "punctuation.nope=1", "--out", str(tmp_path)) == 2
    assert "has no setting 'nope'" in capsys.readouterr().err
    assert fake.loads == []  # both refused before any model was loaded
    assert run_cli("reproduce", "--model", "m", "--set", "oops", "--out", str(tmp_path)) == 2
    assert "STUDY.SETTING=VALUE" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["nope"],
        ["reproduce"],  # --model is required
        ["reproduce", "--model", "m", "--n", "0"],
        ["reproduce", "--model", "m", "--device", "tpu"],
        ["reproduce", "--model", "m", "--quiet", "--verbose"],
        ["diff", "only-one"],
        ["matrix", "--models", ","],
    ],
)
def test_bad_usage_exits_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(argv) == 2
    assert "usage: layerclaims" in capsys.readouterr().err


@pytest.mark.parametrize(
    "command",
    [["reproduce", "--model", "m"], ["matrix", "--models", "m"], ["robustness", "--model", "m", "--out", "o"]],
)
def test_study_takes_all_or_one_installed_name_in_every_command(
    command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    for wrong in ("nope", "both"):
        assert cli.main([*command, "--study", wrong]) == 2
        err = capsys.readouterr().err
        assert (
            f"unknown study {wrong!r}: the installed studies are anisotropy, massive, punctuation, qk, sink" in err
            and "fix: " in err
        )


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["reproduce", "--help"]) == 0
    out = capsys.readouterr().out
    for option in ("--device-map", "--corpus", "--selection", "--seed", "--n", "--strict", "--quiet", "--set"):
        assert option in out


def test_a_figure_bug_is_recorded_and_does_not_lose_the_verdicts(
    fake: Recorder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(result: Any, claims: Any) -> dict[str, Any]:
        raise RuntimeError("no font")

    monkeypatch.setattr(sys.modules["layerclaims.studies.qk.figures"], "figures", broken)
    assert run_cli("reproduce", "--model", "m", "--study", "qk", "--out", str(tmp_path)) == 0
    assert len(json.loads((tmp_path / "verdicts.json").read_text())) == 4
    assert "figures could not be drawn: RuntimeError: no font" in (tmp_path / "report.html").read_text()
    assert "figures could not be drawn" in capsys.readouterr().out


def test_progress_lines_on_stderr_also_when_not_a_terminal(
    fake: Recorder, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli("reproduce", "--model", "m", "--out", str(tmp_path / "a")) == 0
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    stages = [ln.split("] ", 1)[1] for ln in lines if ln.startswith("layerclaims [")]
    assert stages[:3] == ["checking m, the settings and the inputs", "load model m", "punctuation: run"]
    assert "qk: run" in stages and stages[-1] == f"wrote {tmp_path / 'a'}"
    assert "it/s" not in captured.err  # no progress bar: one line per stage
    # verdict lines are printed once, after both studies and the run's family decision
    assert captured.out.index("  A1: HOLDS on m") > captured.out.index("study qk done")
    assert run_cli("reproduce", "--model", "m", "--study", "qk", "--out", str(tmp_path / "b"), "--quiet") == 0
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


def test_verdict_lines_are_printed_once_after_the_family_decision(
    fake: Recorder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    seen_when_b_starts: list[str] = []
    fake_b = sys.modules["layerclaims.studies.qk"]
    original = fake_b.run

    def spy(handle: Any, config: Any) -> Any:
        seen_when_b_starts.append(capsys.readouterr().out)
        return original(handle, config)

    monkeypatch.setattr(fake_b, "run", spy)
    assert run_cli("reproduce", "--model", "m", "--out", str(tmp_path)) == 0
    assert "study punctuation done" in seen_when_b_starts[0]
    assert "A1:" not in seen_when_b_starts[0]  # not before the family decision, which may change it
    out = seen_when_b_starts[0] + capsys.readouterr().out
    verdicts = json.loads((tmp_path / "verdicts.json").read_text())
    for row in verdicts:  # each claim's head line once, with the word the family decision gave it
        assert out.count(f"  {row['claim']}: ") == 1
        assert f"  {row['claim']}: {row['verdict'].upper()} on m" in out


def test_a_study_that_reports_progress_gets_a_callback(
    fake: Recorder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_a = sys.modules["layerclaims.studies.punctuation"]
    original = fake_a.run

    def with_progress(handle: Any, config: Any, progress: Any = None) -> Any:
        for layer in range(3):
            progress(f"layer {layer} of 3")
        return original(handle, config)

    monkeypatch.setattr(fake_a, "run", with_progress)
    assert run_cli("reproduce", "--model", "m", "--out", str(tmp_path)) == 0
    err = capsys.readouterr().err
    assert "punctuation: layer 2 of 3" in err
    assert run_cli("reproduce", "--model", "m", "--out", str(tmp_path), "-q") == 0
    assert capsys.readouterr().err == ""


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.build_parser().parse_args(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.startswith("layerclaims ")
    assert cli.main(["--version"]) == 0


# --------------------------------------------------------------------------------- one study into a run of both


def test_one_study_into_a_folder_of_both_keeps_the_other_and_renders_one_report(
    fake: Recorder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, st in list(registry.registry().items()):
        section = f"## What {name} found\n\nText.\n"
        monkeypatch.setitem(registry.registry(), name, dataclasses.replace(st, report_section=lambda r, s=section: s))
    out = tmp_path / "o"
    assert run_cli("reproduce", "--model", "m", "--out", str(out), "-q") == 0
    before = tree_hashes(out)
    old_rows = {r["claim"]: r for r in json.loads((out / "verdicts.json").read_text())}
    monkeypatch.setitem(QK_VALUES, "rsa_qk", (0.5, (0.4, 0.6), 0.2))
    assert run_cli("reproduce", "--model", "m", "--study", "qk", "--out", str(out), "-q") == 0
    after = tree_hashes(out)
    rows = {r["claim"]: r for r in json.loads((out / "verdicts.json").read_text())}
    assert list(rows) == ["A1", "A2", "A3", "A4", "A5", "A6", "A7", "B1", "B2", "B3", "B4"]  # no claim dropped
    assert rows["B2"]["value"] == 0.5 and old_rows["B2"]["value"] == 0.91  # study B is the new run's
    assert all(rows[c] == old_rows[c] for c in ("A1", "A2", "A3", "A4", "A5", "A6", "A7"))  # study A kept
    for kept in ("punctuation.json", "figures/punctuation_figure.png"):
        assert after[kept] == before[kept]
    assert after["qk.json"] != before["qk.json"]
    html = (out / "report.html").read_text()
    assert 'src="figures/punctuation_figure.png"' in html and 'src="figures/qk_figure.png"' in html
    assert "kept from the earlier run" in html
    md = (out / "report.md").read_text()
    assert "## What punctuation found" in md and "## What qk found" in md  # the kept study's own section too
    manifest = json.loads((out / "run.json").read_text())
    assert [e["study"] for e in manifest["studies"]] == ["qk", "punctuation"]
    assert manifest["studies"][1]["command"] != manifest["command"]  # study A still says which run made it


def test_kept_studies_are_re_decided_in_one_holm_family_with_the_new_run(
    fake: Recorder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Study A then study B into one folder gives the verdicts of one run of both: the kept study's claims are
    evaluated again on its saved result and join the new run's Holm family."""
    monkeypatch.setattr(
        pipeline,
        "load_saved",
        lambda saved: results.load(saved.parent, saved.stem, allowed_modules=("layerclaims", FakeResult.__module__)),
    )
    # A5 and B2 get p-values from replicates, A5's the smaller: in a family of both, Holm doubles it
    rng = np.random.default_rng(0)
    monkeypatch.setitem(REPLICATES, "pooled_r", rng.normal(-0.1, 0.035, 2000))
    monkeypatch.setitem(REPLICATES, "rsa_qk", rng.normal(0.87, 0.04, 2000))
    both, steps = tmp_path / "both", tmp_path / "steps"
    assert run_cli("reproduce", "--model", "m", "--out", str(both), "-q") == 0
    assert run_cli("reproduce", "--model", "m", "--study", "punctuation", "--out", str(steps), "-q") == 0
    alone = {r["claim"]: r for r in json.loads((steps / "verdicts.json").read_text())}
    assert run_cli("reproduce", "--model", "m", "--study", "qk", "--out", str(steps), "-q") == 0
    one_run = {r["claim"]: r for r in json.loads((both / "verdicts.json").read_text())}
    two_runs = {r["claim"]: r for r in json.loads((steps / "verdicts.json").read_text())}
    assert two_runs == one_run
    assert one_run["A5"]["family_size"] > alone["A5"]["family_size"]  # the family grew with study B's claims
    assert one_run["A5"]["p_adjusted"] > alone["A5"]["p_adjusted"]
    assert "re-decided from the saved result" in (steps / "report.md").read_text()


def test_the_findings_tests_get_the_verdicts_of_reproduce(
    fake: Recorder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One road: the findings fixtures' family (layerclaims.testing.FindingsRuns) is verdicts.json of reproduce, row
    for row: A2 fails with its failing premise A1, and each adjusted p is Holm's over the whole run."""
    from layerclaims import testing
    from layerclaims.claims import CLAIMS

    real_measure = FakeResult.measure

    def one_cluster_everywhere(self: FakeResult, statistic: str, *, layer: int | None, kind: str | None) -> Any:
        return real_measure(self, statistic, layer=layer, kind=None)  # A1's 3 clusters at layer 1 gone: A1 fails

    monkeypatch.setattr(FakeResult, "measure", one_cluster_everywhere)
    rng = np.random.default_rng(0)
    monkeypatch.setitem(REPLICATES, "pooled_r", rng.normal(-0.1, 0.035, 2000))
    monkeypatch.setitem(REPLICATES, "rsa_qk", rng.normal(0.87, 0.04, 2000))
    assert run_cli("reproduce", "--model", "m", "--out", str(tmp_path / "o"), "-q") == 0
    rows = {r["claim"]: r for r in json.loads((tmp_path / "o" / "verdicts.json").read_text())}
    family = testing.FindingsRuns().family("m", "cpu", CLAIMS)
    assert {c: jsonable(v.to_row()) for c, v in family.items()} == rows
    assert rows["A1"]["verdict"] == "fails" and rows["A2"]["verdict"] == "fails"
    assert "its premise A1 fails" in rows["A2"]["reason"]
    assert rows["A5"]["p_adjusted"] > rows["A5"]["p_value"] and rows["A5"]["family_size"] >= 2


def test_a_kept_study_whose_result_cannot_be_read_keeps_its_rows_and_says_why(fake: Recorder, tmp_path: Path) -> None:
    out = tmp_path / "o"
    assert run_cli("reproduce", "--model", "m", "--study", "punctuation", "--out", str(out), "-q") == 0
    before = {r["claim"]: r for r in json.loads((out / "verdicts.json").read_text())}
    (out / "punctuation.json").write_text("{}")  # not a saved result any more
    runfolder.write_manifest(out, runfolder.RUN)  # as a run of a version whose results this one cannot read
    assert run_cli("reproduce", "--model", "m", "--study", "qk", "--out", str(out), "-q") == 0
    after = {r["claim"]: r for r in json.loads((out / "verdicts.json").read_text())}
    assert all(after[c] == before[c] for c in before)
    html = (out / "report.html").read_text()
    assert "its verdicts keep the Holm family of the run that made them" in html
    assert "could not be read again" in html


USER_CLAIM = """
[[claim]]
id = "U1"
text = "Q and K agree at block 1 with another seed."
source = "a test"
model = "m"
model_blocks = 4
study = "qk"
layer = 1
conditions = [{ statistic = "rsa_qk", comparison = ">", threshold = 0.5 }]
settings = { seed = 5 }
"""


def test_a_users_claims_run_is_kept_when_the_other_study_runs_again(
    fake: Recorder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    claims = tmp_path / "mine.toml"
    claims.write_text(USER_CLAIM)
    out = tmp_path / "o"
    assert run_cli("reproduce", "--model", "m", "--claims", str(claims), "--out", str(out), "-q") == 0
    before = {r["claim"]: r for r in json.loads((out / "verdicts.json").read_text())}
    assert "U1" in before  # its own run of study B (seed 5), beside the package's
    manifest = json.loads((out / "run.json").read_text())
    u1_run = next(e for e in manifest["studies"] if e["claims"] == ["U1"])
    assert u1_run["base_study"] == "qk" and u1_run["study"] != "qk"
    monkeypatch.setitem(PUNCT_VALUES, "pooled_r", (0.2, (0.1, 0.3), None))
    assert run_cli("reproduce", "--model", "m", "--study", "punctuation", "--out", str(out), "-q") == 0
    after = {r["claim"]: r for r in json.loads((out / "verdicts.json").read_text())}
    assert set(after) == set(before)  # the user's claim, run with study B, is kept with it
    assert after["U1"] == before["U1"] and after["B2"] == before["B2"]
    assert after["A5"]["value"] == 0.2 and before["A5"]["value"] == -0.13


def test_one_study_into_a_folder_of_another_model_is_refused(
    fake: Recorder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "o"
    assert run_cli("reproduce", "--model", "m", "--out", str(out), "-q") == 0
    before = tree_hashes(out)
    assert run_cli("reproduce", "--model", "tiny-gpt2", "--study", "qk", "--out", str(out), "-q") == 2
    err = capsys.readouterr().err
    assert "mixes two models" in err and "--study all" in err and "--out NEW_FOLDER" in err
    assert tree_hashes(out) == before
    assert len(fake.loads) == 1  # refused before loading

    # the same name with other weights: found once the model is loaded, still refused
    real_load = run.load_model

    def other_revision(request: Any) -> Any:
        return types.SimpleNamespace(**{**vars(real_load(request)), "revision": "rev-2"})

    monkeypatch.setattr(run, "load_model", other_revision)
    assert run_cli("reproduce", "--model", "m", "--study", "qk", "--out", str(out), "-q") == 2
    assert "revision rev-1 then, rev-2 now" in capsys.readouterr().err
    assert tree_hashes(out) == before
    # every study: the folder is replaced, nothing mixed
    assert run_cli("reproduce", "--model", "tiny-gpt2", "--out", str(out), "-q") == 0
    assert {r["model"] for r in json.loads((out / "verdicts.json").read_text())} == {"tiny-gpt2"}


def test_one_study_into_an_older_folder_without_run_json_is_refused(
    fake: Recorder, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "o"
    assert run_cli("reproduce", "--model", "m", "--out", str(out), "-q") == 0
    (out / "run.json").unlink()
    before = tree_hashes(out)
    assert run_cli("reproduce", "--model", "m", "--study", "qk", "--out", str(out), "-q") == 2
    assert "from an older layerclaims (no run.json)" in capsys.readouterr().err
    assert tree_hashes(out) == before


def test_a_live_run_on_the_folder_is_named_and_the_folder_kept(
    fake: Recorder, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "o"
    assert run_cli("reproduce", "--model", "m", "--out", str(out), "-q") == 0
    before = tree_hashes(out)
    with RunFolder(out):  # another run holds the lock (flock: two open files conflict even in one process)
        assert run_cli("reproduce", "--model", "m", "--out", str(out), "-q", "--wait", "0.2") == 2
    err = error_lines(capsys.readouterr().err)
    lock = out.parent / ".o.lock"
    assert err[0] == f"layerclaims reproduce: error: {out} is being written by process {os.getpid()} (lock {lock})"
    assert "--wait SECONDS" in err[1]
    assert tree_hashes(out) == before
    assert fake.loads == [fake.loads[0]]  # the refused run loaded nothing


# ------------------------------------------------------------------------------------------------ matrix


def test_matrix_from_fresh_runs(fake: Recorder, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "m"
    argv = ["--models", "tiny-gpt2,org/model-x", "--study", "qk", "--out", str(out), "--executor", "inline"]
    assert run_cli("matrix", *argv) == 0  # inline: the fake models of this test live in this process
    assert (out / "tiny-gpt2" / "report.html").is_file() and (out / "org__model-x" / "verdicts.json").is_file()
    md = (out / "matrix.md").read_text()
    assert "| claim | claimed | tiny-gpt2 | org/model-x |" in md
    assert "| B2 | rsa_qk > 0.8 | ✓ 0.91 [0.88, 0.93] @block 0←5 | ✓ 0.91 [0.88, 0.93] @block 0←5 |" in md
    page = (out / "matrix.html").read_text()
    assert '<th><a href="tiny-gpt2/report.html">tiny-gpt2</a></th>' in page  # each column links to its report
    assert "| B2 |" in capsys.readouterr().out


def test_matrix_from_saved_folders_and_a_model_that_cannot_load(
    fake: Recorder, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    assert run_cli("reproduce", "--model", "gpt2-medium", "--study", "qk", "--out", str(a), "-q") == 0
    assert run_cli("reproduce", "--model", "tiny-gpt2", "--out", str(b), "-q") == 0
    out = tmp_path / "m"
    assert run_cli("matrix", "--from", f"{a},{b}", "--out", str(out), "-q") == 0
    md = (out / "matrix.md").read_text()
    assert "| claim | claimed | gpt2-medium | tiny-gpt2 |" in md
    assert "| B2 | rsa_qk > 0.8 | ✓ 0.91 [0.88, 0.93] @block 5 |" in md  # own model: no mapping
    assert "| A1 | cov_clusters == 3 | (not in this run) | ✓ 3 [3, 3] @L1 |" in md
    loads_before = len(fake.loads)
    assert run_cli("matrix", "--from", f"{a},{a}", "--out", str(out), "-q") == 0  # same model twice: labelled
    assert f"gpt2-medium ({a.name})" in (out / "matrix.md").read_text()
    assert len(fake.loads) == loads_before  # saved folders: no model loaded
    # --models names the columns of --from folders, one each
    assert run_cli("matrix", "--from", f"{a},{b}", "--models", "x", "--out", str(out), "-q") == 2
    assert "one name per folder" in capsys.readouterr().err
    # a model that cannot be loaded: the others are still run and written, exit 2
    argv = ["--models", "tiny-gpt2,no-such-model", "--study", "qk", "--out", str(out), "-q", "--executor", "inline"]
    assert run_cli("matrix", *argv) == 2
    md = (out / "matrix.md").read_text()
    assert "- **no-such-model**: not run: unknown model" in md and "| B2 | rsa_qk > 0.8 | ✓" in md


def test_matrix_needs_models_or_folders(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert run_cli("matrix", "--out", str(tmp_path)) == 2
    assert "matrix needs --models" in capsys.readouterr().err
    assert run_cli("matrix", "--from", str(tmp_path / "nope"), "--out", str(tmp_path)) == 2
    assert "no verdicts.json in" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------ diff


def test_diff_shows_flips_and_moves_and_exits_0(
    fake: Recorder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    old, new = tmp_path / "old", tmp_path / "new"
    assert run_cli("reproduce", "--model", "m", "--study", "qk", "--out", str(old), "-q") == 0
    monkeypatch.setitem(QK_VALUES, "rsa_qk", (0.5, (0.4, 0.6), 0.2))  # B2 flips and moves
    monkeypatch.setitem(QK_VALUES, "k_minus_q_mean_cosine", (0.2, (0.15, 0.25), None))  # B1 moves, still holds
    assert run_cli("reproduce", "--model", "m", "--study", "qk", "--out", str(new), "-q") == 0
    capsys.readouterr()
    assert run_cli("diff", str(old), str(new)) == 0
    out = capsys.readouterr().out
    lines = {ln.split("|")[1].strip(): ln for ln in out.splitlines() if ln.startswith("| B")}
    assert lines["B2"].rstrip().endswith("| flipped, moved |")
    assert lines["B1"].rstrip().endswith("| moved |")
    assert lines["B3"].rstrip().endswith("| unchanged |")
    assert "1 flipped, 2 moved beyond their interval, 0 missing on one side, 2 of 4 claims changed." in out
    assert run_cli("diff", str(old), str(new), "--changed-only") == 0
    assert "| B3 |" not in capsys.readouterr().out
    assert "differ in more than the verdicts" not in out  # same model, corpus and settings
    assert run_cli("diff", str(old), str(tmp_path / "nope")) == 2
    assert "no verdicts.json in" in capsys.readouterr().err


def test_diff_says_when_the_runs_differ_in_model_or_settings(
    fake: Recorder, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    assert run_cli("reproduce", "--model", "m", "--out", str(a), "-q") == 0
    assert run_cli("reproduce", "--model", "tiny-gpt2", "--out", str(b), "--seed", "7", "--n", "30", "-q") == 0
    capsys.readouterr()
    assert run_cli("diff", str(a), str(b)) == 0
    out = capsys.readouterr().out
    assert "Note: the two runs differ in more than the verdicts" in out
    assert "- model: m vs tiny-gpt2" in out
    assert "- qk setting seed: 0 vs 7" in out  # the seed each run had (its provenance), not "default vs 7"
    assert "- punctuation setting n: default vs 30" in out  # not in the fake study's provenance: only "default"
    (a / "run.json").unlink()
    assert run_cli("diff", str(a), str(b)) == 0
    assert "settings not compared: no run.json in" in capsys.readouterr().out


DIFF_CLAIM = """
[[claim]]
id = "U1"
text = "Block 2: RSA Q-K of the words above a threshold."
source = "my lab notebook"
model = "m"
model_blocks = 4
study = "qk"
layer = 2
conditions = [{ statistic = "rsa_qk", comparison = ">", threshold = 0.5 }]
"""


def test_diff_names_a_claim_whose_definition_changed(
    fake: Recorder, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The same claim id with another threshold and layer in the second run: diff says the claim is not the same
    claim (a flip could come from that), and nothing of the kind for a claim that kept its definition."""
    a, b = tmp_path / "a", tmp_path / "b"
    (tmp_path / "one.toml").write_text(DIFF_CLAIM)
    (tmp_path / "two.toml").write_text(DIFF_CLAIM.replace("threshold = 0.5", "threshold = 0.95").replace("= 2", "= 3"))
    for out, claims in ((a, "one.toml"), (b, "two.toml")):
        argv = ["reproduce", "--model", "m", "--out", str(out), "--claims", str(tmp_path / claims), "-q"]
        assert run_cli(*argv) == 0
    capsys.readouterr()
    assert run_cli("diff", str(a), str(b)) == 0
    out = capsys.readouterr().out
    assert "- claim U1 is defined differently: threshold: 0.5 vs 0.95; layer: 2 vs 3" in out, out
    assert "claim B2 is defined differently" not in out


# ------------------------------------------------------------------------------------------------ entry points


def test_python_dash_m_runs_the_cli() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "layerclaims", "claims", "--format", "json"],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr
    assert (
        len(json.loads(proc.stdout)) == 11 + 19
    )  # study A and B claims, then the layer studies' MA1-MA13, AN1-AN4, AS1-AS2


# ------------------------------------------------------------------------------------------------ end to end


@pytest.mark.slow
def test_reproduce_end_to_end_on_tiny_gpt2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The real studies, figures and report on the random tiny GPT-2, both studies, a small sample."""
    if not os.environ.get("LAYERCLAIMS_DATA"):
        pytest.skip("LAYERCLAIMS_DATA is unset: the punctuation study needs the corpus (e.g. ../shared/data)")
    out = tmp_path / "tiny"
    argv = ["reproduce", "--model", "tiny-gpt2", "--study", "all", "--n", "40", "--out", str(out)]
    argv += ["--set", "punctuation.n_boot=50", "--set", "punctuation.n_boot_clusters=5"]
    argv += ["--set", "punctuation.cluster_n_boot=5", "--set", "qk.n_boot=50", "--set", "qk.n_perm=100"]
    assert cli.main(argv) == 0, capsys.readouterr()
    verdicts = json.loads((out / "verdicts.json").read_text())
    layer_claims = [*(f"MA{i}" for i in range(1, 14)), "AN1", "AN2", "AN3", "AN4", "AS1", "AS2"]
    assert sorted(v["claim"] for v in verdicts) == sorted(
        ["A1", "A2", "A3", "A4", "A5", "A6", "A7", "B1", "B2", "B3", "B4", *layer_claims]
    )
    assert all(v["model"] == "tiny-gpt2" for v in verdicts)
    evaluated = [v for v in verdicts if v["holds"] is not None]
    assert len(evaluated) >= 9, [v["reason"] for v in verdicts if v["holds"] is None]
    assert (out / "qk.json").is_file() and (out / "punctuation.json").is_file()
    figures = sorted((out / "figures").glob("*.png"))
    assert figures, "no figures written"
    html = (out / "report.html").read_text()
    for fig in figures:
        assert f'src="figures/{fig.name}"' in html
    assert "not run" not in (out / "report.md").read_text().split("## Claims")[0]


def test_warnings_are_one_line_while_the_cli_runs(
    fake: Recorder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import warnings

    line = cli._one_line_warning(UserWarning("corrupt cache entry /c (x:\n  y): rebuilding"), UserWarning, "m.py", 3)
    assert line == "warning: corrupt cache entry /c (x: y): rebuilding\n"  # no file, no source line, one line
    seen: list[Any] = []
    fake_b = sys.modules["layerclaims.studies.qk"]
    original = fake_b.run

    def spy(handle: Any, config: Any) -> Any:
        seen.append(warnings.formatwarning)
        return original(handle, config)

    monkeypatch.setattr(fake_b, "run", spy)
    before = warnings.formatwarning
    assert run_cli("reproduce", "--model", "m", "--study", "qk", "--out", str(tmp_path), "-q") == 0
    assert seen == [cli._one_line_warning] and warnings.formatwarning is before  # installed, then put back


def test_a_robustness_analysis_in_the_folder_is_kept_and_one_of_another_model_refused(
    fake: Recorder, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "o"
    rob = out / "robustness"
    rob.mkdir(parents=True)
    (rob / "robustness.json").write_text(json.dumps({"model": "m", "lines": ["B2 holds in 4 of 9 specifications"]}))
    runfolder.write_manifest(rob, runfolder.ROBUSTNESS)  # as `layerclaims robustness --out o/robustness` leaves it
    assert run_cli("reproduce", "--model", "m", "--out", str(out), "-q") == 0
    assert json.loads((rob / "robustness.json").read_text())["model"] == "m"  # kept through the swap
    assert "B2 holds in 4 of 9 specifications" in (out / "report.md").read_text()
    (rob / "robustness.json").write_text(json.dumps({"model": "other", "lines": []}))
    runfolder.write_manifest(rob, runfolder.ROBUSTNESS)
    before = sorted(p.name for p in out.iterdir())
    assert run_cli("reproduce", "--model", "m", "--out", str(out), "-q") == 2
    assert "robustness analysis of other" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == before


@pytest.mark.slow
def test_matrix_through_local_processes_equals_one_after_another(tmp_path: Path) -> None:
    """The matrix's model runs are executor jobs: two worker processes give the table one process gives."""
    base = ["--models", "tiny-gpt2,tiny-llama", "--study", "qk", "-q", "--set", "qk.n_boot=20", "--set", "qk.n_perm=50"]
    tables = {}
    for executor in ("inline", "local"):
        out = tmp_path / executor
        assert cli.main(["matrix", *base, "--out", str(out), "--executor", executor]) == 0
        tables[executor] = (out / "matrix.md").read_text()
        assert (out / "tiny-llama" / "report.html").is_file()
    assert tables["local"] == tables["inline"]
    assert "| B2 |" in tables["local"]
