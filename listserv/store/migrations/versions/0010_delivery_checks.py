"""The database itself holds a delivery to its shape: exactly one source (a post, a notice
or a digest run) and one of the four states.

Revision ID: 0010_delivery_checks
Revises: 0009_held_envelope_sender
Create Date: 2026-11-29
"""

import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from alembic import op
from alembic.operations import BatchOperations

# As written here, not imported: a migration keeps meaning what it meant when made.
ONE_SOURCE = ("(CASE WHEN post_id IS NULL THEN 0 ELSE 1 END"
              " + CASE WHEN notice_id IS NULL THEN 0 ELSE 1 END"
              " + CASE WHEN digest_id IS NULL THEN 0 ELSE 1 END) = 1")
STATUS = "status IN ('queued', 'deferred', 'sent', 'failed')"

revision: str = "0010_delivery_checks"
down_revision: str | None = "0009_held_envelope_sender"
branch_labels: str | None = None
depends_on: str | None = None


@contextmanager
def _rebuilt_deliveries() -> Iterator[BatchOperations]:
    """Alter deliveries in batch mode, keeping what points at its rows.

    SQLite rebuilds the table: with foreign keys on (they cannot be turned off inside the
    migration's transaction), dropping the old one would set every
    delivery_failures.delivery_id to NULL (ON DELETE SET NULL), so those links are kept
    aside and written back. It also reflects the members table deliveries refer to, whose
    index on an expression (uq_members_list_identity) it cannot reflect and need not.
    """
    conn = op.get_bind()
    sqlite = conn.dialect.name == "sqlite"
    if sqlite:
        conn.execute(sa.text("CREATE TEMP TABLE failure_links AS SELECT id, delivery_id"
                             " FROM delivery_failures WHERE delivery_id IS NOT NULL"))
    with warnings.catch_warnings(), op.batch_alter_table("deliveries", schema=None) as batch_op:
        warnings.filterwarnings("ignore", message=".*expression-based index")
        yield batch_op
    if sqlite:
        conn.execute(sa.text(
            "UPDATE delivery_failures SET delivery_id = (SELECT delivery_id FROM failure_links"
            " WHERE failure_links.id = delivery_failures.id)"
            " WHERE id IN (SELECT id FROM failure_links)"))
        conn.execute(sa.text("DROP TABLE failure_links"))


def upgrade() -> None:
    with _rebuilt_deliveries() as batch_op:
        batch_op.create_check_constraint("ck_deliveries_one_source", ONE_SOURCE)
        batch_op.create_check_constraint("ck_deliveries_status", STATUS)


def downgrade() -> None:
    with _rebuilt_deliveries() as batch_op:
        batch_op.drop_constraint("ck_deliveries_status", type_="check")
        batch_op.drop_constraint("ck_deliveries_one_source", type_="check")
