"""A burst of model calls against the local fake endpoint with scripted faults; checks nothing is lost.

    .venv/bin/python benchmarks/model_client_burst.py [--calls 500] [--fault-rate 0.2]

Faults are split evenly between 429 (Retry-After: 1), 503 and hangs past the client's timeout.
Every call must end as a success or as a recorded failure (succeeded + failed == calls), the cache
holds one answer per successful call, and the request log holds exactly one row per HTTP request the
endpoint received.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from pydantic import BaseModel

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "support"))
from fake_endpoint import FakeEndpoint  # noqa: E402

from engine.config import load_config  # noqa: E402
from engine.llm.client import ModelClient  # noqa: E402
from engine.llm.request_log import StoreCache, StoreRequestLog, add_totals, request_totals  # noqa: E402
from engine.media.images import user_message  # noqa: E402
from engine.store import Store  # noqa: E402
from engine.store.io import StoreIO  # noqa: E402


class Description(BaseModel):
    noun: str
    appearance: str
    motion: str


async def burst(args) -> int:
    rates = {f: args.fault_rate / 3 for f in ("429", "503", "hang")}
    with (
        FakeEndpoint(latency_s=(0.02, 0.08), fault_rates=rates, seed=args.seed, hang_s=args.timeout + 1.0) as fake,
        tempfile.TemporaryDirectory() as tmp,
    ):
        env = {
            "ENGINE_AGENTS__ANNOTATOR__BASE_URL": fake.base_url,
            "ENGINE_AGENTS__ANNOTATOR__MODEL": "fake-model",
            "ENGINE_AGENTS__ANNOTATOR__MAX_CONCURRENT": str(args.concurrency),
            "ENGINE_AGENTS__ANNOTATOR__RPM": str(args.rpm),
            "ENGINE_AGENTS__ANNOTATOR__TIMEOUT_S": str(args.timeout),
            "ENGINE_AGENTS__ANNOTATOR__MAX_ATTEMPTS": str(args.attempts),
            "ENGINE_AGENTS__ANNOTATOR__BACKOFF_MAX_S": "4",
        }
        cfg = load_config(environ=env)
        store = Store(f"sqlite:///{tmp}/engine.sqlite")
        io = StoreIO(store)
        client = ModelClient(cfg, StoreCache(io), StoreRequestLog(io), environ={"OPENAI_API_KEY": "sk-bench"})
        t0 = time.monotonic()
        results = await asyncio.gather(
            *(
                client.query("annotator", [user_message(f"Describe object {i}: a red car")], Description)
                for i in range(args.calls)
            )
        )
        wall = time.monotonic() - t0
        await client.aclose()
        await io.aclose()
        statuses = Counter(r.status for r in results)
        codes = Counter(r.error_code for r in results if not r.ok)
        faults = Counter(q.fault or "none" for q in fake.chat_requests())
        ok, failed = statuses["ok"], sum(n for s, n in statuses.items() if s != "ok")
        counts = store.counts()
        rows, logged = counts["model_calls"], counts["requests"]
        ep = cfg.agents.annotator
        print(
            f"limits: max_concurrent={ep.max_concurrent} rpm={ep.rpm or 'unlimited'} timeout={ep.timeout_s}s "
            f"max_attempts={ep.max_attempts} backoff_max={ep.backoff_max_s}s"
        )
        print(f"calls={args.calls} fault_rate={args.fault_rate:.0%} (429/503/hang evenly)")
        print(f"http requests={len(fake.chat_requests())} by scripted fault: {dict(faults)}")
        print(f"succeeded={ok} failed={failed} by code: {dict(codes)}")
        print(f"succeeded+failed={ok + failed} (lost={args.calls - ok - failed}) cached answers={rows}")
        print(f"request log rows={logged} = endpoint requests {len(fake.chat_requests())}")
        tot = add_totals(request_totals(store))
        print(
            f"tokens in={tot.tokens_in} out={tot.tokens_out} cost=${tot.cost_usd:.4f} "
            f"peak in flight at server={fake.peak_in_flight} (counts hung requests the client had abandoned)"
        )
        print(f"wall={wall:.1f}s  throughput={args.calls / wall:.1f} calls/s")
        return 0 if ok + failed == args.calls and rows == ok and logged == len(fake.chat_requests()) else 1


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--calls", type=int, default=500)
    p.add_argument("--fault-rate", type=float, default=0.2)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--rpm", type=int, default=0)
    p.add_argument("--timeout", type=float, default=2.0)
    p.add_argument("--attempts", type=int, default=6)
    p.add_argument("--seed", type=int, default=0)
    sys.exit(asyncio.run(burst(p.parse_args())))


if __name__ == "__main__":
    main()
