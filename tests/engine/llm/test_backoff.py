"""The waits between retries: exponential with jitter, Retry-After first, both capped."""

import email.utils
import time

import pytest

from engine.llm import backoff


class Answered(Exception):
    def __init__(self, **headers):
        self.headers = headers


def test_exponential_with_up_to_half_a_second_of_jitter(monkeypatch):
    monkeypatch.setattr(backoff.random, "uniform", lambda a, b: b)  # the most jitter
    assert [backoff.delay(n, None, 60) for n in range(1, 6)] == [1.0, 1.5, 2.5, 4.5, 8.5]
    monkeypatch.setattr(backoff.random, "uniform", lambda a, b: a)  # none
    assert [backoff.delay(n, None, 60) for n in range(1, 6)] == [0.5, 1.0, 2.0, 4.0, 8.0]
    assert backoff.delay(10_000, None, 7.0) == 7.0  # capped, however many failures


def test_jitter_spreads_the_waits():
    waits = {backoff.delay(1, TimeoutError(), 60) for _ in range(50)}
    assert len(waits) > 1 and all(0.5 <= w <= 1.0 for w in waits)


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"retry-after": "3"}, 3.0),
        ({"retry-after": "-3"}, 0.0),
        ({"retry-after-ms": "250"}, 0.25),
        ({"retry-after-ms": "250", "retry-after": "3"}, 0.25),  # the finer one wins
        ({"retry-after-ms": "soon", "retry-after": "3"}, 3.0),
    ],
)
def test_retry_after_is_honoured_and_capped(headers, seconds):
    assert backoff.delay(1, Answered(**headers), 60) == seconds
    assert backoff.delay(1, Answered(**headers), 0.1) == min(seconds, 0.1)


def test_retry_after_as_an_http_date():
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 28 <= backoff.retry_after(Answered(**{"retry-after": when})) <= 30


def test_an_unreadable_retry_after_leaves_it_to_the_backoff():
    assert backoff.retry_after(Answered(**{"retry-after": "soon"})) is None
    assert 0.5 <= backoff.delay(1, Answered(**{"retry-after": "soon"}), 60) <= 1.0
    assert backoff.retry_after(Answered()) is None and backoff.retry_after(None) is None
