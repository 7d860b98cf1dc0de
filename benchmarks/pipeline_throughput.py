"""Throughput of the detailed pipeline on Ray against a fixed-latency fake endpoint and fake segmentor.

    .venv/bin/python benchmarks/pipeline_throughput.py [--videos 96] [--latency 0.2] [--concurrency 32]

Prints objects/s achieved by the engine beside:
- the ideal bound set by the slowest stage: model calls (concurrency / latency calls/s, divided by
  the calls each object needs) or the segmentor (its cost per frame x mask frames per video);
- a naive sequential loop over the same agents and segmentor (measured on a few videos);
- the engine's own CPU time per object (driver and Ray workers, model waits excluded).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
SUPPORT = ROOT / "tests" / "support"
sys.path.insert(0, str(SUPPORT))
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SUPPORT), os.environ.get("PYTHONPATH")]))
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ["OPENAI_API_KEY"] = "sk-bench"

from engine import schema  # noqa: E402
from engine.config import load_config  # noqa: E402
from engine.sources.ingest import ingest  # noqa: E402
from engine.store import Store  # noqa: E402
from synthetic import Shape, render, write_mp4  # noqa: E402

COLORS = {"red": (220, 40, 40), "blue": (40, 80, 220), "green": (40, 170, 60)}


def make_source(folder: Path, n: int) -> None:
    for i in range(n):
        shapes = tuple(Shape(f"{c} {k}", k, rgb, 18, (0.1 + 0.25 * j, 0.2 + 0.2 * j), (1.0 + i / 8, 0.5))
                       for j, ((c, rgb), k) in enumerate(zip(COLORS.items(), ("square", "circle", "square"))))
        write_mp4(folder / f"clip_{i:03d}.mp4", render(40 + i % 7, 96, 72, shapes=shapes)[0])
        (folder / f"clip_{i:03d}.txt").write_text(f"A red square {i} passes a blue circle and a green box.")


def start_endpoint(latency: float) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, str(SUPPORT / "fake_endpoint.py"), "--latency", str(latency)],
                            stdout=subprocess.PIPE, text=True)
    return proc, proc.stdout.readline().strip()


def cpu_seconds(proc: psutil.Process) -> float:
    total = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


async def engine_run(cfg, store, video_ids) -> tuple[float, float, object]:
    from engine.runtime.executor import Services, build_pipelines, check_resources, make_pools, run_videos, start_actors
    from engine.runtime.executor import start_ray, video_tasks

    start_ray(cfg)
    check_resources(cfg)
    pools = make_pools(cfg)
    run_id = uuid.uuid4().hex
    with store.session() as q:
        q.add(schema.Run(id=run_id, command="bench", engine_version="bench", config={}))
    s = Services(cfg, store, run_id, pools)
    s.segmentor_version = await start_actors(pools)  # every actor up before the clock starts
    pipelines = build_pipelines(["detailed"])  # so are the pipeline's agents (and their imports)
    me = psutil.Process()
    cpu0, t0 = cpu_seconds(me), time.perf_counter()
    await run_videos(s, pipelines, video_tasks(store, video_ids))
    return time.perf_counter() - t0, cpu_seconds(me) - cpu0, s


def naive_loop(cfg, store, video_ids, base_url) -> tuple[float, int]:
    """The same agents and segmentor, one call after another, no Ray, no overlap."""
    import openai

    from agents.analyzer import AnalyzeItem, AnalyzerAgent
    from agents.annotator import AnnotateItem, AnnotatorAgent
    from agents.refiner import RefineItem, RefinerAgent
    from agents.reviewer import Judge, JudgeItem, RegionDescriber, RegionItem
    from agents.segmentor import SegmentRequest
    from engine.media.images import to_data_url
    from engine.media.video import Video, uniform_indices
    from engine.media.overlay import OverlayObject, draw_overlay
    from fake_segmentor import HashSegmentor

    client = openai.OpenAI(base_url=base_url, api_key="sk-bench", max_retries=0)
    seg = HashSegmentor()

    def ask(agent, item):
        msgs = agent.prompt(item)
        r = client.chat.completions.parse(model="gpt-4o-mini", messages=msgs, response_format=agent.response_format)
        return agent.parse(item, r.choices[0].message.parsed)

    t0, objects = time.perf_counter(), 0
    with store.session() as s:
        videos = [s.get(schema.Video, v) for v in video_ids]
    for v in videos:
        path = str(Path(v.source_root) / v.path)
        video = Video(path)
        analysis = ask(AnalyzerAgent(), AnalyzeItem(f"A red square passes a blue circle and a green box {v.path}."))
        mask_idx = uniform_indices(v.num_frames, cfg.sampling.mask_frames)
        frames = video.frames(mask_idx)
        tracks = seg.segment(SegmentRequest(v.id, path, tuple(mask_idx), tuple(analysis.nouns), v.height, v.width),
                             frames)
        plain = [to_data_url(f, 768, 85) for f in video.frames(uniform_indices(v.num_frames, 16))]
        for t in tracks:
            objects += 1
            texts = {q: ask(AnnotatorAgent(q), AnnotateItem(t.noun, tuple(plain))) for q in ("dynamic", "static")}
            from engine.media import masks

            anchor = frames[mask_idx.index(t.anchor_frame)]
            overlay = to_data_url(draw_overlay(anchor, [OverlayObject(mask=masks.decode(t.masks[t.anchor_frame]))]))
            region = ask(RegionDescriber(), RegionItem(overlay))
            verdict = ask(Judge(), JudgeItem(t.noun, region, texts["static"], texts["dynamic"]))
            if verdict.same_object:
                ask(RefinerAgent(), RefineItem(t.noun, texts["static"], texts["dynamic"]))
    return time.perf_counter() - t0, objects


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--videos", type=int, default=96)
    p.add_argument("--naive-videos", type=int, default=4)
    p.add_argument("--latency", type=float, default=0.2)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--seg-s-per-frame", type=float, default=0.005)
    p.add_argument("--videos-in-flight", type=int, default=48)
    args = p.parse_args()
    os.environ["FAKE_SEGMENTOR_S_PER_FRAME"] = str(args.seg_s_per_frame)
    endpoint, url = start_endpoint(args.latency)
    os.environ["OPENAI_BASE_URL"] = url
    try:
        with tempfile.TemporaryDirectory() as tmp:
            src = Path(tmp) / "videos"
            src.mkdir()
            make_source(src, args.videos)
            env = {"ENGINE_DATA_DIR": str(Path(tmp) / "data"),
                   "ENGINE_SEGMENTOR__BACKEND": "fake_segmentor:HashSegmentor",
                   "ENGINE_RAY__RESOURCES": '{"segmentor": {"num_gpus": 0, "num_cpus": 0.5}, '
                                            '"media": {"num_cpus": 0.5, "max_concurrency": 4}}',
                   "ENGINE_RUNTIME__VIDEOS_IN_FLIGHT": str(args.videos_in_flight)}
            for agent in ("captioner", "analyzer", "annotator", "reviewer", "refiner"):
                env[f"ENGINE_AGENTS__{agent.upper()}__MAX_CONCURRENT"] = str(args.concurrency)
            cfg = load_config(environ=env)
            store = Store(cfg.resolved_database_url)
            ids = [v.id for v in ingest(store, src).videos]
            wall, cpu, s = asyncio.run(engine_run(cfg, store, ids))
            counts = store.counts()
            with store.session() as q:
                objects = q.query(schema.VideoObject).filter_by(status="grounded").count()
                calls = q.query(schema.ModelCall).count()
                mask_frames = sum(len(m.frames) for m in q.query(schema.Masklet)) / max(1, objects)
            seg_time = args.seg_s_per_frame * cfg.sampling.mask_frames * len(ids)  # one segmentor actor
            llm_bound = objects / (calls / (args.concurrency / args.latency))
            seg_bound = objects / seg_time if seg_time else float("inf")
            bound = min(llm_bound, seg_bound)
            naive_wall, naive_objects = naive_loop(cfg, Store(cfg.resolved_database_url), ids[:args.naive_videos], url)
            naive = naive_objects / naive_wall
            achieved = objects / wall
            print(f"videos={len(ids)} objects={objects} model calls={calls} ({calls / objects:.2f}/object) "
                  f"samples={counts['samples']} failures={counts['failures']}")
            print(f"endpoint latency={args.latency * 1000:.0f} ms, {args.concurrency} concurrent; segmentor "
                  f"{args.seg_s_per_frame * 1000:.1f} ms/frame x {cfg.sampling.mask_frames} frames/video")
            print(f"{'':28}{'objects/s':>10}{'vs bound':>10}")
            print(f"{'ideal bound (slowest stage)':28}{bound:10.2f}{1:10.0%}   "
                  f"(model calls {llm_bound:.2f}, segmentor {seg_bound:.2f})")
            print(f"{'engine (Ray)':28}{achieved:10.2f}{achieved / bound:10.0%}   wall {wall:.1f} s")
            print(f"{'naive sequential loop':28}{naive:10.2f}{naive / bound:10.0%}   "
                  f"({naive_objects} objects in {naive_wall:.1f} s)")
            print(f"engine vs naive: {achieved / naive:.1f}x; engine CPU per object: {cpu / objects * 1000:.0f} ms "
                  f"(driver + Ray workers, {cpu:.1f} s in all; mask frames/object {mask_frames:.0f})")
    finally:
        endpoint.terminate()
        import ray

        ray.shutdown()


if __name__ == "__main__":
    main()
