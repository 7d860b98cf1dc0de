"""the ids of a video's units begin with the video's prefix, so that its rows share index pages

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07 01:00:00

Objects, masklets, descriptions, reviews and samples had ids that were hashes, so in every index keyed by them
each new row landed on a page of its own at a random place: in a store of a million objects, the pages a run reads
and writes (and the checkpoint writes again) grew with the store. Their ids now begin with the first 8 hex digits
of their video's id (engine/store/ids.py `derived_id`), and the rest is the hash they had: this migration prepends
the prefix to each id and to every reference to one (foreign keys, the id lists of reviews and samples, the unit
ids of completion markers and failures, the audits' review ids). The audits' and failures' own ids do not change.
benchmarks/store_writes.py (a run's writes replayed into a store of a million objects against an empty one) put the
writer's extra CPU per object at about half of what it was.

SQLite copies each of these tables, in the order of the new ids, with the wider id columns (what it does to
change a column's type); PostgreSQL widens the columns (no rewrite) and updates the rows in place, its foreign keys
dropped meanwhile and made again. A SQLite store of a million objects took 237 s, once; its file grew from 7.1 to
8.4 GB, the difference being free pages that later writes reuse.
"""

import re
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

# engine/store/ids.py's VIDEO_PREFIX and ID_HEX as this revision wrote them: written out, not imported, so
# that what the migration does cannot move with the engine's code
PREFIX, HASH = 8, 32
# the id columns that hold a derived unit's id, by table
WIDENED = {
    "objects": ("id",),
    "masklets": ("id", "object_id"),
    "descriptions": ("id", "object_id"),
    "reviews": ("id", "object_id", "masklet_id", "region_description_id"),
    "gates": ("object_id", "masklet_id"),
    "samples": ("id",),
    "audits": ("review_id",),
    "audit_events": ("review_id",),
    "audit_items": ("review_id",),
}
DERIVED = ("objects", "masklets", "descriptions", "reviews", "samples")
P = "COALESCE(k.p, '')"  # the prefix found for the row (none for a row whose parent is missing: left as it is)


def _sqlite() -> bool:
    return op.get_bind().dialect.name == "sqlite"


def _json_ids(column: str, change: str) -> str:
    """A JSON list of ids with `change` (SQL over {e}, one id) applied to each; anything else kept as it is."""
    if _sqlite():
        each = f"(SELECT json_group_array({change.format(e='x.value')}) FROM json_each({column}) AS x)"
        return f"CASE WHEN json_type({column}) = 'array' THEN {each} ELSE {column} END"
    each = f"(SELECT json_agg({change.format(e='x.e')} ORDER BY x.n) "
    each += f"FROM json_array_elements_text({column}) WITH ORDINALITY AS x(e, n))"
    return f"CASE WHEN json_typeof({column}) = 'array' THEN COALESCE({each}, '[]'::json) ELSE {column} END"


def _units(prefix: str) -> str:
    """A completion's or failure's unit id with `prefix` on each object id it names (a QA group joins them by '+');
    a video's or a clip's id is left as it is."""
    named = "t.unit_id IN (SELECT old FROM objects_prefix)"
    group = f"t.unit_id LIKE '%+%' AND substr(t.unit_id, 1, {HASH}) IN (SELECT old FROM objects_prefix)"
    return (
        f"CASE WHEN {named} OR ({group}) THEN {prefix} || replace(t.unit_id, '+', '+' || {prefix}) ELSE t.unit_id END"
    )


def _stripped_units() -> str:
    head = f"substr(t.unit_id, 1, {PREFIX})"
    named = (
        f"t.video_id IS NOT NULL AND length(t.unit_id) % {PREFIX + HASH + 1} = {PREFIX + HASH} "
        f"AND {head} = substr(t.video_id, 1, {PREFIX})"
    )
    return f"CASE WHEN {named} THEN replace(substr(t.unit_id, {PREFIX + 1}), '+' || {head}, '+') ELSE t.unit_id END"


def _strip(column: str) -> str:
    return f"CASE WHEN length({column}) = {PREFIX + HASH} THEN substr({column}, {PREFIX + 1}) ELSE {column} END"


def _rewrite(
    table: str, values: dict[str, str], order: str, key: str | None = None, width: int = PREFIX + HASH
) -> None:
    """Give `table`'s rows these column values: SQL over the row `t` and, with `key` (a column of t naming an object
    or a review), its prefix row `k`. Its id columns are declared `width` long."""
    conn = op.get_bind()
    prefixes = "reviews_prefix" if key == "review_id" else "objects_prefix"
    if not _sqlite():
        widen = WIDENED.get(table, ())
        if width > HASH:
            for column in widen:
                op.alter_column(table, column, type_=sa.String(width))
        sets = ", ".join(f"{c} = {v}" for c, v in values.items())
        where = f"FROM {prefixes} AS k WHERE k.old = t.{key}" if key else ""
        op.execute(f"UPDATE {table} AS t SET {sets} {where}")
        if width == HASH:
            for column in widen:
                op.alter_column(table, column, type_=sa.String(width))
        return
    # SQLite changes a column's type by copying its table: the copy takes the new values, in the new key's order.
    ddl: str = conn.exec_driver_sql(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
    ).scalar_one()
    indexes = list(
        conn.exec_driver_sql(
            "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ? AND sql IS NOT NULL", (table,)
        ).scalars()
    )
    new = f"_new_{table}"
    ddl = re.sub(rf'^CREATE TABLE "?{table}"?', f'CREATE TABLE "{new}"', ddl)
    for column in WIDENED.get(table, ()):
        ddl, n = re.subn(rf'(\n\s*"?{column}"? )VARCHAR\(\d+\)', rf"\1VARCHAR({width})", ddl)
        if n != 1:
            raise RuntimeError(f"{table}.{column}: its declaration was not found in the table's SQL")
    columns = [r[1] for r in conn.exec_driver_sql(f"PRAGMA table_info({table})")]
    select = ", ".join(values.get(c, f"t.{c}") for c in columns)
    join = f"LEFT JOIN {prefixes} AS k ON k.old = t.{key}" if key else ""
    conn.exec_driver_sql(ddl)
    conn.exec_driver_sql(
        f"INSERT INTO {new} ({', '.join(columns)}) SELECT {select} FROM {table} AS t {join} ORDER BY {order}"
    )
    conn.exec_driver_sql(f"DROP TABLE {table}")
    conn.exec_driver_sql(f"ALTER TABLE {new} RENAME TO {table}")
    for sql in indexes:
        conn.exec_driver_sql(sql)


def _foreign_keys() -> list[tuple[str, Any]]:
    """PostgreSQL's foreign keys to the tables whose ids change: dropped while the ids change, then made again."""
    inspector = sa.inspect(op.get_bind())
    return [
        (table, fk)
        for table in inspector.get_table_names()
        for fk in inspector.get_foreign_keys(table)
        if fk["referred_table"] in DERIVED
    ]


def _without_foreign_keys(change: Callable[[], None]) -> None:
    keys = [] if _sqlite() else _foreign_keys()  # SQLite migrates with foreign keys off (engine/store/db.py)
    for table, fk in keys:
        op.drop_constraint(fk["name"], table, type_="foreignkey")
    change()
    for table, fk in keys:
        op.create_foreign_key(
            fk["name"], table, fk["referred_table"], fk["constrained_columns"], fk["referred_columns"], **fk["options"]
        )


def _prefixes() -> None:
    """Temporary tables of each object's and each review's prefix, by its present id."""
    objects = f"SELECT id AS old, substr(video_id, 1, {PREFIX}) AS p FROM objects"
    reviews = "SELECT r.id AS old, o.p AS p FROM reviews AS r JOIN objects_prefix AS o ON o.old = r.object_id"
    for name, select in (("objects_prefix", objects), ("reviews_prefix", reviews)):
        op.execute(f"CREATE TEMPORARY TABLE {name} AS {select}")
        op.execute(f"CREATE UNIQUE INDEX ix_{name} ON {name} (old)")


def upgrade() -> None:
    def change() -> None:
        _prefixes()
        own = f"substr(t.video_id, 1, {PREFIX})"  # for rows that name their video

        def on(c: str) -> str:
            return f"{P} || t.{c}"  # NULL stays NULL

        for table in ("masklets", "descriptions"):
            _rewrite(table, {"id": on("id"), "object_id": on("object_id")}, on("id"), "object_id")
        reviews = {c: on(c) for c in WIDENED["reviews"]}
        reviews["description_ids"] = _json_ids("t.description_ids", P + " || {e}")
        _rewrite("reviews", reviews, on("id"), "object_id")
        gates = {"object_id": on("object_id"), "masklet_id": on("masklet_id")}
        _rewrite("gates", gates, f"{on('object_id')}, t.lineage", "object_id")
        for table in ("audits", "audit_events", "audit_items"):
            _rewrite(table, {"review_id": on("review_id")}, on("review_id"), "review_id")
        _rewrite("objects", {"id": f"{own} || t.id"}, f"{own} || t.id")
        samples = {"id": f"{own} || t.id", "object_ids": _json_ids("t.object_ids", own + " || {e}")}
        _rewrite("samples", samples, f"{own} || t.id")
        _rewrite("completions", {"unit_id": _units(own)}, "t.video_id")
        op.execute(f"UPDATE failures AS t SET unit_id = {_units(own)} WHERE t.video_id IS NOT NULL")
        op.execute("DROP TABLE reviews_prefix")
        op.execute("DROP TABLE objects_prefix")

    _without_foreign_keys(change)


def downgrade() -> None:
    def change() -> None:
        for table, columns in WIDENED.items():
            values = {c: _strip(f"t.{c}") for c in columns}
            if table == "reviews":
                values["description_ids"] = _json_ids("t.description_ids", _strip("{e}"))
            if table == "samples":
                values["object_ids"] = _json_ids("t.object_ids", _strip("{e}"))
            _rewrite(table, values, values[columns[0]], width=HASH)
        _rewrite("completions", {"unit_id": _stripped_units()}, "t.video_id", width=HASH)
        op.execute(f"UPDATE failures AS t SET unit_id = {_stripped_units()} WHERE t.video_id IS NOT NULL")

    _without_foreign_keys(change)
