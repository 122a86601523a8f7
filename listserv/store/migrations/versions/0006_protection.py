"""Protecting the community: probation, daily limits, the emergency brake, paused sending.

Every new column has a server default (or is nullable), so a database with lists and
members upgrades in place with everything off.

Revision ID: 0006_protection
Revises: 0005_web_archive
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision: str = "0006_protection"
down_revision: str | None = "0005_web_archive"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    # Plain ADD COLUMN (no batch copy): recreating `lists` on SQLite would cascade-delete
    # its members.
    op.add_column("lists", sa.Column("probation", sa.Integer(), server_default="0", nullable=False))
    op.add_column("lists", sa.Column("max_posts_per_day", sa.Integer(), nullable=True))
    op.add_column("lists", sa.Column("max_list_posts_per_day", sa.Integer(), nullable=True))
    op.add_column(
        "lists", sa.Column("emergency", sa.Boolean(), server_default=sa.false(), nullable=False)
    )
    op.add_column(
        "lists",
        sa.Column("sending_paused", sa.Boolean(), server_default=sa.false(), nullable=False),
    )
    op.create_index("ix_posts_list_author", "posts", ["list_id", "author_address", "received_at"])
    op.add_column(
        "members", sa.Column("trusted", sa.Boolean(), server_default=sa.false(), nullable=False)
    )


def downgrade() -> None:
    op.drop_index("ix_posts_list_author", table_name="posts")
    op.drop_column("members", "trusted")
    for column in (
        "sending_paused",
        "emergency",
        "max_list_posts_per_day",
        "max_posts_per_day",
        "probation",
    ):
        op.drop_column("lists", column)
