"""An in-flight video's current results, held by the driver: loaded once, kept up to date in memory.

Stages read from here instead of the store, and what they write lands here at once (and in the store
with the next batch), so a later stage of the same video sees it without a query. What it holds are typed
records (engine/store/records.py), read by attribute.
"""

from __future__ import annotations

from collections.abc import Iterable

from engine.sources.ingest import caption_of
from engine.store import schema
from engine.store.current import Current, VideoRows
from engine.store.records import (
    CaptionRecord,
    DescriptionRecord,
    FailureRecord,
    GateRecord,
    MaskletRecord,
    ObjectRecord,
    ReviewRecord,
    SampleRecord,
    StageRecord,
)


class VideoState:
    def __init__(self, rows: VideoRows, current: Current):
        self.rows, self.current = rows, current

    # --- reads ---------------------------------------------------------------------------------------
    @property
    def caption(self) -> str | None:
        return caption_of(self.rows.captions)

    def objects(self, stage_version: str | None, subject_only: bool = False) -> list[ObjectRecord]:
        """Objects of one Analyzer version (or dataset), in (noun, instance) order."""
        found = [
            o
            for o in self.rows.objects.values()
            if o.stage_version == stage_version and (o.is_subject or not subject_only)
        ]
        return sorted(found, key=lambda o: (o.noun, o.instance, o.id))

    def segmented(self, stage_version: str | None, subject_only: bool = False) -> list[ObjectRecord]:
        """Objects with a current masklet, gated or not (the gate stage's input)."""
        return [o for o in self.objects(stage_version, subject_only) if o.id in self.rows.masklets]

    def grounded(self, stage_version: str | None, subject_only: bool = False) -> list[ObjectRecord]:
        """Objects with a current masklet that no quality gate stopped: what every stage after the gates works on."""
        gates = self.rows.gates
        return [o for o in self.segmented(stage_version, subject_only) if o.id not in gates or gates[o.id].passed]

    def gate(self, object_id: str) -> GateRecord | None:
        """The object's current quality-gate verdict (None: not gated, or gates are off)."""
        return self.rows.gates.get(object_id)

    def masklet(self, object_id: str) -> MaskletRecord | None:
        return self.rows.masklets.get(object_id)

    def masklet_of(self, object_id: str) -> MaskletRecord:
        """The current masklet of a grounded object (grounded() returns only objects that have one)."""
        return self.rows.masklets[object_id]

    def description(self, object_id: str, kind: str) -> DescriptionRecord | None:
        return self.rows.descriptions.get((object_id, kind))

    def review(self, object_id: str) -> ReviewRecord | None:
        return self.rows.reviews.get(object_id)

    def kept(self, obj: ObjectRecord) -> bool:
        review = self.review(obj.id)
        return self.current.kept(obj.stage_version, review.verdict if review is not None else None)

    def has_sample(self, sample_id: str) -> bool:
        return sample_id in self.rows.samples

    def done(self, unit_id: str, stage: str, lineage: str) -> bool:
        return (unit_id, stage, lineage) in self.rows.done

    def failure(self, unit_id: str, stage: str, lineage: str) -> FailureRecord | None:
        return self.rows.failures.get((unit_id, stage, lineage))

    # --- what the store holds, for checking a unit's rows before they are queued (engine/store/checks.py) ---
    def known(self, table: str, row_id: str) -> bool | None:
        """Whether a row this video's rows may reference is stored (None: not held here, cannot tell)."""
        r = self.rows
        if table == "videos":
            return True if row_id == r.video_id else None  # a video's rows belong to it; ingest stored it
        if table == "objects":
            return row_id in r.objects
        if table == "masklets":
            return any(m.id == row_id for m in r.masklets.values())
        if table == "descriptions":
            return any(d.id == row_id for d in r.descriptions.values())
        return None

    def holder(self, model: type[schema.Base], columns: tuple[str, ...], key: tuple) -> str | None:
        """The id of a held row with this unique key: an object's (video, noun, instance, version), the one key
        not derived from the id's own inputs."""
        if model is not schema.VideoObject:
            return None
        want = dict(zip(columns, key))
        for o in self.rows.objects.values():
            if all(getattr(o, c, None) == v for c, v in want.items()):
                return o.id
        return None

    # --- writes (in memory; the caller queues the same rows for the store) ---------------------------
    def add(self, records: Iterable[StageRecord]) -> None:
        """Hold a stage's new records; a result already held for the same key stays (as the store keeps the first)."""
        r = self.rows
        for rec in records:
            if isinstance(rec, CaptionRecord):
                r.captions.setdefault(rec.source, rec.text)
            elif isinstance(rec, ObjectRecord):
                r.objects.setdefault(rec.id, rec)
            elif isinstance(rec, MaskletRecord):
                r.masklets.setdefault(rec.object_id, rec)
            elif isinstance(rec, GateRecord):
                r.gates.setdefault(rec.object_id, rec)
            elif isinstance(rec, DescriptionRecord):
                r.descriptions.setdefault((rec.object_id, rec.kind), rec)
            elif isinstance(rec, ReviewRecord):
                r.reviews.setdefault(rec.object_id, rec)
            elif isinstance(rec, SampleRecord):
                r.samples.add(rec.id)

    def mark_done(self, unit_id: str, stage: str, lineage: str) -> None:
        self.rows.done.add((unit_id, stage, lineage))

    def set_failure(self, failure: FailureRecord) -> None:
        self.rows.failures[(failure.unit_id, failure.stage, failure.lineage)] = failure

    def forget_failure(self, unit_id: str, stage: str, lineage: str) -> None:
        self.rows.failures.pop((unit_id, stage, lineage), None)
