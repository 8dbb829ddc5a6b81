"""Jobs through an executor. A :class:`Job` holds a module-level function (pickled by reference, so a worker
imports it) and a plain-data ``payload``; :func:`run_job` returns a :class:`JobResult` (rows, or the error as text:
a failed job never takes the others down). Executors return the results in job order:

- ``"inline"``: in this process, one after another.
- ``"local"`` (default): a ``spawn`` process pool (no fork of a process holding torch threads), workers x threads
  <= the cores (:func:`plan_workers`).
- ``"ray"``: the same function as a Ray task, on a local Ray or the cluster at ``address`` (the ``[ray]`` extra).
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from layerclaims.errors import UsageError

EXECUTORS: tuple[str, ...] = ("local", "ray", "inline")


@dataclass(frozen=True)
class Job:
    """``id``: unique within a run; ``func``: a module-level function of the payload returning ``(rows, stats)``;
    ``payload``: picklable plain data."""

    id: str
    func: Callable[[dict[str, Any]], tuple[list[dict[str, Any]], dict[str, Any]]]
    payload: dict[str, Any]


@dataclass
class JobResult:
    """``rows``: what the job produced; ``error``: None, or the exception as ``Type: message`` with ``trace`` the
    traceback; ``seconds``: wall time in the worker; ``stats``: counters the job reports (e.g. cache hits)."""

    id: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    trace: str | None = None
    seconds: float = 0.0
    stats: dict[str, Any] = field(default_factory=dict)
    worker: int = 0


def run_job(job: Job) -> JobResult:
    """Run one job here; never raises for the job's own failure (the error is in the result)."""
    result = JobResult(job.id, worker=os.getpid())
    t0 = time.perf_counter()
    try:
        result.rows, result.stats = job.func(job.payload)
    except Exception as exc:  # a job's failure is data for the report
        result.error, result.trace = f"{type(exc).__name__}: {exc}", traceback.format_exc()
    result.seconds = time.perf_counter() - t0
    return result


def plan_workers(n_jobs: int, workers: int | None = None, cores: int | None = None) -> tuple[int, int]:
    """``(workers, threads per worker)`` with workers x threads <= cores: ``workers`` defaults to
    min(cores, jobs); each worker gets ``cores // workers`` threads (at least 1)."""
    cores = cores or os.cpu_count() or 1
    if workers is not None and workers < 1:
        raise UsageError(f"workers={workers}: use at least 1")
    w = max(1, min(workers or cores, n_jobs, cores))
    return w, max(1, cores // w)


def _init_worker(threads: int) -> None:
    import torch
    from threadpoolctl import threadpool_limits  # a dependency of scikit-learn

    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ[var] = str(threads)
    torch.set_num_threads(threads)
    threadpool_limits(threads)


def run_jobs(
    jobs: Sequence[Job],
    *,
    executor: str = "local",
    workers: int | None = None,
    address: str | None = None,
    on_done: Callable[[JobResult], None] | None = None,
) -> list[JobResult]:
    """Every job on ``executor``, the results in the order of ``jobs``; ``on_done(result)`` as each finishes."""
    if executor not in EXECUTORS:
        raise UsageError(f"unknown executor {executor!r}: use one of {', '.join(EXECUTORS)}")
    ids = [j.id for j in jobs]
    if len(set(ids)) != len(ids):
        raise UsageError("job ids must be unique")
    if not jobs:
        return []
    done: dict[str, JobResult] = {}

    def finish(res: JobResult) -> None:
        done[res.id] = res
        if on_done is not None:
            on_done(res)

    if executor == "ray":
        _run_ray(jobs, workers, address, finish)
    elif executor == "inline" or len(jobs) == 1 or plan_workers(len(jobs), workers)[0] == 1:
        for job in jobs:
            finish(run_job(job))
    else:
        n, threads = plan_workers(len(jobs), workers)
        ctx = multiprocessing.get_context("spawn")
        with cf.ProcessPoolExecutor(max_workers=n, mp_context=ctx, initializer=_init_worker, initargs=(threads,)) as ex:
            futures = {ex.submit(run_job, job): job for job in jobs}
            for fut in cf.as_completed(futures):
                job = futures[fut]
                try:
                    finish(fut.result())
                except Exception as exc:  # a worker that died (killed, out of memory)
                    finish(JobResult(job.id, error=f"worker failed: {type(exc).__name__}: {exc}"))
    return [done[i] for i in ids]


def _run_ray(
    jobs: Sequence[Job], workers: int | None, address: str | None, finish: Callable[[JobResult], None]
) -> None:
    try:
        import ray
    except ImportError:
        raise UsageError(
            "--executor ray needs Ray: pip install 'layerclaims[ray]' (or pip install ray), or use --executor local"
        ) from None
    started = not ray.is_initialized()
    if started:
        kwargs: dict[str, Any] = {"address": address} if address else {"num_cpus": workers or os.cpu_count() or 1}
        ray.init(include_dashboard=False, log_to_driver=False, **kwargs)
    try:
        threads = plan_workers(len(jobs), workers)[1]
        remote = ray.remote(num_cpus=1)(_ray_task)
        pending = {remote.remote(job, threads): job for job in jobs}
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                job = pending.pop(ref)
                try:
                    finish(ray.get(ref))
                except Exception as exc:  # a task whose worker died
                    finish(JobResult(job.id, error=f"ray task failed: {type(exc).__name__}: {exc}"))
    finally:
        if started:
            ray.shutdown()


def _ray_task(job: Job, threads: int) -> JobResult:
    _init_worker(threads)
    return run_job(job)
