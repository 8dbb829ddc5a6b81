"""layerclaims.executor: one job function, results in job order whatever the executor, a failed job reported
with its error and the others kept, worker threads x workers within the cores, Ray (slow) equal to local."""

from __future__ import annotations

import os
import time
from typing import Any

import pytest

from layerclaims.errors import UsageError
from layerclaims.executor import Job, plan_workers, run_job, run_jobs


def echo(payload: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The test job: returns the payload as a row; ``fail`` raises; ``sleep`` waits; reports torch's threads. A
    module-level function, so that a spawned worker imports it by reference (it gets this process's sys.path)."""
    import torch

    if payload.get("sleep"):
        time.sleep(float(payload["sleep"]))
    if payload.get("fail"):
        raise ValueError(str(payload["fail"]))
    return [dict(payload)], {"threads": int(torch.get_num_threads())}


def _jobs() -> list[Job]:
    return [
        Job("j0", echo, {"x": 0, "sleep": 0.2}),
        Job("j1", echo, {"x": 1, "fail": "boom on purpose"}),
        Job("j2", echo, {"x": 2}),
    ]


def test_run_job_returns_rows_or_the_error() -> None:
    ok = run_job(Job("a", echo, {"x": 1}))
    assert ok.error is None and ok.rows == [{"x": 1}]
    bad = run_job(Job("b", echo, {"fail": "nope"}))
    assert bad.error == "ValueError: nope" and bad.rows == [] and "Traceback" in (bad.trace or "")


@pytest.mark.parametrize("cores", [1, 2, 3, 16])
@pytest.mark.parametrize("n_jobs", [1, 2, 5, 40])
def test_plan_never_oversubscribes(cores: int, n_jobs: int) -> None:
    w, t = plan_workers(n_jobs, cores=cores)
    assert 1 <= w <= min(n_jobs, cores) and w * t <= cores
    with pytest.raises(UsageError):
        plan_workers(3, workers=0)


def test_inline_keeps_order_and_reports_failures() -> None:
    res = run_jobs(_jobs(), executor="inline")
    assert [r.id for r in res] == ["j0", "j1", "j2"]
    assert res[1].error == "ValueError: boom on purpose" and res[2].rows == [{"x": 2}]


@pytest.mark.slow  # spawned workers import torch: ~8 s
def test_local_processes_keep_order_report_failures_and_limit_threads() -> None:
    seen: list[str] = []
    res = run_jobs(_jobs(), executor="local", workers=2, on_done=lambda r: seen.append(r.id))
    assert [r.id for r in res] == ["j0", "j1", "j2"] and sorted(seen) == ["j0", "j1", "j2"]
    assert res[1].error == "ValueError: boom on purpose"
    assert res[0].rows == [{"x": 0, "sleep": 0.2}] and res[2].rows == [{"x": 2}]
    _, threads = plan_workers(3, workers=2)
    assert {r.stats["threads"] for r in (res[0], res[2])} == {threads}
    assert all(r.worker != os.getpid() for r in res)  # ran in other processes


@pytest.mark.slow
def test_inline_equals_local() -> None:
    inline = run_jobs(_jobs(), executor="inline")
    local = run_jobs(_jobs(), executor="local", workers=2)
    assert [(r.id, r.rows, r.error) for r in inline] == [(r.id, r.rows, r.error) for r in local]


def test_bad_executor_and_duplicate_ids_are_usage_errors() -> None:
    with pytest.raises(UsageError, match="local, ray, inline"):
        run_jobs(_jobs(), executor="dask")
    with pytest.raises(UsageError, match="unique"):
        run_jobs([Job("a", echo, {}), Job("a", echo, {})])


@pytest.mark.slow
def test_ray_equals_local_on_a_robustness_job() -> None:
    pytest.importorskip("ray")
    from layerclaims.robustness import jobs_for, plan
    from layerclaims.validate import RunRequest

    jobs = jobs_for(plan(["qk"], only={"qk": {"vectors": ("raw", "centred")}}), RunRequest("tiny-gpt2"))
    jobs += _jobs()
    local = run_jobs(jobs, executor="local", workers=2)
    ray_res = run_jobs(jobs, executor="ray", workers=2)
    assert [(r.id, r.rows, r.error) for r in ray_res] == [(r.id, r.rows, r.error) for r in local]
    assert any(r.rows for r in ray_res if r.id.startswith("B-"))
