"""Background work for the GPU's caller: ordered writers, and a clock of the time between diffusion calls.

The thread that calls the pipeline is the GPU's only feeder: whatever it does between two calls (encoding a
world checkpoint, hashing frames, writing to the store, encoding a video) the GPU waits for. So that work is
handed to a `Writer`, one thread per SKU that runs its jobs in the order given, while the caller goes on to
the next call. Order is what keeps the store crash-consistent: a SKU's world checkpoint is still written
before the manifest that lists the frames it completes, exactly as when the caller wrote them itself, and a
job after one that failed never runs. A kill at any moment leaves a prefix of the writes, each atomic.

`CallClock` measures what the overlap is for: the caller's time outside pipeline calls (GPU-idle time).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager

__all__ = ["Writer", "CallClock"]


class Writer:
    """Jobs run one after another on a background thread (or at once, on the caller's, with `overlap=False`).

    At most `backlog` jobs wait; submitting another first waits for the oldest (so memory holds at most that
    many snapshots), and `waited` counts those seconds. An error of a job is raised on the caller's thread
    at its next `submit` or `drain`, and the jobs after it are skipped.
    """

    def __init__(self, name: str, *, overlap: bool = True, backlog: int = 2):
        self._pool = ThreadPoolExecutor(1, thread_name_prefix=name) if overlap else None
        self._pending: deque[Future] = deque()
        self._backlog = backlog
        self._error: BaseException | None = None
        self.waited = 0.0

    def submit(self, job: Callable[..., object], *args) -> None:
        if self._pool is None:
            job(*args)
            return
        self._reap()
        while len(self._pending) >= self._backlog:
            start = time.perf_counter()
            self._pending.popleft().result()
            self.waited += time.perf_counter() - start
        self._pending.append(self._pool.submit(self._run, job, args))

    def drain(self) -> None:
        """Wait for every job; raise the first error. The writer can be used again afterwards."""
        while self._pending:
            self._pending.popleft().result()

    def close(self) -> None:
        """Wait for every job and stop the thread; errors are kept for `drain` to raise."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    @property
    def overlaps(self) -> bool:
        """Whether jobs run on the background thread (then they need snapshots of what the caller changes)."""
        return self._pool is not None

    @property
    def busy(self) -> bool:
        return any(not f.done() for f in self._pending)

    def _run(self, job: Callable[..., object], args: tuple) -> None:
        if self._error is not None:
            return  # an earlier write failed: never write what would follow it
        try:
            job(*args)
        except BaseException as e:
            self._error = e
            raise

    def _reap(self) -> None:
        while self._pending and self._pending[0].done():
            self._pending.popleft().result()


class CallClock:
    """Seconds the caller spent inside pipeline calls (`busy`), to tell apart the time between them."""

    def __init__(self) -> None:
        self.busy = 0.0
        self.calls = 0

    @contextmanager
    def calling(self) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.busy += time.perf_counter() - start
            self.calls += 1
