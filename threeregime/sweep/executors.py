"""Where the sweep's tasks run: inline, a local process pool, dask.distributed, or Slurm.

Every executor has one method, ``map(fn, payloads)``, which yields ``(payload, outcome)`` as
tasks finish; ``outcome`` is the task's return value or the exception it raised (the driver
records failures and goes on). Tasks are deterministic functions of their payload that
write their artifacts atomically, and the grouping of work into tasks is fixed by the spec,
so results never depend on the executor (``tests/test_executors.py``).

With dask or Slurm the stages run in the workers, so the workers need the sweep directory at
the same path (a shared file system) and, if set, ``THREEREGIME_LEASE_PERIOD`` in their
environment: the leases of :mod:`threeregime.results.artifacts` are taken and renewed there.  A
worker that dies mid-stage leaves a lease that another worker takes over once it goes stale
(``tests/test_cluster_faults.py``).
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from ..errors import SpecError

__all__ = ["InlineExecutor", "ProcessExecutor", "DaskExecutor", "SubmititExecutor",
           "make_executor", "resolve_workers"]


def _run(fn: Callable, payload: tuple) -> Any:
    return fn(*payload)


class InlineExecutor:
    """Run tasks one after another in this process (debugger-friendly default)."""

    def map(self, fn: Callable, payloads: Sequence[tuple]) -> Iterator[tuple[tuple, Any]]:
        for p in payloads:
            try:
                out = fn(*p)
            except Exception as e:  # noqa: BLE001 - reported by the driver
                out = e
            yield p, out

    def close(self) -> None:
        pass

    def __repr__(self) -> str:
        return "InlineExecutor()"


_WORKER_SLOT = None


def _exit_with_parent() -> None:
    """Make this pool worker exit as soon as the process that started it dies.

    A pool worker waits on a queue whose writing end it holds itself, so it never sees the
    parent go: after a SIGKILL of ``threeregime run`` its workers would idle on, holding their
    memory.  A daemon thread waits on the parent's sentinel (:func:`multiprocessing.
    parent_process`: a pipe end on POSIX, the process handle on Windows; ready when the parent
    exits, however it exits) and ends this process then.  A stage this worker was running is
    left half done as after any crash: its lease goes stale and a rerun redoes it.
    """
    import multiprocessing as mp
    import threading

    parent = mp.parent_process()
    if parent is None:          # not a multiprocessing child: nothing to watch
        return

    def watch() -> None:
        parent.join()           # returns when the parent's sentinel is ready (it exited)
        os._exit(1)

    threading.Thread(target=watch, name="threeregime-parent-watch", daemon=True).start()


def _init_worker(threads: int, counter, gpus: int) -> None:
    """Process-pool initializer: one thread budget per worker, one GPU per worker; the worker
    exits when its parent dies (:func:`_exit_with_parent`)."""
    global _WORKER_SLOT
    _exit_with_parent()
    with counter.get_lock():
        _WORKER_SLOT = counter.value
        counter.value += 1
    if gpus > 0:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(_WORKER_SLOT % gpus)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    import torch

    torch.set_num_threads(threads)


class ProcessExecutor:
    """A local pool of ``workers`` processes, each with ``threads`` torch threads.

    On a machine with several GPUs, worker ``i`` sees only GPU ``i mod n_gpus``.
    """

    def __init__(self, workers: int = 2, threads: int = 1) -> None:
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise SpecError(f"workers must be an integer >= 1; got {workers!r}")
        self.workers, self.threads = workers, threads
        self._pool = None

    def _ensure(self):
        if self._pool is None:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor

            ctx = mp.get_context("spawn")
            gpus = 0
            try:
                import torch
                gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
            except ImportError:
                pass
            counter = ctx.Value("i", 0)
            self._pool = ProcessPoolExecutor(self.workers, mp_context=ctx,
                                             initializer=_init_worker,
                                             initargs=(self.threads, counter, gpus))
        return self._pool

    def map(self, fn, payloads):
        from concurrent.futures import as_completed

        pool = self._ensure()
        futs = {pool.submit(_run, fn, p): p for p in payloads}
        try:
            for f in as_completed(futs):
                try:
                    out = f.result()
                except Exception as e:  # noqa: BLE001
                    out = e
                yield futs[f], out
        except BaseException:
            for f in futs:
                f.cancel()
            raise

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None

    def __repr__(self) -> str:
        return f"ProcessExecutor(workers={self.workers}, threads={self.threads})"


class DaskExecutor:
    """dask.distributed: connect to ``address`` (``tcp://host:port``) or start a LocalCluster.

    Needs the ``dask`` extra (``pip install threeregime[dask]``).
    """

    def __init__(self, address: str | None = None, *, n_workers: int = 2,
                 threads: int = 1) -> None:
        try:
            from dask.distributed import Client, LocalCluster
        except ImportError:
            raise SpecError("the dask executor needs dask.distributed: pip install "
                            "'threeregime[dask]'") from None
        self._cluster = None
        if address:
            self.client = Client(address)
        else:
            self._cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1,
                                         processes=True, dashboard_address=None,
                                         env={"OMP_NUM_THREADS": str(threads)})
            self.client = Client(self._cluster)
        self.threads = threads

    def map(self, fn, payloads):
        from dask.distributed import as_completed

        futs = [self.client.submit(_run, fn, p, pure=False) for p in payloads]
        index = {f.key: p for f, p in zip(futs, payloads)}
        for f in as_completed(futs):
            try:
                out = f.result()
            except Exception as e:  # noqa: BLE001
                out = e
            yield index[f.key], out

    def close(self) -> None:
        self.client.close()
        if self._cluster is not None:
            self._cluster.close()

    def __repr__(self) -> str:
        return f"DaskExecutor({self.client.scheduler.address if self.client else ''})"


class SubmititExecutor:
    """Slurm through submitit: one job per task. ``cluster="local"`` runs locally (tests).

    ``params`` go to ``executor.update_parameters`` (e.g. ``timeout_min=60,
    slurm_partition="gpu", gpus_per_node=1``). Needs the ``slurm`` extra.
    """

    def __init__(self, folder: str = "runs/_submitit", cluster: str | None = None,
                 **params: Any) -> None:
        try:
            import submitit
        except ImportError:
            raise SpecError("the slurm executor needs submitit: pip install "
                            "'threeregime[slurm]'") from None
        self.ex = submitit.AutoExecutor(folder=folder, cluster=cluster)
        params.setdefault("timeout_min", 60)
        self.ex.update_parameters(**params)

    def map(self, fn, payloads):
        jobs = [(self.ex.submit(_run, fn, p), p) for p in payloads]
        for job, p in jobs:
            try:
                out = job.result()
            except Exception as e:  # noqa: BLE001
                out = e
            yield p, out

    def close(self) -> None:
        pass


def resolve_workers(workers: int | str | None) -> int:
    """``"auto"`` -> one worker per core this process may run on (its CPU affinity where the
    platform tells it, else ``os.cpu_count()``); an integer >= 1 as given."""
    if workers == "auto":
        if hasattr(os, "sched_getaffinity"):
            return max(1, len(os.sched_getaffinity(0)))
        return max(1, os.cpu_count() or 1)
    if workers is None:
        return 1
    if isinstance(workers, str) and workers.isdigit():
        workers = int(workers)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise SpecError(f"workers must be 'auto' or an integer >= 1; got {workers!r}")
    return workers


def make_executor(*, workers: int | str | None = "auto", dask: str | None = None,
                  slurm: dict | None = None, threads: int = 1):
    """Executor from CLI-style options (at most one of workers / dask / slurm).

    ``workers="auto"`` (the default): one process per core, each with ``threads`` torch
    threads; ``workers=1``: inline (in this process).  ``dask``/``slurm`` replace the local
    workers (then ``workers`` must be left at ``"auto"`` or None).
    """
    chosen = [n for n, v in (("--workers", workers if workers != "auto" else None),
                             ("--dask", dask), ("--slurm", slurm)) if v is not None]
    if len(chosen) > 1:
        raise SpecError(f"choose one executor; got {' and '.join(chosen)}")
    if dask is not None:
        return DaskExecutor(None if dask in ("", "local") else dask, threads=threads)
    if slurm is not None:
        return SubmititExecutor(**slurm)
    n = resolve_workers(workers)
    if n > 1:
        return ProcessExecutor(n, threads=threads)
    return InlineExecutor()
