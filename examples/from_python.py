"""The engine from Python (engine/api.py): the same runs as `engine run`, with no subprocess and no console.

A dry run over examples/videos prints the plan's numbers; then the detailed pipeline runs for real against
the local stand-in endpoint and the deterministic stand-in segmentor (offline machines reach no model),
and the store's status is read back.

    .venv/bin/python examples/from_python.py [--data-dir from-python-data]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from engine.api import Engine, RunObserver

ROOT = Path(__file__).resolve().parents[1]
SUPPORT = ROOT / "tests" / "support"  # the stand-in endpoint and segmentor


class Notes(RunObserver):
    """An observer shows only what it overrides: here, notes and warnings as plain lines."""

    def note(self, message: str) -> None:
        print(f"  note: {message}")

    def warning(self, message: str) -> None:
        print(f"  warning: {message}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default="from-python-data")
    args = p.parse_args()
    # The stand-in segmentor is imported here and by Ray's workers: they find it on PYTHONPATH.
    sys.path.insert(0, str(SUPPORT))
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SUPPORT), os.environ.get("PYTHONPATH")]))
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    endpoint = subprocess.Popen([sys.executable, str(SUPPORT / "fake_endpoint.py")], stdout=subprocess.PIPE, text=True)
    try:
        assert endpoint.stdout is not None
        url = endpoint.stdout.readline().strip()
        engine = Engine.from_settings(
            data_dir=args.data_dir,
            overrides={
                "segmentor.backend": "fake_segmentor:HashSegmentor",
                "ray.resources.segmentor.num_gpus": 0,
                "ray.resources.segmentor.num_cpus": 0.5,
                "ray.resources.media.num_cpus": 0.5,
            },
            environ={"OPENAI_BASE_URL": url, "OPENAI_API_KEY": "sk-example"},
            observer=Notes(),
        )

        planned = engine.run(ROOT / "examples" / "videos", ["detailed"], dry_run=True)
        assert planned.plan is not None and planned.ingest is not None
        print(f"{planned.sentence}: {len(planned.ingest.videos)} videos, {planned.plan.calls:.0f} calls planned")

        result = engine.run(ROOT / "examples" / "videos", ["detailed"])
        s = result.summary
        print(f"run {result.run_id[:12]}: {result.state} (exit code {result.exit_code}): {result.sentence}")
        print(f"objects {s['objects']}, reviewed {s['reviewed']}, kept {s['kept']}, samples {s['samples']}")

        status = engine.status()
        print("store:", status.store_url)
        print("runs:", [(r.command, r.status) for r in status.runs])
        print("requests by role:", {t.role: t.requests for t in status.requests})
        return result.exit_code
    finally:
        endpoint.terminate()


if __name__ == "__main__":
    sys.exit(main())
