"""What a run tells whoever watches it. The runtime prints nothing: the CLI's observer draws tables and
progress bars, a notebook's may log, and the default one ignores everything.

Every method does nothing here, so an observer overrides only what it shows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from engine.config import Config
    from engine.runtime.pipeline import Pipeline
    from engine.runtime.plan import Plan
    from engine.runtime.split import SplitReport
    from engine.sources.ingest import IngestReport


class RunObserver:
    def note(self, message: str) -> None:
        """A fact worth a line (an endpoint's output mode, an earlier run closed as interrupted)."""

    def warning(self, message: str) -> None:
        """Something the user should look at; the run goes on."""

    def phase_started(self, phase: str, total: int | None) -> None:
        """A phase over many items began ("probing" the inputs, "splitting" them, "executing" the pipelines);
        `total` may come later through `phase_total`."""

    def phase_total(self, phase: str, total: int) -> None:
        """The number of items the phase will go through, once known."""

    def phase_advanced(self, phase: str, item: str) -> None:
        """One more item of the phase done (its name, e.g. a path relative to the source)."""

    def phase_ended(self, phase: str) -> None:
        """Called once for every `phase_started`, however the phase ended."""

    def stage_progress(self, stage: str, done: int, total: int) -> None:
        """During execution: a stage has `done` of the `total` units it has taken up so far."""

    def actors_ready(self, pids: dict[str, list[int]]) -> None:
        """Every actor is up and the first unit is about to start (benchmarks start their clocks here)."""

    def ingested(self, report: IngestReport) -> None:
        """The source was scanned, probed and recorded."""

    def split(self, report: SplitReport, cfg: Config) -> None:
        """The sources were split into clips (or taken whole)."""

    def planned(self, plan: Plan, cfg: Config, pipelines: list[Pipeline], names: list[str]) -> None:
        """The plan of a dry run: calls, tokens and cost per agent role, before anything is sent."""

    def summarized(self, summary: dict) -> None:
        """What the run did: objects, reviews, samples, requests, failures (engine/runtime/summary.py)."""
