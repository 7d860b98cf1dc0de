"""The `engine` command line, in process (typer's runner) and as the installed console script."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from engine.cli import app
from engine.config import Config, load_config
from engine.store import Store

runner = CliRunner()
REPO = Path(__file__).resolve().parents[2]


def _invoke(*args, env=None):
    result = runner.invoke(app, list(args), env={"COLUMNS": "200", **(env or {})})
    return result


def test_help_lists_every_command_with_an_example():
    out = _invoke("--help").output
    for cmd in ("init", "run", "status"):
        assert f"\n  {cmd} " in out
    flat = " ".join(out.split())
    assert "e.g. engine init" in flat and "e.g. engine run --source" in flat and "e.g. engine status" in flat
    assert "engine run --source examples/videos --dry-run" in out


def test_dry_run_over_a_mixed_source(tmp_path, mixed_source):
    data = tmp_path / "data"
    r = _invoke("run", "--source", str(mixed_source), "--dry-run", "--data-dir", str(data))
    assert r.exit_code == 0, r.output
    out = r.output
    # every unreadable input is listed with its reason, and the run went on
    for name, reason in (
        ("broken/empty.mp4", "file is empty"),
        ("broken/notes.mp4", "not a video this engine can"),
        ("broken/truncated.mp4", "not a video this engine can"),
    ):
        assert name in out and reason in out
    assert "video_reader.cc" not in out and "av_read_frame" not in out  # the decoder's internals stay in debug logs
    assert re.search(r"videos readable\s*│\s*3 │", out) and re.search(r"skipped \(see above\)\s*│\s*3 │", out)
    assert "Plan for a run of detailed" in out and "annotator.dynamic" in out and "total" in out
    # the dry run split both video files (the frame folder stays whole): bikes.mp4's six shots, three of them 2 s or
    # longer, each a unit of its own; the small generated clip dropped (under 240 px)
    assert re.search(r"sources split in this run\s*│\s*2 │", out) and re.search(r"clips found\s*│\s*7 │", out)
    assert re.search(r"dropped: too short\s*│\s*3 │", out) and re.search(r"dropped: low resolution\s*│\s*1 │", out)
    counts = Store(load_config(environ={"ENGINE_DATA_DIR": str(data)}).resolved_database_url).counts()
    assert (counts["videos"], counts["clips"], counts["captions"], counts["failures"], counts["runs"]) == (
        6,
        7,
        2,
        3,
        1,
    )

    again = _invoke("run", "--source", str(mixed_source), "--dry-run", "--data-dir", str(data))
    assert again.exit_code == 0
    assert re.search(r"sources split before \(not decoded again\)\s*│\s*2 │", again.output), again.output
    counts2 = Store(load_config(environ={"ENGINE_DATA_DIR": str(data)}).resolved_database_url).counts()
    assert counts2 == {**counts, "runs": 2}  # only the run itself is recorded again

    status = _invoke("status", "--data-dir", str(data))
    assert status.exit_code == 0
    assert "empty_file" in status.output and "run --dry-run" in status.output and "finished" in status.output


def test_plan_numbers_follow_the_config(tmp_path, mixed_source):
    cfg = tmp_path / "engine.toml"
    cfg.write_text('[plan]\nobjects_per_video = 2.0\n[agents.annotator]\nmodel = "my-vlm"\n')
    r = _invoke("run", "-s", str(mixed_source), "--dry-run", "--config", str(cfg), "--data-dir", str(tmp_path / "d"))
    assert r.exit_code == 0, r.output
    annotator = next(line for line in r.output.splitlines() if "annotator.dynamic" in line)
    # 4 units (bikes.mp4's three clips of 2 s or more, the frame folder; the small clip is dropped) x 2 objects
    assert "my-vlm" in annotator and " 8 " in annotator


def test_set_overrides_any_key_and_reports_bad_ones(tmp_path, mixed_source):
    args = ("run", "-s", str(mixed_source), "--dry-run", "--data-dir", str(tmp_path / "d"))
    r = _invoke(
        *args,
        "--set",
        "plan.objects_per_video=1",
        "--set",
        'agents.annotator.model="vlm-x"',
        "--set",
        "split.detector=none",
    )
    assert r.exit_code == 0, r.output
    annotator = next(line for line in r.output.splitlines() if "annotator.static" in line)
    assert "vlm-x" in annotator and " 3 " in annotator  # 3 videos, not split, x 1 object
    r = _invoke(*args, "--set", "plan.objects_per_video=lots")
    assert r.exit_code == 2 and "plan.objects_per_video" in r.output and "command-line" in r.output
    r = _invoke(*args, "--set", "novalue")
    assert r.exit_code == 2 and "KEY=VALUE" in r.output


def test_limit(tmp_path, mixed_source):
    r = _invoke("run", "-s", str(mixed_source), "--dry-run", "--limit", "1", "--data-dir", str(tmp_path / "d"))
    assert r.exit_code == 0
    assert Store(f"sqlite:///{tmp_path / 'd' / 'engine.sqlite'}").counts()["videos"] == 1


def test_errors_exit_non_zero_with_a_message(tmp_path, mixed_source):
    r = _invoke("run", "--source", str(tmp_path / "nope"), "--dry-run", "--data-dir", str(tmp_path / "d"))
    assert r.exit_code == 2 and "is not a folder" in r.output
    r = _invoke("run", "--source", str(mixed_source), "--dry-run", env={"ENGINE_SAMPLING__MASK_FRAMES": "zero"})
    assert r.exit_code == 2 and "sampling.mask_frames" in r.output and "ENGINE_SAMPLING__MASK_FRAMES" in r.output
    r = _invoke("run", "--source", str(mixed_source), "--data-dir", str(tmp_path / "d"))
    assert r.exit_code == 2 and "Nothing was run" in r.output
    assert not (tmp_path / "d").exists()  # it stopped before touching anything
    r = _invoke("status", "--database-url", "postgresql+psycopg://nobody:secret@127.0.0.1:1/x")
    assert r.exit_code == 2 and "cannot open the store" in r.output and "secret" not in r.output


def test_init_writes_a_loadable_default_and_refuses_to_overwrite(tmp_path):
    path = tmp_path / "engine.toml"
    assert _invoke("init", str(path)).exit_code == 0
    assert load_config(path, environ={}) == Config()
    r = _invoke("init", str(path))
    assert r.exit_code == 1 and "--force" in r.output
    assert _invoke("init", str(path), "--force").exit_code == 0


def test_console_script_runs_the_readme_command_on_the_examples(tmp_path):
    """The README's first command, through the installed `engine` entry point, in a fresh folder."""
    engine_bin = Path(sys.executable).with_name("engine")
    assert engine_bin.exists(), "the console script `engine` is not installed"
    shutil.copytree(REPO / "examples", tmp_path / "examples")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENGINE_")}
    proc = subprocess.run(
        [str(engine_bin), "run", "--source", "examples/videos", "--dry-run"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Plan for a run of detailed" in proc.stdout
    assert (tmp_path / "engine-data" / "engine.sqlite").exists()
    assert Store(f"sqlite:///{tmp_path / 'engine-data' / 'engine.sqlite'}").counts()["videos"] == 3


def test_status_shows_request_totals_per_agent_role(tmp_path):
    from engine.store import schema

    data = tmp_path / "d"
    store = Store(f"sqlite:///{data / 'engine.sqlite'}")
    with store.session() as s:
        s.add(
            schema.Run(
                id="r" * 32,
                command="run --pipelines detailed",
                engine_version="0",
                config={},
                summary={"cache_hits": {"annotator.static": 4}},
            )
        )
        s.flush()
        for i, (role, status, tin, cost) in enumerate(
            [
                ("annotator.static", "ok", 100, 0.25),
                ("annotator.static", "http_503", None, None),
                ("reviewer.judge", "ok", 100, 0.5),
                ("reviewer.judge", "sent", None, None),
            ]
        ):
            s.add(
                schema.Request(
                    id=f"{i:032d}",
                    run_id="r" * 32,
                    role=role,
                    endpoint_key=role.split(".")[0],
                    model="m",
                    endpoint="",
                    request_hash=f"{i:064d}",
                    kind="call",
                    attempt=1,
                    status=status,
                    tokens_in=tin,
                    tokens_out=10 if tin else None,
                    cost_usd=cost,
                )
            )
    r = _invoke("status", "--data-dir", str(data))
    assert r.exit_code == 0, r.output
    # role, requests, ok, failed, cache hits, tokens in, tokens out, tokens unknown, cost
    line = next(line for line in r.output.splitlines() if "annotator.static" in line)
    assert re.search(r"annotator.static\s*│\s*2 │\s*1 │\s*1 │\s*- │\s*100 │\s*10 │\s*1 │\s*0.2500", line), line
    assert re.search(r"total\s*│\s*4 │\s*2 │\s*2 │\s*- │\s*200 │\s*20 │\s*2 │\s*0.7500", r.output)
    assert "Requests by agent role, run rrrrrrrrrrrr" in r.output
    assert re.search(r"annotator.static\s*│\s*2 │\s*1 │\s*1 │\s*4 │", r.output)  # this run's cache hits
