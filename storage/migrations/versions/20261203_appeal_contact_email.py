"""appeal contact e-mail

A certificate requested by e-mail needs the address: kept encrypted, with a
masked copy for display, like the contact phone.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03 10:50:00.000000+00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


# revision identifiers, used by Alembic.
revision: str = '0004'
down_revision: str | Sequence[str] | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('appeals', schema=None) as batch_op:
        batch_op.add_column(sa.Column('contact_email_enc', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('contact_email_masked', sa.String(length=80), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('appeals', schema=None) as batch_op:
        batch_op.drop_column('contact_email_masked')
        batch_op.drop_column('contact_email_enc')
