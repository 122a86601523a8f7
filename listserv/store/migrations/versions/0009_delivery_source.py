"""A delivery names exactly one message: one of post_id, notice_id and digest_id is set
(the outbox composed, finished and found the list of each by which one it was).

Revision ID: 0009_delivery_source
Revises: 0008_archive
Create Date: 2026-11-29
"""

from alembic import op

revision: str = "0009_delivery_source"
down_revision: str | None = "0008_archive"
branch_labels: str | None = None
depends_on: str | None = None

# As in the models (listserv.store.models.ONE_SOURCE), spelled here so that this revision
# keeps its meaning if the models change.
ONE_SOURCE = ("CASE WHEN post_id IS NULL THEN 0 ELSE 1 END"
              " + CASE WHEN notice_id IS NULL THEN 0 ELSE 1 END"
              " + CASE WHEN digest_id IS NULL THEN 0 ELSE 1 END = 1")


# SQLite recreates the table; the tables it refers to need not be read (members has an
# expression index that reflection skips with a warning).
REFLECT = {"resolve_fks": False}


def upgrade() -> None:
    with op.batch_alter_table("deliveries", schema=None, reflect_kwargs=REFLECT) as batch_op:
        batch_op.create_check_constraint("ck_deliveries_one_source", ONE_SOURCE)


def downgrade() -> None:
    with op.batch_alter_table("deliveries", schema=None, reflect_kwargs=REFLECT) as batch_op:
        batch_op.drop_constraint("ck_deliveries_one_source", type_="check")
