"""Garbage collection tuned for a process that serves requests.

CPython's cyclic collector runs a young collection every 700 net container allocations
(``gc.get_threshold()[0]``). Under load that is several times per batch of leads, and every
one of them promotes the state of the requests in flight (coroutines, frames, dicts) to an
older generation, so the full collections come often too; and each full collection walks
everything the imports left on the heap (FastAPI, pydantic, SQLAlchemy, phonenumbers...),
which never becomes garbage. Measured in the intake benchmark: 10 % of the server's CPU in
the collector, a full collection ~85 ms (notes/issue-4-session5.md).

While a service's app runs (its lifespan), ``GcTuning`` moves what is on the heap at
startup out of the collector's sight (``gc.freeze()``) and raises the young generation's
threshold (``gc_gen0_threshold``, ``LEADPACT_GC_GEN0_THRESHOLD``; ``0`` leaves the collector
as it is). Cycles are still collected, only less often. Several apps in one process (tests,
the embedded mode) share the interpreter's collector: the first start tunes it, the last
stop restores it.
"""

from __future__ import annotations

import gc

_active = 0
_saved: tuple[int, int, int] | None = None


class GcTuning:
    """A worker of the app's lifespan: tunes the collector on start, restores it on stop."""

    def __init__(self, gen0_threshold: int) -> None:
        self.gen0_threshold = gen0_threshold
        self._started = False

    async def start(self) -> None:
        global _active, _saved
        if self.gen0_threshold <= 0 or self._started:
            return
        self._started = True
        _active += 1
        if _active > 1:
            return
        _saved = gc.get_threshold()
        gc.freeze()
        gen0, gen1, gen2 = _saved
        gc.set_threshold(max(gen0, self.gen0_threshold), gen1, gen2)

    async def stop(self) -> None:
        global _active, _saved
        if not self._started:
            return
        self._started = False
        _active -= 1
        if _active > 0 or _saved is None:
            return
        gc.set_threshold(*_saved)
        gc.unfreeze()
        _saved = None
