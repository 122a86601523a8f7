"""The web archive: who may read each list, sign-in requests and sessions, the search index.

Lists get `archive` = members (the default: a patient forum is not for search engines).
The search index is created and filled from the posts already stored.

Revision ID: 0005_web_archive
Revises: 0004_address_identity
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

import listserv.store.models
from listserv.store import search

revision: str = '0005_web_archive'
down_revision: str | None = '0004_address_identity'
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table('lists', schema=None) as batch_op:
        batch_op.add_column(sa.Column('archive', sa.String(length=10), server_default='members', nullable=False))

    op.create_table('web_signin_requests',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('address', sa.String(length=320), nullable=False),
    sa.Column('client', sa.String(length=64), nullable=False),
    sa.Column('at', listserv.store.models.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('web_signin_requests', schema=None) as batch_op:
        batch_op.create_index('ix_web_signin_address_at', ['address', 'at'], unique=False)
        batch_op.create_index('ix_web_signin_client_at', ['client', 'at'], unique=False)

    op.create_table('web_sessions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('address', sa.String(length=320), nullable=False),
    sa.Column('created_at', listserv.store.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', listserv.store.models.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sqlite_autoincrement=True
    )
    with op.batch_alter_table('web_sessions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_web_sessions_expires_at'), ['expires_at'], unique=False)

    search.reindex(op.get_bind())


def downgrade() -> None:
    op.execute(sa.text(f"DROP TABLE IF EXISTS {search.TABLE}"))
    with op.batch_alter_table('web_sessions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_web_sessions_expires_at'))
    op.drop_table('web_sessions')
    with op.batch_alter_table('web_signin_requests', schema=None) as batch_op:
        batch_op.drop_index('ix_web_signin_client_at')
        batch_op.drop_index('ix_web_signin_address_at')
    op.drop_table('web_signin_requests')
    with op.batch_alter_table('lists', schema=None) as batch_op:
        batch_op.drop_column('archive')
