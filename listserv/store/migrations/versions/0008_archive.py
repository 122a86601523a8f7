"""Archive tools: posts marked as imported (never in a digest), and thread surgery's
history, one row per move, merge or split, with who and when.

Revision ID: 0008_archive
Revises: 0007_member_wishes
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

from listserv.store.models import UTCDateTime

revision: str = "0008_archive"
down_revision: str | None = "0007_member_wishes"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("posts", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("imported", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    op.create_table(
        "thread_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("list_id", sa.Integer(), nullable=False),
        sa.Column("thread_id", sa.Integer(), nullable=False),
        sa.Column("other_thread_id", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(length=10), nullable=False),
        sa.Column("posts", sa.Integer(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("actor", sa.String(length=320), nullable=False),
        sa.Column("at", UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["list_id"], ["lists.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_thread_events_thread", "thread_events", ["thread_id"])
    op.create_index("ix_thread_events_other", "thread_events", ["other_thread_id"])


def downgrade() -> None:
    op.drop_table("thread_events")
    with op.batch_alter_table("posts", schema=None) as batch_op:
        batch_op.drop_column("imported")
