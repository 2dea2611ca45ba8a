"""How to pay: a payment link from the configured template, and bank details."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from urllib.parse import quote

from config import Settings


@dataclass(frozen=True)
class PaymentOffer:
    url: str
    amount: Decimal
    bank_details: str


def payment_offer(settings: Settings, account_number: str, amount: Decimal) -> PaymentOffer:
    """The link with the account and the amount (roubles, two decimals) filled in."""
    amount = max(amount, Decimal(0)).quantize(Decimal("0.01"))
    url = settings.payment_url_template.format(
        account=quote(account_number, safe=""), amount=quote(str(amount), safe="")
    )
    return PaymentOffer(url=url, amount=amount, bank_details=settings.bank_details)
