"""What can be known before a run is checked before a run: the cluster, the segmentor, the store.

Each check refuses with one sentence that names the setting to change (PreflightError; `engine run`
exits 2 with nothing sent and no run recorded). Ray's and the actors' tracebacks never reach the
console: their last line does, and the whole of them goes to a log file named in the sentence.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from engine.config import Config

log = logging.getLogger(__name__)
ADDRESS_TIMEOUT_S = 10.0


class PreflightError(RuntimeError):
    """A setting the run cannot start with; the message says which and what to do."""


def check_ray_address(cfg: Config, timeout_s: float = ADDRESS_TIMEOUT_S) -> None:
    """A cluster address must answer within timeout_s (ray.init would retry it forever)."""
    address = cfg.ray.address
    if not address or address == "local":
        return
    if address == "auto":
        address = os.environ.get("RAY_ADDRESS", "")
        if not address:
            current = Path("/tmp/ray/ray_current_cluster")  # where `ray start --head` writes its address
            address = current.read_text().strip() if current.is_file() else ""
        if not address:
            raise PreflightError(
                "--ray-address auto: no Ray cluster runs on this machine (start one with `ray start "
                "--head`, or give ray.address as host:port)"
            )
    hostport = address.removeprefix("ray://")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise PreflightError(f"--ray-address {cfg.ray.address!r} is not host:port, ray://host:port or 'auto'")
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection((host, int(port)), timeout=max(0.5, deadline - time.monotonic())):
                return
        except OSError as e:
            if time.monotonic() >= deadline:
                raise PreflightError(
                    f"--ray-address {cfg.ray.address}: nothing answers at {host}:{port} within "
                    f"{timeout_s:g} s ({e.strerror or type(e).__name__}); start the cluster or fix "
                    "ray.address"
                ) from None
            time.sleep(0.5)


def check_store(cfg: Config) -> list[str]:
    """The store can be written, and there is room; returns warnings. Creates nothing."""
    url = cfg.resolved_database_url
    if not url.startswith("sqlite:///"):
        return _check_server_store(url)
    path = Path(url.removeprefix("sqlite:///"))
    folder = path.parent
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    for target in (path, folder) if path.exists() else (existing,):
        if target.exists() and not os.access(target, os.W_OK):
            raise PreflightError(
                f"the store {path} cannot be written ({target} is read-only); set --data-dir (or "
                "database_url) to a writable place"
            )
    free = shutil.disk_usage(existing).free
    if free < cfg.runtime.min_free_gb * 1e9:
        return [
            f"only {free / 1e6:,.0f} MB free where the store lives ({existing}); a run that fills the disk stops "
            f"(it can be resumed). runtime.min_free_gb = {cfg.runtime.min_free_gb:g} sets this warning"
        ]
    return []


def _check_server_store(url: str) -> list[str]:
    from engine.store.faults import where
    from engine.store.reach import why_unreachable

    why = why_unreachable(url, ADDRESS_TIMEOUT_S)
    if why is not None:
        raise PreflightError(f"the store {where(url)} cannot be reached: {why}; check database_url")
    return []


def check_cluster(cfg: Config, roles: Sequence[str], segmentor_path: str) -> None:
    """Start (or join) Ray; the actors' resources must fit the cluster, and the segmentor must build (its
    checkpoints load) in a short-lived actor, released before anything else starts."""
    import ray

    from engine.runtime.executor import check_resources, ray_error_line, start_ray
    from engine.runtime.pipeline import RunAborted

    if not roles:
        return
    start_ray(cfg)
    try:
        check_resources(cfg, roles)
    except RunAborted as e:
        raise PreflightError(str(e)) from None
    if "segmentor" not in roles:
        return
    from engine.runtime.actors import SegmentorWorker

    r = cfg.ray.resources["segmentor"]
    # Any: Ray's stubs type an actor handle's methods as the class's own, which have no .remote
    actor: Any = (
        ray.remote(SegmentorWorker)
        .options(num_cpus=r.num_cpus, num_gpus=r.num_gpus, max_restarts=0)
        .remote(segmentor_path, cfg.segmentor.model_dump_json())
    )
    try:
        ray.get(actor.ready.remote())
    except (ray.exceptions.RayActorError, ray.exceptions.RayTaskError) as e:
        where = preflight_log(cfg, e)
        line = ray_error_line(e)
        hint = "" if "segmentor." in line else " (check the segmentor's settings: checkpoints, backend)"
        raise PreflightError(
            f"the segmentor ({cfg.segmentor.backend}) could not be built: {line.rstrip('.')}"
            f"{hint}; the whole error is in {where}"
        ) from None
    finally:
        ray.kill(actor)


def preflight_log(cfg: Config, e: BaseException) -> str:
    """Write a refused preflight's traceback to <data_dir>/logs; returns where (or why it could not)."""
    path = cfg.data_path / "logs" / f"preflight-{time.strftime('%Y%m%d-%H%M%S')}.log"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(traceback.format_exception(e)))
    except OSError as oe:
        return f"no log ({oe.strerror})"
    return str(path)
