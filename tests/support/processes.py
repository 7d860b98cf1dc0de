"""Ending the processes a test started: by process group and by pid, never by name (other work may run here)."""

from __future__ import annotations

import os
import signal
import subprocess

import psutil


def end_family(proc: subprocess.Popen, first: signal.Signals = signal.SIGKILL, grace_s: float = 20.0) -> None:
    """End a process started with start_new_session=True, its group, and every process it started (Ray's workers
    leave the group, and one that outlives the driver for a moment would still send requests)."""
    family = psutil.Process(proc.pid).children(recursive=True)
    os.killpg(proc.pid, first)
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    for p in family:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
