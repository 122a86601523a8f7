"""One membership per mailbox: a unique index on the lower-cased address of each list.

Members a database already holds twice in different case are merged first: the earlier
membership stays (its spelling, mode and history), the later row goes, and its
deliveries and bounces keep their rows with no member, as for any removed member.

Revision ID: 0004_address_identity
Revises: 0003
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision: str = "0004_address_identity"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.execute(
        "DELETE FROM members WHERE id NOT IN ("
        " SELECT MIN(id) FROM members GROUP BY list_id, lower(address))"
    )
    op.create_index(
        "uq_members_list_identity", "members", ["list_id", sa.text("lower(address)")], unique=True
    )


def downgrade() -> None:
    op.drop_index("uq_members_list_identity", table_name="members")
