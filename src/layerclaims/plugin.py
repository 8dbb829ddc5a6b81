"""The pytest plugin of layerclaims (the ``pytest11`` entry point: any project that installs layerclaims gets it).

Options: see ``pytest --help``, group "layerclaims". Markers: ``findings``, ``slow``. Fixtures: ``device``,
``findings_claims``, ``findings_runs``, ``claim_verdict``, ``check_verdict``; a test that takes ``model`` and
``claim`` runs once per pair (:func:`layerclaims.testing.model_claim_params`). A findings test in one's own project::

    import pytest

    pytestmark = pytest.mark.findings

    def test_claim(claim, claim_verdict, check_verdict):
        check_verdict(claim_verdict, claim)

Importing this module imports neither torch nor numpy (``pytest --help`` stays fast): the machinery lives in
:mod:`layerclaims.testing`.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from typing import Any

import pytest

from layerclaims.claims import Claim, combine_claims
from layerclaims.errors import LayerclaimsError
from layerclaims.identity import check_declared

CLAIMS_KEY = pytest.StashKey[tuple[Claim, ...]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("layerclaims", "layerclaims: claims about language-model layers as tests")
    group.addoption("--gpu", action="store_true", help="run models on CUDA")
    group.addoption(
        "--model",
        action="append",
        metavar="NAME",
        help="model for the findings tests (repeatable; default tiny-gpt2 and smollm2-135m, as on CI)",
    )
    group.addoption(
        "--claims",
        action="append",
        metavar="PATH",
        help="a TOML claims file or folder whose claims the findings tests also check (repeatable)",
    )
    group.addoption("--only-claims", action="store_true", help="check only the --claims claims, not the package's")
    group.addoption(
        "--as",
        dest="as_model",
        metavar="NAME",
        help="the --model folder holds NAME (e.g. gpt2-medium): assert NAME's claims on it (its architecture is "
        "checked)",
    )
    group.addoption(
        "--beats-control",
        action="store_true",
        help="every claim must beat its control (its statistic minus the control's, with its uncertainty), as "
        "beats_control = true in a claims file does",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "findings: a published claim evaluated on a real (or tiny) model")
    config.addinivalue_line("markers", "slow: takes more than a few seconds")
    if config.getoption("--gpu"):
        import torch

        if not torch.cuda.is_available():
            raise pytest.UsageError(
                "--gpu was given but torch sees no CUDA device on this machine: "
                "drop --gpu to run on the CPU, or run on a machine with an NVIDIA GPU and a CUDA build of torch."
            )
    try:
        claims = combine_claims(config.getoption("--claims") or (), only=bool(config.getoption("--only-claims")))
        if config.getoption("--beats-control"):
            claims = tuple(dataclasses.replace(c, beats_control=True) for c in claims)
        config.stash[CLAIMS_KEY] = claims
        declared = config.getoption("as_model")
        if declared is not None:
            models = config.getoption("--model") or []
            if not models:
                raise pytest.UsageError(f"--as {declared} needs --model PATH: the local folder that holds {declared}")
            for m in models:
                check_declared(declared, m)
    except LayerclaimsError as exc:
        raise pytest.UsageError(str(exc)) from None


def pytest_report_header(config: pytest.Config) -> list[str]:
    """How each findings model that names a claim's own model will be taken for it."""
    from layerclaims.identity import BEHAVIOUR_REFERENCES, model_identity
    from layerclaims.testing import findings_models

    lines: list[str] = []
    declared = config.getoption("as_model")
    for m in findings_models(config, claims=findings_claims_of(config)):
        try:
            name = model_identity(m, declared=declared)
        except LayerclaimsError:
            name = None
        if name is None:
            continue
        ref = BEHAVIOUR_REFERENCES.get(name)
        if ref is None:
            how = "by its declaration (--as)" if declared is not None else "by its config"
            line = f"taken as {name} {how}; weights unverified (no published behaviour to check them against); "
            line += f"{name}'s claims are asserted on it"
        else:
            line = f"its config says {name}; {name}'s claims are asserted only if its weights reproduce next-token "
            line += f"loss {ref.loss:.4f} on {ref.text!r} ({ref.source})"
        lines.append(f"layerclaims: {m}: {line}")
    return lines


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Say which findings snapshots this session created (a first run creates them instead of failing)."""
    testing = sys.modules.get("layerclaims.testing")  # imported only when a findings test ran
    if testing is None:
        return
    for line in testing.created_summary(testing.CREATED):
        terminalreporter.write_line(line)


def findings_claims_of(config: pytest.Config) -> tuple[Claim, ...]:
    """The claims this session checks: the package's and --claims ones (only the latter with --only-claims)."""
    return config.stash.get(CLAIMS_KEY, ())


def _parametrized(metafunc: pytest.Metafunc) -> set[str]:
    names: set[str] = set()
    for mark in metafunc.definition.iter_markers("parametrize"):
        argnames = mark.args[0] if mark.args else mark.kwargs.get("argnames", ())
        if isinstance(argnames, str):
            argnames = [a.strip() for a in argnames.split(",")]
        names.update(argnames)
    return names


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test taking ``model`` and ``claim`` (and not parametrizing them itself) runs on every (model, claim)."""
    if {"model", "claim"} <= set(metafunc.fixturenames) and not {"model", "claim"} & _parametrized(metafunc):
        from layerclaims.testing import model_claim_params

        metafunc.parametrize(
            ("model", "claim"), model_claim_params(metafunc.config, claims=findings_claims_of(metafunc.config))
        )


@pytest.fixture(scope="session")
def device(pytestconfig: pytest.Config) -> str:
    """``"cuda"`` with --gpu, else ``"cpu"``."""
    return "cuda" if pytestconfig.getoption("--gpu") else "cpu"


@pytest.fixture(scope="session")
def findings_claims(pytestconfig: pytest.Config) -> tuple[Claim, ...]:
    """The claims of this session (package's + --claims, or --claims alone with --only-claims)."""
    return findings_claims_of(pytestconfig)


@pytest.fixture(scope="session")
def findings_runs() -> Any:
    """:class:`layerclaims.testing.FindingsRuns` for the session."""
    from layerclaims.testing import FindingsRuns

    return FindingsRuns()


@pytest.fixture
def claim_verdict(model: str, claim: Claim, device: str, findings_claims: tuple[Claim, ...], findings_runs: Any) -> Any:
    """The verdict of the test's ``claim`` on its ``model``, decided with every claim of the session as one family."""
    return findings_runs.family(model, device, findings_claims)[claim.id]


@pytest.fixture
def check_verdict(request: pytest.FixtureRequest, pytestconfig: pytest.Config) -> Callable[..., None]:
    """``check_verdict(verdict, claim, tolerance=DEFAULT_TOLERANCE, snapshots=None)``:
    :func:`layerclaims.testing.check_verdict` with this session's ``--as`` and ``--beats-control``."""
    from layerclaims import testing

    declared = pytestconfig.getoption("as_model")

    def check(verdict: Any, claim: Claim, tolerance: dict[str, float] | None = None, snapshots: Any = None) -> None:
        runs = request.getfixturevalue("findings_runs")
        testing.check_verdict(
            verdict,
            claim,
            lambda: request.getfixturevalue("num_regression"),  # only on a model not the claim's own
            testing.DEFAULT_TOLERANCE if tolerance is None else tolerance,
            snapshots,
            declared=declared,
            beats_control=bool(pytestconfig.getoption("--beats-control")),
            identification=runs.identification(verdict.model, request.getfixturevalue("device"), declared=declared),
        )

    return check
