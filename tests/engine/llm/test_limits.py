import asyncio
import time

import pytest

from engine.llm.limits import EndpointLimiter, _Gcra


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def test_gcra_spaces_units_evenly_and_corrects_estimates():
    clock = Clock()
    g = _Gcra(per_minute=60, clock=clock)  # one unit per second
    assert [g.reserve(1) for _ in range(3)] == [0.0, 1.0, 2.0]
    clock.t += 10  # idle time does not bank a burst
    assert g.reserve(1) == 0.0 and g.reserve(1) == 1.0
    g.adjust(-1)  # the last request used one unit less than reserved
    assert g.reserve(1) == 1.0
    assert _Gcra(0, clock).reserve(10**9) == 0.0  # 0 = unlimited


def test_limiter_caps_concurrency_and_rate():
    async def main():
        lim = EndpointLimiter(max_concurrent=2, rpm=1200)  # 20 per second
        active, peak, starts = 0, 0, []

        async def one():
            nonlocal active, peak
            async with lim.slot(10):
                starts.append(time.monotonic())
                active += 1
                peak = max(peak, active)
                await asyncio.sleep(0.2)
                active -= 1

        await asyncio.gather(*(one() for _ in range(8)))
        return peak, sorted(starts)

    peak, starts = asyncio.run(main())
    assert peak == 2
    assert starts[-1] - starts[0] >= 7 * 0.05 * 0.9


def test_token_reservation_is_capped_at_one_minute():
    async def main():
        lim = EndpointLimiter(max_concurrent=1, tpm=100)
        async with lim.slot(10_000) as r:  # larger than a minute's tokens: reserved as exactly one minute
            return r.estimated_tokens

    assert asyncio.run(main()) == 100


def test_settle_changes_what_later_requests_wait_for():
    clock = Clock()

    async def main():
        lim = EndpointLimiter(max_concurrent=4, tpm=600, clock=clock)  # 10 tokens per second
        async with lim.slot(10) as r:
            r.settle(50)  # it really used 50
        return lim._tokens.reserve(1)

    assert asyncio.run(main()) == pytest.approx(5.0)
