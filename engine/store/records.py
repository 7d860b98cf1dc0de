"""Typed rows: the store's results as the runtime holds them, one small frozen record per row.

engine/store/current.py turns the rows it loads into these records, the stages build them for what they write,
and the in-memory state of a video (engine/runtime/state.py) holds them, so a stage reads `masklet.frames`, not
`masklet["frames"]`: a misspelt field is a type error, not a KeyError mid-run. They are plain slotted
dataclasses, built and read as cheaply as a dict (no validation: the driver's CPU budget is milliseconds per object;
engine/store/checks.py checks what is written).

A record carries the columns the runtime reads or writes, not every column of its table (`created_at`, an object's
`status` and other defaults are filled in when the row is written). The store's API stays column dicts at its
boundary: `columns()` gives a record's row, `from_row()` reads one back (other columns ignored).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, ClassVar, Self

from engine.store import schema


class _Record:
    """What every record shares: its table, and its row as a dict of columns and back."""

    __slots__ = ()
    table: ClassVar[type[schema.Base]]

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Self:
        """The record of a row (a loaded row's mapping, or a dict written): its other columns are left out."""
        make: Any = cls  # the subclass's dataclass __init__, called by its field names
        return make(**{name: row[name] for name in _names(cls) if name in row})

    def columns(self) -> dict[str, Any]:
        """The record as the store writes it: column name -> value."""
        return {name: getattr(self, name) for name in _names(type(self))}


_NAMES: dict[type, tuple[str, ...]] = {}


def _names(cls: type) -> tuple[str, ...]:
    """A record class's field names, in order (looked up once per class)."""
    names = _NAMES.get(cls)
    if names is None:
        names = _NAMES[cls] = tuple(f.name for f in fields(cls))
    return names


@dataclass(frozen=True, slots=True)
class CaptionRecord(_Record):
    table = schema.Caption

    id: str
    video_id: str
    source: str  # sidecar | captions.jsonl | captions.csv | captioner
    text: str


@dataclass(frozen=True, slots=True)
class ObjectRecord(_Record):
    """A noun the Analyzer found (or a dataset's object), one record per instance."""

    table = schema.VideoObject

    id: str
    video_id: str
    noun: str
    stage_version: str  # the Analyzer's (or the dataset stage's) version
    instance: int = 0
    is_subject: bool = False


@dataclass(frozen=True, slots=True)
class MaskletRecord(_Record):
    """A mask track: RLE or None per sampled frame ({"<frame>": RLE}), its grounding and quality metrics."""

    table = schema.Masklet

    id: str
    object_id: str
    backend_version: str
    anchor_frame: int
    box: list[float]  # [x0, y0, x1, y1] pixels on the anchor frame
    grounding_score: float
    mask_score: float
    height: int
    width: int
    frames: dict[str, Any]
    coverage: float
    area_variation: float
    mean_consecutive_iou: float
    empty_frames: int
    border_contact: float
    lineage: str | None = None  # the lineage of the stage that wrote it (StageContext.save fills in one missing)


@dataclass(frozen=True, slots=True)
class DescriptionRecord(_Record):
    table = schema.Description

    id: str
    object_id: str
    kind: str  # schema.DESCRIPTION_KINDS
    text: str
    model: str
    prompt_version: str
    lineage: str | None = None


@dataclass(frozen=True, slots=True)
class ReviewRecord(_Record):
    """The Reviewer's verdict on an object, with what it judged (its masklet and descriptions)."""

    table = schema.Review

    id: str
    object_id: str
    mode: str  # paper | direct
    verdict: bool  # True: keep
    confidence: float
    rationale: str
    model: str
    prompt_version: str
    masklet_id: str | None = None
    description_ids: list[str] | None = None
    region_description_id: str | None = None
    lineage: str | None = None
    p_same: float | None = None
    score_source: str | None = None  # tokens | verbal
    token_p_same: float | None = None
    judge: str | None = None
    judges: list[dict[str, Any]] | None = None


def verbal_p_same(verdict: bool, confidence: float, judges: list[dict[str, Any]] | None) -> float:
    """A review's verbalised confidence as P(same object): the deciding judge's (the last asked) confidence in its
    own same_object answer; rows from before 0011 have only the verdict, which was that answer."""
    said = judges[-1]["same_object"] if judges else verdict
    return float(confidence) if said else 1.0 - float(confidence)


@dataclass(frozen=True, slots=True)
class SampleRecord(_Record):
    """One training record in the VideoRefer-700K format (docs/record-format.md)."""

    table = schema.Sample

    id: str
    data_type: str  # short | detailed | qa
    video_id: str
    object_ids: list[str]
    conversations: list[dict[str, str]]
    annotation: list[dict[str, Any]]  # one {"<frame>": {"segmentation": RLE or None}} per <region>
    mode: str  # single | multi
    qa_type: str | None = None
    run_id: str | None = None
    lineage: str | None = None


@dataclass(frozen=True, slots=True)
class FailureRecord(_Record):
    """A unit's failure at one stage and lineage: how many attempts it has had, and whether it is quarantined."""

    table = schema.Failure

    id: str
    unit_kind: str
    unit_id: str
    video_id: str | None  # None: an ingest failure, of no video
    stage: str
    lineage: str
    attempts: int
    error_code: str
    message: str
    quarantined: bool


@dataclass(frozen=True, slots=True)
class GateRecord(_Record):
    """A masklet's quality-gate verdict (engine/media/gates.py): passed, or the gate that stopped it."""

    table = schema.Gate

    object_id: str
    masklet_id: str
    passed: bool
    gate: str | None
    value: float | None
    threshold: float | None
    metrics: dict[str, Any]
    thresholds: dict[str, Any]
    run_id: str | None = None
    lineage: str | None = None


# What a stage saves (StageContext.save): the records of the tables it writes. Versioned ones carry the lineage of
# the stage that wrote them (the store's `lineage` column).
VersionedRecord = MaskletRecord | GateRecord | DescriptionRecord | ReviewRecord | SampleRecord
StageRecord = CaptionRecord | ObjectRecord | VersionedRecord
