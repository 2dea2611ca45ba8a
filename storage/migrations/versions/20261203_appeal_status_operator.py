"""appeal status changes keep the operator who made them

A status change made from the console records its operator
(``appeal_status_changes.operator_id``); the bot's own changes and the
deadline jobs leave it NULL. A new task kind, ``appeal_overdue``, needs no
migration (enums are stored as strings).

Revision ID: 0006_notices
Revises: 0005
Create Date: 2026-12-03 14:00:00+00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = '0006_notices'
down_revision: str | Sequence[str] | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('appeal_status_changes', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                'operator_id',
                sa.BigInteger().with_variant(sa.Integer(), 'sqlite'),
                nullable=True,
            )
        )
        batch_op.create_foreign_key(
            batch_op.f('fk_appeal_status_changes_operator_id_operators'),
            'operators',
            ['operator_id'],
            ['id'],
        )


def downgrade() -> None:
    with op.batch_alter_table('appeal_status_changes', schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f('fk_appeal_status_changes_operator_id_operators'), type_='foreignkey'
        )
        batch_op.drop_column('operator_id')
