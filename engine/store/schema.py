"""The SQL store's tables (SQLAlchemy 2.0 typed models). Alembic migrations in engine/store/migrations create them.

Most rows' primary key is a stable id derived from content (engine/store/ids.py), and each table has
the unique constraint that makes repeating an insert harmless; the completion markers and gate verdicts,
which nothing references, are keyed by that unique key alone. Rows written by the pipeline are
never deleted by it: rejects, failures and the results of older versions are kept.

Versions: every result a stage writes (masklets, descriptions, reviews, samples, completions)
carries `lineage`, a key of the versions of that stage and of every stage before it (see
engine/store/current.py). The rows whose lineage the configuration names are "current"; a new
prompt, model or backend version gives new rows beside the old ones. Rows written before lineages
existed have lineage NULL: kept, addressable, never current.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from engine.store.ids import DERIVED_ID_LEN

ID = sa.String(32)
DERIVED_ID = sa.String(DERIVED_ID_LEN)  # a unit derived from a video: the video's prefix, then its hash (0014)
NO_VIDEO = ""  # model_calls.video_id of a call made outside any video (a probe)


def utcnow() -> datetime:
    return datetime.now(UTC)


def _enum(name: str, *values: str) -> sa.Enum:
    # VARCHAR + CHECK on every backend (no native PostgreSQL enum types to migrate later).
    return sa.Enum(*values, name=name, native_enum=False, create_constraint=True, length=16)


DESCRIPTION_KINDS = ("appearance", "motion", "region", "detailed", "short")
DATA_TYPES = ("short", "detailed", "qa")
# why a pairing is "different object" (the review UI's reason codes)
AUDIT_REASONS = ("wrong_object", "mask_wrong", "hallucinated", "several_objects", "other")


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: sa.JSON, list[Any]: sa.JSON, datetime: sa.DateTime(timezone=True)}


LINEAGE = sa.String(32)


class Run(Base):
    __tablename__ = "runs"
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    command: Mapped[str] = mapped_column(sa.Text)
    # running | finished | finished_with_failures | finished_empty | aborted | interrupted
    # (engine/runtime/run_state.py says when each is set)
    status: Mapped[str] = mapped_column(sa.String(32), default="running")
    engine_version: Mapped[str] = mapped_column(sa.String(32))
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # what the resolved config cannot say: --set overrides, ENGINE_ variables, plug-ins' origins, the lineages the
    # run made current (engine/store/views.py); NULL for runs made before migration 0007
    provenance: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)
    source: Mapped[str | None] = mapped_column(sa.Text)
    summary: Mapped[dict[str, Any]] = mapped_column(default=dict)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    heartbeat_at: Mapped[datetime | None]  # a running run that stopped beating was interrupted
    # the run in flight, rewritten with each heartbeat: stages' done/total, units per minute (engine status --follow)
    live: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)
    reason: Mapped[str | None] = mapped_column(sa.Text)  # why it aborted
    finished_at: Mapped[datetime | None]


class Video(Base):
    """One unit the pipelines work on: an input video (id = hash of its bytes, so a copy of the same file elsewhere
    is the same video), or a clip of one: a frame range [first_frame, first_frame + num_frames) of the source
    `parent_id`, decoded from the source's file (path), never re-encoded. A clip's id is its `clips` row's id."""

    __tablename__ = "videos"
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    path: Mapped[str] = mapped_column(sa.Text)  # relative to source_root, POSIX separators
    source_root: Mapped[str] = mapped_column(sa.Text)
    kind: Mapped[str] = mapped_column(_enum("video_kind", "file", "frames"))
    num_frames: Mapped[int]
    fps: Mapped[float]
    width: Mapped[int]
    height: Mapped[int]
    size_bytes: Mapped[int] = mapped_column(sa.BigInteger)
    mtime_ns: Mapped[int | None] = mapped_column(sa.BigInteger)  # unchanged path, size and mtime: not re-probed
    parent_id: Mapped[str | None] = mapped_column(ID, index=True)  # a clip's source video; NULL for a source
    first_frame: Mapped[int] = mapped_column(default=0, server_default="0")  # a clip's offset in its source
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    __table_args__ = (sa.Index("ix_videos_source_path", "source_root", "path"),)


class Clip(Base):
    """A frame range of a source video that the split stage found (engine/media/shots.py, clips.py): kept, or
    dropped with its reason. Rows of every split version stay; the current ones are those of the source's
    `split` completion at the current split lineage. A kept clip's unit is the Video row `video_id`: the source
    itself when the clip is the whole source, else a clip row."""

    __tablename__ = "clips"
    id: Mapped[str] = mapped_column(ID, primary_key=True)  # stable_id("clip", source id, start, end, detector)
    source_id: Mapped[str] = mapped_column(sa.ForeignKey("videos.id"), index=True)
    lineage: Mapped[str] = mapped_column(LINEAGE, index=True)  # the split's: detector version and clip rules
    start: Mapped[int]
    end: Mapped[int]  # exclusive
    kept: Mapped[bool]
    reason: Mapped[str | None] = mapped_column(sa.String(32))  # too_short | black | uniform | static | ...
    scores: Mapped[dict[str, Any]] = mapped_column(default=dict)
    hashes: Mapped[list[Any]] = mapped_column(default=list)  # pHash (16 hex digits) of frames at 1/4, 1/2, 3/4
    video_id: Mapped[str | None] = mapped_column(ID)  # the unit, for a kept clip
    run_id: Mapped[str | None] = mapped_column(sa.ForeignKey("runs.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Caption(Base):
    __tablename__ = "captions"
    __table_args__ = (sa.UniqueConstraint("video_id", "source"),)
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    video_id: Mapped[str] = mapped_column(sa.ForeignKey("videos.id"))  # its unique index serves it (0010)
    source: Mapped[str] = mapped_column(sa.String(32))  # sidecar | captions.jsonl | captions.csv | captioner
    text: Mapped[str] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class VideoObject(Base):
    """A noun the Analyzer found in a video; one row per instance once the Segmentor splits them."""

    __tablename__ = "objects"
    __table_args__ = (sa.UniqueConstraint("video_id", "noun", "instance", "stage_version"),)
    id: Mapped[str] = mapped_column(DERIVED_ID, primary_key=True)
    video_id: Mapped[str] = mapped_column(sa.ForeignKey("videos.id"))  # its unique index serves it (0010)
    noun: Mapped[str] = mapped_column(sa.String(128))
    instance: Mapped[int] = mapped_column(default=0)
    is_subject: Mapped[bool] = mapped_column(default=False)
    stage_version: Mapped[str] = mapped_column(sa.String(200))  # the Analyzer's lineage: prompt tag | model name
    # Written by engines before lineages; never read (grounded = a masklet at the current segment lineage).
    status: Mapped[str] = mapped_column(
        _enum("object_status", "pending", "grounded", "not_grounded"), default="pending"
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Masklet(Base):
    """A mask track: RLE per sampled frame ({"<frame>": RLE or null}) plus grounding and quality metrics."""

    __tablename__ = "masklets"
    __table_args__ = (sa.UniqueConstraint("object_id", "lineage", name="uq_masklets_object_lineage"),)
    id: Mapped[str] = mapped_column(DERIVED_ID, primary_key=True)
    object_id: Mapped[str] = mapped_column(sa.ForeignKey("objects.id"))  # its unique index serves it (0010)
    backend_version: Mapped[str] = mapped_column(sa.String(200))
    lineage: Mapped[str | None] = mapped_column(LINEAGE, index=True)
    anchor_frame: Mapped[int]
    box: Mapped[list[Any]]  # [x0, y0, x1, y1] pixels on the anchor frame
    grounding_score: Mapped[float]
    mask_score: Mapped[float]
    height: Mapped[int]
    width: Mapped[int]
    frames: Mapped[dict[str, Any]]
    coverage: Mapped[float]
    area_variation: Mapped[float]
    mean_consecutive_iou: Mapped[float]
    empty_frames: Mapped[int]
    border_contact: Mapped[float]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Description(Base):
    __tablename__ = "descriptions"
    __table_args__ = (sa.UniqueConstraint("object_id", "kind", "lineage", name="uq_descriptions_object_kind_lineage"),)
    id: Mapped[str] = mapped_column(DERIVED_ID, primary_key=True)
    object_id: Mapped[str] = mapped_column(sa.ForeignKey("objects.id"))  # its unique index serves it (0010)
    kind: Mapped[str] = mapped_column(_enum("description_kind", *DESCRIPTION_KINDS))
    lineage: Mapped[str | None] = mapped_column(LINEAGE, index=True)
    text: Mapped[str] = mapped_column(sa.Text)
    model: Mapped[str] = mapped_column(sa.String(128))
    prompt_version: Mapped[str] = mapped_column(sa.String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Review(Base):
    __tablename__ = "reviews"
    __table_args__ = (sa.UniqueConstraint("object_id", "lineage", name="uq_reviews_object_lineage"),)
    id: Mapped[str] = mapped_column(DERIVED_ID, primary_key=True)
    object_id: Mapped[str] = mapped_column(sa.ForeignKey("objects.id"))  # its unique index serves it (0010)
    lineage: Mapped[str | None] = mapped_column(LINEAGE, index=True)
    # What was judged, so an audit shows exactly that (NULL on rows from before lineages).
    masklet_id: Mapped[str | None] = mapped_column(sa.ForeignKey("masklets.id", name="fk_reviews_masklet_id"))
    description_ids: Mapped[list[Any] | None]
    mode: Mapped[str] = mapped_column(_enum("review_mode", "paper", "direct"))
    verdict: Mapped[bool]  # True = keep: the description and the mask refer to the same object
    confidence: Mapped[float]  # the deciding judge's verbalised confidence that its same_object answer is right
    # The deciding judge's score, P(same object), and where it came from: "tokens" (its answer token's probability,
    # also in token_p_same) or "verbal" (its confidence turned into P(same)). NULL on rows from before 0011.
    p_same: Mapped[float | None]
    score_source: Mapped[str | None] = mapped_column(sa.String(8))
    token_p_same: Mapped[float | None]
    judge: Mapped[str | None] = mapped_column(sa.String(64))  # which judge decided ("reviewer" without a cascade)
    judges: Mapped[list[Any] | None]  # every judge asked, in order: {judge, model, p_same, source, ...}
    rationale: Mapped[str] = mapped_column(sa.Text)
    region_description_id: Mapped[str | None] = mapped_column(sa.ForeignKey("descriptions.id"))
    model: Mapped[str] = mapped_column(sa.String(128))
    prompt_version: Mapped[str] = mapped_column(sa.String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Gate(Base):
    """A masklet's quality-gate verdict at a lineage (pipelines/stages.py GateStage): passed, or the gate that stopped
    it with the metric's value and the threshold; the metrics and thresholds it was judged by."""

    __tablename__ = "gates"
    # Keyed by (object, lineage), with no hashed id of its own (0012): nothing references a verdict, and an id
    # would be one more index page per insert at a random place.
    __table_args__ = (sa.PrimaryKeyConstraint("object_id", "lineage", name="pk_gates"),)
    object_id: Mapped[str] = mapped_column(sa.ForeignKey("objects.id"))
    lineage: Mapped[str] = mapped_column(LINEAGE)
    masklet_id: Mapped[str] = mapped_column(sa.ForeignKey("masklets.id"))
    passed: Mapped[bool]
    gate: Mapped[str | None] = mapped_column(sa.String(32))  # the config key of the gate it failed
    value: Mapped[float | None]
    threshold: Mapped[float | None]
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    thresholds: Mapped[dict[str, Any]] = mapped_column(default=dict)
    run_id: Mapped[str | None] = mapped_column(sa.ForeignKey("runs.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Audit(Base):
    """A person's judgement of one Reviewer decision: was the description/mask pairing truly correct?"""

    __tablename__ = "audits"
    __table_args__ = (sa.UniqueConstraint("review_id", "auditor"),)
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    review_id: Mapped[str] = mapped_column(sa.ForeignKey("reviews.id"), index=True)
    auditor: Mapped[str] = mapped_column(sa.String(64))
    human_verdict: Mapped[bool]  # True = the description and the mask refer to the same object
    note: Mapped[str] = mapped_column(sa.Text, default="")
    reason: Mapped[str | None] = mapped_column(sa.String(32))  # for "different object": one of AUDIT_REASONS
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class AuditEvent(Base):
    """Every decision an auditor made or took back, in order: `audits` holds the current one, this the history."""

    __tablename__ = "audit_events"
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    review_id: Mapped[str] = mapped_column(sa.ForeignKey("reviews.id"), index=True)
    auditor: Mapped[str] = mapped_column(sa.String(64))
    action: Mapped[str] = mapped_column(sa.String(16))  # decide | undo
    human_verdict: Mapped[bool | None]
    reason: Mapped[str | None] = mapped_column(sa.String(32))
    note: Mapped[str] = mapped_column(sa.Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Calibration(Base):
    """A keep threshold chosen from the audits for a target precision (engine/audit/calibrate.py); the newest is the
    one `engine export --calibrated` applies."""

    __tablename__ = "calibrations"
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    target: Mapped[float]
    threshold: Mapped[float | None]  # None: no threshold reached the target
    rule: Mapped[str] = mapped_column(sa.String(80))  # how items with several labels were labelled
    estimates: Mapped[dict[str, Any]] = mapped_column(default=dict)  # precision, recall, yield with intervals
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Sample(Base):
    """One training record in the VideoRefer-700K format (docs/record-format.md), before export filters."""

    __tablename__ = "samples"
    id: Mapped[str] = mapped_column(DERIVED_ID, primary_key=True)
    data_type: Mapped[str] = mapped_column(_enum("data_type", *DATA_TYPES), index=True)
    qa_type: Mapped[str | None] = mapped_column(sa.String(32))
    video_id: Mapped[str] = mapped_column(sa.ForeignKey("videos.id"), index=True)
    object_ids: Mapped[list[Any]]
    conversations: Mapped[list[Any]]
    annotation: Mapped[list[Any]]  # one {"<frame>": {"segmentation": RLE}} per <region>
    mode: Mapped[str] = mapped_column(_enum("frame_mode", "single", "multi"))
    split: Mapped[str | None] = mapped_column(sa.String(16))
    lineage: Mapped[str | None] = mapped_column(LINEAGE, index=True)
    run_id: Mapped[str | None] = mapped_column(sa.ForeignKey("runs.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ModelCall(Base):
    """The cache of answers: a stored success answers a repeated call from the same video.

    Keyed by the video whose unit asked, then the canonical request's hash (0015), so a video's answers share
    index pages: keyed by the hash alone, each answer was a page at a random place in a store of a million
    objects. A run preloads each video's answers and looks nothing up per call; an identical request from another
    video is answered from the run's memory and stored under that video too. Calls outside any video (probes)
    are kept under NO_VIDEO.

    Accounting is the request log's (`requests`), not this table's: rows written before the request log
    existed were copied there by migration 0003.
    """

    __tablename__ = "model_calls"
    # No foreign key to videos: a call made outside any video has none.
    video_id: Mapped[str] = mapped_column(ID, primary_key=True)
    request_hash: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    agent: Mapped[str] = mapped_column(sa.String(32))
    model: Mapped[str] = mapped_column(sa.String(128))
    endpoint: Mapped[str] = mapped_column(sa.Text, default="")  # base URL only, never a key
    status: Mapped[str] = mapped_column(_enum("call_status", "ok", "error", "refused", "invalid"))
    tokens_in: Mapped[int] = mapped_column(default=0)
    tokens_out: Mapped[int] = mapped_column(default=0)
    cost_usd: Mapped[float] = mapped_column(default=0.0)
    latency_s: Mapped[float] = mapped_column(default=0.0)
    response: Mapped[dict[str, Any] | None]
    error: Mapped[str | None] = mapped_column(sa.Text)
    run_id: Mapped[str | None] = mapped_column(sa.ForeignKey("runs.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Request(Base):
    """One HTTP request to a model endpoint: every attempt, retry, repair, probe and re-send after a crash.

    A row is written (status "sent") before the request leaves, and completed when its answer arrives,
    so a request whose answer never reached the engine still counts as sent, with tokens unknown (NULL).
    Tokens are NULL too when the answer carried no `usage`: unknown, never zero.
    """

    __tablename__ = "requests"
    __table_args__ = (
        sa.Index("ix_requests_run_role", "run_id", "role"),
        # The plan's measured tokens read each role's newest requests (engine/store/requests.py): a bounded read.
        # New rows land at the end of their role's range, so the index costs a write on a page already in hand.
        sa.Index("ix_requests_role_sent_at", "role", "sent_at"),
    )
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    run_id: Mapped[str | None] = mapped_column(sa.ForeignKey("runs.id"))
    role: Mapped[str] = mapped_column(
        sa.String(48)
    )  # the agent role: annotator.dynamic, reviewer.judge, refiner.qa ...
    endpoint_key: Mapped[str] = mapped_column(sa.String(32))  # the [agents.<key>] table whose endpoint it used
    model: Mapped[str] = mapped_column(sa.String(128))
    endpoint: Mapped[str] = mapped_column(sa.Text, default="")  # base URL only, never a key
    # Not indexed (0012): nothing looks requests up by hash, and an index on it is a page at a random place per
    # request. The answer of a hash is model_calls' row.
    request_hash: Mapped[str] = mapped_column(sa.String(64))
    kind: Mapped[str] = mapped_column(sa.String(16))  # call | repair | probe
    attempt: Mapped[int] = mapped_column(default=1)  # 1 for the first try of a call or repair, then 2, 3 ...
    output_mode: Mapped[str] = mapped_column(sa.String(32), default="")
    status: Mapped[str] = mapped_column(sa.String(32))  # sent | ok | http_<code> | timeout | connection | ...
    http_status: Mapped[int | None]
    tokens_in: Mapped[int | None]
    tokens_out: Mapped[int | None]
    cost_usd: Mapped[float | None]
    latency_s: Mapped[float | None]
    answer: Mapped[str | None] = mapped_column(sa.Text)  # the raw body, truncated, when the request failed
    sent_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]


class Completion(Base):
    """A stage that finished one unit (a video, a noun, a group of objects) at a lineage: resume skips it."""

    __tablename__ = "completions"
    # Keyed by what it says, video first (0012): a video's markers share index pages, and no hashed id of their own
    # puts each one on a page of its own (what grows with the store). A unit belongs to one video, so the key is
    # unique where (unit, stage, lineage) is.
    __table_args__ = (sa.PrimaryKeyConstraint("video_id", "unit_id", "stage", "lineage", name="pk_completions"),)
    video_id: Mapped[str] = mapped_column(sa.ForeignKey("videos.id"))
    unit_id: Mapped[str] = mapped_column(sa.Text)
    stage: Mapped[str] = mapped_column(sa.String(64))
    lineage: Mapped[str] = mapped_column(LINEAGE)
    run_id: Mapped[str | None] = mapped_column(sa.ForeignKey("runs.id"))
    # what the unit's work left out, by reason (e.g. QA pairs that name no object): summed in the run summary
    dropped: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Failure(Base):
    """A unit that failed at a stage: retried up to a bound, then quarantined; `engine status` lists them.

    Keyed by the stage's lineage too, so a new prompt or model version tries a unit that an older one quarantined.
    """

    __tablename__ = "failures"
    __table_args__ = (sa.UniqueConstraint("unit_id", "stage", "lineage", name="uq_failures_unit_stage_lineage"),)
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    unit_kind: Mapped[str] = mapped_column(sa.String(32))  # video | file | object | sample
    unit_id: Mapped[str] = mapped_column(sa.Text)
    video_id: Mapped[str | None] = mapped_column(ID, index=True)  # no foreign key: ingest failures have no video
    lineage: Mapped[str] = mapped_column(LINEAGE, default="", server_default="")
    stage: Mapped[str] = mapped_column(sa.String(64))
    attempts: Mapped[int] = mapped_column(default=1)
    error_code: Mapped[str] = mapped_column(sa.String(64))
    message: Mapped[str] = mapped_column(sa.Text)
    quarantined: Mapped[bool] = mapped_column(default=False)
    run_id: Mapped[str | None] = mapped_column(sa.ForeignKey("runs.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Auditor(Base):
    """A person who audits Reviewer decisions; the sign-in token is kept only as a hash."""

    __tablename__ = "auditors"
    name: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    token_sha256: Mapped[str] = mapped_column(sa.String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class AuditItem(Base):
    """A Reviewer decision drawn for audit, with its stratum and that stratum's population at draw time."""

    __tablename__ = "audit_items"
    review_id: Mapped[str] = mapped_column(sa.ForeignKey("reviews.id"), primary_key=True)
    stratum: Mapped[str] = mapped_column(sa.String(64))  # "kept" / "discarded" (+ ":<extra>" when stratified more)
    population: Mapped[int]
    seed: Mapped[int]
    drawn_at: Mapped[datetime] = mapped_column(default=utcnow)


def max_chars(model: type[Base], column: str) -> int:
    """The length a string column is declared with: what PostgreSQL enforces and SQLite does not."""
    col = sa.inspect(model).local_table.c[column]
    if not isinstance(col.type, sa.String) or col.type.length is None:
        raise TypeError(f"{model.__name__}.{column} is not a string column of a set length")
    return col.type.length
