"""A unit's rows, checked before they are queued, so that they cannot fail the batch they would share.

What the database would refuse, found while it is still one unit's problem:
- a required column (NOT NULL, no default) left empty;
- a string longer than its column (PostgreSQL refuses it, SQLite would keep it), or an enum value it lacks;
- a reference to a row that is neither in the same unit nor known to be stored;
- identity: a row that takes a unique key another row already holds under another id. An insert-ignore
  would drop it silently, and whatever references it would then break a foreign key.

The writer (engine/store/io.py) still commits unit by unit if a batch fails anyway.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import sqlalchemy as sa

from engine.store import schema


class RowError(ValueError):
    """A row the store would refuse; the message names the table, the column and the value."""


@dataclass(frozen=True)
class _Rules:
    required: tuple[str, ...]
    lengths: tuple[tuple[str, int], ...]
    enums: tuple[tuple[str, frozenset[str]], ...]
    references: tuple[tuple[str, str], ...]  # (column, table it points at)
    uniques: tuple[tuple[str, ...], ...]  # unique keys besides the primary key


@cache
def _rules(model: type[schema.Base]) -> _Rules:
    table = model.__table__
    assert isinstance(table, sa.Table)  # every model maps one table (typed as any FromClause)
    required, lengths, enums = [], [], []
    for c in table.columns:
        if not c.nullable and c.default is None and c.server_default is None:
            required.append(c.name)
        if isinstance(c.type, sa.Enum):
            enums.append((c.name, frozenset(c.type.enums)))
        elif isinstance(c.type, sa.String) and c.type.length:
            lengths.append((c.name, c.type.length))
    references = tuple((fk.parent.name, fk.column.table.name) for fk in table.foreign_keys)
    uniques = tuple(tuple(c.name for c in u.columns) for u in table.constraints if isinstance(u, sa.UniqueConstraint))
    return _Rules(tuple(required), tuple(lengths), tuple(enums), references, uniques)


def check_group(
    items: Sequence[tuple[type[schema.Base], Sequence[dict[str, Any]]]],
    known: Callable[[str, str], bool | None],
    holder: Callable[[type[schema.Base], tuple[str, ...], tuple], str | None],
) -> None:
    """Raise RowError for the first row of the group the store would refuse.

    known(table, id): True if that row is stored, False if it is not, None if the caller cannot tell (the
    writer's unit-by-unit commit is the net for those). holder(model, columns, key): the id of a stored row
    that holds that unique key, or None.
    """
    ids: dict[str, set[str]] = {}
    for model, rows in items:
        ids.setdefault(model.__tablename__, set()).update(r["id"] for r in rows if "id" in r)
    for model, rows in items:
        rules, name = _rules(model), model.__tablename__
        keys_here: dict[tuple, str | None] = {}  # (columns, key) -> id of the first row here that has it
        for row in rows:
            for col in rules.required:
                if row.get(col) is None:
                    raise RowError(f"{name}.{col} is empty")
            for col, n in rules.lengths:
                value = row.get(col)
                if isinstance(value, str) and len(value) > n:
                    raise RowError(f"{name}.{col} is {len(value)} characters long, over its {n}: {value[:60]!r}...")
            for col, members in rules.enums:
                value = row.get(col)
                if value is not None and value not in members:
                    raise RowError(f"{name}.{col} = {value!r} is none of {sorted(members)}")
            for col, target in rules.references:
                ref = row.get(col)
                if ref is not None and ref not in ids.get(target, ()) and known(target, ref) is False:
                    raise RowError(f"{name}.{col} names a {target} row that is not stored: {ref}")
            for cols in rules.uniques:
                key = tuple(row.get(c) for c in cols)
                mine: str | None = row.get("id")
                other: str | None = keys_here.setdefault((cols, key), mine)
                if other == mine:
                    other = holder(model, cols, key)
                if other is not None and other != mine:
                    raise RowError(
                        f"{name}: {dict(zip(cols, key))} is already the key of another row ({other}); "
                        f"this one ({mine}) would be dropped"
                    )
