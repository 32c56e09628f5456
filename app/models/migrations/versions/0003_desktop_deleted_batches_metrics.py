"""desktop: deleted batches, running-jobs index, dashboard samples

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

RUNNING = sa.text("state IN ('Creating', 'Running')")


def upgrade() -> None:
    op.create_table(
        "metric_samples",
        sa.Column("time", sa.Float(), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("time", name=op.f("pk_metric_samples")),
    )
    with op.batch_alter_table("batches", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("deleted", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.create_index(
            "ix_jobs_running",
            ["instance_name", "user", "cores_mcpu"],
            unique=False,
            sqlite_where=RUNNING,
            postgresql_where=RUNNING,
        )


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_jobs_running", sqlite_where=RUNNING, postgresql_where=RUNNING)
    with op.batch_alter_table("batches", schema=None) as batch_op:
        batch_op.drop_column("deleted")
    op.drop_table("metric_samples")
