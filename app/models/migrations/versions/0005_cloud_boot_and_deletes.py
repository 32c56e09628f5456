"""cloud boots and deletes: a pool's boot deadline, why a VM is not deleted yet

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
    with op.batch_alter_table("pools") as batch:
        batch.add_column(
            sa.Column("boot_deadline_s", sa.Float(), nullable=False, server_default="600")
        )
    with op.batch_alter_table("instances") as batch:
        batch.add_column(sa.Column("delete_error", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("instances") as batch:
        batch.drop_column("delete_error")
    with op.batch_alter_table("pools") as batch:
        batch.drop_column("boot_deadline_s")
