"""What a flow may use during one turn: passed in, never global."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from sqlalchemy.ext.asyncio import AsyncSession

from config import Settings
from dialogs.messages import Attachment
from storage.crypto import PersonalDataVault
from storage.models import Account, ChannelIdentity, Conversation

_CURRENT_ACCOUNT: Final = "context.current_account"


@dataclass(frozen=True)
class FlowContext:
    """Dependencies of one turn.

    ``session`` is the turn's transaction: flows and handlers add and flush
    rows but never commit; the pipeline commits once, with the replies.
    ``now`` is an aware UTC datetime; show times with ``settings.tz``.
    """

    session: AsyncSession
    settings: Settings
    vault: PersonalDataVault
    now: datetime
    identity: ChannelIdentity
    conversation: Conversation
    channel: str
    # Per-turn scratch space for flows to avoid repeating a query within one
    # turn (say, the account's meters); never carried to the next turn.
    memo: dict[str, Any] = field(default_factory=dict)
    # DialogState.facts for this turn: the engine loads it before the step
    # and stores it back after, so what a flow writes here is remembered.
    facts: dict[str, str] = field(default_factory=dict)
    # Files that came with this message (a photo for an appeal being filed).
    attachments: tuple[Attachment, ...] = ()

    async def current_account(self) -> Account | None:
        """The account this chat works with now (linking may change it)."""
        account_id = self.identity.current_account_id
        if account_id is None:
            return None
        # Held for the turn: the session's identity map is weak, and the
        # flows of one turn ask for it again and again (linking, then the
        # flow it resumes).
        held = self.memo.get(_CURRENT_ACCOUNT)
        if isinstance(held, Account) and held.id == account_id:
            return held
        account = await self.session.get(Account, account_id)
        self.memo[_CURRENT_ACCOUNT] = account
        return account

    def hold_account(self, account: Account | None) -> None:
        """The account loaded with the conversation, held for the turn:
        :meth:`current_account` answers from it without asking the session."""
        if account is not None:
            self.memo[_CURRENT_ACCOUNT] = account

    @property
    def local_now(self) -> datetime:
        return self.now.astimezone(self.settings.tz)
