"""The SQL store: schema, content-derived ids, migrations, the "current" query layer and the batching writer."""

from engine.store.db import Store

__all__ = ["Store"]
