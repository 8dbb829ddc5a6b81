"""Claims as TOML files: the package's files, a user's file, validation messages, runs grouped by settings."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from layerclaims import claims as C
from layerclaims import cli
from layerclaims.claims import CLAIMS, Condition, combine_claims, group_runs, load_claims, parse_claims
from layerclaims.errors import UsageError

USER = """
[[claim]]
id = "U1"
text = "Block 2: RSA between the Q and K similarity matrices of my 10 words is above 0.5."
source = "my notebook"
model = "tiny-gpt2"
model_blocks = 4
study = "qk"
layer = 2

[[claim.conditions]]
statistic = "rsa_qk"
comparison = ">"
threshold = 0.5

[claim.settings]
template = "I saw a {w}"
n_boot = 50
n_perm = 100

[claim.settings.categories]
animals = ["cat", "dog", "horse", "cow", "sheep"]
tools = ["hammer", "saw", "drill", "wrench", "knife"]

[[claim]]
id = "U2"
text = "Same words, block 3: K more similar than Q."
source = "my notebook"
model = "tiny-gpt2"
model_blocks = 4
study = "qk"
layer = 3
conditions = [{ statistic = "k_minus_q_mean_cosine", comparison = ">", threshold = 0 }]

[claim.settings]
template = "I saw a {w}"
n_boot = 50
n_perm = 100
categories = { animals = ["cat", "dog", "horse", "cow", "sheep"], tools = ["hammer", "saw", "drill", "wrench",
  "knife"] }
"""


def write(tmp_path: Path, text: str, name: str = "mine.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_the_package_claims_come_from_its_toml_files() -> None:
    files = {c.file for c in CLAIMS}
    assert len(files) == 7 and all(f is not None and f.endswith(".toml") for f in files)
    assert [c.id for c in CLAIMS] == [
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
        *[f"MA{i}" for i in range(1, 14)],
        "AN1",
        "AN2",
        "AN3",
        "AN4",
        "AS1",
        "AS2",
    ]
    a6 = C.CLAIMS_BY_ID["A6"]
    assert a6.conditions == (Condition("min_within_cluster_slope", ">", 0), Condition("pooled_r", "<", 0))
    assert (a6.model, a6.model_blocks, a6.layer, a6.kind, a6.presupposes) == ("gpt2-medium", 24, 1, "internal", ("A1",))
    assert C.CLAIMS_BY_ID["A7"].layer is None and C.CLAIMS_BY_ID["B4"].model_blocks == 36
    assert all(c.settings == () for c in CLAIMS if c.id != "AS2")
    assert C.CLAIMS_BY_ID["AS2"].settings == (("add_bos", True),)  # LLaMA's tokenizer prepends a BOS token


def test_the_toml_files_are_package_data() -> None:
    pyproject = (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text()
    assert '"layerclaims.claims" = ["*.toml"]' in pyproject and 'layerclaims = ["py.typed"]' in pyproject
    assert (Path(C.__file__).parent / "b_qk_grouping_rsa.toml").is_file()


def test_a_user_file_with_settings_and_categories(tmp_path: Path) -> None:
    u1, u2 = load_claims(write(tmp_path, USER))
    assert (u1.id, u1.model, u1.layer, u1.layer_unit, u1.study) == ("U1", "tiny-gpt2", 2, "block", "qk")
    opts = u1.options
    assert opts["words"] == ("cat", "dog", "horse", "cow", "sheep", "hammer", "saw", "drill", "wrench", "knife")
    assert opts["labels"] == ("animals",) * 5 + ("tools",) * 5
    assert (opts["template"], opts["n_boot"], opts["n_perm"]) == ("I saw a {w}", 50, 100)
    assert u1.settings == u2.settings  # the inline and the [claim.settings.categories] forms are the same
    assert u1.file == str(tmp_path / "mine.toml")


def test_group_runs_share_one_run_per_study_and_settings(tmp_path: Path) -> None:
    user = load_claims(write(tmp_path, USER))
    groups = group_runs((*CLAIMS, *user))
    assert [(s, [c.id for c in cs]) for s, _, cs in groups] == [
        ("punctuation", ["A1", "A2", "A3", "A4", "A5", "A6", "A7"]),
        ("qk", ["B1", "B2", "B3", "B4"]),
        ("massive", [f"MA{i}" for i in range(1, 14)]),
        ("anisotropy", ["AN1", "AN2", "AN3", "AN4"]),
        ("sink", ["AS1"]),
        ("sink", ["AS2"]),
        ("qk", ["U1", "U2"]),
    ]
    assert groups[1][1] == {} and groups[-1][1] == user[0].options and groups[-2][1] == {"add_bos": True}


def test_combine_adds_or_replaces_and_a_folder_is_read_whole(tmp_path: Path) -> None:
    write(tmp_path, USER)
    write(tmp_path, USER.replace('"U1"', '"V1"').replace('"U2"', '"V2"'), "more.toml")
    both = combine_claims(tmp_path)
    assert [c.id for c in both] == [c.id for c in CLAIMS] + ["U1", "U2", "V1", "V2"]
    assert [c.id for c in combine_claims([tmp_path], only=True)] == ["U1", "U2", "V1", "V2"]
    assert combine_claims() == CLAIMS
    with pytest.raises(UsageError, match="--only-claims needs --claims"):
        combine_claims(only=True)


def test_defaults_apply_to_every_claim_of_a_file() -> None:
    (c,) = parse_claims(
        '[defaults]\nmodel = "gpt2-medium"\nstudy = "punctuation"\nsource = "s"\n\n'
        '[[claim]]\nid = "P1"\ntext = "t"\nlayer = 3\nkind = "terminal"\n'
        'conditions = [{ statistic = "pooled_r", comparison = "<", threshold = 0 }]\n',
        "d.toml",
    )
    # model_blocks from the known architecture of gpt2-medium; layer_unit from the study
    assert (c.model_blocks, c.layer_unit, c.kind) == (24, "hidden_state", "terminal")


# Each kind of mistake: (edit of USER, the field named, a phrase of the problem, a phrase of the fix).
MISTAKES = [
    ('statistic = "rsa_qk"', 'statistic = "rsa_qq"', "conditions[0].statistic", "unknown statistic 'rsa_qq'", "rsa_qk"),
    ('comparison = ">"\n', 'comparison = "=>"\n', "conditions[0].comparison", "unknown comparison", "one of >, <"),
    ('study = "qk"\nlayer = 2', 'study = "attention"\nlayer = 2', "study", "unknown study", "punctuation, qk"),
    ("layer = 2", "layer = 4", "layer", "outside the 0-based blocks 0..3", "give a layer in 0..3"),
    ('id = "U2"', 'id = "B2"', "id", "duplicate id 'B2'", "its own id"),
    ('id = "U2"', 'id = "U1"', "id", "duplicate id 'U1'", "its own id"),
    (
        'source = "my notebook"\nmodel = "tiny-gpt2"\nmodel_blocks = 4\nstudy = "qk"\nlayer = 2',
        'model = "tiny-gpt2"\nmodel_blocks = 4\nstudy = "qk"\nlayer = 2',
        "source",
        "missing",
        "add source",
    ),
    ('template = "I saw', 'templat = "I saw', "settings.templat", "no setting 'templat'", "words, labels, template"),
    ("threshold = 0.5", 'threshold = "0.5"', "conditions[0].threshold", "not a number", "no quotes"),
    (
        'model = "tiny-gpt2"\nmodel_blocks = 4\nstudy = "qk"',
        'model = "my-lab/model-x"\nstudy = "qk"',
        "model_blocks",
        "not known",
        "add",
    ),
    # a depth that contradicts the model's known one is an error, not a silent remap of every layer
    ("model_blocks = 4", "model_blocks = 24", "model_blocks", "24, but tiny-gpt2 has 4 blocks", "model_blocks = 4"),
    # every threshold is finite: nan would "hold", inf could never be decided
    ("threshold = 0.5", "threshold = nan", "conditions[0].threshold", "nan is not a finite number", "finite"),
    ("threshold = 0.5", "threshold = inf", "conditions[0].threshold", "inf is not a finite number", "finite"),
    ("threshold = 0.5", "threshold = -inf", "conditions[0].threshold", "-inf is not a finite number", "finite"),
    ("n_boot = 50", "n_boot = nan", "settings.n_boot", "nan is not a finite number", "finite"),
    # unknown keys are named, with the nearest valid one (before any "missing" complaint they would cause)
    (
        "threshold = 0.5",
        "treshold = 0.5",
        "conditions[0].treshold",
        "unknown key 'treshold'; did you mean 'threshold'?",
        "rename treshold to threshold",
    ),
    ('study = "qk"\nlayer = 2', 'study = "qk"\nlayr = 2', "layr", "did you mean 'layer'?", "rename layr to layer"),
    (
        'source = "my notebook"\nmodel = "tiny-gpt2"',
        'sorce = "my notebook"\nmodel = "tiny-gpt2"',
        "sorce",
        "unknown key 'sorce'; did you mean 'source'?",
        "rename sorce to source",
    ),
    ("n_perm = 100", "n_perms = 100", "settings.n_perms", "did you mean 'n_perm'?", "n_boot, n_perm"),
    (
        'statistic = "rsa_qk"',
        'statistic = "min_rsa_qk_over_blocks"',
        "conditions[0].statistic",
        "reads every layer",
        "remove `layer`",
    ),
]


@pytest.mark.parametrize(("old", "new", "field", "problem", "fix"), MISTAKES, ids=[m[2] + "-" + m[3] for m in MISTAKES])
def test_each_mistake_names_file_claim_field_and_fix(
    tmp_path: Path, old: str, new: str, field: str, problem: str, fix: str
) -> None:
    assert old in USER
    path = write(tmp_path, USER.replace(old, new, 1))
    with pytest.raises(UsageError) as err:
        combine_claims(path)
    message = str(err.value)
    claim = new.split('"')[1] if new.startswith("id =") else "U1"
    assert message.startswith(f"{path}: claim {claim}, field {field!r}: "), message
    assert problem in message and "Fix:" in message and fix in message.split("Fix:")[1], message


@pytest.mark.parametrize(
    ("edits", "cycle"),
    [
        ({'layer = 2\n': 'layer = 2\npresupposes = ["U2"]\n', "layer = 3\n": 'layer = 3\npresupposes = ["U1"]\n'},
         "U1 -> U2 -> U1"),
        ({'layer = 2\n': 'layer = 2\npresupposes = ["U1"]\n'}, "U1 -> U1"),
    ],
    ids=["two-claims", "itself"],
)  # fmt: skip
def test_a_presupposition_cycle_is_refused_naming_it(tmp_path: Path, edits: dict[str, str], cycle: str) -> None:
    """Each claim of a cycle would "fail because its premise fails" and hide its own result."""
    text = USER
    for old, new in edits.items():
        assert old in text
        text = text.replace(old, new, 1)
    path = write(tmp_path, text)
    with pytest.raises(UsageError, match=f"field 'presupposes': the presuppositions form a cycle {cycle}"):
        combine_claims(path)


def test_a_cycle_across_files_of_a_folder_is_refused(tmp_path: Path) -> None:
    one, two = USER.split("[[claim]]")[1:]
    (tmp_path / "claims").mkdir()
    write(tmp_path / "claims", "[[claim]]" + one.replace("layer = 2\n", 'layer = 2\npresupposes = ["U2"]\n'), "a.toml")
    write(tmp_path / "claims", "[[claim]]" + two.replace("layer = 3\n", 'layer = 3\npresupposes = ["U1"]\n'), "b.toml")
    with pytest.raises(UsageError, match="cycle U1 -> U2 -> U1"):
        combine_claims(tmp_path / "claims")


def test_model_blocks_is_inferred_for_models_the_package_knows() -> None:
    base = 'study = "qk"\nsource = "s"\ntext = "t"\nlayer = 3\n'
    cond = 'conditions = [{ statistic = "rsa_qk", comparison = ">", threshold = 0.5 }]\n'
    for model, blocks in (("smollm2-135m", 30), ("tiny-llama", 4), ("minilm-l6", 6), ("gpt2", 12)):
        (c,) = parse_claims(f'[[claim]]\nid = "X"\nmodel = "{model}"\n{base}{cond}')
        assert c.model_blocks == blocks, model
    with pytest.raises(UsageError, match=r"model_blocks'?: 24, but smollm2-135m has 30 blocks"):
        parse_claims(f'[[claim]]\nid = "X"\nmodel = "smollm2-135m"\nmodel_blocks = 24\n{base}{cond}')


@pytest.mark.parametrize(("encoding", "named"), [("utf-16", "UTF-16"), ("cp1252", "WINDOWS-1252")])
def test_a_claims_file_in_another_encoding_gets_the_corpus_message(tmp_path: Path, encoding: str, named: str) -> None:
    path = tmp_path / "mine.toml"
    path.write_bytes(USER.replace("my notebook", "my café notebook").encode(encoding))
    with pytest.raises(UsageError) as err:
        load_claims(path)
    assert named in err.value.message and "not UTF-8" in err.value.message, err.value.message
    assert err.value.fix is not None and f"iconv -f {named} -t UTF-8 {path} > mine.utf8.toml" in err.value.fix
    converted = tmp_path / "mine.utf8.toml"  # the fix, followed, works
    converted.write_bytes(path.read_bytes().decode(encoding).encode("utf-8"))
    assert [c.id for c in load_claims(converted)] == ["U1", "U2"]
    bom = tmp_path / "bom.toml"  # UTF-8 with a byte-order mark is UTF-8
    bom.write_bytes(b"\xef\xbb\xbf" + USER.encode("utf-8"))
    assert [c.id for c in load_claims(bom)] == ["U1", "U2"]


def test_invalid_toml_and_missing_paths_name_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[[claim]]\nid = U1\n")
    with pytest.raises(UsageError, match=r"mine.toml: not valid TOML .*line 2"):
        load_claims(path)
    with pytest.raises(UsageError, match="no such claims file or folder"):
        load_claims(tmp_path / "nope.toml")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match=r"no \*.toml claims file"):
        load_claims(tmp_path / "empty")


@pytest.mark.parametrize("command", ["claims", "reproduce", "matrix"])
def test_the_cli_exits_2_on_a_bad_claims_file(
    tmp_path: Path, command: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before any model is loaded (no torch here), with one message naming file, claim and field."""
    monkeypatch.delitem(sys.modules, "layerclaims.models", raising=False)
    path = write(tmp_path, USER.replace('comparison = ">"', 'comparison = "=>"'))
    argv = {"claims": [], "reproduce": ["--model", "tiny-gpt2"], "matrix": ["--models", "tiny-gpt2"]}[command]
    assert cli.main([command, *argv, "--claims", str(path), "--out", str(tmp_path / "o")][: None if argv else 3]) == 2
    err = capsys.readouterr().err
    assert f"{path}: claim U1, field 'conditions[0].comparison'" in err and "Traceback" not in err
    assert "layerclaims.models" not in sys.modules


def test_the_cli_lists_a_users_claims(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, USER)
    assert cli.main(["claims", "--claims", str(path), "--only-claims", "--format", "json"]) == 0
    import json

    rows = json.loads(capsys.readouterr().out)
    assert [r["id"] for r in rows] == ["U1", "U2"] and rows[0]["layer"] == "block 2"
    assert cli.main(["claims", "--claims", str(path)]) == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines()[1:]]
    assert listed == [c.id for c in CLAIMS] + ["U1", "U2"]


@pytest.mark.parametrize(
    ("old", "new", "named"),
    [
        ("threshold = 0.5", "threshold = nan", "claim U1, field 'conditions[0].threshold': nan is not a finite number"),
        ("layer = 2\n", 'layer = 2\npresupposes = ["U1"]\n', "cycle U1 -> U1"),
    ],
    ids=["nan", "cycle"],
)
def test_the_cli_exits_2_naming_the_claim(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], old: str, new: str, named: str
) -> None:
    path = write(tmp_path, USER.replace(old, new, 1))
    assert cli.main(["claims", "--claims", str(path)]) == 2
    err = capsys.readouterr().err
    assert named in err and "Traceback" not in err, err
