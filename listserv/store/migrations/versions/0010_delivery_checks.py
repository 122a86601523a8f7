"""The database itself holds a delivery to its shape: exactly one source (a post, a notice
or a digest run) and one of the four states.

Revision ID: 0010_delivery_checks
Revises: 0009_held_envelope_sender
Create Date: 2026-11-29
"""

import warnings

from alembic import op

# As written here, not imported: a migration keeps meaning what it meant when made.
ONE_SOURCE = ("(CASE WHEN post_id IS NULL THEN 0 ELSE 1 END"
              " + CASE WHEN notice_id IS NULL THEN 0 ELSE 1 END"
              " + CASE WHEN digest_id IS NULL THEN 0 ELSE 1 END) = 1")
STATUS = "status IN ('queued', 'deferred', 'sent', 'failed')"

revision: str = "0010_delivery_checks"
down_revision: str | None = "0009_held_envelope_sender"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    # SQLite rebuilds the table, reflecting the members table it refers to, whose index on
    # an expression (uq_members_list_identity) it cannot reflect and need not.
    with warnings.catch_warnings(), op.batch_alter_table("deliveries", schema=None) as batch_op:
        warnings.filterwarnings("ignore", message=".*expression-based index")
        batch_op.create_check_constraint("ck_deliveries_one_source", ONE_SOURCE)
        batch_op.create_check_constraint("ck_deliveries_status", STATUS)


def downgrade() -> None:
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_constraint("ck_deliveries_status", type_="check")
        batch_op.drop_constraint("ck_deliveries_one_source", type_="check")
