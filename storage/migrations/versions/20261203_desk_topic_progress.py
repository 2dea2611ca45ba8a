"""desk: what the operators' Telegram desk has shown in a conversation's topic

``conversations.desk_message_id`` is the last message relayed into the
conversation's forum topic and ``desk_owner`` the ownership last announced
there (``queue``, ``operator:<id>``): each process that hears an operator
event compares them with the conversation under the desk's lock, so a message
or an announcement reaches the topic once however many processes listen, and
what was missed while no process ran is caught up. An operator's message in a
topic is mapped back by ``desk_topic_id``, hence its index.

Revision ID: 0006_desk
Revises: 0006_notices
Create Date: 2026-12-03 14:10:00+00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = '0006_desk'
down_revision: str | Sequence[str] | None = '0006_notices'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('conversations', schema=None) as batch_op:
        batch_op.add_column(sa.Column('desk_message_id', sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column('desk_owner', sa.String(length=40), nullable=True))
        batch_op.create_index(
            batch_op.f('ix_conversations_desk_topic_id'), ['desk_topic_id'], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table('conversations', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_conversations_desk_topic_id'))
        batch_op.drop_column('desk_owner')
        batch_op.drop_column('desk_message_id')
