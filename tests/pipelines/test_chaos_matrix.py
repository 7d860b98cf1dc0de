"""The chaos matrix: each fault aimed at one unit at one stage of a small real run, and what it costs.

One Ray instance serves every run here (joined with --ray-address, so no run stops it). Faults that cannot
interfere share a run, each aimed at a video of its own: model faults by the agent's schema and a word
that only that video's caption holds (the Captioner, which sees only frames, by the colour of the frames),
segmentor faults by noun, a store fault by an SQLite trigger. For every cell the test asserts:
- the run ends in the documented state and exit code;
- only the units the fault touched are quarantined (transient faults are retried into success);
- no traceback and no IntegrityError reaches the console;
- after the fault is removed, a rerun (--retry-failed) completes, and the final export equals the export
  of a run that met no fault.
The matrix is printed as a table (pytest -s shows it).
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from engine_runs import open_store
from fake_endpoint import FakeEndpoint, FaultRule
from synthetic import write_frame_folder, write_mp4
from typer.testing import CliRunner

from engine.cli import app
from engine.store import Store, schema

AGENTS = ("captioner", "analyzer", "annotator", "reviewer", "refiner")
# Short timeouts and backoff, and a breaker that the matrix's many aimed faults do not trip.
CLIENT = {"timeout_s": 1.0, "backoff_max_s": 0.1, "max_attempts": 6, "breaker_failures": 500}
ENV = {f"ENGINE_AGENTS__{a.upper()}__{k.upper()}": str(v) for a in AGENTS for k, v in CLIENT.items()}
FLAGS = (
    "--set",
    "segmentor.backend=fake_segmentor:ChaosSegmentor",
    "--set",
    "split.detector=none",
    "--set",
    "ray.resources.segmentor.num_gpus=0",
    "--set",
    "ray.resources.segmentor.num_cpus=0.25",
    "--set",
    "ray.resources.media.num_cpus=0.25",
    "--set",
    "sampling.mask_frames=4",
    "--set",
    "sampling.annotator_frames=2",
    "--set",
    "runtime.max_unit_attempts=2",
    "--set",
    "runtime.videos_in_flight=16",
    "--set",
    "qa.pairs_per_set=1",
)
PIPELINES = ("--pipelines", "detailed,qa")

# The model stages: the schema their agent answers in (the fault is aimed at that agent's requests).
MODEL_STAGES = {
    "caption": "Caption",
    "analyze": "Nouns",
    "annotate": "ObjectDescription",
    "review": "Verdict",
    "refine detailed": "DetailedDescription",
    "qa": "QASet",
}
# fault -> how many requests it hits (None: every one until it is removed: the unit is quarantined)
MODEL_FAULTS = {
    "schema-violating answer": ("schema", None),
    "truncated JSON": ("truncated", None),
    "empty content": ("empty", None),
    "refusal sentence": ("refusal_text", None),
    "wrong types": ("wrong_types", None),
    "5 MB answer": ("huge", None),
    "invalid UTF-8": ("bad_utf8", None),
    "timeout": ("hang", 1),
    "connection reset": ("drop", 2),
    "5xx burst": ("503", 3),
    "429 with Retry-After": ("429", 2),
}
STAGE_OF = {
    "caption": "caption",
    "analyze": "analyze",
    "annotate": "annotate.",
    "review": "review",
    "refine detailed": "refine",
    "qa": "qa",
}
COLOURS = [
    (200, 40, 40),
    (40, 200, 40),
    (40, 40, 200),
    (200, 200, 40),
    (200, 40, 200),
    (40, 200, 200),
    (120, 60, 20),
    (20, 120, 60),
    (60, 20, 120),
    (230, 140, 40),
    (140, 40, 230),
]


def _frames(n: int, colour: tuple[int, int, int], w: int = 64, h: int = 48) -> np.ndarray:
    frames = np.empty((n, h, w, 3), np.uint8)
    frames[:] = colour
    for k in range(n):  # a small square that moves: something for the segmentor's masks to follow
        frames[k, 10:22, 4 + 2 * k : 16 + 2 * k] = (255, 255, 255)
    return frames


def _video(src: Path, name: str, caption: str | None, colour=(90, 90, 90)) -> None:
    write_mp4(src / f"{name}.mp4", _frames(10, colour))
    if caption is not None:
        (src / f"{name}.txt").write_text(caption)


def _cells() -> list[dict]:
    """Every cell of the combined run: its stage, fault, the video it is aimed at and the rule that aims it."""
    cells = []
    for si, (stage, schema_name) in enumerate(MODEL_STAGES.items()):
        for fi, (fault, (code, times)) in enumerate(MODEL_FAULTS.items()):
            marker = f"mk{si}x{fi:02d}q"
            if stage == "caption":
                rule = FaultRule(code, schema=schema_name, color=COLOURS[fi], times=times)
            else:
                rule = FaultRule(code, schema=schema_name, text=marker, times=times)
            cells.append(
                dict(
                    stage=stage,
                    fault=fault,
                    video=marker,
                    rule=rule,
                    transient=times is not None,
                    colour=COLOURS[fi] if stage == "caption" else None,
                )
            )
    cells += [
        dict(stage="segment", fault="exception", video="segfailq", rule=None, transient=False),
        dict(stage="segment", fault="wrong-size mask", video="wrongsizeq", rule=None, transient=False),
        dict(stage="segment", fault="decode failure mid-video", video="decodeq", rule=None, transient=False),
        dict(stage="samples", fault="injected integrity error", video="storeq", rule=None, transient=False),
        dict(stage="gate", fault="injected integrity error", video="gateq", rule=None, transient=False),
    ]
    return cells


def _source(root: Path, cells: list[dict], broken_frame: bool) -> Path:
    src = root / "videos"
    src.mkdir(parents=True, exist_ok=True)
    _video(src, "clean", "A plainq ball rolls by.")
    for i, c in enumerate(cells):  # each video its own colour: same bytes would make them one video
        if c["fault"] == "decode failure mid-video":
            folder = src / "decodeq"
            write_frame_folder(folder, _frames(10, (70, 110, 150)))
            (src / "decodeq.txt").write_text("A decodeq ball rolls by.")
            if broken_frame:  # a frame in the middle that no decoder reads; ingest probes the first and last
                middle = sorted(folder.iterdir())[5]
                middle.write_bytes(b"\xff\xd8 this is no JPEG " * 4)
        elif c["stage"] == "caption":
            _video(src, f"cap{c['video']}", None, c["colour"])
        else:
            _video(
                src, c["video"], f"A {c['video']} rolls by.", (30 + i * 7 % 190, 30 + i * 13 % 190, 30 + i * 29 % 190)
            )
    return src


def _run(endpoint, data: Path, src: Path, address: str, *extra: str, database_url: str | None = None):
    env = {
        "OPENAI_BASE_URL": endpoint.base_url,
        "OPENAI_API_KEY": "sk-test",
        "RAY_AUTH_MODE": "disabled",
        "COLUMNS": "160",
        **ENV,
    }
    db = ("--database-url", database_url) if database_url else ()
    return CliRunner().invoke(
        app,
        [
            "run",
            "--data-dir",
            str(data),
            *db,
            *FLAGS,
            "--ray-address",
            address,
            "--source",
            str(src),
            *PIPELINES,
            *extra,
        ],
        env=env,
    )


def _export(data: Path, out: Path, database_url: str | None = None) -> dict[str, list]:
    db = ("--database-url", database_url) if database_url else ()
    r = CliRunner().invoke(
        app, ["export", "--data-dir", str(data), *db, *FLAGS[:2], "--out", str(out)], env={"COLUMNS": "160"}
    )
    assert r.exit_code in (0, 4), r.output
    records = {}
    for f in sorted(out.glob("*.json")):
        if f.name.startswith(("manifest", "card")):
            continue
        data_ = json.loads(f.read_text())
        if isinstance(data_, list):
            records[f.name] = sorted(json.dumps(x, sort_keys=True) for x in data_)
    return records


def _quiet(output: str) -> None:
    assert "Traceback" not in output and "IntegrityError" not in output, output[-3000:]


def _quarantined(data: Path, database_url: str | None = None) -> dict[str, set[tuple[str, str]]]:
    """Quarantined units by video file name: {(stage, error code)}."""
    store = Store(database_url) if database_url else open_store(data)
    f, v = schema.Failure, schema.Video
    with store.session() as s:
        rows = s.execute(
            sa.select(v.path, f.stage, f.error_code).join(v, v.id == f.video_id).where(f.quarantined)
        ).all()
    store.dispose()
    out: dict[str, set[tuple[str, str]]] = {}
    for path, stage, code in rows:
        out.setdefault(Path(path).stem, set()).add((stage, code))
    return out


@pytest.fixture(scope="module")
def ray_address():
    """One Ray instance for every run of the matrix (runs join it, so none stops it)."""
    import ray

    if ray.is_initialized():
        ray.shutdown()
    os.environ["CHAOS_SEGMENTOR_FAULTS"] = str(SEGMENTOR_FAULTS)  # the workers inherit it from here
    SEGMENTOR_FAULTS.unlink(missing_ok=True)
    ctx = ray.init(include_dashboard=False, log_to_driver=False, num_cpus=2)
    yield ctx.address_info["gcs_address"]
    ray.shutdown()
    SEGMENTOR_FAULTS.unlink(missing_ok=True)


SEGMENTOR_FAULTS = Path(tempfile.gettempdir()) / f"chaos-segmentor-{os.getpid()}"  # what ChaosSegmentor does now
MATRIX: list[tuple[str, str, str]] = []  # (stage, fault, outcome), printed at the end


@pytest.mark.timeout(600)
def test_model_segmentor_and_store_faults_cost_their_unit_only(tmp_path, ray_address):
    cells = _cells()
    with FakeEndpoint(hang_s=1.5, retry_after_s="0.2", answers={"same_object": True}) as endpoint:
        # a run that meets no fault: what every final export must equal
        ref_src = _source(tmp_path / "ref", cells, broken_frame=False)
        ref = _run(endpoint, tmp_path / "ref-data", ref_src, ray_address)
        assert ref.exit_code == 0, ref.output[-3000:]
        reference = _export(tmp_path / "ref-data", tmp_path / "ref-out")
        assert sum(len(v) for v in reference.values()) > len(cells)  # a record from every video

        # the same inputs with every fault aimed at its unit
        src = _source(tmp_path / "chaos", cells, broken_frame=True)
        data = tmp_path / "chaos-data"
        Store(f"sqlite:///{data / 'engine.sqlite'}").dispose()  # the schema, so the trigger can be set before
        with sqlite3.connect(data / "engine.sqlite") as db:  # the store refuses this video's samples
            db.execute(
                "CREATE TRIGGER chaos BEFORE INSERT ON samples WHEN instr(NEW.conversations, 'storeq') > 0 "
                "BEGIN SELECT RAISE(ABORT, 'chaos: injected constraint failure'); END"
            )
            db.execute(  # and this video's masklet quality-gate verdicts
                "CREATE TRIGGER chaos_gate BEFORE INSERT ON gates WHEN "
                "(SELECT noun FROM objects WHERE id = NEW.object_id) = 'gateq' "
                "BEGIN SELECT RAISE(ABORT, 'chaos: injected constraint failure'); END"
            )
        endpoint.rules = [c["rule"] for c in cells if c["rule"] is not None]
        SEGMENTOR_FAULTS.write_text("segfail wrongsize")
        r = _run(endpoint, data, src, ray_address)
        _quiet(r.output)
        assert r.exit_code == 1, r.output[-3000:]  # finished with failures: the permanent faults' units
        assert "finished with failures" in r.output
        quarantined = _quarantined(data)
        fired = {id(c["rule"]): c["rule"].fired for c in cells if c["rule"] is not None}

        expected_videos = set()
        for c in cells:
            name = f"cap{c['video']}" if c["stage"] == "caption" else c["video"]
            got = quarantined.get(name, set())
            if c["rule"] is not None:
                assert fired[id(c["rule"])] > 0, f"{c['stage']} / {c['fault']}: the fault never fired"
            if c["transient"]:
                assert not got, f"{c['stage']} / {c['fault']}: a transient fault quarantined {got}"
                outcome = f"retried into success ({fired[id(c['rule'])]} faulty answers)"
            else:
                expected_videos.add(name)
                stages = {stage for stage, _ in got}
                want = STAGE_OF.get(c["stage"], c["stage"])
                assert got and all(st.startswith(want) or c["stage"] == "samples" for st in stages), (
                    f"{c['stage']} / {c['fault']}: quarantined {got}"
                )
                outcome = "quarantined: " + ", ".join(sorted(f"{st} ({code})" for st, code in got))
            MATRIX.append((c["stage"], c["fault"], outcome))
        assert set(quarantined) == expected_videos, set(quarantined) ^ expected_videos  # nothing else
        assert {code for _, code in quarantined["storeq"]} == {"store_rejected"}
        assert quarantined["gateq"] == {("gate", "store_rejected")}

        # the faults removed: a rerun completes, and the export equals the fault-free run's
        endpoint.rules = []
        SEGMENTOR_FAULTS.unlink()
        with sqlite3.connect(data / "engine.sqlite") as db:
            db.execute("DROP TRIGGER chaos")
            db.execute("DROP TRIGGER chaos_gate")
        shutil.copytree(ref_src / "decodeq", src / "decodeq", dirs_exist_ok=True)
        again = _run(endpoint, data, src, ray_address, "--retry-failed")
        _quiet(again.output)
        assert again.exit_code == 0, again.output[-3000:]
        assert _export(data, tmp_path / "chaos-out") == reference


@pytest.mark.timeout(300)
def test_a_full_disk_ends_the_run_in_one_line_and_a_rerun_after_space_finishes(tmp_path, ray_address):
    mount = tmp_path / "small"
    mount.mkdir()
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], check=True, capture_output=True)
    except (subprocess.CalledProcessError, FileNotFoundError) as e:
        pytest.skip(f"cannot mount a small tmpfs here to fill: {getattr(e, 'stderr', b'').decode().strip() or e}")
    try:
        src = tmp_path / "videos"
        src.mkdir()
        _video(src, "one", "A fullq ball rolls by.")
        with FakeEndpoint(answers={"same_object": True}) as endpoint:
            ref = _run(endpoint, tmp_path / "ref", src, ray_address)
            assert ref.exit_code == 0, ref.output[-3000:]
            reference = _export(tmp_path / "ref", tmp_path / "ref-out")
            data = mount / "d"
            r = _run(endpoint, data, src, ray_address)
            _quiet(r.output)
            assert r.exit_code == 3, r.output[-3000:]
            flat = " ".join(r.output.split())  # rich wraps long lines
            assert flat.count("aborted:") == 1, r.output[-3000:]
            assert (
                f"aborted: the store refused writes: database or disk is full ({data / 'engine.sqlite'}) (exit code 3)"
            ) in flat, r.output[-3000:]
            MATRIX.append(("store", "full disk", "aborted, exit 3, one line; rerun after space: equal export"))
            subprocess.run(["mount", "-o", "remount,size=256m", str(mount)], check=True)
            again = _run(endpoint, data, src, ray_address)
            _quiet(again.output)
            assert again.exit_code == 0, again.output[-3000:]
            store = open_store(data)
            with store.session() as s:
                states = [x.status for x in s.query(schema.Run).order_by(schema.Run.started_at)]
            store.dispose()
            assert states[-1] == "finished" and states[0] in ("aborted", "interrupted", "running"), states
            assert _export(data, tmp_path / "out") == reference
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


@pytest.mark.postgres
@pytest.mark.timeout(300)
def test_postgresql_connections_terminated_mid_run_are_reconnected(tmp_path, ray_address, pg_database):
    src = tmp_path / "videos"
    src.mkdir()
    for i in range(6):
        _video(src, f"pg{i}", f"A pgq{i} ball rolls by.", COLOURS[i])
    store = Store(pg_database)
    with store.engine.begin() as c:
        names = ", ".join(f'"{t.name}"' for t in schema.Base.metadata.sorted_tables)
        c.exec_driver_sql(f"TRUNCATE {names} CASCADE")
    dbname = sa.make_url(pg_database).database
    with FakeEndpoint(latency_s=0.05, answers={"same_object": True}) as endpoint:
        ref = _run(endpoint, tmp_path / "ref", src, ray_address)
        assert ref.exit_code == 0, ref.output[-3000:]
        reference = _export(tmp_path / "ref", tmp_path / "ref-out")
        killed = {}

        def terminate_after(n: int) -> None:
            deadline = time.monotonic() + 120
            while len(endpoint.work_requests()) < n and time.monotonic() < deadline:
                time.sleep(0.02)
            with store.engine.connect() as c:
                killed["n"] = len(
                    c.exec_driver_sql(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %(d)s "
                        "AND pid <> pg_backend_pid()",
                        {"d": dbname},
                    ).all()
                )

        start = len(endpoint.work_requests())
        t = threading.Thread(target=terminate_after, args=(start + 15,))
        t.start()
        r = _run(endpoint, tmp_path / "pg", src, ray_address, database_url=pg_database)
        t.join()
        _quiet(r.output)
        assert killed.get("n", 0) >= 1
        assert r.exit_code == 0, r.output[-3000:]
        assert _export(tmp_path / "pg", tmp_path / "out", pg_database) == reference
    store.dispose()
    MATRIX.append(
        (
            "store",
            "PostgreSQL connections terminated",
            f"reconnected once ({killed['n']} terminated); finished, equal export",
        )
    )


@pytest.mark.timeout(300)
def test_dataset_faults_cost_their_video_only(tmp_path, ray_address):
    """Ref-YouTube-VOS as released, with three quirks: two objects with one expression, a frame file missing in
    the middle of a video, an object whose mask is empty on every frame."""
    import dataset_layouts as layouts
    from PIL import Image

    root = tmp_path / "ytvos"
    layouts.make_ytvos(root, videos=("vclean", "vdup", "vmissing", "vempty"))
    meta_path = root / "meta_expressions" / "train" / "meta_expressions.json"
    meta = json.loads(meta_path.read_text())
    exps = meta["videos"]["vdup"]["expressions"]
    for e in exps.values():
        e["exp"] = "a shape moving right"  # one expression for both objects
    meta_path.write_text(json.dumps(meta))
    (root / "train" / "JPEGImages" / "vmissing" / "00015.jpg").unlink()
    for png in (root / "train" / "Annotations" / "vempty").iterdir():  # object 1 is never on any frame
        im = Image.open(png)
        label = np.asarray(im).copy()
        label[label == 1] = 0
        out = Image.fromarray(label, mode="P")
        out.putpalette(im.getpalette())
        out.save(png)
    with FakeEndpoint(answers={"same_object": True}) as endpoint:
        data = tmp_path / "d"
        r = _run(endpoint, data, root, ray_address, "--pipelines", "qa")
        _quiet(r.output)
        store = open_store(data)
        with store.session() as s:
            names = {v.id: Path(v.path).name for v in s.query(schema.Video)}
            objects: dict[str, int] = {}
            for o in s.query(schema.VideoObject):
                objects[names[o.video_id]] = objects.get(names[o.video_id], 0) + 1
            detailed = {
                names[o.video_id]
                for o, d in s.query(schema.VideoObject, schema.Description)
                .join(schema.Description, schema.Description.object_id == schema.VideoObject.id)
                .filter(schema.Description.kind == "detailed")
            }
            failed = {names.get(f.video_id, f.unit_id): f.error_code for f in s.query(schema.Failure)}
            run = s.query(schema.Run).order_by(schema.Run.started_at.desc()).first()
        store.dispose()
    assert objects.get("vdup") == 2 and "vdup" in detailed  # two objects, one expression: both go on
    assert objects.get("vclean") == 2 and "vclean" in detailed
    assert objects.get("vempty") == 1 and "vempty" in detailed  # the empty object left out, counted
    assert run.summary["dropped"].get("dataset_objects:no_mask_on_sampled_frames") == 1
    assert set(failed) <= {"vmissing"}, failed  # a missing frame costs that video at most
    missing = (
        f"quarantined ({failed['vmissing']})"
        if "vmissing" in failed
        else ("described, its masks matched to the frames left by name" if "vmissing" in detailed else "left out")
    )
    assert r.exit_code == (1 if failed else 0), r.output[-3000:]
    MATRIX.extend(
        [
            ("dataset objects", "duplicate expressions across instances", "both objects stored and exported"),
            ("dataset objects", "missing frame file", f"the video {missing}; the others finished"),
            ("dataset objects", "empty mask", "object left out, counted as no_mask_on_sampled_frames"),
        ]
    )


def test_print_the_matrix():
    """The cells run above and their outcomes (pytest -s shows the table)."""
    if not MATRIX:
        pytest.skip("the matrix's runs did not run in this session")
    width = max(len(f"{s} / {f}") for s, f, _ in MATRIX)
    print(f"\n{'cell (stage / fault)':<{width}}  outcome")
    for stage, fault, out in MATRIX:
        print(f"{f'{stage} / {fault}':<{width}}  {out}")
