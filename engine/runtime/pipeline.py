"""Stages and pipelines: what a stage declares, and how a pipeline's versions chain into lineages.

A stage moves one video forward by one step. Like NeMo Curator's stages it declares what it needs
and what it makes, and the runtime reads those declarations; nothing elsewhere keeps lists of them:
- `uses`: the actor roles it sends work to ("media", "segmentor") and "model" if it calls endpoints;
- `agents(cfg)`: the agents it calls (their roles, endpoint keys and prompt versions): preflight pings
  their endpoints, the plan prices their calls;
- `outputs`: the kinds of result it writes ("objects", "masklets", "descriptions:<kind>", "reviews",
  "samples:<type>"), which tells the query layer which lineages are current (engine/store/current.py);
- `version(vc)`: its own version (prompt tags and models, or the segmentor backend's version), or
  None when it writes nothing versioned;
- `estimate(cfg)`: the calls it makes, for the dry-run plan.

A stage's lineage is its own version chained to the lineage of the stage before it, so changing a
prompt, a model or the segmentor gives new lineages to that stage and to every stage after it, and
leaves the stages before it alone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from engine.config import Config
from engine.store.current import Current
from engine.store.ids import lineage_key

if TYPE_CHECKING:
    from engine.runtime.services import StageContext


class UnitFailure(Exception):
    """One unit (a video's stage, an object's description, ...) failed; recorded, the run goes on."""

    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code, self.message = code, message


class RunAborted(RuntimeError):
    """Every further call would fail the same way (bad key, unknown model, the store refused a write): stop."""


@dataclass(frozen=True, slots=True)
class VideoTask:
    """One unit of work: a whole video, or a clip of one. Stages count frames from 0 to num_frames - 1 either way;
    Services adds first_frame when it asks the actors for a clip's frames, which are decoded from the source."""

    id: str
    path: str  # absolute: the source's file for a clip
    rel: str
    kind: str
    num_frames: int
    fps: float
    width: int
    height: int
    first_frame: int = 0  # a clip's offset in its source
    context: str | None = None  # a clip's source's caption: what the Captioner is told of the whole video


@dataclass(frozen=True)
class VersionContext:
    """What stage versions depend on: the configuration and the segmentor backend's version."""

    cfg: Config
    segmentor_version: str

    def model(self, endpoint_key: str) -> str:
        return self.cfg.endpoint(endpoint_key).model

    def agent_version(self, agent: Any) -> str:
        """An agent's prompt tag and the model its endpoint serves: '<prompt>@<n>|<model>'."""
        return f"{agent.version}|{self.model(agent.endpoint)}"


@dataclass(frozen=True)
class CallEstimate:
    """Calls a stage makes for the plan: `calls` per `per` (video, object, kept object, object pair)."""

    role: str
    endpoint: str
    per: Literal["uncaptioned", "video", "object", "kept", "pair"]
    calls: float
    text_in: int  # text tokens in per call
    images: int  # images per call
    tokens_out: int


Role = Literal["media", "segmentor", "model"]


class Stage:
    """Base of every stage. Subclasses are dataclasses; they set `name` and what they declare."""

    name: ClassVar[str]
    uses: ClassVar[tuple[Role, ...]] = ()
    outputs: ClassVar[tuple[str, ...]] = ()
    counts_as_kept: ClassVar[bool] = False  # its objects need no review (people annotated them)

    def agents(self, cfg: Config) -> tuple[Any, ...]:
        return ()

    def version(self, vc: VersionContext) -> str | None:
        """This stage's own version; by default its agents' prompt tags and models."""
        agents = self.agents(vc.cfg)
        return " ".join(vc.agent_version(a) for a in agents) if agents else None

    def estimate(self, cfg: Config) -> list[CallEstimate]:
        return []

    def planned_objects(self, video: VideoTask) -> int | None:
        """For a stage that writes objects: how many a run would find in `video`, when that can be known before
        it runs (a dataset's annotation files; 0 when the video would be dropped); None: estimate them."""
        return None

    def setup(self, cfg: Config) -> None:
        """Load what the stage needs once per run, before the first video (its agents' own setup())."""
        for agent in self.agents(cfg):
            if hasattr(agent, "setup"):
                agent.setup()

    async def run(self, video: VideoTask, ctx: StageContext) -> None:
        raise NotImplementedError


def _every_video(video: VideoTask) -> bool:
    return True


@dataclass
class Pipeline:
    name: str
    stages: list[Stage]
    description: str = ""
    accepts: Callable[[VideoTask], bool] = _every_video  # which videos this pipeline is for

    def lineages(self, vc: VersionContext) -> list[str | None]:
        """Each stage's lineage: its own version chained to the one before (None until a stage is versioned)."""
        out, parent = [], None
        for stage in self.stages:
            own = stage.version(vc)
            if own is not None:
                parent = lineage_key(parent, own)
            out.append(parent)
        return out

    @property
    def uses(self) -> set[str]:
        return {role for stage in self.stages for role in stage.uses}


def current_of(pipelines: list[Pipeline], vc: VersionContext) -> Current:
    """Which lineages the configuration makes current, from the pipelines' own declarations."""
    objects: set[str] = set()
    kept: set[str] = set()
    masklets: set[str] = set()
    reviews: set[str] = set()
    gates: set[str] = set()
    stages: set[str] = set()
    descriptions: dict[str, set[str]] = {}
    samples: dict[str, set[str]] = {}
    for p in pipelines:
        for stage, lineage in zip(p.stages, p.lineages(vc)):
            if lineage is None:
                continue
            stages.add(lineage)
            for out in stage.outputs:
                kind, _, sub = out.partition(":")
                if kind == "objects":
                    # a stage that writes objects is versioned: objects.stage_version is its version
                    version = stage.version(vc)
                    if version is None:
                        raise ValueError(f"stage {stage.name} writes objects but has no version")
                    objects.add(version)
                    if stage.counts_as_kept:
                        kept.add(version)
                elif kind == "masklets":
                    masklets.add(lineage)
                elif kind == "reviews":
                    reviews.add(lineage)
                elif kind == "gates":
                    if stage.version(vc) is not None:  # gates off: the stage writes nothing
                        gates.add(lineage)
                elif kind == "descriptions":
                    descriptions.setdefault(sub, set()).add(lineage)
                elif kind == "samples":
                    samples.setdefault(sub, set()).add(lineage)
                else:
                    raise ValueError(f"stage {stage.name} declares an unknown output {out!r}")
    return Current(
        frozenset(objects),
        frozenset(kept),
        frozenset(masklets),
        {k: frozenset(v) for k, v in descriptions.items()},
        frozenset(reviews),
        {k: frozenset(v) for k, v in samples.items()},
        frozenset(stages),
        frozenset(gates),
    )


def agents_of(pipelines: list[Pipeline], cfg: Config) -> list[Any]:
    """Every agent the pipelines call, once per role."""
    seen: dict[str, Any] = {}
    for p in pipelines:
        for stage in p.stages:
            for agent in stage.agents(cfg):
                seen.setdefault(agent.role, agent)
    return list(seen.values())


def distinct_stages(pipelines: list[Pipeline], vc: VersionContext) -> list[tuple[Pipeline, Stage]]:
    """Each stage once: pipelines that share a stage at the same lineage run it once (the plan counts it once)."""
    seen, out = set(), []
    for p in pipelines:
        for stage, lineage in zip(p.stages, p.lineages(vc)):
            key = (stage.name, lineage)
            if key not in seen:
                seen.add(key)
                out.append((p, stage))
    return out
