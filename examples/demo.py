"""Run the full engine offline on examples/videos, with stand-in models.

No model endpoint or segmentor weights can be reached on an offline machine, so this starts the
local OpenAI-compatible test endpoint (deterministic answers derived from each request) and uses
the deterministic test segmentor, then runs `engine run` exactly as a user would, all three
pipelines. The data it writes is shaped like the real thing but its text is not meaningful.

    .venv/bin/python examples/demo.py [--data-dir demo-data]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SUPPORT = ROOT / "tests" / "support"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default="demo-data")
    args = p.parse_args()
    endpoint = subprocess.Popen([sys.executable, str(SUPPORT / "fake_endpoint.py")], stdout=subprocess.PIPE, text=True)
    try:
        url = endpoint.stdout.readline().strip()
        print(f"stand-in model endpoint: {url}", flush=True)
        env = {
            **os.environ,
            "OPENAI_BASE_URL": url,
            "OPENAI_API_KEY": "sk-demo",
            "RAY_AUTH_MODE": "disabled",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(SUPPORT), os.environ.get("PYTHONPATH")])),
        }
        engine = Path(sys.executable).with_name("engine")
        cmd = [
            str(engine),
            "run",
            "--source",
            str(ROOT / "examples" / "videos"),
            "--pipelines",
            "short,detailed,qa",
            "--data-dir",
            args.data_dir,
            "--set",
            "segmentor.backend=fake_segmentor:HashSegmentor",
            "--set",
            "ray.resources.segmentor.num_gpus=0",
            "--set",
            "ray.resources.segmentor.num_cpus=0.5",
            "--set",
            "ray.resources.media.num_cpus=0.5",
        ]
        return subprocess.call(cmd, env=env)
    finally:
        endpoint.terminate()


if __name__ == "__main__":
    sys.exit(main())
