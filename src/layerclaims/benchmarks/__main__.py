"""Dispatcher: ``python -m layerclaims.benchmarks NAME [options]`` runs the benchmark NAME (see ``BENCHMARKS``)."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

from layerclaims.benchmarks import BENCHMARKS


def _studies() -> dict[str, str]:
    """The benchmarks the installed studies declare: name -> the study's name."""
    from layerclaims import study

    return {name: st.name for st in study.registry().values() for name in st.benchmarks}


def _usage() -> str:
    listed = {**BENCHMARKS, **{name: f"study {owner}" for name, owner in _studies().items()}}
    names = "\n".join(f"  {name:<14} {target}" for name, target in listed.items())
    return f"usage: python -m layerclaims.benchmarks NAME [options]\n\nbenchmarks:\n{names}\n"


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        sys.stdout.write(_usage())
        return 0 if args else 2
    name, rest = args[0], args[1:]
    owners = _studies()
    if name in owners:
        from layerclaims import study

        return int(study.get(owners[name]).benchmarks[name](rest) or 0)
    if name not in BENCHMARKS:
        sys.stderr.write(f"unknown benchmark {name!r}: choose one of {', '.join([*BENCHMARKS, *owners])}.\n")
        return 2
    module_name, func_name = BENCHMARKS[name].split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name != module_name:
            raise
        sys.stderr.write(f"benchmark {name!r} is listed but its module {module_name} does not exist yet.\n")
        return 2
    func = getattr(module, func_name)
    code = func(rest)
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
