"""A circuit breaker per endpoint: an endpoint that is down stops the run instead of failing every unit.

After `threshold` consecutive connection errors or 5xx answers (a 5xx that refuses a response format is an
answer, not an outage) the breaker opens: no request is sent, every caller waits, and one prober asks the
endpoint every few seconds whether it answers. When it does, the breaker closes and the callers go on.
If it stays down for `down_s`, the breaker fails: every waiting and later caller gets EndpointDown, which
aborts the run; the units that were waiting are not failures, so a rerun goes on from where it stopped.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


class EndpointDown(RuntimeError):
    """The endpoint did not answer for longer than the breaker allows."""


class Breaker:
    def __init__(
        self,
        where: str,
        threshold: int,
        down_s: float,
        probe: Callable[[], Awaitable[bool]],
        clock: Callable[[], float] = time.monotonic,
    ):
        self.where, self.threshold, self.down_s = where, threshold, down_s
        self.probe, self.clock = probe, clock
        self.failures = 0  # consecutive
        self.opened_at: float | None = None
        self._closed = asyncio.Event()
        self._closed.set()
        self._prober: asyncio.Task | None = None
        self._down: EndpointDown | None = None

    async def admit(self) -> None:
        """Return when a request may be sent; raise EndpointDown when the endpoint is given up for down."""
        if self._down is not None:
            raise self._down
        if not self._closed.is_set():
            await self._closed.wait()
            if self._down is not None:
                raise self._down

    def succeeded(self) -> None:
        self.failures = 0

    def failed(self) -> None:
        """A connection error, timeout or 5xx: the breaker opens at the threshold."""
        self.failures += 1
        if self.failures >= self.threshold and self._closed.is_set() and self._down is None:
            self.opened_at = opened_at = self.clock()
            self._closed.clear()
            log.warning(
                "%s: %d failures in a row; holding every request while it is probed (giving up after %.0f s)",
                self.where,
                self.failures,
                self.down_s,
            )
            self._prober = asyncio.ensure_future(self._probe_until_up(opened_at))

    async def _probe_until_up(self, opened_at: float) -> None:
        every = max(0.2, min(5.0, self.down_s / 10))
        while True:
            await asyncio.sleep(every)
            try:
                up = await self.probe()
            except Exception:  # noqa: BLE001  (any failure to get an answer means: still down)
                up = False
            if up:
                log.warning("%s answers again after %.0f s; resuming", self.where, self.clock() - opened_at)
                self.failures, self.opened_at = 0, None
                self._closed.set()
                return
            if self.clock() - opened_at >= self.down_s:
                self._down = EndpointDown(
                    f"{self.where} has not answered for {self.down_s:.0f} s "
                    f"({self.failures} failed requests in a row); the run stops here, and "
                    "a rerun goes on from where it stopped"
                )
                self._closed.set()  # release the waiters: admit() raises for them
                return

    async def aclose(self) -> None:
        if self._prober is not None and not self._prober.done():
            self._prober.cancel()
