"""The layering rules (docs/architecture.md, "Layers") hold, and the checks that enforce them fail on a violation.

The import contracts (metrics import nothing of the package but errors; ``layerclaims.study`` likewise; studies never
import claims, verdicts, the pipeline or the CLI; studies are independent) are import-linter's, configured in
pyproject.toml and run by ``make lint``. What import-linter cannot see, a module named in a string (``importlib``,
``"module:function"``), is checked here on the AST: no such string import may close a circle.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TARGET = re.compile(r"layerclaims(?:\.\w+)+(?::\w+)?")


def _modules(root: Path) -> dict[str, Path]:
    """Module name -> file, for the package ``layerclaims`` under ``root``."""
    out = {}
    for path in sorted((root / "layerclaims").rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The module ``name`` is, or is in (``layerclaims.x.func`` -> ``layerclaims.x``)."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def import_graph(root: Path) -> tuple[dict[str, set[str]], list[tuple[str, str]]]:
    """``(edges, string_edges)``: every import statement (anywhere in a module) as an edge, and every module named
    in a string (``importlib.import_module("layerclaims.x")``, ``"layerclaims.x:function"``) as a string edge."""
    modules = _modules(root)
    edges: dict[str, set[str]] = {m: set() for m in modules}
    strings: list[tuple[str, str]] = []
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join([*package.split(".")[: len(package.split(".")) - node.level + 1], base]).strip(".")
                targets = [f"{base}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and TARGET.fullmatch(node.value):
                target = _resolve(node.value.partition(":")[0], modules)
                if target is not None and target != name:
                    strings.append((name, target))
            for t in targets:
                resolved = _resolve(t, modules) if t.startswith("layerclaims") else None
                if resolved is not None and resolved != name:
                    edges[name].add(resolved)
    return edges, strings


def circles_through_strings(root: Path) -> list[str]:
    """Each string import ``a -> b`` for which ``b`` reaches ``a`` again (a circle the import graph cannot see)."""
    edges, strings = import_graph(root)
    for a, b in strings:
        edges[a].add(b)
    found = []
    for a, b in strings:
        seen, todo = {b}, [b]
        while todo:
            for nxt in edges.get(todo.pop(), ()):
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        if a in seen:
            found.append(f"{a} names {b} in a string, and {b} imports {a} (directly or not)")
    return found


def test_no_string_import_hides_a_circle() -> None:
    assert circles_through_strings(REPO / "src") == []


def test_a_string_import_that_closes_a_circle_is_found(tmp_path: Path) -> None:
    shutil.copytree(REPO / "src" / "layerclaims", tmp_path / "layerclaims")
    executor = tmp_path / "layerclaims" / "executor.py"
    executor.write_text(executor.read_text() + '\nJOBS = {"robustness": "layerclaims.robustness:job"}\n')
    assert circles_through_strings(tmp_path) == [
        "layerclaims.executor names layerclaims.robustness in a string, and layerclaims.robustness imports "
        "layerclaims.executor (directly or not)"
    ]


def _lint_imports(root: Path, pyproject: Path) -> subprocess.CompletedProcess[str]:
    pytest.importorskip("importlinter", reason="import-linter is in the test extra: pip install -e '.[test]'")
    exe = Path(sys.executable).parent / "lint-imports"
    env = {**os.environ, "PYTHONPATH": str(root)}
    cmd = [str(exe), "--config", str(pyproject), "--no-cache"]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=root, env=env, check=False)


def test_the_layering_contracts_hold() -> None:
    proc = _lint_imports(REPO / "src", REPO / "pyproject.toml")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 broken" in proc.stdout


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        ("studies/qk/__init__.py", "from layerclaims.claims import CLAIMS", "studies never import claims"),
        ("metrics/similarity.py", "from layerclaims import results", "metrics import nothing of the package"),
        ("studies/qk/figures.py", "from layerclaims.studies.punctuation import KINDS", "independent of the others"),
    ],
)
def test_a_layering_violation_breaks_the_contracts(tmp_path: Path, module: str, line: str, contract: str) -> None:
    """The same check (lint-imports with the project's contracts) on a copy of the package with one violation."""
    shutil.copytree(REPO / "src" / "layerclaims", tmp_path / "layerclaims")
    path = tmp_path / "layerclaims" / module
    path.write_text(path.read_text() + f"\n\ndef _violation() -> None:\n    {line}  # noqa\n")
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]
    lines = ["[tool.importlinter]", f'root_package = "{config["root_package"]}"']
    for c in config["contracts"]:
        lines.append("[[tool.importlinter.contracts]]")
        lines += [f"{k} = {_toml(v)}" for k, v in c.items()]
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text("\n".join(lines) + "\n")
    proc = _lint_imports(tmp_path, pyproject)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    text = " ".join(proc.stdout.split())
    assert "1 broken" in text and "BROKEN" in text and contract in text, proc.stdout


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


# A module name built at run time escapes the string check above. The two that exist are known: the package's lazy
# API (its targets are imported under TYPE_CHECKING there, so the import graph sees them) and a saved result's class
# (data naming a layerclaims class, checked against the package before it is imported).
KNOWN_BUILT_NAMES = {"layerclaims", "layerclaims.results"}


def built_import_names(root: Path) -> set[str]:
    """The modules that call ``import_module`` (or ``__import__``) with a name that is not a string literal."""
    found = set()
    for name, path in _modules(root).items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and node.args:
                func = node.func
                called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                literal = isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)
                if called in ("import_module", "__import__") and not literal:
                    found.add(name)
    return found


def test_no_module_name_is_built_at_run_time_but_the_known_ones() -> None:
    assert built_import_names(REPO / "src") == KNOWN_BUILT_NAMES


def test_a_module_name_built_at_run_time_is_found(tmp_path: Path) -> None:
    shutil.copytree(REPO / "src" / "layerclaims", tmp_path / "layerclaims")
    study = tmp_path / "layerclaims" / "studies" / "qk" / "__init__.py"
    study.write_text(study.read_text() + "\n\ndef _lazy(m):\n    return __import__(f'{__name__}.{m}')\n")
    assert built_import_names(tmp_path) == {*KNOWN_BUILT_NAMES, "layerclaims.studies.qk"}
