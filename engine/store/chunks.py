"""`IN (...)` over long id lists, in chunks: one place for the bound-parameter limit."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, TypeVar, TypeVarTuple

import sqlalchemy as sa
from sqlalchemy.orm import Session

# Bound parameters per statement: SQLite before 3.32 allows 999, and PostgreSQL plans long lists slowly.
CHUNK = 500

T = TypeVar("T")
Ts = TypeVarTuple("Ts")  # the selected columns' types, which a Select carries


def chunks(items: Sequence[T], size: int = CHUNK) -> Iterator[Sequence[T]]:
    """`items` in slices of at most `size`."""
    for i in range(0, len(items), size):
        yield items[i : i + size]


def rows_in(s: Session, stmt: sa.Select[*Ts], column: Any, ids: Sequence[Any]) -> list[sa.Row[*Ts]]:
    """The rows of `stmt` where `column` is one of `ids`, one statement per chunk of ids."""
    out: list[sa.Row[*Ts]] = []
    for part in chunks(ids):
        out.extend(s.execute(stmt.where(column.in_(part))).all())
    return out


def scalars_in(s: Session, stmt: sa.Select[Any], column: Any, ids: Sequence[Any]) -> list[Any]:
    """Like `rows_in`, for a statement that selects one column or one entity."""
    out: list[Any] = []
    for part in chunks(ids):
        out.extend(s.scalars(stmt.where(column.in_(part))).all())
    return out
