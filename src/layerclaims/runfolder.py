"""A results folder that is always one whole run: a lock, a staging folder, and one swap at the end.

A run never writes into ``--out`` itself. It takes the folder's lock (``.OUT.lock`` beside it, holding the
writer's pid), writes everything into ``OUT.staging-PID`` beside it, and only when the run has succeeded swaps the
two: ``OUT`` is renamed to ``OUT.old-PID``, the stage to ``OUT``, then the old folder is deleted. A failed or
interrupted run (an error, Ctrl-C, SIGTERM) deletes its stage and leaves ``OUT`` exactly as it was. The swap runs
with SIGINT/SIGTERM deferred, so an interrupt lands before it or after it, never between the two renames; a run
killed outright (SIGKILL, power loss) between them is repaired by the next run on the folder, which finds
``OUT.old-PID`` without ``OUT`` and renames it back.

The lock is an ``flock`` on the lock file, so the kernel drops it when its holder dies: a lock file left by a dead
process (a stale lock) is simply taken over. A live holder makes the next run wait ``wait_s`` seconds, then refuse
with :class:`~layerclaims.errors.RunLockedError` naming the holder's pid. (The same design as pip's and conda's
package-cache locks: an OS lock for correctness, the pid in the file for the message.)
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

from layerclaims.errors import RunLockedError, UsageError

try:  # POSIX; on Windows the lock degrades to an exclusive create of the lock file (below)
    import fcntl
except ImportError:  # pragma: no cover - not on Linux/macOS
    fcntl = None  # type: ignore[assignment]  # no module on Windows: _try_lock checks for None

# What a run folder holds (any one of these marks a folder as an earlier run, safe to replace).
RUN_MARKERS = ("run.json", "verdicts.json", "report.md")
ROBUSTNESS_DIR = "robustness"
"""A run folder's sub-folder for ``layerclaims robustness --out RUN/robustness``: kept by every later run of the same
model into RUN, and shown in its report."""
POLL_S = 0.2


def lock_path(out: Path) -> Path:
    """The lock file of a results folder: ``.NAME.lock`` beside it (not inside: the folder itself is swapped)."""
    return out.parent / f".{out.name}.lock"


def stage_path(out: Path, pid: int | None = None) -> Path:
    """The staging folder of the run in process ``pid``: ``NAME.staging-PID`` beside the folder."""
    return out.parent / f"{out.name}.staging-{os.getpid() if pid is None else pid}"


def is_run_folder(path: Path) -> bool:
    """Whether ``path`` is a folder an earlier run wrote (it holds run.json, verdicts.json or report.md)."""
    return path.is_dir() and any((path / m).exists() for m in RUN_MARKERS)


def check_out_folder(out: Path, *, fix_command: str | None = None) -> None:
    """Refuse (UsageError with the fix) an ``--out`` that a run must not replace: a file, a folder of other files
    (a run replaces the whole folder), or a place where the staging folder cannot be created (read-only)."""
    again = f": `{fix_command}`" if fix_command else ""
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file, not a folder", fix=f"give a folder for the results{again}")
    if out.is_dir() and any(p.name != ROBUSTNESS_DIR for p in out.iterdir()) and not is_run_folder(out):
        raise UsageError(
            f"--out {out} holds other files and no earlier run (no {', '.join(RUN_MARKERS)}): a run replaces "
            "the whole folder, so it will not write there",
            fix=f"give a new or empty folder, or the folder of an earlier run{again}",
        )
    parent = _existing_parent(out)
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(
            f"--out {out}: {parent} is not writable (a run writes a staging folder beside --out, then swaps it in)",
            fix=f"give a folder in a writable place{again}",
        )


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
    """``with RunFolder(out) as folder:`` lock ``out``, write into ``folder.stage``, call ``folder.commit()`` when
    the run succeeded. Leaving the block without a commit (an exception, an interrupt) deletes the stage and leaves
    ``out`` as it was; the lock is released either way. ``wait_s``: how long to wait for a live holder of the lock
    (0: refuse at once)."""

    def __init__(self, out: str | os.PathLike[str], *, wait_s: float = 0.0) -> None:
        self.out = Path(out).resolve()  # a symlinked --out: the folder it points to is what is swapped
        self.lock = lock_path(self.out)
        self.stage = stage_path(self.out)
        self.wait_s = float(wait_s)
        self.committed = False
        self._fd: int | None = None

    # ----------------------------------------------------------------------------------------------- lock

    def acquire(self) -> None:
        """Take the lock (waiting up to ``wait_s`` for a live holder), then repair what a killed run left."""
        self.out.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + self.wait_s
        while True:
            if self._try_lock():
                break
            holder = read_holder(self.lock)
            if time.monotonic() >= deadline:
                who = f"process {holder}" if holder is not None else "another process"
                raise RunLockedError(
                    f"{self.out} is being written by {who} (lock {self.lock})",
                    fix="wait until that run ends, or let this one wait for it with --wait SECONDS, or give "
                    "another --out",
                )
            time.sleep(POLL_S)
        if self._fd is None:  # pragma: no cover - _try_lock returns True only with the lock file open
            raise AssertionError(f"lock {self.lock} taken without an open file")
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
        """With the lock held, no other run is writing: a staging folder beside ``out`` is left over from a run that
        was killed (deleted), and an ``out.old-PID`` without ``out`` is the earlier run that a killed swap had moved
        aside (renamed back)."""
        parent = self.out.parent
        for old in sorted(parent.glob(f"{self.out.name}.old-*")):
            if not self.out.exists():
                os.rename(old, self.out)
            else:
                shutil.rmtree(old, ignore_errors=True)
        for stale in parent.glob(f"{self.out.name}.staging-*"):
            shutil.rmtree(stale, ignore_errors=True)

    # ----------------------------------------------------------------------------------------------- stage

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
        """Swap the stage in as ``out`` (the earlier folder, if any, is moved aside, then deleted)."""
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


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """SIGINT and SIGTERM deferred until the block ends, then delivered to the handlers that were in place.

    Python runs signal handlers in the main thread only, so swapping the Python-level handlers defers them whatever
    thread the OS delivers the signal to (``pthread_sigmask`` would block it for the calling thread only, and torch
    and BLAS start other threads). Outside the main thread handlers cannot be set: the block runs unprotected."""
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
