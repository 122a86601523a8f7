"""The envelope sender of a held message in a column of its own; the message is kept exactly
as received (it used to carry a Return-Path line made up by us in front, parsed back by a
regular expression whenever a notice was due).

Revision ID: 0009_held_envelope_sender
Revises: 0008_archive
Create Date: 2026-11-29
"""

import re

import sqlalchemy as sa
from alembic import op

revision: str = "0009_held_envelope_sender"
down_revision: str | None = "0008_archive"
branch_labels: str | None = None
depends_on: str | None = None

# As the old writer made it: CR, LF and ">" removed from the sender, "<" left in.
_RETURN_PATH = re.compile(rb"^Return-Path: <([^>\r\n]*)>\r?\n")


def upgrade() -> None:
    with op.batch_alter_table("held", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("envelope_sender", sa.String(length=320), nullable=False,
                      server_default="")
        )
    held = sa.table("held", sa.column("id", sa.Integer), sa.column("raw", sa.LargeBinary),
                    sa.column("envelope_sender", sa.String))
    conn = op.get_bind()
    for row_id, raw in conn.execute(sa.select(held.c.id, held.c.raw)).all():
        if match := _RETURN_PATH.match(raw):
            conn.execute(held.update().where(held.c.id == row_id).values(
                envelope_sender=match[1].decode("utf-8", "replace")[:320],
                raw=raw[match.end():]))


def downgrade() -> None:
    held = sa.table("held", sa.column("id", sa.Integer), sa.column("raw", sa.LargeBinary),
                    sa.column("envelope_sender", sa.String))
    conn = op.get_bind()
    for row_id, raw, sender in conn.execute(
            sa.select(held.c.id, held.c.raw, held.c.envelope_sender)).all():
        conn.execute(held.update().where(held.c.id == row_id).values(
            raw=f"Return-Path: <{sender}>\r\n".encode() + raw))
    with op.batch_alter_table("held", schema=None) as batch_op:
        batch_op.drop_column("envelope_sender")
