"""idempotency key per channel

Revision ID: 5c1d2e7f9a30
Revises: a7fabafae238
Create Date: 2026-11-24 10:50:00.000000

An Idempotency-Key is unique within its channel, as the storefront's own order id already was:
two storefronts that both use their own order numbers as keys no longer refuse each other's orders.
"""
from typing import Sequence, Union

from alembic import op


# revision identifiers, used by Alembic.
revision: str = '5c1d2e7f9a30'
down_revision: Union[str, Sequence[str], None] = 'a7fabafae238'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table('orders') as batch_op:
        batch_op.drop_constraint('uq_orders_idempotency_key', type_='unique')
        batch_op.create_unique_constraint('uq_orders_channel_id_idempotency_key', ['channel_id', 'idempotency_key'])


def downgrade() -> None:
    """Downgrade schema (fails if two channels now share a key)."""
    with op.batch_alter_table('orders') as batch_op:
        batch_op.drop_constraint('uq_orders_channel_id_idempotency_key', type_='unique')
        batch_op.create_unique_constraint('uq_orders_idempotency_key', ['idempotency_key'])
