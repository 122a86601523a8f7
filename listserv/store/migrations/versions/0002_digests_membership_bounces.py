"""Digest runs, membership and moderation, bounce scores, deliverability records.

Columns added to existing tables carry a server default, so a database with data
upgrades in place.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 19:01:53.355015
"""

import sqlalchemy as sa
from alembic import op

import listserv.store.models

revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table('settings',
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('value', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('key')
    )
    op.create_table('used_tokens',
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('used_at', listserv.store.models.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('key')
    )
    op.create_table('digest_runs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('list_id', sa.Integer(), nullable=False),
    sa.Column('period', sa.String(length=10), nullable=False),
    sa.Column('serial', sa.Integer(), nullable=False),
    sa.Column('window_start', listserv.store.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('window_end', listserv.store.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('posts', sa.Integer(), nullable=False),
    sa.Column('recipients', sa.Integer(), nullable=False),
    sa.Column('subject', sa.String(length=998), nullable=False),
    sa.Column('text_head', sa.LargeBinary(), nullable=False),
    sa.Column('text_tail', sa.LargeBinary(), nullable=False),
    sa.Column('html_head', sa.LargeBinary(), nullable=False),
    sa.Column('html_tail', sa.LargeBinary(), nullable=False),
    sa.Column('created_at', listserv.store.models.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['list_id'], ['lists.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('list_id', 'period', 'serial')
    )
    op.create_table('list_policies',
    sa.Column('list_id', sa.Integer(), nullable=False),
    sa.Column('policy', sa.String(length=16), nullable=False),
    sa.ForeignKeyConstraint(['list_id'], ['lists.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('list_id')
    )
    op.create_table('list_roles',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('list_id', sa.Integer(), nullable=False),
    sa.Column('address', sa.String(length=320), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.ForeignKeyConstraint(['list_id'], ['lists.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('list_id', 'address', 'role')
    )
    with op.batch_alter_table('list_roles', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_list_roles_list_id'), ['list_id'], unique=False)

    op.create_table('member_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('list_id', sa.Integer(), nullable=False),
    sa.Column('member_id', sa.Integer(), nullable=False),
    sa.Column('address', sa.String(length=320), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('at', listserv.store.models.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['list_id'], ['lists.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('member_events', schema=None) as batch_op:
        batch_op.create_index('ix_member_events_list_at', ['list_id', 'at'], unique=False)

    op.create_table('pending',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('list_id', sa.Integer(), nullable=False),
    sa.Column('action', sa.String(length=10), nullable=False),
    sa.Column('address', sa.String(length=320), nullable=False),
    sa.Column('display_name', sa.String(length=200), nullable=False),
    sa.Column('created_at', listserv.store.models.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['list_id'], ['lists.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sqlite_autoincrement=True
    )
    op.create_table('bounces',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('list_id', sa.Integer(), nullable=False),
    sa.Column('member_id', sa.Integer(), nullable=True),
    sa.Column('address', sa.String(length=320), nullable=False),
    sa.Column('permanent', sa.Boolean(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=True),
    sa.Column('source', sa.String(length=10), nullable=False),
    sa.Column('counted', sa.Boolean(), nullable=False),
    sa.Column('detail', sa.Text(), nullable=False),
    sa.Column('received_at', listserv.store.models.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['list_id'], ['lists.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['member_id'], ['members.id'], ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('bounces', schema=None) as batch_op:
        batch_op.create_index('ix_bounces_member', ['member_id', 'received_at'], unique=False)

    op.create_table('delivery_failures',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('list_id', sa.Integer(), nullable=True),
    sa.Column('delivery_id', sa.Integer(), nullable=True),
    sa.Column('recipient', sa.String(length=320), nullable=False),
    sa.Column('kind', sa.String(length=10), nullable=False),
    sa.Column('reply', sa.Text(), nullable=False),
    sa.Column('at', listserv.store.models.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['delivery_id'], ['deliveries.id'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['list_id'], ['lists.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('delivery_failures', schema=None) as batch_op:
        batch_op.create_index('ix_delivery_failures_list_at', ['list_id', 'at'], unique=False)

    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.add_column(sa.Column('digest_id', sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f('ix_deliveries_digest_id'), ['digest_id'], unique=False)
        batch_op.create_index('ix_deliveries_recipient', ['recipient', 'status', 'id'],
                              unique=False)
        batch_op.create_unique_constraint('uq_deliveries_digest_member', ['digest_id', 'member_id'])
        batch_op.create_foreign_key('fk_deliveries_digest_id', 'digest_runs', ['digest_id'], ['id'],
                                    ondelete='CASCADE')

    with op.batch_alter_table('members', schema=None) as batch_op:
        batch_op.add_column(sa.Column('bounce_score', sa.Float(), nullable=False,
                                      server_default='0'))
        batch_op.add_column(sa.Column('last_bounce_on', sa.Date(), nullable=True))
        batch_op.add_column(sa.Column('disabled_at', listserv.store.models.UTCDateTime(timezone=True),
                                      nullable=True))

    with op.batch_alter_table('posts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('new_text', sa.Text(), nullable=False, server_default=''))



def downgrade() -> None:
    with op.batch_alter_table('posts', schema=None) as batch_op:
        batch_op.drop_column('new_text')

    with op.batch_alter_table('members', schema=None) as batch_op:
        batch_op.drop_column('disabled_at')
        batch_op.drop_column('last_bounce_on')
        batch_op.drop_column('bounce_score')

    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.drop_constraint('fk_deliveries_digest_id', type_='foreignkey')
        batch_op.drop_constraint('uq_deliveries_digest_member', type_='unique')
        batch_op.drop_index('ix_deliveries_recipient')
        batch_op.drop_index(batch_op.f('ix_deliveries_digest_id'))
        batch_op.drop_column('digest_id')

    with op.batch_alter_table('delivery_failures', schema=None) as batch_op:
        batch_op.drop_index('ix_delivery_failures_list_at')

    op.drop_table('delivery_failures')
    with op.batch_alter_table('bounces', schema=None) as batch_op:
        batch_op.drop_index('ix_bounces_member')

    op.drop_table('bounces')
    op.drop_table('pending')
    with op.batch_alter_table('member_events', schema=None) as batch_op:
        batch_op.drop_index('ix_member_events_list_at')

    op.drop_table('member_events')
    with op.batch_alter_table('list_roles', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_list_roles_list_id'))

    op.drop_table('list_roles')
    op.drop_table('list_policies')
    op.drop_table('digest_runs')
    op.drop_table('used_tokens')
    op.drop_table('settings')
