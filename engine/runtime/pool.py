"""A pool of Ray actors of one role: each call goes to the actor with the fewest calls in flight.

A call counts as in flight until its results have resolved, and an actor lent to another actor (the
MediaWorker a SegmentorWorker fetches its frames from) until that actor's call ends, so work spreads
over every replica. A call may name a key (a video): it then goes to that key's replica, which has the
video open and its frames decoded, unless that replica is busier than the least busy one by more
than `slack` calls.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class Pool:
    def __init__(self, actors: list, slack: int = 1):
        self.actors = actors
        self.slack = slack
        self.busy = [0] * len(actors)
        self.calls = [0] * len(actors)  # calls sent to each actor (tests and benchmarks read it)

    def _take(self, key: str | None) -> int:
        least = min(range(len(self.actors)), key=self.busy.__getitem__)
        i = least
        if key is not None:
            home = zlib.crc32(key.encode()) % len(self.actors)
            if self.busy[home] <= self.busy[least] + self.slack:
                i = home
        self.busy[i] += 1
        self.calls[i] += 1
        return i

    async def call(self, method: str, *args: Any, key: str | None = None) -> Any:
        """Call a method on an actor (the key's, or the least busy) and wait for its result."""
        i = self._take(key)
        try:
            return await getattr(self.actors[i], method).remote(*args)
        finally:
            self.busy[i] -= 1

    @contextmanager
    def lease(self, key: str | None = None) -> Iterator[Any]:
        """An actor (the key's, or the least busy), counted busy while another actor works with it."""
        i = self._take(key)
        try:
            yield self.actors[i]
        finally:
            self.busy[i] -= 1
