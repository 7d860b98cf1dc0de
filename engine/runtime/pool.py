"""A pool of Ray actors of one role: each call goes to the actor with the fewest calls in flight.

A call counts as in flight until its results have resolved, including calls whose result the driver
never fetches (frames handed from a MediaWorker straight to a SegmentorWorker), so work spreads over
every replica.
"""

from __future__ import annotations

import asyncio
from typing import Any


class Pool:
    def __init__(self, actors: list):
        self.actors = actors
        self.busy = [0] * len(actors)
        self.calls = [0] * len(actors)  # calls sent to each actor (tests and benchmarks read it)

    def _take(self) -> int:
        i = min(range(len(self.actors)), key=self.busy.__getitem__)
        self.busy[i] += 1
        self.calls[i] += 1
        return i

    async def call(self, method: str, *args: Any) -> Any:
        """Call a method on the least busy actor and wait for its result."""
        i = self._take()
        try:
            return await getattr(self.actors[i], method).remote(*args)
        finally:
            self.busy[i] -= 1

    def submit(self, method: str, *args: Any):
        """Call a method on the least busy actor; returns its ObjectRef (busy until it resolves)."""
        i = self._take()
        ref = getattr(self.actors[i], method).remote(*args)

        def release(_fut) -> None:
            self.busy[i] -= 1

        asyncio.wrap_future(ref.future()).add_done_callback(release)
        return ref
