"""Dispatcher: ``python -m benchmarks NAME [options]`` runs the benchmark NAME (see ``BENCHMARKS``)."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

from benchmarks import BENCHMARKS


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        names = "\n".join(f"  {name:<14} {target}" for name, target in BENCHMARKS.items())
        sys.stdout.write(f"usage: python -m benchmarks NAME [options]\n\nbenchmarks:\n{names}\n")
        return 0 if args else 2
    name, rest = args[0], args[1:]
    if name not in BENCHMARKS:
        sys.stderr.write(f"unknown benchmark {name!r}: choose one of {', '.join(BENCHMARKS)}.\n")
        return 2
    module_name, func_name = BENCHMARKS[name].split(":")
    return int(getattr(importlib.import_module(module_name), func_name)(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
