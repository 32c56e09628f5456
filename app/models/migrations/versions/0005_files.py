"""files between jobs: pool scratch location and retention, attempt transfer figures

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07 03:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("pools", sa.Column("scratch", sa.Text(), nullable=True))
    op.add_column(
        "pools", sa.Column("retention_s", sa.Float(), nullable=False, server_default="259200")
    )
    op.add_column("attempts", sa.Column("staging", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("attempts") as batch:
        batch.drop_column("staging")
    with op.batch_alter_table("pools") as batch:
        batch.drop_column("retention_s")
        batch.drop_column("scratch")
