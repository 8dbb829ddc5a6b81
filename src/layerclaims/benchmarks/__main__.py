"""Dispatcher: ``python -m layerclaims.benchmarks NAME [options]`` runs the benchmark NAME (see ``BENCHMARKS``)."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

from layerclaims.benchmarks import BENCHMARKS


def _usage() -> str:
    names = "\n".join(f"  {name:<14} {target}" for name, target in BENCHMARKS.items())
    return f"usage: python -m layerclaims.benchmarks NAME [options]\n\nbenchmarks:\n{names}\n"


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        sys.stdout.write(_usage())
        return 0 if args else 2
    name, rest = args[0], args[1:]
    if name not in BENCHMARKS:
        sys.stderr.write(f"unknown benchmark {name!r}: choose one of {', '.join(BENCHMARKS)}.\n")
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
