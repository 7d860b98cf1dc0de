"""`engine audit export`: people's audits as JSONL or CSV, with notes and reason codes, for analysis elsewhere."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from typing import Any, TextIO

import sqlalchemy as sa

from engine.store import Store, schema

COLUMNS = (
    "review_id",
    "auditor",
    "same_object",
    "reason",
    "note",
    "decided_at",
    "stratum",
    "reviewer_keep",
    "reviewer_confidence",
    "noun",
    "object_id",
    "video_id",
)
HISTORY_COLUMNS = ("review_id", "auditor", "action", "same_object", "reason", "note", "at")
# A spreadsheet runs a cell that begins with one of these as a formula (=HYPERLINK(...) sends data away); notes,
# names and nouns come from people and models, so such a text cell gets a leading ' (OWASP, "CSV injection").
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> Any:
    """A CSV cell that a spreadsheet shows as text; numbers, booleans and empty cells stay as they are."""
    return "'" + value if isinstance(value, str) and value.startswith(FORMULA_START) else value


def audit_rows(store: Store, history: bool = False) -> list[dict[str, Any]]:
    """The current decision of each (item, auditor); or, with history, every decision and undo in order."""
    with store.session() as s:
        if history:
            e = schema.AuditEvent
            return [
                {
                    "review_id": x.review_id,
                    "auditor": x.auditor,
                    "action": x.action,
                    "same_object": x.human_verdict,
                    "reason": x.reason,
                    "note": x.note,
                    "at": x.created_at.isoformat(),
                }
                for x in s.execute(sa.select(e).order_by(e.created_at, e.id)).scalars()
            ]
        a, r, o, it = schema.Audit, schema.Review, schema.VideoObject, schema.AuditItem
        q = (
            sa.select(a, r.verdict, r.confidence, o.noun, o.id, o.video_id, it.stratum)
            .join(r, r.id == a.review_id)
            .join(o, o.id == r.object_id)
            .outerjoin(it, it.review_id == a.review_id)
            .order_by(a.review_id, a.auditor)
        )
        return [
            {
                "review_id": x.review_id,
                "auditor": x.auditor,
                "same_object": x.human_verdict,
                "reason": x.reason,
                "note": x.note,
                "decided_at": x.created_at.isoformat(),
                "stratum": stratum,
                "reviewer_keep": keep,
                "reviewer_confidence": conf,
                "noun": noun,
                "object_id": oid,
                "video_id": vid,
            }
            for x, keep, conf, noun, oid, vid, stratum in s.execute(q)
        ]


def write(rows: Iterable[dict[str, Any]], fmt: str, out: TextIO, history: bool = False) -> int:
    """jsonl: one object a line, values exact; csv: a header, then a row each (notes quoted, newlines kept, a text
    cell that a spreadsheet would run as a formula prefixed with '). Returns rows written."""
    n = 0
    if fmt == "jsonl":
        for row in rows:
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
        return n
    writer = csv.DictWriter(out, fieldnames=HISTORY_COLUMNS if history else COLUMNS)
    writer.writeheader()
    for row in rows:
        writer.writerow({k: csv_cell(v) for k, v in row.items()})
        n += 1
    return n


def to_text(rows: list[dict[str, Any]], fmt: str, history: bool = False) -> str:
    buf = io.StringIO(newline="")
    write(rows, fmt, buf, history)
    return buf.getvalue()
