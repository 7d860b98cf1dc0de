"""Alembic environment: runs on the connection the Store hands over (no alembic.ini, no URL here)."""

from alembic import context

from engine.store.schema import Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True, compare_type=True)
with context.begin_transaction():
    context.run_migrations()
