"""How long to wait before trying a failed request again.

The server's `Retry-After` (or `retry-after-ms`) when its answer gives one, else exponential backoff with jitter:
after the n-th failed request of a call, 0.5 * 2**(n - 1) s plus up to 0.5 s drawn uniformly (0.5-1 s, 1-1.5 s,
2-2.5 s, ...), so that calls that failed together do not all come back at once. Either is capped at the
endpoint's `backoff_max_s`.
"""

from __future__ import annotations

import email.utils
import random
import time

BASE_S = 0.5  # the first wait, before jitter
JITTER_S = 0.5  # the most jitter added to each wait


def delay(failed: int, error: BaseException | None, max_s: float) -> float:
    """Seconds to wait after the `failed`-th failed request (1, 2, ...) of a call, which failed with `error`."""
    hinted = retry_after(error)
    if hinted is not None:
        return min(hinted, max_s)
    wait = BASE_S * 2.0 ** min(failed - 1, 64) + random.uniform(0, JITTER_S)  # 2**64: far past any cap
    return max(0.0, min(wait, max_s))


def retry_after(e: BaseException | None) -> float | None:
    """Seconds from a Retry-After (or retry-after-ms) header, if the error carries one."""
    headers = getattr(e, "headers", None)
    if not headers:
        return None
    if (ms := headers.get("retry-after-ms")) is not None:
        try:
            return float(ms) / 1000
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:  # an HTTP date
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    except (ValueError, TypeError):  # neither: the backoff decides
        return None
