"""`engine audit export`: people's audits as JSONL or CSV, with notes and reason codes, for analysis elsewhere."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from typing import Any, TextIO

from engine.store import Store, audits

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
    if history:
        return [
            {
                "review_id": x.review_id,
                "auditor": x.auditor,
                "action": x.action,
                "same_object": x.same_object,
                "reason": x.reason,
                "note": x.note,
                "at": x.at.isoformat(),
            }
            for x in audits.audit_history(store)
        ]
    return [
        {
            "review_id": x.review_id,
            "auditor": x.auditor,
            "same_object": x.same_object,
            "reason": x.reason,
            "note": x.note,
            "decided_at": x.decided_at.isoformat(),
            "stratum": x.stratum,
            "reviewer_keep": x.reviewer_keep,
            "reviewer_confidence": x.reviewer_confidence,
            "noun": x.noun,
            "object_id": x.object_id,
            "video_id": x.video_id,
        }
        for x in audits.audit_export_rows(store)
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
