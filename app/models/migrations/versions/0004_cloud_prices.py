"""cloud prices: list prices read from the clouds' catalogues

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cloud_prices",
        sa.Column("resource", sa.String(length=200), nullable=False),
        sa.Column("cloud", sa.String(length=20), nullable=False),
        sa.Column("usd_per_unit_hour", sa.Numeric(precision=24, scale=12), nullable=False),
        sa.Column("source", sa.String(length=500), nullable=False),
        sa.Column("time_fetched", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("resource", name=op.f("pk_cloud_prices")),
    )


def downgrade() -> None:
    op.drop_table("cloud_prices")
