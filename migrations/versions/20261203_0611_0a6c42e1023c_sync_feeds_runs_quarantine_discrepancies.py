"""sync feeds runs quarantine discrepancies

Revision ID: 0a6c42e1023c
Revises: 5c1d2e7f9a30
Create Date: 2026-12-03 06:11:14.834418

Sync: feeds with their item and location mappings, runs with their reports,
quarantine, discrepancies, per-key deferral and strike state, the outbound adjustments owed to a
source, what was last pushed to a channel, inbound orders and webhook receipts; movements gain the
vendor's clock (vendor_at) for the watermark rule.
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '0a6c42e1023c'
down_revision: Union[str, Sequence[str], None] = '5c1d2e7f9a30'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table('feeds',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('connector', sa.String(length=32), nullable=False),
    sa.Column('base_url', sa.String(length=2000), nullable=False),
    sa.Column('channel_id', sa.Integer(), nullable=True),
    sa.Column('credentials', sa.JSON(), nullable=False),
    sa.Column('options', sa.JSON(), nullable=False),
    sa.Column('settings', sa.JSON(), nullable=False),
    sa.Column('enabled', sa.Boolean(), server_default=sa.true(), nullable=False),
    sa.Column('watermark', sa.DateTime(timezone=True), nullable=True),
    sa.Column('orders_watermark', sa.DateTime(timezone=True), nullable=True),
    sa.Column('totals', sa.JSON(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['channel_id'], ['channels.id'], name=op.f('fk_feeds_channel_id_channels')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_feeds')),
    sa.UniqueConstraint('code', name=op.f('uq_feeds_code'))
    )
    op.create_table('feed_items',
    sa.Column('feed_id', sa.Integer(), nullable=False),
    sa.Column('item_ref', sa.String(length=200), nullable=False),
    sa.Column('sku_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['feed_id'], ['feeds.id'], name=op.f('fk_feed_items_feed_id_feeds'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['sku_id'], ['skus.id'], name=op.f('fk_feed_items_sku_id_skus')),
    sa.PrimaryKeyConstraint('feed_id', 'item_ref', name=op.f('pk_feed_items'))
    )
    with op.batch_alter_table('feed_items', schema=None) as batch_op:
        batch_op.create_index('ix_feed_items_sku', ['feed_id', 'sku_id'], unique=False)

    op.create_table('feed_locations',
    sa.Column('feed_id', sa.Integer(), nullable=False),
    sa.Column('location_ref', sa.String(length=200), nullable=False),
    sa.Column('location_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['feed_id'], ['feeds.id'], name=op.f('fk_feed_locations_feed_id_feeds'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['location_id'], ['locations.id'], name=op.f('fk_feed_locations_location_id_locations')),
    sa.PrimaryKeyConstraint('feed_id', 'location_ref', name=op.f('pk_feed_locations'))
    )
    with op.batch_alter_table('feed_locations', schema=None) as batch_op:
        batch_op.create_index('ix_feed_locations_location', ['location_id'], unique=False)

    op.create_table('sync_discrepancies',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('feed_id', sa.Integer(), nullable=False),
    sa.Column('run_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('sku_id', sa.Integer(), nullable=False),
    sa.Column('location_id', sa.Integer(), nullable=False),
    sa.Column('vendor_qty', sa.Integer(), nullable=False),
    sa.Column('ledger_qty', sa.Integer(), nullable=False),
    sa.Column('drift', sa.Integer(), nullable=False),
    sa.Column('vendor_time', sa.DateTime(timezone=True), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('decided_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('decided_by', sa.String(length=200), nullable=True),
    sa.Column('note', sa.String(length=500), nullable=True),
    sa.Column('applied_delta', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['feed_id'], ['feeds.id'], name=op.f('fk_sync_discrepancies_feed_id_feeds'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['location_id'], ['locations.id'], name=op.f('fk_sync_discrepancies_location_id_locations')),
    sa.ForeignKeyConstraint(['sku_id'], ['skus.id'], name=op.f('fk_sync_discrepancies_sku_id_skus')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sync_discrepancies'))
    )
    with op.batch_alter_table('sync_discrepancies', schema=None) as batch_op:
        batch_op.create_index('ix_sync_discrepancies_status', ['feed_id', 'status'], unique=False)

    op.create_table('sync_key_state',
    sa.Column('feed_id', sa.Integer(), nullable=False),
    sa.Column('sku_id', sa.Integer(), nullable=False),
    sa.Column('location_id', sa.Integer(), nullable=False),
    sa.Column('ineligible_since', sa.DateTime(timezone=True), nullable=True),
    sa.Column('strike_drift', sa.Integer(), nullable=True),
    sa.Column('strike_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['feed_id'], ['feeds.id'], name=op.f('fk_sync_key_state_feed_id_feeds'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('feed_id', 'sku_id', 'location_id', name=op.f('pk_sync_key_state'))
    )
    op.create_table('sync_orders',
    sa.Column('feed_id', sa.Integer(), nullable=False),
    sa.Column('external_id', sa.String(length=100), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('order_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('reason', sa.String(length=1000), nullable=True),
    sa.Column('raw', sa.JSON(), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('attempts', sa.Integer(), server_default='1', nullable=False),
    sa.ForeignKeyConstraint(['feed_id'], ['feeds.id'], name=op.f('fk_sync_orders_feed_id_feeds'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('feed_id', 'external_id', name=op.f('pk_sync_orders'))
    )
    with op.batch_alter_table('sync_orders', schema=None) as batch_op:
        batch_op.create_index('ix_sync_orders_status', ['feed_id', 'status'], unique=False)

    op.create_table('sync_outbound',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('feed_id', sa.Integer(), nullable=False),
    sa.Column('sku_id', sa.Integer(), nullable=False),
    sa.Column('location_id', sa.Integer(), nullable=False),
    sa.Column('delta', sa.Integer(), nullable=False),
    sa.Column('fulfilment_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), server_default='0', nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('acked_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('vendor_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('error', sa.String(length=500), nullable=True),
    sa.ForeignKeyConstraint(['feed_id'], ['feeds.id'], name=op.f('fk_sync_outbound_feed_id_feeds'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sync_outbound'))
    )
    with op.batch_alter_table('sync_outbound', schema=None) as batch_op:
        batch_op.create_index('ix_sync_outbound_status', ['feed_id', 'status', 'id'], unique=False)

    op.create_table('sync_pushed',
    sa.Column('feed_id', sa.Integer(), nullable=False),
    sa.Column('item_ref', sa.String(length=200), nullable=False),
    sa.Column('location_ref', sa.String(length=200), nullable=False),
    sa.Column('target', sa.Integer(), nullable=False),
    sa.Column('pushed_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['feed_id'], ['feeds.id'], name=op.f('fk_sync_pushed_feed_id_feeds'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('feed_id', 'item_ref', 'location_ref', name=op.f('pk_sync_pushed'))
    )
    op.create_table('sync_quarantine',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('feed_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('item_ref', sa.String(length=200), nullable=False),
    sa.Column('location_ref', sa.String(length=200), nullable=False),
    sa.Column('reason', sa.String(length=500), nullable=False),
    sa.Column('raw', sa.JSON(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('seen_count', sa.Integer(), server_default='1', nullable=False),
    sa.Column('first_seen_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_seen_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_run_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('resolved_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('resolution', sa.String(length=500), nullable=True),
    sa.ForeignKeyConstraint(['feed_id'], ['feeds.id'], name=op.f('fk_sync_quarantine_feed_id_feeds'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sync_quarantine')),
    sa.UniqueConstraint('feed_id', 'kind', 'item_ref', 'location_ref', name=op.f('uq_sync_quarantine_feed_id_kind_item_ref_location_ref'))
    )
    with op.batch_alter_table('sync_quarantine', schema=None) as batch_op:
        batch_op.create_index('ix_sync_quarantine_status', ['feed_id', 'status'], unique=False)

    op.create_table('sync_runs',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('feed_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('trigger', sa.String(length=16), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('duration_ms', sa.Integer(), nullable=True),
    sa.Column('counts', sa.JSON(), nullable=False),
    sa.Column('report', sa.JSON(), nullable=False),
    sa.Column('error', sa.String(length=2000), nullable=True),
    sa.ForeignKeyConstraint(['feed_id'], ['feeds.id'], name=op.f('fk_sync_runs_feed_id_feeds'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sync_runs'))
    )
    with op.batch_alter_table('sync_runs', schema=None) as batch_op:
        batch_op.create_index('ix_sync_runs_feed_id', ['feed_id', 'id'], unique=False)

    op.create_table('sync_webhook_receipts',
    sa.Column('feed_id', sa.Integer(), nullable=False),
    sa.Column('delivery_id', sa.String(length=200), nullable=False),
    sa.Column('topic', sa.String(length=64), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('triggered_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('processed_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['feed_id'], ['feeds.id'], name=op.f('fk_sync_webhook_receipts_feed_id_feeds'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('feed_id', 'delivery_id', name=op.f('pk_sync_webhook_receipts'))
    )
    with op.batch_alter_table('movements', schema=None) as batch_op:
        batch_op.add_column(sa.Column('vendor_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index('ix_movements_source_vendor_at', ['source', 'vendor_at'], unique=False)



def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table('movements', schema=None) as batch_op:
        batch_op.drop_index('ix_movements_source_vendor_at')
        batch_op.drop_column('vendor_at')

    op.drop_table('sync_webhook_receipts')
    with op.batch_alter_table('sync_runs', schema=None) as batch_op:
        batch_op.drop_index('ix_sync_runs_feed_id')

    op.drop_table('sync_runs')
    with op.batch_alter_table('sync_quarantine', schema=None) as batch_op:
        batch_op.drop_index('ix_sync_quarantine_status')

    op.drop_table('sync_quarantine')
    op.drop_table('sync_pushed')
    with op.batch_alter_table('sync_outbound', schema=None) as batch_op:
        batch_op.drop_index('ix_sync_outbound_status')

    op.drop_table('sync_outbound')
    with op.batch_alter_table('sync_orders', schema=None) as batch_op:
        batch_op.drop_index('ix_sync_orders_status')

    op.drop_table('sync_orders')
    op.drop_table('sync_key_state')
    with op.batch_alter_table('sync_discrepancies', schema=None) as batch_op:
        batch_op.drop_index('ix_sync_discrepancies_status')

    op.drop_table('sync_discrepancies')
    with op.batch_alter_table('feed_locations', schema=None) as batch_op:
        batch_op.drop_index('ix_feed_locations_location')

    op.drop_table('feed_locations')
    with op.batch_alter_table('feed_items', schema=None) as batch_op:
        batch_op.drop_index('ix_feed_items_sku')

    op.drop_table('feed_items')
    op.drop_table('feeds')
