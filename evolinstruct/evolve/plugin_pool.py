"""Plugin code off the event loop: filter checks, judge prompts and parsing, heuristic prompts.

The evolve stage keeps up to `2 x evolver.max_concurrency` records in flight on one event loop. A
plugin call that takes 200 ms there (a tokenizer, a classifier, a linter, a quadratic regex) would
stall every request in flight; in a worker it delays only its own record. Where a plugin object's
code runs is its `runs_in` attribute:

- "thread" (the default): a pool of daemon threads, right for code that waits or releases the GIL.
- "process": a process pool, for CPU-bound pure-Python checks (the object and its arguments are
  pickled; the plugin must be importable, as an installed plugin is).
- "loop": inline, on the event loop; only for code known to be fast and linear in its input (the
  built-in rules: tests/test_linear_time.py), since a pool hop costs more than such a check.

`evolve.check_timeout` bounds one call of a filter (per record, per rule): past it the record is
eliminated with rule `check_timeout`, naming the plugin, and the stage goes on. A worker that is
still stuck in the call is abandoned (threads are daemons, a stuck process is terminated at the
end) and replaced, so the pool keeps its size.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import queue
import threading
from collections.abc import Callable
from typing import Any, Literal

RunsIn = Literal["thread", "process", "loop"]
RUNS_IN: tuple[str, ...] = ("thread", "process", "loop")


class CheckTimedOut(Exception):
    """A plugin call ran past `evolve.check_timeout`."""


def runs_in(obj: object, default: str = "thread") -> str:
    """Where `obj`'s code runs: its `runs_in` attribute, else `default`."""
    where = getattr(obj, "runs_in", default)
    return where if where in RUNS_IN else default


class _DaemonThreads:
    """A minimal thread pool of daemon threads: unlike concurrent.futures.ThreadPoolExecutor, whose
    workers are joined at interpreter exit, a thread stuck in a plugin call cannot keep the stage
    from exiting. Threads start on demand, up to `size` plus one per abandoned (stuck) worker."""

    def __init__(self, size: int) -> None:
        self.size = max(1, size)
        self.jobs: queue.SimpleQueue = queue.SimpleQueue()
        self.threads = self.idle = self.pending = 0
        self.lock = threading.Lock()

    def _grow(self) -> None:
        """Start one more worker when jobs wait and there is room (under the lock)."""
        if self.pending > self.idle and self.threads < self.size:
            self.threads += 1
            threading.Thread(target=self._work, name="evolinstruct-plugin", daemon=True).start()

    def submit(self, function: Callable[..., Any], *args: Any) -> concurrent.futures.Future:
        future: concurrent.futures.Future = concurrent.futures.Future()
        with self.lock:
            self.pending += 1
            self._grow()
        self.jobs.put((future, function, args))
        return future

    def abandon(self) -> None:
        """A worker is stuck in a call that timed out: one more thread may start in its place."""
        with self.lock:
            self.size += 1
            self._grow()

    def _work(self) -> None:
        while True:
            with self.lock:
                self.idle += 1
            job = self.jobs.get()
            with self.lock:
                self.idle -= 1
                self.pending -= 1
            if job is None:
                return
            future, function, args = job
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(function(*args))
                except BaseException as exc:  # handed to the awaiting coroutine
                    future.set_exception(exc)

    def shutdown(self) -> None:
        with self.lock:
            threads, self.pending = self.threads, self.pending + self.threads
        for _ in range(threads):
            self.jobs.put(None)


def _call(obj: object, method: str, args: tuple) -> Any:
    """Run in a worker process: `obj.method(*args)`."""
    return getattr(obj, method)(*args)


class PluginPool:
    """Runs plugin methods where their objects say (`runs_in`), with an optional time limit."""

    def __init__(self, threads: int = 16, processes: int | None = None) -> None:
        self.thread_count = threads
        self.process_count = processes or os.cpu_count() or 1
        self._threads: _DaemonThreads | None = None
        self._processes: concurrent.futures.ProcessPoolExecutor | None = None
        self._abandoned: list[concurrent.futures.ProcessPoolExecutor] = []
        self._process_slots: asyncio.Semaphore | None = None

    async def call(self, obj: object, method: str, *args: Any, timeout: float = 0.0,
                   default: str = "thread") -> Any:
        """`obj.method(*args)`, where `obj` says it runs; CheckTimedOut past `timeout` seconds
        (0 = no limit). The plugin's own exceptions propagate."""
        where = runs_in(obj, default)
        if where == "loop":
            return getattr(obj, method)(*args)
        if where == "process":
            return await self._in_process(obj, method, args, timeout)
        if self._threads is None:
            self._threads = _DaemonThreads(self.thread_count)
        future = asyncio.wrap_future(self._threads.submit(getattr(obj, method), *args))
        return await self._wait(future, timeout, self._threads.abandon)

    async def _in_process(self, obj: object, method: str, args: tuple, timeout: float) -> Any:
        if self._processes is None:
            import multiprocessing

            # spawn: a fork of a process running an event loop and threads is not safe.
            self._processes = concurrent.futures.ProcessPoolExecutor(
                self.process_count, mp_context=multiprocessing.get_context("spawn"))
            self._process_slots = asyncio.Semaphore(self.process_count)
        assert self._process_slots is not None
        async with self._process_slots:  # the clock starts when a worker is free, not in the queue
            executor = self._processes
            future = asyncio.wrap_future(executor.submit(_call, obj, method, args))

            def replace() -> None:
                if self._processes is executor:
                    self._abandoned.append(executor)
                    self._processes = None

            return await self._wait(future, timeout, replace)

    @staticmethod
    async def _wait(future: asyncio.Future, timeout: float, abandon: Callable[[], None]) -> Any:
        if timeout <= 0:
            return await future
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout)
        except asyncio.TimeoutError:
            future.add_done_callback(lambda f: f.cancelled() or f.exception())  # nobody awaits it now
            abandon()
            raise CheckTimedOut(f"took longer than {timeout:g} s") from None

    def shutdown(self) -> None:
        """Stop the workers; processes stuck in a timed-out call are terminated."""
        if self._threads is not None:
            self._threads.shutdown()
            self._threads = None
        for executor in [*self._abandoned, *([self._processes] if self._processes else [])]:
            for process in list(getattr(executor, "_processes", {}).values()) if executor in self._abandoned else []:
                process.terminate()
            executor.shutdown(wait=executor not in self._abandoned, cancel_futures=True)
        self._abandoned, self._processes = [], None
