"""Where characterisation and validation jobs run: a local process pool by default, a Dask
cluster when a scheduler address is given. Both are ``concurrent.futures`` executors, so the
callers submit jobs and collect futures the same way whichever runs them.

Jobs are plain module-level functions over picklable arguments that carry what they need
(file texts, arrays), so a worker on another machine needs eehw installed but no shared folder.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from typing import Any

from eehw.errors import EehwError

CONNECT_TIMEOUT = "10s"  # Dask's own default: a scheduler on another machine may take seconds to answer


def default_workers() -> int:
    """One worker per core the process may use (Yosys and Verilator are single-threaded)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


@contextmanager
def executor(scheduler: str | None = None, workers: int | None = None) -> Iterator[Executor]:
    """A ``concurrent.futures`` executor: Dask's for ``scheduler`` (``tcp://host:port``, or a
    ``dask.distributed.Client``/``LocalCluster`` object), else a local process pool."""
    if scheduler is None:
        with ProcessPoolExecutor(max_workers=workers or default_workers()) as pool:
            yield pool
        return
    try:
        from dask.distributed import Client
    except ImportError:
        raise EehwError(
            "a Dask scheduler was given but dask.distributed is not installed: pip install 'dask[distributed]'"
        ) from None
    if isinstance(scheduler, Client):
        yield scheduler.get_executor(pure=False)
        return
    if not isinstance(scheduler, str):  # a LocalCluster or anything with a scheduler address
        scheduler = getattr(scheduler, "scheduler_address", scheduler)
    try:
        client = Client(scheduler, timeout=CONNECT_TIMEOUT)
    except OSError as exc:
        raise EehwError(
            f"cannot reach the Dask scheduler at {scheduler}: {exc}; start one with "
            f"`dask scheduler` or drop --scheduler"
        ) from None
    try:
        yield client.get_executor(pure=False)
    finally:
        client.close()


def run_jobs(
    pool: Executor, fn: Callable, jobs: Iterable[tuple[Any, tuple]], on_done: Callable[[Any, Any], None] | None = None
) -> dict:
    """Submit ``fn(*args)`` for every ``(key, args)`` and return ``{key: result}``.

    ``on_done(key, result)`` is called as each job finishes (progress bars); the first job that
    raises stops the run with its exception.
    """
    futures: dict[Future, Any] = {pool.submit(fn, *args): key for key, args in jobs}
    results = {}
    try:
        for future in as_completed(futures):
            key = futures[future]
            results[key] = future.result()
            if on_done is not None:
                on_done(key, results[key])
    except BaseException:
        for future in futures:
            future.cancel()
        raise
    return results
