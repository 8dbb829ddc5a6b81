"""The ``layerclaims`` command: ``claims``, ``reproduce``, ``matrix``, ``diff`` and ``robustness``, a thin shell
over :mod:`layerclaims.pipeline`, :mod:`layerclaims.compare` and :mod:`layerclaims.robustness`. Exit codes: the
README's table ("What a run leaves behind"); any ``LayerclaimsError`` is ``error:`` and ``fix:`` lines, exit 2.
Output errors are not run errors (:class:`_GuardedStream`): the run folder is still written, then a closed stdout
exits 141 (128 + SIGPIPE, as a shell reports it), another write error 74 (EX_IOERR). Progress goes to stderr, one
line per stage; the verdict lines to stdout; ``-q`` silences both.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import logging
import os
import shlex
import signal
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO, cast

from layerclaims import __version__
from layerclaims import study as registry
from layerclaims.claims import CLAIMS, Claim, combine_claims
from layerclaims.compare import (
    build_matrix,
    diff_markdown,
    diff_verdicts,
    matrix_markdown,
    md_table,
    read_verdicts,
    run_differences,
)
from layerclaims.errors import LayerclaimsError, UsageError
from layerclaims.executor import EXECUTORS, Job, run_jobs
from layerclaims.pipeline import DEVICES, DTYPES, Reproduction, default_out, job_reproduce, reproduce, safe_dirname
from layerclaims.report import StudyOutcome, render_matrix_html
from layerclaims.results import atomic_write
from layerclaims.validate import STUDY_OPTIONS, Command, RunRequest, parse_set, study_options
from layerclaims.verdicts import Verdict

log = logging.getLogger("layerclaims.cli")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def _csv_list(text: str) -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise argparse.ArgumentTypeError("give at least one name, comma-separated (e.g. tiny-gpt2,smollm2-135m)")
    return items


def _print_study(outcome: StudyOutcome, verdicts: Sequence[Verdict], stream: TextIO) -> None:
    """One study's problems, as soon as it is done (its verdicts come after the family decision: :func:`_print_run`)."""
    if not outcome.ran:
        print(f"study {outcome.study}: NOT RUN. {outcome.reason}\n  fix: {outcome.fix}", file=stream)
    for p in outcome.problems:
        print(f"study {outcome.study}: {p}", file=stream)
    if verdicts:
        n = len(verdicts)
        print(f"study {outcome.study} done ({n} claims; verdicts below, after the run's family decision)", file=stream)


def _print_run(rep: Reproduction, stream: TextIO) -> None:
    """Every verdict, once, as the run's family decision left it."""
    if rep.verdicts:
        v0 = rep.verdicts[0]
        print(
            f"verdicts at family-wise level {v0.level:g} (Holm over the run's {v0.family_size} hypotheses, for and "
            "against the claims):",
            file=stream,
        )
    for v in rep.verdicts:
        head, *rest = v.lines()
        print("\n".join([f"  {head}", *(f"      {line}" for line in rest)]), file=stream, flush=True)
    for study in rep.kept:
        print(f"study {study}: kept from the earlier run in {rep.out} (see run.json)", file=stream)
    print(f"report: {rep.files['report.html']}  (also report.md, verdicts.json, verdicts.csv)", file=stream)


def _study_names(choice: str) -> tuple[str, ...]:
    """``--study``: ``all`` (every installed study) or one study's name, in every command."""
    return registry.names() if choice == "all" else (registry.get(choice).name,)


def _requests(args: argparse.Namespace, folders: dict[str, Path]) -> dict[str, RunRequest]:
    """The run ``args`` asks for of each model into its folder, warning about options that no study run reads."""
    names = _study_names(args.study)
    given = {k: getattr(args, k) for k in STUDY_OPTIONS}
    for item in args.set:
        if parse_set(item)[0].partition(".")[0] not in names:
            log.warning("--set %s names a study that is not run (%s): ignored", item, ", ".join(names))
    for option, value in given.items():
        if value is not None and not any(study_options(s, {option: value}) for s in names):
            log.warning("--%s applies to none of the studies run (%s): ignored", option, ", ".join(names))
    run = (names, args.device, args.dtype, args.device_map, given, tuple(args.set))
    return {model: RunRequest(model, out, *run) for model, out in folders.items()}


def _reproduce_args(args: argparse.Namespace, argv: Sequence[str]) -> dict[str, Any]:
    """The rest of :func:`~layerclaims.pipeline.reproduce`'s arguments (plain data: a matrix job's payload)."""
    command = "layerclaims " + shlex.join(argv)
    return {"progress": not args.quiet, "command": command, "wait_s": args.wait, "claims": _claims_from_args(args)}


def _claims_from_args(args: argparse.Namespace) -> tuple[Claim, ...] | None:
    """The package's claims plus ``--claims`` files (only those with ``--only-claims``); None when neither given."""
    if not args.claims and not args.only_claims:
        return None
    return combine_claims(args.claims, only=args.only_claims)


def cmd_reproduce(args: argparse.Namespace, argv: Sequence[str]) -> int:
    out = Path(args.out) if args.out else default_out(args.model)
    request = _requests(args, {args.model: out})[args.model]
    args.out = str(out)  # what the messages after the run name (an output error, an interrupt)
    on_study = None if args.quiet else (lambda o, vs: _print_study(o, vs, sys.stdout))
    rep = reproduce(request, argv=argv, on_study=on_study, **_reproduce_args(args, argv))
    if not args.quiet:
        _print_run(rep, sys.stdout)
    failed = [v.claim for v in rep.verdicts if not v.passes]
    if args.strict and failed:
        names = ", ".join(failed)
        print(f"--strict: {len(failed)} claim(s) did not hold or could not be evaluated: {names}", file=sys.stderr)
        return 1
    return 0


def cmd_matrix(args: argparse.Namespace, argv: Sequence[str]) -> int:
    out = Path(args.out) if args.out else Path("out") / "matrix"
    rows_by_model: dict[str, list[dict[str, Any]]] = {}
    notes: dict[str, str] = {}
    folders: dict[str, Path] = {}
    load_failures = 0
    if args.from_dirs:
        labels = args.models
        if labels is not None and len(labels) != len(args.from_dirs):
            raise UsageError(
                f"--models names {len(labels)} columns but --from gives {len(args.from_dirs)} folders: "
                "give one name per folder, or leave --models out to use the model names in the folders"
            )
        for i, d in enumerate(args.from_dirs):
            rows = read_verdicts(d)
            label = labels[i] if labels else (str(rows[0].get("model")) if rows else Path(d).name)
            if label in rows_by_model:
                label = f"{label} ({Path(d).name})"
            if label in rows_by_model:
                label = f"{label} ({d})"
            rows_by_model[label] = rows
            folders[label] = Path(d)
    else:
        if not args.models:
            raise UsageError("matrix needs --models A,B,... (fresh runs) or --from DIR1,DIR2,... (saved runs)")
        requests = _requests(args, {m: out / safe_dirname(m) for m in args.models})
        kwargs = _reproduce_args(args, argv)
        if args.executor == "inline" or len(args.models) == 1:
            args.executor = "inline"  # in this process: its verdict lines print as each study finishes
        kwargs["print_verdicts"] = not args.quiet and args.executor == "inline"
        jobs = [Job(m, job_reproduce, {"request": request, **kwargs}) for m, request in requests.items()]
        for res in run_jobs(jobs, executor=args.executor, workers=args.workers, address=args.address):
            rows_by_model[res.id] = res.rows  # none for a model that could not be run
            if res.error is not None:
                # One model that cannot be run does not lose the others; the exit code still says so.
                load_failures += 1
                # "Type: message\nFix: fix" (run_job's text of a LayerclaimsError, kept through the worker)
                message, _, fix = (res.error.partition(": ")[2] or res.error).partition("\nFix: ")
                notes[res.id] = f"not run: {message}"
                _print_error(f"{res.id}: not run: {message}", fix or None)
                continue
            folders[res.id] = Path(res.stats["out"])
            for study, reason in res.stats.get("not_run", []):
                notes.setdefault(res.id, f"study {study} not run: {reason}")
            if not args.quiet:
                print(f"{res.id}: {res.stats['report']}", file=sys.stderr)
    matrix = build_matrix(rows_by_model, notes)
    out.mkdir(parents=True, exist_ok=True)
    md = matrix_markdown(matrix)
    atomic_write(out / "matrix.md", lambda tmp: Path(tmp).write_text("# layerclaims: claims × models\n\n" + md))
    links = {
        m: os.path.relpath(d / "report.html", out).replace(os.sep, "/")
        for m, d in folders.items()
        if (d / "report.html").is_file()
    }
    html = render_matrix_html(matrix, links=links)
    atomic_write(out / "matrix.html", lambda tmp: Path(tmp).write_text(html))
    if not args.quiet:
        print(md)
        print(f"matrix: {out / 'matrix.md'} and {out / 'matrix.html'}")
    if load_failures:
        return 2
    failed = [cell for cell in matrix.cells.values() if cell.holds is not True]
    if args.strict and failed:
        print(f"--strict: {len(failed)} claim(s) did not hold or could not be evaluated", file=sys.stderr)
        return 1
    return 0


def cmd_diff(args: argparse.Namespace, argv: Sequence[str]) -> int:
    old, new = read_verdicts(args.old), read_verdicts(args.new)
    differences = run_differences(args.old, args.new)
    if differences:
        print("Note: the two runs differ in more than the verdicts; a change below may come from these:")
        print("".join(f"- {line}\n" for line in differences))
    diff = diff_verdicts(old, new)
    print(diff_markdown(diff, str(args.old), str(args.new), all_rows=not args.changed_only), end="")
    return 0


def _claim_layer(c: Claim) -> str:
    if c.layer is None:
        return "all"
    kind = f" ({c.kind})" if c.kind else ""
    return f"{c.layer_unit.replace('_', ' ')} {c.layer}{kind}"


def claims_rows(claims: Sequence[Claim] | None = None) -> list[dict[str, str]]:
    return [
        {
            "id": c.id,
            "source": c.source,
            "model": c.model,
            "statistic": " and ".join(k.statistic for k in c.conditions),
            "comparison": " and ".join(k.comparison for k in c.conditions),
            "threshold": " and ".join(f"{k.threshold:g}" for k in c.conditions),
            "layer": _claim_layer(c),
            "claim": c.text,
        }
        for c in (CLAIMS if claims is None else claims)
    ]


def cmd_claims(args: argparse.Namespace, argv: Sequence[str]) -> int:
    rows = claims_rows(_claims_from_args(args))
    if args.format == "json":
        print(json.dumps(rows, indent=1))
        return 0
    cols = ["id", "model", "layer", "statistic", "comparison", "threshold", "source"]
    if args.format == "markdown":
        cols.insert(1, "claim")
        print("\n".join(md_table(cols, ([r[c] for c in cols] for r in rows))))
        return 0
    widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in cols[:-1]}
    print("  ".join(c.ljust(widths[c]) for c in cols[:-1]) + "  source")
    for r in rows:
        print("  ".join(r[c].ljust(widths[c]) for c in cols[:-1]) + "  " + r["source"])
    return 0


def _add_run_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("run options")
    g.add_argument(
        "--study", default="all", metavar="NAME", help="which studies run: all (default) or one study's name"
    )
    g.add_argument("--device", choices=DEVICES, default="cpu", help="where the model runs (default cpu)")
    g.add_argument("--dtype", choices=DTYPES, default="float32", help="model weights dtype (default float32)")
    g.add_argument(
        "--device-map",
        metavar="MAP",
        help="passed to transformers/accelerate (e.g. auto) to shard a model larger than one GPU",
    )
    g.add_argument("--corpus", metavar="NAME|PATH", help="corpus of the punctuation study")
    g.add_argument("--selection", choices=("first", "random"), help="which marks: first N or random")
    g.add_argument("--seed", type=int, help="seed of the random selection and of the bootstraps")
    g.add_argument("--n", type=_positive_int, help="marks per kind (punctuation study)")
    g.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="STUDY.SETTING=VALUE",
        help="any other study setting, e.g. --set STUDY.n_boot=200 (repeatable; VALUE read as JSON)",
    )
    g.add_argument("--strict", action="store_true", help="exit 1 when a claim does not hold or is not evaluated")
    g.add_argument(
        "--wait",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="when another run is writing the same --out, wait this long for it (default 0: refuse at once)",
    )


def _add_common(p: argparse.ArgumentParser, func: Any, *, claims: bool = True) -> None:
    """The options every command ends with (``--claims`` where it reads claims, ``-q`` / ``-v``) and its function."""
    if claims:
        g = p.add_argument_group("claims")
        g.add_argument(
            "--claims",
            action="append",
            default=[],
            metavar="PATH",
            help="a TOML claims file or folder (README: Claims as files) added to the package's claims (repeatable)",
        )
        g.add_argument("--only-claims", action="store_true", help="use only the --claims claims, not the package's")
    v = p.add_mutually_exclusive_group()
    v.add_argument("-q", "--quiet", action="store_true", help="no progress and no verdict lines (errors only)")
    v.add_argument("-v", "--verbose", action="store_true", help="also log each stage's time")
    p.set_defaults(func=func)


def _add_model(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="registry name (tiny-gpt2, smollm2-135m, ...), HF id or folder")


def _add_executor(p: argparse.ArgumentParser, help: str | None = None) -> None:
    p.add_argument("--executor", choices=EXECUTORS, default="local", help=help)
    p.add_argument("--address", help="Ray cluster address (with --executor ray)")
    p.add_argument("--workers", type=int, help="worker processes (default: the cores)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="layerclaims",
        description="Published claims about language-model layers as executable, reproducible tests.",
        epilog="Exit codes: 0 ran (claims may fail), 1 --strict and a claim did not hold or was not evaluated, "
        "2 bad usage or input (the output folder is left as it was), 130 interrupted.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("claims", help="list every claim (id, source, model, statistic, threshold, layer)")
    p.add_argument("--format", choices=("text", "markdown", "json"), default="text")
    _add_common(p, cmd_claims)

    p = sub.add_parser("reproduce", help="run the studies on a model, evaluate every claim, write the report")
    _add_model(p)
    p.add_argument("--out", metavar="DIR", help="output folder (default out/<model>)")
    _add_run_options(p)
    _add_common(p, cmd_reproduce)

    p = sub.add_parser("matrix", help="claims x models table, from fresh runs or saved run folders")
    p.add_argument("--models", type=_csv_list, metavar="A,B,C", help="models (comma-separated)")
    p.add_argument(
        "--from",
        dest="from_dirs",
        type=_csv_list,
        metavar="DIR1,DIR2",
        help="saved reproduce folders (their verdicts.json) instead of fresh runs",
    )
    p.add_argument("--out", metavar="DIR", help="where matrix.md/.html (and fresh runs) go")
    _add_executor(p, "where the fresh runs go: local processes (default), Ray, or one after another in this process")
    _add_run_options(p)
    _add_common(p, cmd_matrix)

    p = sub.add_parser("diff", help="which verdicts flipped and which values moved between two run folders")
    p.add_argument("old", type=Path, metavar="DIR_OLD")
    p.add_argument("new", type=Path, metavar="DIR_NEW")
    p.add_argument("--changed-only", action="store_true", help="list only the claims that changed")
    _add_common(p, cmd_diff, claims=False)

    help = "every claim over a grid of analysis choices (a specification curve); exit 1 when a job failed"
    p = sub.add_parser("robustness", help=help)
    _add_model(p)
    p.add_argument(
        "--out", metavar="DIR", required=True, help="output folder (an earlier robustness folder is replaced)"
    )
    p.add_argument("--n-specs", type=int, default=0, metavar="K", help="random combinations beyond the departures")
    p.add_argument("--draw-seed", type=int, default=0, help="seed of the random combinations (default 0)")
    p.add_argument(
        "--study", default="all", metavar="NAME", help="whose choices vary: all (default) or one study's name"
    )
    p.add_argument("--only", action="append", metavar="NAME[=V1,V2]", help="vary only these choices (repeatable)")
    _add_executor(p)
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32")
    _add_common(p, cmd_robustness)
    return parser


def cmd_robustness(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from layerclaims import robustness

    names = robustness.studies() if args.study == "all" else _study_names(args.study)
    given = ("n_specs", "draw_seed", "only", "executor", "address", "workers", "device", "dtype")
    outcome = robustness.run(
        args.model,
        args.out,
        study_names=names,
        **{k: getattr(args, k) for k in given},
        progress=None if args.quiet else (lambda msg: print(msg, file=sys.stderr)),
        claims=_claims_from_args(args),
        command=Command(tuple(argv)),
    )
    for line in outcome.lines:
        print(line)
    for f in outcome.failed:
        print(f"job {f['job']} failed: {f['error']}", file=sys.stderr)
    print(f"wrote {outcome.out} in {outcome.seconds:.1f} s", file=sys.stderr if args.quiet else sys.stdout)
    return 1 if outcome.failed else 0


def _print_error(message: str, fix: str | None, prefix: str = "error: ") -> None:
    print(f"{prefix}{message}", file=sys.stderr)
    if fix:
        print(f"fix: {fix}", file=sys.stderr)


def _one_line_warning(
    message: Warning | str, category: type[Warning], filename: str, lineno: int, line: str | None = None
) -> str:
    """Warnings as one ``warning: ...`` line (no file name, no source line)."""
    return "warning: " + " ".join(str(message).split()) + "\n"


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that a run cleans up its stage the same way."""


def _on_sigterm(signum: int, frame: Any) -> None:
    raise _Terminated


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time of the record (not the one at set-up)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def _setup_logging(args: argparse.Namespace) -> None:
    level = logging.ERROR if args.quiet else (logging.INFO if args.verbose else logging.WARNING)
    logger = logging.getLogger("layerclaims")
    logger.setLevel(level)
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)


EXIT_IOERR = 74  # stdout could not be written (sysexits.h EX_IOERR); the command itself finished
EXIT_SIGPIPE = 128 + 13  # stdout closed by its reader (``| head``), as a shell reports a command SIGPIPE stopped


class _GuardedStream:
    """stdout or stderr for the length of a command: a write or flush that fails with an OSError is remembered in
    ``error`` instead of raised and later writes are dropped. A stream that is None (closed before the start,
    ``>&-``) drops every write, as ``print`` does then."""

    def __init__(self, stream: TextIO | None) -> None:
        self.stream = stream
        self.error: OSError | None = None

    def _guarded(self, op: Callable[[TextIO], Any]) -> Any:
        if self.error is None and self.stream is not None:
            try:
                return op(self.stream)
            except OSError as exc:  # BrokenPipeError (EPIPE), ENOSPC, EIO, ...
                self.error = exc
        return None

    def write(self, text: str) -> int:
        written = self._guarded(lambda s: s.write(text))
        return len(text) if written is None else int(written)

    def flush(self) -> None:
        self._guarded(lambda s: s.flush())

    def isatty(self) -> bool:
        return self.stream is not None and self.stream.isatty()

    def __getattr__(self, name: str) -> Any:  # isatty, fileno, encoding, ...: the wrapped stream's
        return getattr(self.stream, name)


def _discard_pending(stream: TextIO | None) -> None:
    """Point the file descriptor of a stream that failed at /dev/null, so that Python's flush at exit (of what is
    still buffered) neither fails again nor prints "Exception ignored ... BrokenPipeError"."""
    try:  # None (closed before the start) raises AttributeError too
        fd = stream.fileno()  # type: ignore[union-attr]
        null = os.open(os.devnull, os.O_WRONLY)
    except (OSError, ValueError, AttributeError):  # no file descriptor (a test's capture): nothing buffered at exit
        return
    try:
        os.dup2(null, fd)
    finally:
        os.close(null)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``layerclaims`` and ``python -m layerclaims``: the exit code (see the module docstring)."""
    real_out, real_err = sys.stdout, sys.stderr
    out, err = _GuardedStream(real_out), _GuardedStream(real_err)
    sys.stdout, sys.stderr = cast(TextIO, out), cast(TextIO, err)
    args: argparse.Namespace | None = None
    program = argv is None  # called as the program: the process ends with this call
    if program:  # fewer collections (mypy's setting): importing torch and transformers made ~1 s of them
        gc.set_threshold(200_000, 30, 30)
        # OpenMP threads (torch's, MKL's, numba's) sleep while they wait instead of spinning: the worker processes
        # share the cores, and spinning took ~6 s of CPU from them in a 2-core run (read before torch loads)
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(argv)
        code = _run_command(args, argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        code = int(exc.code or 0)
    finally:
        out.flush()
        err.flush()
        sys.stdout, sys.stderr = real_out, real_err
    for guard in (out, err):
        if guard.error is not None:
            _discard_pending(guard.stream)
    if program:  # the interpreter's last collection would visit every object on its way out (~1 s)
        gc.freeze()
    if out.error is None or code not in (0, 1):
        return code
    if isinstance(out.error, BrokenPipeError):
        return EXIT_SIGPIPE
    what = out.error.strerror or str(out.error)
    command = f"layerclaims {args.command}" if args is not None else "layerclaims"
    folder = getattr(args, "out", None)
    done = f"; the command finished and its results are in {folder}" if folder else "; the command finished"
    if err.error is None:
        with contextlib.suppress(OSError):
            print(f"{command}: error: could not write to standard output ({what}){done}", file=real_err, flush=True)
    return EXIT_IOERR


def _run_command(args: argparse.Namespace, argv: list[str]) -> int:
    _setup_logging(args)
    previous_format = warnings.formatwarning
    warnings.formatwarning = _one_line_warning
    try:  # SIGTERM -> _Terminated, in the main thread (elsewhere signals cannot be handled)
        previous_term = signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:
        previous_term = None
    try:
        return int(args.func(args, argv))
    except LayerclaimsError as exc:
        _print_error(exc.message, exc.fix, prefix=f"layerclaims {args.command}: error: ")
        return 2
    except _Terminated as exc:
        print(f"terminated: {_unchanged(args, exc)}", file=sys.stderr)
        return 128 + signal.SIGTERM
    except KeyboardInterrupt as exc:
        print(f"interrupted: {_unchanged(args, exc)}", file=sys.stderr)
        return 130
    finally:
        warnings.formatwarning = previous_format
        if previous_term is not None:
            signal.signal(signal.SIGTERM, previous_term)


def _unchanged(args: argparse.Namespace, exc: BaseException) -> str:
    out = getattr(args, "out", None) or "the output folder"
    if getattr(exc, "layerclaims_committed", False):
        return f"the run had just been written: {out} holds it, complete"
    return f"{out} was left as it was"
