"""Which store errors belong to one unit, and which to the whole store.

A unit's rows can break a constraint (an integrity error, or a value the column cannot hold): that costs
the unit, and its batch is committed without it. Anything else the database says (disk full, a read-only
file, a server that went away) is the store's: every further write would fail the same way, so a run
ends with one line that names the store and the cause, and the traceback goes to the run log.
"""

from __future__ import annotations

import sqlalchemy as sa

# What SQLite and PostgreSQL say, as a person would say it (the first match wins).
_CAUSES = (
    ("database or disk is full", "database or disk is full"),
    ("no space left on device", "no space left on device"),
    ("readonly database", "the database file is read-only"),
    ("read-only", "the database is read-only"),
    ("unable to open database file", "the database file cannot be opened"),
    ("disk i/o error", "disk I/O error"),
    ("terminating connection", "the database server ended the connection"),
    ("server closed the connection", "the database server closed the connection"),
    ("connection refused", "the database server refuses connections"),
    ("connection is closed", "the connection to the database is closed"),
)


class StoreError(RuntimeError):
    """The store refused writes for a reason no unit caused. Its message is one line naming the store and the
    cause, fit for the console and the run row."""


def one_line(text: str) -> str:
    """A message as one line (database, actor and model messages span several)."""
    return " ".join(text.split())


def unit_fault(e: BaseException) -> bool:
    """A row broke a constraint or does not fit its column: the unit's fault, not the store's."""
    return isinstance(e, (sa.exc.IntegrityError, sa.exc.DataError))


def disconnected(e: BaseException) -> bool:
    """The connection is gone (a restarted server, terminated backends): worth one try on a fresh one."""
    return isinstance(e, sa.exc.DBAPIError) and bool(e.connection_invalidated)


def cause(e: BaseException) -> str:
    """The database's own message, one line."""
    orig = getattr(e, "orig", None) or e
    text = one_line(str(orig)) or type(orig).__name__
    lowered = text.lower()
    for needle, said in _CAUSES:
        if needle in lowered:
            return said
    return text[:300]


def where(url: str) -> str:
    """The store as a person names it: the SQLite file's path, or the server URL without its password."""
    u = sa.make_url(url)
    if u.get_backend_name() == "sqlite":
        return u.database or ":memory:"
    return u.render_as_string(hide_password=True)


def store_error(e: BaseException, url: str) -> StoreError:
    """A store-wide fault as the one line a run ends with."""
    if isinstance(e, StoreError):
        return e
    return StoreError(f"the store refused writes: {cause(e)} ({where(url)})")


def is_store_fault(e: BaseException) -> bool:
    """An error raised by the database layer that no unit caused (commands end on it in one line)."""
    return isinstance(e, StoreError) or (isinstance(e, sa.exc.SQLAlchemyError) and not unit_fault(e))
