"""One run of the engine, in the order it happens:

    preflight -> open the run row -> ingest -> split -> plan -> execute (or stop at the plan) -> summary -> close

Every way a run can stop after its row is open ends in `_phases` with a reason, so the row is always closed
(engine/runtime/run_state.py says which state and exit code). Before the row, a setting the run cannot start
with raises RunRefused: nothing was sent and nothing recorded. Nothing here prints: what a person sees comes
through a RunObserver (engine/runtime/observer.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import engine
from engine.config import Config
from engine.runtime.observer import RunObserver
from engine.runtime.pipeline import Pipeline, VersionContext, agents_of, current_of
from engine.runtime.plan import Plan, make_plan, measured_tokens
from engine.runtime.plugins import origin as plugin_origin
from engine.runtime.run_state import ABORTED, EXIT_CODES, FINISHED, RUN_END_MARK, Outcome, mark_interrupted, outcome
from engine.runtime.summary import run_summary
from engine.runtime.tally import RunTally
from engine.runtime.units import uncaptioned, video_tasks
from engine.sources.ingest import IngestReport, ingest
from engine.store.current import current_rows
from engine.store.db import Store
from engine.store.faults import cause, is_store_fault, one_line, store_error
from engine.store.runs import close_run, open_run, save_summary
from engine.store.views import current_to_json

if TYPE_CHECKING:
    from engine.runtime.metrics import MetricsServer
    from engine.runtime.split import SplitReport

log = logging.getLogger(__name__)


class RunRefused(Exception):
    """The run could not start; the message is one sentence that says why. Nothing was sent. With exit code 2 a
    setting, an endpoint or the input is wrong; with 3 the store refused the run's row."""

    def __init__(self, message: str, exit_code: int = 2):
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class RunRequest:
    source: Path
    pipelines: list[Pipeline]
    names: list[str]  # as asked for: they name the run ("run --pipelines detailed,qa")
    versions: VersionContext
    segmentor_path: str
    dry_run: bool = False
    limit: int | None = None
    use_cache: bool = True
    retry_failed: bool = False


@dataclass
class RunResult:
    """How a run ended (`state`, the process's `exit_code`, one `sentence`) and what it did."""

    run_id: str
    state: str
    exit_code: int
    sentence: str
    store_url: str
    summary: dict[str, Any] = field(default_factory=dict)
    ingest: IngestReport | None = None
    split: SplitReport | None = None
    plan: Plan | None = None

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


def run(
    cfg: Config,
    open_store: Callable[[], Store],
    request: RunRequest,
    observer: RunObserver | None = None,
    environ: Mapping[str, str] | None = None,
) -> RunResult:
    """Run the engine once. Raises RunRefused before anything is recorded; afterwards, every outcome (an abort,
    Ctrl-C, a store that stops taking writes) is a RunResult with its row closed when the store allows it.
    The store is opened after preflight, which names a wrong cluster, segmentor or endpoint first."""
    obs = observer or RunObserver()
    os.environ.setdefault("VIDEOREFER_CACHE_DIR", str(cfg.data_path / "cache"))  # e.g. MeViS's mask index
    try:
        probed = preflight(cfg, request, obs, environ)
        store = open_store()
        run_id = uuid.uuid4().hex
        command = "run --dry-run" if request.dry_run else f"run --pipelines {','.join(request.names)}"
        tally = RunTally()  # what the run does, as it happens: the live snapshot and the metrics read it
        for row in probed.get("requests", ()):  # preflight's probes count in the run they served (role "probe")
            tally.request(row)
        server = None if request.dry_run else _serve_metrics(cfg, request, run_id, tally, obs)
        try:
            try:
                for stale, state in mark_interrupted(store, cfg.data_path / "logs"):
                    obs.note(stale_sentence(stale, state))
                open_run(
                    store, run_id, command, engine.__version__, cfg.model_dump(mode="json"),
                    str(request.source.resolve()), probed.get("requests", ()), provenance(cfg, request),
                )  # fmt: skip
            except Exception as e:
                if not is_store_fault(e):
                    raise
                raise RunRefused(f"aborted: {store_error(e, store.url)}", exit_code=3) from None
            with run_log(cfg, run_id) as logfile:
                try:
                    result = _phases(cfg, store, request, run_id, probed, logfile, obs, environ, tally)
                finally:
                    stop_ray(cfg)
                closed = _close(store, result, obs)
            if server is not None:
                _linger(server, cfg, obs)
            return closed
        finally:
            if server is not None:
                server.close()
    finally:
        stop_ray(cfg)


def _serve_metrics(
    cfg: Config, request: RunRequest, run_id: str, tally: RunTally, obs: RunObserver
) -> MetricsServer | None:
    """The run's /metrics (metrics.port), up before the run's row: a port that is taken refuses the run."""
    if cfg.metrics.port is None:
        return None
    from engine.runtime.metrics import serve_metrics  # prometheus_client loads only when asked for

    info = {"run_id": run_id, "pipelines": ",".join(request.names), "engine_version": engine.__version__}
    try:
        server = serve_metrics(cfg.metrics.port, tally, info)
    except OSError as e:
        raise RunRefused(f"metrics.port {cfg.metrics.port}: cannot listen on 127.0.0.1 ({e.strerror or e})") from None
    obs.note(f"metrics: {server.url} (Prometheus text format) while the run lasts")
    return server


def _linger(server: MetricsServer, cfg: Config, obs: RunObserver) -> None:
    """The final values stay up for metrics.linger_s, so a scraper that comes every 15 s sees them; Ctrl-C ends it."""
    if cfg.metrics.linger_s <= 0:
        return
    obs.note(f"metrics: the final values stay at {server.url} for {cfg.metrics.linger_s:g} s (Ctrl-C ends it)")
    with contextlib.suppress(KeyboardInterrupt):
        time.sleep(cfg.metrics.linger_s)


def provenance(cfg: Config, request: RunRequest) -> dict[str, Any]:
    """What the run's row keeps beside its settings, so its results can be read without its flags or PYTHONPATH:
    the settings' origin, the pipelines, the lineages they make current and where the segmentor was imported from."""
    found = plugin_origin(request.segmentor_path)
    return {
        **cfg.origin,
        "pipelines": list(request.names),
        "plugins": {request.segmentor_path: found} if found else {},
        "current": current_to_json(current_of(request.pipelines, request.versions)),
    }


def stale_sentence(run_id: str, state: str) -> str:
    if state == "interrupted":
        return f"run {run_id[:12]} stopped without a word (killed?): marked interrupted"
    return f"run {run_id[:12]} could not close its row when it ended: closed as {state}, as its run log says"


# --- preflight -------------------------------------------------------------------------------------------


def preflight(
    cfg: Config, request: RunRequest, obs: RunObserver, environ: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """What can be known before the run, checked before any request and before the run row: the cluster's
    address, the store, the actors' resources, the segmentor's checkpoints; then every endpoint the pipelines'
    agents use, each server's output mode learnt and each vision agent's model proven to see images. Returns
    what was learnt, with the probe requests for the request log."""
    from engine.llm.client import EndpointError, ModelClient
    from engine.llm.request_log import MemoryLog
    from engine.runtime.executor import roles_of
    from engine.runtime.preflight import PreflightError, check_cluster, check_ray_address, check_store

    try:
        check_ray_address(cfg)
        if request.dry_run:
            return {}
        for warning in check_store(cfg):
            obs.warning(warning)
        check_cluster(cfg, roles_of(request.pipelines), request.segmentor_path)
    except PreflightError as e:
        raise RunRefused(str(e)) from None
    agents = agents_of(request.pipelines, cfg)
    keys = sorted({a.endpoint for a in agents})
    vision = sorted({a.endpoint for a in agents if getattr(a, "sees_images", False)})
    judges = (
        {a.endpoint: a for a in agents if getattr(a, "reads_logprobs", False)} if cfg.review.logprobs == "auto" else {}
    )
    probes = MemoryLog()
    try:
        client = ModelClient(cfg, log=probes, environ=dict(environ) if environ is not None else None)
        client.check(keys)

        async def probe_all() -> None:
            try:
                for key in keys:
                    await client.ping(key)
                for key in keys:
                    mode = await client.learn_mode(key)
                    ep = client.endpoint(key)
                    obs.note(f"agent {key}: {ep.base_url} (model {ep.cfg.model}): output mode {mode}")
                for key, judge in sorted(judges.items()):
                    if await client.check_logprobs(key):
                        obs.note(f"judge {judge.name}: token log-probabilities returned: its score is P(same object)")
                    else:
                        obs.note(
                            f"judge {judge.name}: {client.endpoint(key).base_url} returns no token log-probabilities: "
                            "its score is its verbalised confidence"
                        )
                for key in vision:
                    tokens = await client.check_vision(key)
                    obs.note(
                        f"agent {key}: sees images" + (f" (a 64x64 image: {tokens} prompt tokens)" if tokens else "")
                    )
            finally:
                await client.aclose()

        asyncio.run(probe_all())
    except EndpointError as e:
        raise RunRefused(str(e)) from None
    return {**client.probed(), "requests": list(probes.rows.values())}


# --- the phases, once the run has its row ----------------------------------------------------------------


def _phases(
    cfg: Config,
    store: Store,
    req: RunRequest,
    run_id: str,
    probed: dict[str, Any],
    logfile: RunLog,
    obs: RunObserver,
    environ: Mapping[str, str] | None,
    tally: RunTally | None = None,
) -> RunResult:
    """Ingest, split, plan, then execute (or stop at the plan). Every way the run can stop ends here with a
    reason, so the caller always closes the run row."""
    res = RunResult(run_id, "", 0, "", store.url)
    summary = res.summary
    try:
        with _phase(obs, "probing"):
            report = res.ingest = ingest(
                store,
                req.source,
                frame_folder_fps=cfg.sampling.frame_folder_fps,
                limit=req.limit,
                run_id=run_id,
                on_start=lambda n: obs.phase_total("probing", n),
                on_progress=lambda rel: obs.phase_advanced("probing", rel),
            )
        obs.ingested(report)
        summary.update(
            videos=len(report.videos),
            new_videos=report.new_videos,
            problems=len(report.problems),
            duplicates=len(report.duplicates),
        )
        split = res.split = _split(cfg, store, report, run_id, req.retry_failed, obs)
        obs.split(split, cfg)
        summary["split"] = split.as_summary()
        tasks = video_tasks(store, split.units)
        plan = res.plan = make_plan(
            cfg,
            req.pipelines,
            req.versions,
            tasks,
            uncaptioned(store, [t.id for t in tasks]),
            measured_tokens(store, cfg, req.pipelines),
            rows_of=partial(current_rows, store),
            environ=os.environ if environ is None else environ,
        )
        summary.update(
            planned_calls=plan.calls,
            planned_cost_usd=plan.cost_usd,
            planned_objects=plan.objects,
            planned_objects_estimated=plan.objects_estimated,
            planned_videos_with_work=plan.videos_with_work,
            plan={
                a.role: {
                    "calls": a.calls,
                    "tokens_in": a.tokens_in,
                    "tokens_out": a.tokens_out,
                    "cost_usd": a.cost_usd,
                }
                for a in plan.roles
            },
        )
        if req.dry_run:
            stop_ray(cfg)
            obs.planned(plan, cfg, req.pipelines, req.names)
            return _ended(res, Outcome(FINISHED, 0, "dry run: nothing was sent"))
        save_summary(store, run_id, summary)  # the plan, for whoever watches the run (the Runs page's projection)
        reason, interrupted, execution = None, False, None
        try:
            execution = _execute(cfg, store, run_id, split.units, req, probed, obs, environ, tally)
        except KeyboardInterrupt:
            interrupted = True
        except Exception as e:  # every way a run can stop ends with its row closed and a reason
            reason = abort_reason(e, store, logfile)
        done = run_summary(
            store, run_id, [*split.units, *(v.id for v in report.videos)], current_of(req.pipelines, req.versions)
        )
        done["videos"] = len(split.units)  # the units: whole videos and clips
        if cfg.review.cascade:
            done["cascade"] = {
                "bands": {j.name: list(b) for j, b in zip(cfg.review.cascade, cfg.review.bands())},
                "calibrated": cfg.review.calibrated,
            }
        if execution is not None:
            done["cache_hits"] = dict(execution.cache_hits)
        obs.summarized(done)
        summary.update(done)
        return _ended(res, outcome(summary, reason, interrupted))
    except KeyboardInterrupt:
        return _ended(res, outcome(summary, interrupted=True))
    except Exception as e:  # ingest, split or the summary: the run row is closed with the reason
        return _ended(res, outcome(summary, abort_reason(e, store, logfile)))


def _ended(res: RunResult, out: Outcome) -> RunResult:
    res.state, res.exit_code, res.sentence = out.state, out.exit_code, out.sentence
    return res


@contextlib.contextmanager
def _phase(obs: RunObserver, name: str) -> Iterator[None]:
    obs.phase_started(name, None)
    try:
        yield
    finally:
        obs.phase_ended(name)


def _split(
    cfg: Config, store: Store, report: IngestReport, run_id: str, retry_failed: bool, obs: RunObserver
) -> SplitReport:
    from engine.runtime.split import split_sources

    with _phase(obs, "splitting"):
        return split_sources(
            cfg,
            store,
            report.videos,
            report.source,
            run_id,
            report.timed_captions,
            on_start=lambda n: obs.phase_total("splitting", n),
            on_progress=lambda rel: obs.phase_advanced("splitting", rel),
            retry_failed=retry_failed,
        )


def _execute(
    cfg: Config,
    store: Store,
    run_id: str,
    units: list[str],
    req: RunRequest,
    probed: dict[str, Any],
    obs: RunObserver,
    environ: Mapping[str, str] | None,
    tally: RunTally | None = None,
) -> Any:
    from engine.runtime.executor import execute

    on_main = threading.current_thread() is threading.main_thread()  # signal handlers can only be set there
    previous = signal.signal(signal.SIGTERM, _interrupt) if on_main else None  # a polite kill ends like Ctrl-C
    try:
        with _phase(obs, "executing"):
            return asyncio.run(
                execute(
                    cfg,
                    store,
                    run_id,
                    units,
                    req.pipelines,
                    req.segmentor_path,
                    req.versions.segmentor_version,
                    req.use_cache,
                    req.retry_failed,
                    obs.stage_progress,
                    environ=dict(environ) if environ is not None else None,
                    on_ready=obs.actors_ready,
                    probed=probed,
                    tally=tally,
                )
            )
    finally:
        if on_main:
            signal.signal(signal.SIGTERM, previous)
        stop_ray(cfg)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _close(store: Store, res: RunResult, obs: RunObserver) -> RunResult:
    """The run row gets its end; the run log's last line says it too, for when the store cannot take it."""
    log.info("%s%s", RUN_END_MARK, res.sentence)
    try:
        close_run(store, res.run_id, res.state, res.sentence, res.summary)
    except Exception as e:  # the store is what failed: the next run or status closes the row
        if not is_store_fault(e):
            raise
        obs.warning(f"the run's row could not be closed ({cause(e)}); the next engine run or engine status closes it")
        if res.exit_code == 0:  # the results are stored, but the store refused a write: not a clean finish
            _ended(res, Outcome(ABORTED, EXIT_CODES[ABORTED], f"aborted: {store_error(e, store.url)}"))
    return res


def stop_ray(cfg: Config) -> None:
    """The run's local Ray instance, started by the split phase or the pipelines, ends with the run (one instance
    for both: a process that starts Ray again after shutting it down is slower, and racier)."""
    ray = sys.modules.get("ray")  # loaded only when something used it
    if ray is not None and not cfg.ray.address and ray.is_initialized():
        ray.shutdown()


# --- the run log -----------------------------------------------------------------------------------------


class RunLog(logging.FileHandler):
    """<data_dir>/logs/run-<id>.log. A line that cannot be written (a full disk) is dropped, never a traceback on
    the console; `failed` remembers it, so nobody is sent to a log that is not there."""

    def __init__(self, path: Path):
        # Opened now, while there may still be room: its first block then takes the lines of the end too.
        super().__init__(path, delay=True)
        self.path, self.failed = path, False
        try:
            self.stream = self._open()
        except OSError:
            self.failed = True

    def handleError(self, record: logging.LogRecord) -> None:
        self.failed = True


@contextlib.contextmanager
def run_log(cfg: Config, run_id: str) -> Iterator[RunLog]:
    """Everything from INFO up, tracebacks included, in <data_dir>/logs/run-<id>.log during the run."""
    logs = cfg.data_path / "logs"
    with contextlib.suppress(OSError):
        logs.mkdir(parents=True, exist_ok=True)
    handler = RunLog(logs / f"run-{run_id}.log")
    handler.setLevel(logging.INFO)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    level = root.level
    root.setLevel(min(level, logging.INFO) if level else logging.INFO)
    root.addHandler(handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        with contextlib.suppress(OSError):
            handler.close()


def abort_reason(e: BaseException, store: Store, logfile: RunLog) -> str:
    """One line for the run row and the console; the traceback goes to the run log."""
    from engine.runtime.pipeline import RunAborted

    log.info("the run stopped", exc_info=e)
    if isinstance(e, RunAborted):
        return str(e)
    if is_store_fault(e):
        return str(store_error(e, store.url))
    first = one_line(str(e))[:300]
    where = "" if logfile.failed else f" (traceback in {logfile.path})"
    return f"{type(e).__name__}: {first}{where}"
