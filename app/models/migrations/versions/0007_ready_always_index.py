"""ready always-run jobs: the index the models declared but no migration created

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07 03:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

READY_ALWAYS = sa.text("state = 'Ready' AND always_run")


def upgrade() -> None:
    op.create_index(
        "ix_jobs_ready_always",
        "jobs",
        ["pool", "user", "batch_id", "job_id"],
        sqlite_where=READY_ALWAYS,
        postgresql_where=READY_ALWAYS,
    )


def downgrade() -> None:
    op.drop_index("ix_jobs_ready_always", table_name="jobs")
