"""The worker pool of :mod:`layerclaims.tasks`: started early, each worker warmed once, a failed warm-up harmless."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from layerclaims import tasks


def _note_pid(folder: Path) -> None:
    (folder / str(os.getpid())).touch()


def _fail() -> None:
    raise RuntimeError("a warm-up that fails")


@pytest.fixture
def fresh_pool(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[object]]:
    """Two workers in a pool of this test's own (the process's pool, if any, is left alone)."""
    monkeypatch.setenv("LAYERCLAIMS_WORKERS", "2")
    pool: list[object] = []
    monkeypatch.setattr(tasks, "_POOL", pool)
    yield pool
    for p in pool:
        p.shutdown()  # type: ignore[attr-defined]


def test_start_warms_every_worker_before_its_tasks(fresh_pool: list[object], tmp_path: Path) -> None:
    tasks.start([functools.partial(_note_pid, tmp_path)])
    assert len(fresh_pool) == 1
    ran = {tasks.submit(os.getpid).result()[0] for _ in range(8)}
    deadline = time.monotonic() + 60  # start() does not wait: the second worker may still be warming
    while len(list(tmp_path.iterdir())) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    warmed = {int(p.name) for p in tmp_path.iterdir()}
    assert len(warmed) == 2 and ran <= warmed and os.getpid() not in warmed
    tasks.start([functools.partial(_note_pid, tmp_path / "again")])  # a pool already there: nothing new
    assert len(fresh_pool) == 1


@pytest.mark.parametrize("warm", [_fail, lambda: None], ids=["raises", "not-picklable"])
def test_a_failed_warm_up_leaves_the_tasks_running(fresh_pool: list[object], warm: object) -> None:
    tasks.start([warm])  # type: ignore[list-item]
    assert tasks.submit(abs, -3).result()[0] == 3


def test_no_workers_no_pool(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LAYERCLAIMS_WORKERS", "1")
    monkeypatch.setattr(tasks, "_POOL", [])
    tasks.start([functools.partial(_note_pid, tmp_path)])
    assert tasks._POOL == [] and not any(tmp_path.iterdir())


def test_the_studies_warm_ups_need_no_torch() -> None:
    """A worker runs the studies' tasks: its warm-up (and so its tasks' modules) must not import torch (1.4 s and
    its memory in every worker)."""
    code = (
        "import sys\n"
        "from layerclaims.study import registry\n"
        "warm = [s.warm for s in registry().values() if s.warm is not None]\n"
        "assert len(warm) >= 2, warm\n"
        "[w() for w in warm]\n"
        "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
