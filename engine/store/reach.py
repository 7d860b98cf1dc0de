"""Whether a database server answers, asked before a run starts (preflight) without opening or migrating a store."""

from __future__ import annotations

import sqlalchemy as sa

from engine.store.faults import cause


def why_unreachable(url: str, timeout_s: float) -> str | None:
    """Why the database server at `url` does not answer a query within about `timeout_s` (the cause, as a person
    would say it), or None when it does. Creates nothing: the engine is disposed of at once."""
    engine = sa.create_engine(url, connect_args={"connect_timeout": int(timeout_s)})
    try:
        with engine.connect() as c:
            c.exec_driver_sql("SELECT 1")
    except sa.exc.SQLAlchemyError as e:
        return cause(e)
    finally:
        engine.dispose()
    return None
