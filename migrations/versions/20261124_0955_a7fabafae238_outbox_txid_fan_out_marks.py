"""outbox txid fan-out marks

Revision ID: a7fabafae238
Revises: 0a345766bd7b
Create Date: 2026-11-24 09:55:12.000000

Outbox events record the id of the transaction that wrote them, and subscriptions mark how far
fan-out has gone in (txid, id) order, so an event whose transaction commits late is not skipped.
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = 'a7fabafae238'
down_revision: Union[str, Sequence[str], None] = '0a345766bd7b'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    postgresql = op.get_bind().dialect.name == 'postgresql'
    # Rows already there get txid 0 (a constant default: no table rewrite on PostgreSQL), so they
    # keep their id order and sort before every event written from now on; marks start at 0 too.
    with op.batch_alter_table('outbox_events') as batch_op:
        batch_op.add_column(sa.Column('txid', sa.BigInteger(), server_default='0', nullable=False))
    with op.batch_alter_table('webhook_subscriptions') as batch_op:
        batch_op.add_column(sa.Column('last_event_txid', sa.BigInteger(), server_default='0', nullable=False))
    if postgresql:
        op.alter_column('outbox_events', 'txid', server_default=sa.text('(pg_current_xact_id()::text)::bigint'))
        # The outbox is large (weeks of events): build the index without blocking the order path's inserts.
        with op.get_context().autocommit_block():
            op.create_index('ix_outbox_events_txid_id', 'outbox_events', ['txid', 'id'], unique=False,
                            postgresql_concurrently=True)
    else:
        op.create_index('ix_outbox_events_txid_id', 'outbox_events', ['txid', 'id'], unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index('ix_outbox_events_txid_id', table_name='outbox_events')
    with op.batch_alter_table('webhook_subscriptions') as batch_op:
        batch_op.drop_column('last_event_txid')
    with op.batch_alter_table('outbox_events') as batch_op:
        batch_op.drop_column('txid')
