"""The engine as a library (engine/api.py): runs from Python, an observer that hears every phase, refusals that
record nothing, and the README's "From Python" example, run as a user would run it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from engine.api import Engine, RunObserver, RunRefused
from engine.config import load_config

ROOT = Path(__file__).resolve().parents[2]
VIDEOS = ROOT / "examples" / "videos"


class Recorder(RunObserver):
    def __init__(self) -> None:
        self.events: list[str] = []

    def phase_started(self, phase: str, total: int | None) -> None:
        self.events.append(f"start {phase}")

    def phase_advanced(self, phase: str, item: str) -> None:
        if not self.events[-1].startswith(f"item {phase}"):
            self.events.append(f"item {phase}")

    def phase_ended(self, phase: str) -> None:
        self.events.append(f"end {phase}")

    def ingested(self, report) -> None:
        self.events.append(f"ingested {len(report.videos)}")

    def split(self, report, cfg) -> None:
        self.events.append(f"split {len(report.units)}")

    def planned(self, plan, cfg, pipelines, names) -> None:
        self.events.append(f"planned {','.join(names)}")


def engine_at(tmp_path: Path, observer: RunObserver | None = None) -> Engine:
    cfg = load_config(environ={}, overrides={"data_dir": str(tmp_path / "data"), "split.detector": "none"})
    return Engine(cfg, observer=observer, environ={})


def test_a_dry_run_from_python_prints_nothing_and_tells_its_observer_each_phase_in_order(tmp_path, capfd):
    rec = Recorder()
    result = engine_at(tmp_path, rec).run(VIDEOS, ["detailed"], dry_run=True)
    assert (result.state, result.exit_code, result.sentence) == ("finished", 0, "dry run: nothing was sent")
    assert result.ingest is not None and len(result.ingest.videos) == 3
    assert result.plan is not None and result.plan.calls > 0
    assert result.summary["planned_calls"] == result.plan.calls
    assert rec.events == [
        "start probing",
        "item probing",
        "end probing",
        "ingested 3",
        "start splitting",
        "end splitting",
        "split 3",
        "planned detailed",
    ]
    out = capfd.readouterr()
    assert "Plan for a run" not in out.out + out.err and "videos readable" not in out.out + out.err
    assert out.out == ""
    runs = engine_at(tmp_path).status().runs
    assert [(r.id, r.command, r.status) for r in runs] == [(result.run_id, "run --dry-run", "finished")]


@pytest.mark.parametrize(
    ("source", "pipelines", "says"),
    [
        ("missing", ["detailed"], "is not a folder"),
        (".", ["detailed", "nope"], "unknown pipeline(s) nope"),
        ("empty", ["detailed"], "no videos found under"),
        (".", ["qa-dataset"], "holds no video of an annotated dataset"),
    ],
)
def test_a_run_that_cannot_start_is_refused_in_one_sentence_and_records_nothing(tmp_path, source, pipelines, says):
    (tmp_path / "empty").mkdir()
    (tmp_path / "videos" / "frames").mkdir(parents=True)  # a folder of frames: a plain video, of no dataset
    for i in range(2):
        Image.new("RGB", (32, 24)).save(tmp_path / "videos" / "frames" / f"{i:05d}.jpg")
    src = tmp_path / "videos" if source == "." else tmp_path / source
    eng = engine_at(tmp_path)
    with pytest.raises(RunRefused) as e:
        eng.run(src, pipelines)
    assert e.value.exit_code == 2 and says in str(e.value) and "\n" not in str(e.value)
    assert eng.status().runs == []


def test_the_readme_from_python_example_runs_the_engine_and_reads_the_store_back(tmp_path):
    readme = (ROOT / "README.md").read_text()
    assert "examples/from_python.py" in readme and "from engine.api import Engine" in readme
    r = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "from_python.py"), "--data-dir", str(tmp_path / "d")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stdout + r.stderr[-3000:]
    assert "dry run: nothing was sent: 3 videos" in r.stdout
    assert re.search(r"run [0-9a-f]{12}: finished \(exit code 0\): finished", r.stdout), r.stdout
    objects = int(re.search(r"objects (\d+), reviewed (\d+), kept (\d+)", r.stdout).group(1))
    assert objects > 0
    assert "runs: [('run --pipelines detailed', 'finished'), ('run --dry-run', 'finished')]" in r.stdout
    assert "note: agent analyzer:" in r.stdout  # the example's observer heard preflight


def test_the_readme_from_python_snippet_runs_as_written(tmp_path):
    """The README's snippet, run as a user would paste it: in a folder whose videos/ holds the bundled clips."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## From Python", 1)[1]
    snippet = section.split("```python\n", 1)[1].split("```", 1)[0]
    (tmp_path / "videos").symlink_to(VIDEOS, target_is_directory=True)
    r = subprocess.run([sys.executable, "-c", snippet], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    lines = r.stdout.splitlines()
    assert lines[0] == "finished 0 dry run: nothing was sent"
    assert "'planned_calls'" in lines[1]
    assert "command='run --dry-run', status='finished'" in lines[2]
