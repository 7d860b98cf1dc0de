"""Per-endpoint limits for async callers: concurrent requests, requests per minute, tokens per minute.

Rates use GCRA (the generic cell rate algorithm): each request reserves its place in time under a
lock, then sleeps outside it, so many coroutines share one limiter without a thread per request.
Requests are spaced evenly (60/rpm s apart) rather than allowed in bursts, so the limit holds over
any window, not just per calendar minute.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass


class _Gcra:
    """Spaces out units (requests or tokens) at `per_minute`; 0 disables it."""

    def __init__(self, per_minute: float, clock: Callable[[], float]):
        self.interval = 60.0 / per_minute if per_minute > 0 else 0.0
        self.clock = clock
        self.tat = 0.0  # theoretical arrival time of the next unit

    def reserve(self, units: float) -> float:
        """Reserve `units`; returns how long the caller must wait before sending."""
        if not self.interval:
            return 0.0
        now = self.clock()
        start = max(self.tat, now)
        self.tat = start + units * self.interval
        return start - now

    def adjust(self, units: float) -> None:
        """Correct an earlier reservation by `units` (actual minus estimated)."""
        if self.interval:
            self.tat += units * self.interval


@dataclass
class Reservation:
    _limiter: EndpointLimiter
    estimated_tokens: int

    def settle(self, actual_tokens: int) -> None:
        """Report the tokens the request really used, so later requests wait for the difference."""
        self._limiter._tokens.adjust(actual_tokens - self.estimated_tokens)
        self.estimated_tokens = actual_tokens


class EndpointLimiter:
    def __init__(self, max_concurrent: int, rpm: int = 0, tpm: int = 0, clock: Callable[[], float] = time.monotonic):
        self.max_concurrent, self.rpm, self.tpm = max_concurrent, rpm, tpm
        self._slots = asyncio.Semaphore(max_concurrent)
        self._requests = _Gcra(rpm, clock)
        self._tokens = _Gcra(tpm, clock)
        self._lock = asyncio.Lock()

    @asynccontextmanager
    async def slot(self, estimated_tokens: int) -> AsyncIterator[Reservation]:
        """Hold one concurrent slot, after waiting for the request and token rates to allow it."""
        async with self._slots:
            if not (self.rpm or self.tpm):  # only a concurrency limit: nothing to reserve
                yield Reservation(self, estimated_tokens)
                return
            async with self._lock:
                # a single request larger than a minute's tokens waits one minute, not forever
                tokens = min(estimated_tokens, self.tpm) if self.tpm else estimated_tokens
                wait = max(self._requests.reserve(1), self._tokens.reserve(tokens))
            if wait > 0:
                await asyncio.sleep(wait)
            yield Reservation(self, tokens)
