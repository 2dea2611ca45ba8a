"""Personal data at rest: SNILS as a keyed hash, phones encrypted and masked.

Keys are derived from ``SECRET_KEY``; rotating it invalidates stored hashes,
so production keeps it stable (as it must anyway for session tokens).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_DIGITS = re.compile(r"\D+")


class PersonalDataError(Exception):
    """Encrypted personal data cannot be read with the current key."""


def _derive(secret: str, purpose: str) -> bytes:
    return hmac.new(secret.encode(), purpose.encode(), hashlib.sha256).digest()


def derive_fernet_key(secret_key: str, purpose: str) -> bytes:
    """A Fernet key of its own for ``purpose``: one leaked key opens nothing else."""
    hkdf = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=b"heatdesk-hkdf-v1", info=purpose.encode()
    )
    return base64.urlsafe_b64encode(hkdf.derive(secret_key.encode()))


class PersonalDataVault:
    def __init__(self, secret_key: str) -> None:
        self._hash_key = _derive(secret_key, "snils-hash-v1")
        self._id_key = _derive(secret_key, "identity-hash-v1")
        self._address_key = _derive(secret_key, "platform-address-hash-v1")
        self._fernet = Fernet(base64.urlsafe_b64encode(_derive(secret_key, "pii-fernet-v1")))

    def hash_snils(self, snils: str) -> str:
        """Keyed hash of the 11 SNILS digits (formatting ignored)."""
        digits = _DIGITS.sub("", snils)
        return hmac.new(self._hash_key, digits.encode(), hashlib.sha256).hexdigest()

    def hash_identity(self, value: str) -> str:
        """Keyed hash for platform user ids that are personal data (phones)."""
        return hmac.new(self._id_key, value.encode(), hashlib.sha256).hexdigest()[:40]

    def hash_address(self, channel: str, address: str) -> str:
        """Keyed hash of a platform address (a WhatsApp phone number) that
        stands in for it as the chat and user id.

        Formatting is ignored (``whatsapp:+7 999 ...`` and ``79991234567`` are
        one address); the channel keeps two platforms' ids apart.
        """
        normal = _DIGITS.sub("", address) or address
        digest = hmac.new(self._address_key, f"{channel}:{normal}".encode(), hashlib.sha256)
        return digest.hexdigest()[:40]

    def encrypt(self, value: str) -> str:
        return self._fernet.encrypt(value.encode()).decode()

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken as exc:
            raise PersonalDataError("cannot decrypt with the current SECRET_KEY") from exc


def mask_phone(phone: str) -> str:
    """``+7 (4712) 39-55-55`` -> ``+7 *** ***-**-55``: enough to recognise it."""
    digits = _DIGITS.sub("", phone)
    if len(digits) < 4:
        return "***"
    return f"+7 *** ***-**-{digits[-2:]}"
