"""A results folder that is always one whole run: a lock, a staging folder, and one swap at the end.

A run takes ``--out``'s lock (``.OUT.lock`` beside it: an ``flock``, which the kernel drops when its holder dies, so a
stale lock is simply taken over; the file holds the writer's pid for the message), writes into ``OUT.staging-PID``
and, once it succeeded, swaps: ``OUT`` -> ``OUT.old-PID``, the stage -> ``OUT``, the old folder deleted.
SIGINT/SIGTERM are deferred across the two renames, and a run killed outright between them is repaired by the next
(``OUT.old-PID`` without ``OUT`` is renamed back).

Nothing of the user's is replaced: every run writes :data:`FILES_MANIFEST` (each file it wrote, with its sha256), and a
folder is replaced only when everything in it is such a file, unchanged (:func:`foreign_entries`). An ``--out``
inside or above a folder this tool wrote is refused too, except ``RUN/robustness``.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

from layerclaims.data import file_sha256
from layerclaims.errors import RunLockedError, UsageError

try:  # POSIX; on Windows the lock degrades to an exclusive create of the lock file (below)
    import fcntl
except ImportError:  # pragma: no cover - not on Linux/macOS
    fcntl = None  # type: ignore[assignment]  # no module on Windows: _try_lock checks for None

FILES_MANIFEST = ".layerclaims-manifest.json"
"""``{"written_by": "layerclaims", "format": 1, "kind": "run" | "robustness", "files": {relative path: sha256},
"folders": [relative path]}``."""
MANIFEST_FORMAT = 1
RUN = "run"
ROBUSTNESS = "robustness"
KINDS = (RUN, ROBUSTNESS)
ROBUSTNESS_DIR = "robustness"  # RUN/robustness: its own manifest (kind robustness), kept by later runs into RUN
STAGE_MARK = ".layerclaims-stage"  # in a stage until its manifest is written: what the repair may delete
SHOWN = 6
POLL_S = 0.2


def _walk(folder: Path, kind: str) -> tuple[list[str], list[str]]:
    """Every regular file and folder under ``folder`` (relative, '/'-separated) but the manifest, the stage mark
    and (kind run) the robustness sub-folder."""
    found: list[str] = []
    folders: list[str] = []
    for root, dirs, files in os.walk(folder):
        rel = Path(root).relative_to(folder)
        if kind == RUN and rel == Path(".") and ROBUSTNESS_DIR in dirs:
            dirs.remove(ROBUSTNESS_DIR)
        folders += [(rel / d).as_posix() for d in dirs if not (Path(root) / d).is_symlink()]
        for name in files:
            path, r = Path(root) / name, (rel / name).as_posix()
            if r not in (FILES_MANIFEST, STAGE_MARK) and not path.is_symlink() and path.is_file():
                found.append(r)
    return sorted(found), sorted(folders)


def write_manifest(folder: Path, kind: str = RUN) -> None:
    """Write ``folder``'s manifest (:func:`_walk`'s files with their sha256, and folders)."""
    if kind not in KINDS:
        raise ValueError(f"kind {kind!r}: use one of {KINDS}")
    names, folders = _walk(folder, kind)
    files = {r: file_sha256(folder / r) for r in names}
    body = {"written_by": "layerclaims", "format": MANIFEST_FORMAT, "kind": kind, "files": files, "folders": folders}
    (folder / FILES_MANIFEST).write_text(json.dumps(body, indent=1) + "\n", encoding="utf-8")


def read_json(path: Path) -> Any:
    """The JSON in ``path``, or None when it cannot be read."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def read_files_manifest(folder: Path) -> dict[str, Any] | None:
    """The manifest of a folder this tool wrote; None when there is none or it is not one."""
    path = folder / FILES_MANIFEST
    body = None if path.is_symlink() else read_json(path)
    ok = (
        isinstance(body, dict)
        and body.get("written_by") == "layerclaims"
        and body.get("format") == MANIFEST_FORMAT
        and body.get("kind") in KINDS
        and isinstance(body.get("files"), dict)
        and all(isinstance(k, str) and isinstance(v, str) for k, v in body["files"].items())
    )
    return body if ok else None


def manifest_kind(folder: Path) -> str | None:
    """``"run"`` or ``"robustness"`` for a folder with this tool's manifest, else None."""
    body = read_files_manifest(folder)
    return str(body["kind"]) if body is not None else None


def foreign_entries(folder: Path, kind: str = RUN) -> list[str]:
    """What in ``folder`` this tool did not write, as relative paths: files the manifest of ``kind`` does not list,
    listed files whose bytes changed (``NAME (changed since the run wrote it)``), folders it did not make
    (``NAME/``), links. Empty: the folder is exactly an earlier run of ``kind`` (listed files since deleted do not
    count). Kind run: a ``robustness`` sub-folder must itself be a robustness folder this tool wrote."""
    body = read_files_manifest(folder)
    ours: dict[str, Any] = body if body is not None and body["kind"] == kind else {}
    listed: dict[str, str] = dict(ours.get("files", {}))
    parents = {"/".join(r.split("/")[:i]) for r in listed for i in range(1, r.count("/") + 1)}
    if isinstance(ours.get("folders"), list):  # folders the run made, even empty
        parents |= {d for d in ours["folders"] if isinstance(d, str)}
    foreign: list[str] = []
    for root, dirs, files in os.walk(folder):
        rel = Path(root).relative_to(folder)
        top = rel == Path(".")
        for d in sorted(dirs):
            r = (rel / d).as_posix()
            path = Path(root) / d
            if top and kind == RUN and d == ROBUSTNESS_DIR and not path.is_symlink():
                dirs.remove(d)
                foreign += [f"{d}/{e}" for e in foreign_entries(path, ROBUSTNESS)]
            elif path.is_symlink() or r not in parents:
                dirs.remove(d)  # a folder the run did not write: named once, not walked
                foreign.append(r if path.is_symlink() else f"{r}/")
        dirs.sort()
        for name in sorted(files):
            r = (rel / name).as_posix()
            path = Path(root) / name
            if top and name == FILES_MANIFEST and ours:
                continue
            digest = listed.get(r)
            if digest is None or path.is_symlink() or not path.is_file():
                foreign.append(r)
            elif file_sha256(path) != digest:
                foreign.append(f"{r} (changed since the run wrote it)")
    return foreign


def _tool_folders_below(folder: Path, limit: int = 20000) -> list[Path]:
    """Folders under ``folder`` (not itself) that hold this tool's manifest; looks at ``limit`` entries at most."""
    found: list[Path] = []
    seen = 0
    for root, dirs, files in os.walk(folder):
        seen += len(dirs) + len(files)
        if Path(root) != folder and FILES_MANIFEST in files:
            found.append(Path(root))
            dirs.clear()
        if seen > limit or len(found) >= SHOWN:
            break
    return found


def _listing(entries: list[str]) -> str:
    more = f" and {len(entries) - SHOWN} more" if len(entries) > SHOWN else ""
    return ", ".join(entries[:SHOWN]) + more


def check_out_folder(out: Path, *, fix_command: str | None = None, kind: str = RUN) -> None:
    """Refuse (UsageError) an ``--out`` that a run of ``kind`` must not replace: a file; a folder inside (but
    ``RUN/robustness``) or above one this tool wrote; a folder that is not exactly an earlier run of ``kind``; a
    place where no stage can be created."""
    again = f": `{fix_command}`" if fix_command else ""
    new_folder = f"give a new or empty folder{again}"
    if out.is_symlink() and not out.exists():
        raise UsageError(f"--out {out} is a link to nothing ({os.readlink(out)})", fix=new_folder)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file, not a folder", fix=f"give a folder for the results{again}")
    target = out.resolve()
    for above in target.parents:
        above_kind = manifest_kind(above)
        if above_kind is None:
            continue
        if kind == ROBUSTNESS and above_kind == RUN and above == target.parent and target.name == ROBUSTNESS_DIR:
            break  # the one nested layout: RUN/robustness
        what = "run folder" if above_kind == RUN else "robustness folder"
        raise UsageError(
            f"--out {out} is inside {above}, a {what} layerclaims wrote: the next run into {above} replaces it "
            f"whole and would delete {out}"
            + (f" (a robustness analysis of that run goes into {above / ROBUSTNESS_DIR})" if above_kind == RUN else ""),
            fix=f"give a folder outside it{again}",
        )
    if out.is_dir() and any(out.iterdir()):
        foreign = foreign_entries(target, kind)
        if foreign:
            raise UsageError(_foreign_message(out, target, kind, foreign), fix=new_folder)
    parent = _existing_parent(out)
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(
            f"--out {out}: {parent} is not writable (a run writes a staging folder beside --out, then swaps it in)",
            fix=f"give a folder in a writable place{again}",
        )


def _foreign_message(out: Path, target: Path, kind: str, foreign: list[str]) -> str:
    """Why ``out`` is not replaced: another kind of folder, runs below it, no manifest, or what is foreign."""
    whole = "a run replaces the whole folder, so it will not write there"
    found_kind = manifest_kind(target)
    if found_kind is not None and found_kind != kind:
        return (
            f"--out {out} is a {found_kind} folder layerclaims wrote, not a {kind} folder: {whole} "
            f"(it holds {_listing(foreign)})"
        )
    below = [p for p in _tool_folders_below(target) if not (kind == RUN and p == target / ROBUSTNESS_DIR)]
    if below:
        names = ", ".join(str(out / p.relative_to(target)) for p in below)
        return f"--out {out} holds folder(s) layerclaims wrote ({names}): {whole} and would delete them"
    if found_kind is None:
        older = (target / "run.json").is_file() or (target / "robustness.json").is_file()
        why = (
            f"it has no {FILES_MANIFEST} (an older layerclaims wrote none: move or delete that folder yourself "
            "if it is one)"
            if older
            else f"it has no {FILES_MANIFEST}: layerclaims did not write it"
        )
        return f"--out {out} is not a folder layerclaims wrote ({why}); it holds {_listing(foreign)}: {whole}"
    return f"--out {out} is an earlier run with files it did not write: {_listing(foreign)}: {whole}"


def _existing_parent(path: Path) -> Path:
    p = path.absolute().parent
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists (signal 0: no signal is sent)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by someone else
        return True
    return True


def read_holder(lock: Path) -> int | None:
    """The pid written in a lock file, or None when there is none (empty, unreadable, not a number)."""
    try:
        return int(lock.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


class RunFolder:
    """``with RunFolder(out) as folder:`` lock ``out``, write into ``folder.stage``, ``folder.commit()`` once the run
    succeeded; leaving without a commit deletes the stage. ``wait_s``: how long to wait for a live holder of the
    lock (0: refuse at once)."""

    def __init__(self, out: str | os.PathLike[str], *, wait_s: float = 0.0, kind: str = RUN) -> None:
        self.out = Path(out).resolve()  # a symlinked --out: the folder it points to is what is swapped
        self.kind = kind
        self.lock = self.out.parent / f".{self.out.name}.lock"  # beside it, not inside: the folder is swapped
        self.stage = self.out.parent / f"{self.out.name}.staging-{os.getpid()}"
        self.wait_s = float(wait_s)
        self.committed = False
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock (waiting up to ``wait_s`` for a live holder), then repair what a killed run left."""
        self.out.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + self.wait_s
        while not self._try_lock():
            holder = read_holder(self.lock)
            if time.monotonic() >= deadline:
                who = f"process {holder}" if holder is not None else "another process"
                raise RunLockedError(
                    f"{self.out} is being written by {who} (lock {self.lock})",
                    fix="wait until that run ends, or let this one wait for it with --wait SECONDS, or give "
                    "another --out",
                )
            time.sleep(POLL_S)
        assert self._fd is not None  # _try_lock returns True only with the lock file open
        os.ftruncate(self._fd, 0)
        os.write(self._fd, f"{os.getpid()}\n".encode())
        self.recover()

    def _try_lock(self) -> bool:
        if fcntl is None:  # pragma: no cover - Windows: exclusive create instead of flock
            return self._try_lock_without_flock()
        fd = os.open(self.lock, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                return False
            raise
        # The holder before us may have deleted the file while we waited: then our lock is on a file nobody else
        # opens. Only a lock on the file that is at the path now counts.
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(self.lock))
        except FileNotFoundError:
            same = False
        if not same:
            os.close(fd)
            return self._try_lock()
        self._fd = fd
        return True

    def _try_lock_without_flock(self) -> bool:  # pragma: no cover - Windows
        holder = read_holder(self.lock)
        if holder is not None and not pid_alive(holder):
            with contextlib.suppress(FileNotFoundError):
                self.lock.unlink()
        try:
            self._fd = os.open(self.lock, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            return False
        return True

    def release(self) -> None:
        """Delete the lock file and drop the lock (in that order, see :meth:`_try_lock`)."""
        if self._fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            self.lock.unlink()
        os.close(self._fd)
        self._fd = None

    def recover(self) -> None:
        """With the lock held no other run writes: a stage beside ``out`` is a killed run's (deleted), and an
        ``out.old-PID`` without ``out`` is the earlier run a killed swap moved aside (renamed back)."""
        parent = self.out.parent
        for old in sorted(parent.glob(f"{self.out.name}.old-*")):
            if not old.is_dir() or old.is_symlink() or not _pid_suffix(old) or manifest_kind(old) != self.kind:
                continue  # not a folder of this kind this tool moved aside: not ours to touch
            if not self.out.exists():
                os.rename(old, self.out)
            elif not foreign_entries(old, self.kind):
                shutil.rmtree(old, ignore_errors=True)
        for stale in parent.glob(f"{self.out.name}.staging-*"):
            if stale.is_dir() and not stale.is_symlink() and _pid_suffix(stale) and (stale / STAGE_MARK).is_file():
                shutil.rmtree(stale, ignore_errors=True)

    def __enter__(self) -> RunFolder:
        try:
            self.acquire()
        except OSError as exc:
            raise UsageError(
                f"cannot write beside --out {self.out} ({exc.filename or self.lock}: {exc.strerror or exc})",
                fix="give an --out in a writable folder",
            ) from None
        try:
            self.stage.mkdir()
            (self.stage / STAGE_MARK).write_text(f"{os.getpid()}\n")
        except OSError as exc:
            self.release()
            raise UsageError(
                f"cannot create the staging folder {self.stage} ({exc.strerror or exc}); {self.out} was left as it was",
                fix="give an --out in a writable folder with free space",
            ) from None
        except BaseException:
            self.release()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is not None and self.committed:  # e.g. Ctrl-C delivered just after the swap: say what is there
            exc.layerclaims_committed = True  # type: ignore[attr-defined]  # a tag the CLI reads with getattr
        try:
            if self.stage.exists():
                shutil.rmtree(self.stage, ignore_errors=True)
        finally:
            self.release()

    def commit(self) -> None:
        """Write the stage's manifest and swap it in as ``out``; a file put into ``out`` since
        :func:`check_out_folder` stops the swap (checked again under the lock)."""
        if self.out.exists():
            foreign = foreign_entries(self.out, self.kind) if self.out.is_dir() else [self.out.name]
            if foreign:
                raise UsageError(
                    f"{self.out} changed while the run was writing: it now holds {_listing(foreign)}, which this "
                    "tool did not write; it was left as it was and the run was not saved",
                    fix="move those files out of it, or give a new or empty --out, then run again",
                )
        (self.stage / STAGE_MARK).unlink(missing_ok=True)
        write_manifest(self.stage, self.kind)
        old = self.out.parent / f"{self.out.name}.old-{os.getpid()}"
        with _signals_held():
            if self.out.exists():
                os.rename(self.out, old)
                try:
                    os.rename(self.stage, self.out)
                except BaseException:
                    os.rename(old, self.out)
                    raise
            else:
                os.rename(self.stage, self.out)
            self.committed = True
            shutil.rmtree(old, ignore_errors=True)


def _pid_suffix(path: Path) -> bool:
    """Whether a name ends in ``-PID`` (digits), as the stage and the moved-aside folder this tool names do."""
    return path.name.rpartition("-")[2].isdigit()


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """SIGINT and SIGTERM deferred until the block ends, then delivered to the handlers that were in place.

    Python runs signal handlers in the main thread only, so swapping them defers a signal whatever thread the OS
    delivers it to (``pthread_sigmask`` would block it for the calling thread only; torch and BLAS start others).
    Outside the main thread handlers cannot be set: the block runs unprotected."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []

    def defer(signum: int, frame: object) -> None:
        pending.append(signum)

    held = [signal.SIGINT, signal.SIGTERM]
    previous = {s: signal.getsignal(s) for s in held}
    for s in held:
        if previous[s] is not None:  # None: a handler installed outside Python, left alone
            signal.signal(s, defer)
    try:
        yield
    finally:
        for s in held:
            if previous[s] is not None:
                signal.signal(s, previous[s])
        for signum in pending:
            signal.raise_signal(signum)
