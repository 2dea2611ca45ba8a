"""telegram: a customer's Telegram id as a keyed hash, the id itself encrypted

Personal data is never stored in the clear. A Telegram customer's chat and
user id were their numeric Telegram id; they become the keyed hash that
``PersonalDataVault.hash_address('telegram', id)`` gives (as WhatsApp numbers
already are), and the id, needed only to send, is kept encrypted (Fernet,
the vault's key) in ``channel_addresses``. Every place that held it is
rewritten: ``channel_identities.user_id``, ``conversations.chat_id``,
``inbox`` (``chat_id``, ``platform_message_id`` ``<chat>:<message>``, and the
``chat_id``/``user_id`` of its JSON body), ``outbox.chat_id`` and
``subscriptions.chat_id``. Rows already hashed are left alone, so running it
on a partly converted database is harmless.

The keys come from the app's SECRET_KEY (the settings ``storage.migrate``
passes in, else the environment, as ``env.py`` does). The hash and the
encryption are written out here, not imported, so that the migration keeps
doing what the vault did when it was written; tests check both agree.

Downgrade decrypts ``channel_addresses`` and puts the raw ids back.

Revision ID: 0007_tgaddr
Revises: 0006_desk
Create Date: 2026-12-03 17:45:00+00:00

"""

import base64
import hashlib
import hmac
import json
import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op
from cryptography.fernet import Fernet
from sqlalchemy.dialects import postgresql

# revision identifiers, used by Alembic.
revision: str = '0007_tgaddr'
down_revision: str | Sequence[str] | None = '0006_desk'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CHANNEL = 'telegram'
_RAW_ID = re.compile(r'-?\d{1,20}')
_NON_DIGITS = re.compile(r'\D+')


class _Keys:
    """``PersonalDataVault.hash_address`` and ``encrypt``/``decrypt`` as of this revision."""

    def __init__(self, secret_key: str) -> None:
        def derive(purpose: str) -> bytes:
            return hmac.new(secret_key.encode(), purpose.encode(), hashlib.sha256).digest()

        self._address_key = derive('platform-address-hash-v1')
        self._fernet = Fernet(base64.urlsafe_b64encode(derive('pii-fernet-v1')))

    def hash(self, telegram_id: str) -> str:
        normal = _NON_DIGITS.sub('', telegram_id) or telegram_id
        digest = hmac.new(self._address_key, f'{CHANNEL}:{normal}'.encode(), hashlib.sha256)
        return digest.hexdigest()[:40]

    def encrypt(self, value: str) -> str:
        return self._fernet.encrypt(value.encode()).decode()

    def decrypt(self, token: str) -> str:
        return self._fernet.decrypt(token.encode()).decode()


def _keys() -> _Keys:
    settings = op.get_context().config.attributes.get('settings')  # type: ignore[union-attr]
    if settings is None:
        from config import load_settings

        settings = load_settings()
    return _Keys(settings.secret_key.get_secret_value())


def _json_type() -> Any:
    if op.get_bind().dialect.name == 'postgresql':
        return postgresql.JSONB(none_as_null=True)
    return sa.JSON(none_as_null=True)


# The tables (and column) holding a Telegram customer's chat or user id.
_COLUMNS = {
    'channel_identities': 'user_id',
    'conversations': 'chat_id',
    'outbox': 'chat_id',
    'subscriptions': 'chat_id',
}


def _platform_id(convert: Callable[[str], str | None], value: str) -> str | None:
    """An inbox identity ``<chat>:<message>`` with its chat converted (``cb:`` kept)."""
    head, sep, tail = value.partition(':')
    if not sep or head == 'cb':
        return None
    new = convert(head)
    return f'{new}:{tail}' if new is not None else None


def _rewrite(convert: Callable[[str], str | None]) -> None:
    """Apply ``convert`` (old id -> new id, or None to keep) to every Telegram id."""
    conn = op.get_bind()
    for name, column_name in _COLUMNS.items():
        table = sa.table(
            name,
            sa.column('id', sa.BigInteger),
            sa.column('channel', sa.String),
            sa.column(column_name, sa.String),
        )
        column = table.c[column_name]
        rows = conn.execute(sa.select(table.c.id, column).where(table.c.channel == CHANNEL))
        for row_id, value in rows.all():
            new = convert(value)
            if new is not None and new != value:
                conn.execute(table.update().where(table.c.id == row_id).values({column_name: new}))
    inbox = sa.table(
        'inbox',
        sa.column('id', sa.BigInteger),
        sa.column('channel', sa.String),
        sa.column('chat_id', sa.String),
        sa.column('platform_message_id', sa.String),
        sa.column('body', _json_type()),
    )
    rows = conn.execute(
        sa.select(inbox.c.id, inbox.c.chat_id, inbox.c.platform_message_id, inbox.c.body).where(
            inbox.c.channel == CHANNEL
        )
    )
    for row_id, chat_id, platform_id, body in rows.all():
        values: dict[str, Any] = {}
        if (new := convert(chat_id)) is not None:
            values['chat_id'] = new
        if (new := _platform_id(convert, platform_id)) is not None:
            values['platform_message_id'] = new
        if isinstance(body, str):
            body = json.loads(body)
        if isinstance(body, dict):
            changed = dict(body)
            for key in ('chat_id', 'user_id'):
                if isinstance(changed.get(key), str) and (new := convert(changed[key])):
                    changed[key] = new
            if isinstance(changed.get('platform_message_id'), str):
                new = _platform_id(convert, changed['platform_message_id'])
                changed['platform_message_id'] = new or changed['platform_message_id']
            if changed != body:
                values['body'] = changed
        if values:
            conn.execute(inbox.update().where(inbox.c.id == row_id).values(values))


def _addresses() -> sa.TableClause:
    return sa.table(
        'channel_addresses',
        sa.column('id', sa.BigInteger),
        sa.column('channel', sa.String),
        sa.column('address_hash', sa.String),
        sa.column('address_enc', sa.Text),
        sa.column('updated_at', sa.DateTime(timezone=True)),
    )


def upgrade() -> None:
    keys = _keys()
    conn = op.get_bind()
    addresses = _addresses()
    known = set(
        conn.execute(
            sa.select(addresses.c.address_hash).where(addresses.c.channel == CHANNEL)
        ).scalars()
    )
    raw_ids: set[str] = set()

    def convert(value: str) -> str | None:
        if not _RAW_ID.fullmatch(value):
            return None  # already a hash (or not a Telegram id at all)
        raw_ids.add(value)
        return keys.hash(value)

    _rewrite(convert)
    now = datetime.now(UTC)
    for raw in sorted(raw_ids):
        hashed = keys.hash(raw)
        if hashed in known:
            continue
        known.add(hashed)
        conn.execute(
            addresses.insert().values(
                channel=CHANNEL,
                address_hash=hashed,
                address_enc=keys.encrypt(raw),
                updated_at=now,
            )
        )


def downgrade() -> None:
    keys = _keys()
    conn = op.get_bind()
    addresses = _addresses()
    raw_of = {
        hashed: keys.decrypt(enc)
        for hashed, enc in conn.execute(
            sa.select(addresses.c.address_hash, addresses.c.address_enc).where(
                addresses.c.channel == CHANNEL
            )
        ).all()
    }
    # A user id is the hash of the user's Telegram id; in a private chat
    # that is the chat's id, so the same address gives it back.
    _rewrite(raw_of.get)
    conn.execute(addresses.delete().where(addresses.c.channel == CHANNEL))
