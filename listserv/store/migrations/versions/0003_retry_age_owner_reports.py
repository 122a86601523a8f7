"""A per-list maximum retry age; the owners' daily reports.

The new column is nullable (NULL: the global [delivery] max_age_hours), so a database
with lists upgrades in place.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

import listserv.store.models

revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table('lists', schema=None) as batch_op:
        batch_op.add_column(sa.Column('max_retry_hours', sa.Float(), nullable=True))

    op.create_table('owner_reports',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('list_id', sa.Integer(), nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('owners', sa.Integer(), nullable=False),
    sa.Column('created_at', listserv.store.models.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['list_id'], ['lists.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('list_id', 'day')
    )


def downgrade() -> None:
    op.drop_table('owner_reports')
    with op.batch_alter_table('lists', schema=None) as batch_op:
        batch_op.drop_column('max_retry_hours')
