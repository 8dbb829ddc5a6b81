"""Benchmark: ``layerclaims reproduce`` end to end, this checkout against an earlier release, run alternately.

``python -m benchmarks reproduce [--model smollm2-135m] [--against REV] [--rounds 2] [--cache off|kept]
[--studies punctuation,qk]``

A time measured on a shared machine on another day says little: the same release can take twice as long there.
So the earlier release (a git revision, checked out into a temporary worktree that is removed afterwards) runs in
the same minutes, its order swapped every round. Both run ``python -m layerclaims reproduce --model MODEL`` into
temporary folders, with the activation cache off (``--cache off``, the default: every forward pass is computed)
or kept (``--cache kept``). One untimed run of each comes first: it compiles the release's numba kernels (cached in
its worktree; this checkout's are cached beside its sources) and, with ``--cache kept``, fills the cache.
``--studies A,B``: this checkout runs only those studies (their claims files from the package, ``--only-claims``),
like for like with a release that had only those (the family of hypotheses is smaller, the work the same).

What it prints (one run, no timed assertions): per round and command, the wall and CPU seconds and the seconds of
each study (from the run's ``run.json``); then the medians. Last line: this checkout's median, the release's, their
ratio, and the ratio for the release's own studies only (this checkout's run minus the studies the release did not
have, an estimate from the per-study seconds).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(
    src: Path, model: str, out: Path, env: dict[str, str], extra: Sequence[str] = ()
) -> tuple[float, float, dict[str, float]]:
    """One ``reproduce`` with the package at ``src`` (``extra``: more options): ``(wall s, CPU s of the process and
    its workers, seconds per study)``."""
    cmd = [sys.executable, "-m", "layerclaims", "reproduce", "--model", model, "--out", str(out), *extra]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    done = subprocess.run(cmd, env={**env, "PYTHONPATH": str(src)}, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} (PYTHONPATH={src}) failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    studies = json.loads((out / "run.json").read_text())["studies"]
    per = {s["study"]: sum(s.get("seconds", {}).values()) for s in studies if s.get("ran")}
    return wall, cpu, per


def _claims_of(studies: list[str]) -> list[str]:
    """``--only-claims --claims FILE ...``: the package's claims files whose claims are of ``studies``."""
    folder = ROOT / "src" / "layerclaims" / "claims"
    files = [f for f in sorted(folder.glob("*.toml")) if _studies_in(f) <= set(studies)]
    found = set().union(*(_studies_in(f) for f in files)) if files else set()
    if found != set(studies):
        raise SystemExit(f"--studies {','.join(studies)}: no claims files for {sorted(set(studies) - found)}")
    return ["--only-claims", *(a for f in files for a in ("--claims", str(f)))]


def _studies_in(path: Path) -> set[str]:
    data = tomllib.loads(path.read_text())
    default = data.get("defaults", {}).get("study")
    return {c.get("study", default) for c in data.get("claim", [])}


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks reproduce")
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--against", default="fce4ce8", help="git revision of the earlier release (default: fce4ce8)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--cache", choices=("off", "kept"), default="off")
    ap.add_argument("--studies", default="", help="this checkout runs only these studies (comma-separated)")
    args = ap.parse_args(argv)
    if args.rounds < 1:
        ap.error(f"--rounds {args.rounds}: give at least 1")
    extra = _claims_of([s for s in args.studies.split(",") if s]) if args.studies else []
    env = dict(os.environ)
    if args.cache == "off":
        env["LAYERCLAIMS_ACTIVATION_CACHE_MB"] = "0"
    with tempfile.TemporaryDirectory(prefix="layerclaims-bench-") as tmp:
        old = Path(tmp) / "release"
        git = ["git", "-C", str(ROOT), "worktree"]
        added = subprocess.run([*git, "add", "-q", "--detach", str(old), args.against], capture_output=True, text=True)
        if added.returncode != 0:
            raise SystemExit(f"--against {args.against}: no such git revision here ({added.stderr.strip()})")
        try:
            codes = {"this checkout": ROOT / "src", args.against: old / "src"}
            for i, src in enumerate(codes.values()):  # untimed: numba compiles the release's kernels into its worktree
                _run(src, args.model, Path(tmp) / f"fill-{i}", env, extra if i == 0 else ())
            times: dict[str, list[tuple[float, float, dict[str, float]]]] = {name: [] for name in codes}
            for r in range(args.rounds):
                for i, name in list(enumerate(codes))[:: 1 if r % 2 == 0 else -1]:
                    wall, cpu, per = _run(
                        codes[name], args.model, Path(tmp) / f"r{r}-{i}", env, extra if i == 0 else ()
                    )
                    times[name].append((wall, cpu, per))
                    studies = ", ".join(f"{s} {v:.1f}" for s, v in per.items())
                    print(f"round {r + 1}  {name:<14} {wall:6.1f} s wall  {cpu:6.1f} s CPU  ({studies})", flush=True)
        finally:
            subprocess.run([*git, "remove", "--force", str(old)], check=False)
    new, rel = (statistics.median(t[0] for t in times[name]) for name in codes)
    rel_studies = set(times[args.against][0][2])
    others = statistics.median(sum(v for s, v in t[2].items() if s not in rel_studies) for t in times["this checkout"])
    n_new = len(times["this checkout"][0][2])
    print(
        f"reproduce --model {args.model}, cache {args.cache}: this checkout {new:.1f} s ({n_new} study runs), "
        f"{args.against} {rel:.1f} s ({', '.join(sorted(rel_studies))}): ratio {new / rel:.2f}; "
        f"{args.against}'s studies only {new - others:.1f} s, ratio {(new - others) / rel:.2f}"
    )
    return 0
