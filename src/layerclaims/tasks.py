"""Tasks: a study's independent, seeded computations (a detail layer's resamples, a permutation test), run in a
pool of spawned worker processes that lasts for the process, so that the next study reuses it, or here when there
is one worker. A task's randomness comes from its arguments: results do not depend on the number of workers."""

from __future__ import annotations

import atexit
import concurrent.futures as cf
import gc
import logging
import multiprocessing
import os
import pickle
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from layerclaims.errors import UsageError
from layerclaims.metrics.mark_clusters import one_blas_thread

_POOL: list[cf.ProcessPoolExecutor] = []


def workers() -> int:
    """Processes for the tasks: ``LAYERCLAIMS_WORKERS`` if set; else, when spawned workers may
    re-import the main module safely (the ``layerclaims`` command, ``python -m``, an interactive session), the
    cores this process may use, at most ``OMP_NUM_THREADS`` when set (as in a worker of :mod:`layerclaims.executor`);
    else 1. (A spawned worker runs the main script again: a script must guard its work with ``if __name__ ==
    "__main__":`` before it sets ``LAYERCLAIMS_WORKERS``.)"""
    if given := os.environ.get("LAYERCLAIMS_WORKERS", "").strip():
        if not given.isdigit() or int(given) < 1:
            raise UsageError(
                f"LAYERCLAIMS_WORKERS={given!r} is not a number of processes",
                fix="set it to a whole number >= 1 (1: no worker processes), or unset it to use the cores",
            )
        return int(given)
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    safe = (
        not hasattr(main, "__file__")
        or (spec is not None and spec.name.endswith("__main__"))
        or os.path.basename(sys.argv[0]) == "layerclaims"
    )
    if not safe:
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(cores, int(os.environ.get("OMP_NUM_THREADS") or cores)))


def _worker_start(warm: Sequence[Callable[[], None]] = ()) -> None:
    os.environ["NUMBA_NUM_THREADS"] = "1"
    one_blas_thread()  # kept: the limit holds for the worker's life
    for fn in warm:
        try:
            fn()
        except Exception:  # a warm-up only saves time: its failure must not break the pool
            logging.getLogger(__name__).warning("warming a worker with %r failed", fn, exc_info=True)
    gc.freeze()  # what is loaded by now lasts the worker's life: no collection visits it again, nor the one at exit
    gc.set_threshold(200_000, 30, 30)  # as the layerclaims command's process: tasks allocate, rarely in cycles


def start(warm: Sequence[Callable[[], None]] = ()) -> None:
    """Start the worker processes now (when there are to be any, and none yet), each first calling every ``warm``
    (module-level functions: a study's imports and compiled kernels, ``Study.warm``). A run calls it before it
    checks the request and loads the model: the workers start while this process does, on a core that would
    otherwise wait, rather than at the first task, when every core is busy."""
    if workers() < 2 or _POOL:
        return
    if not picklable(tuple(warm)):  # not module-level (a test's stand-in study): no warm-up
        warm = ()
    pool = _pool(tuple(warm))
    for _ in range(workers()):  # one process each; not waited for: they start in the background
        pool.submit(time.perf_counter)


def _timed(fn: Callable[..., Any], *args: Any) -> tuple[Any, float]:
    t0 = time.perf_counter()
    with one_blas_thread():  # the same arithmetic in a worker and in this process
        return fn(*args), time.perf_counter() - t0


def picklable(obj: Any) -> bool:
    """Whether ``obj`` can be handed to a worker process (functions pickle by reference: a module-level function
    does, a closure or a test's stand-in for a module's function does not)."""
    try:
        pickle.dumps(obj)
    except (pickle.PicklingError, AttributeError, TypeError):
        return False
    return True


def submit(fn: Callable[..., Any], *args: Any) -> cf.Future[Any]:
    """``fn(*args)`` (``fn`` a module-level function, picklable arguments) as a task whose future gives ``(value,
    seconds)``: in a pool of :func:`workers` spawned processes (one BLAS and numba thread each), or here when there
    is one worker."""
    if workers() < 2:
        done: cf.Future[Any] = cf.Future()
        done.set_result(_timed(fn, *args))
        return done
    return _pool().submit(_timed, fn, *args)


def _pool(warm: tuple[Callable[[], None], ...] = ()) -> cf.ProcessPoolExecutor:
    if not _POOL:
        ctx = multiprocessing.get_context("spawn")  # no fork of a process holding torch and numba threads
        _POOL.append(cf.ProcessPoolExecutor(workers(), mp_context=ctx, initializer=_worker_start, initargs=(warm,)))
        atexit.register(_POOL[0].shutdown)
    return _POOL[0]
