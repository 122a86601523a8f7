"""What a member asks for by replying: mute or follow a thread, pause until a day, their
own digest hour.

Revision ID: 0007_member_wishes
Revises: 0006_protection
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

from listserv.store.models import UTCDateTime

revision: str = "0007_member_wishes"
down_revision: str | None = "0006_protection"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "thread_wishes",
        sa.Column(
            "member_id",
            sa.Integer(),
            sa.ForeignKey("members.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column(
            "thread_id",
            sa.Integer(),
            sa.ForeignKey("threads.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("wish", sa.String(10), nullable=False),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
    )
    with op.batch_alter_table("members") as batch:
        batch.add_column(sa.Column("paused_until", UTCDateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("digest_hour", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("timezone", sa.String(64), nullable=True))
    with op.batch_alter_table("pending") as batch:
        batch.add_column(sa.Column("thread_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("until", UTCDateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("hour", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("pending") as batch:
        batch.drop_column("hour")
        batch.drop_column("until")
        batch.drop_column("thread_id")
    with op.batch_alter_table("members") as batch:
        batch.drop_column("timezone")
        batch.drop_column("digest_hour")
        batch.drop_column("paused_until")
    op.drop_table("thread_wishes")
