"""Alembic environment: runs on the connection LabBatch passes in (see app.models.db)."""

from __future__ import annotations

from alembic import context

from app.models.tables import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("LabBatch migrations run through app.models.db.open_database")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
