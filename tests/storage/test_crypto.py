"""Personal data at rest: keyed SNILS hashes, encrypted phones."""

from __future__ import annotations

import pytest

from storage.crypto import PersonalDataError, PersonalDataVault, mask_phone


def test_phone_roundtrip_and_the_token_hides_the_digits() -> None:
    vault = PersonalDataVault("secret-one")
    token = vault.encrypt("+79102104567")
    assert "9102104567" not in token
    assert vault.decrypt(token) == "+79102104567"
    # Fresh randomness each time: equal phones do not give equal tokens.
    assert vault.encrypt("+79102104567") != token


def test_another_secret_key_cannot_decrypt() -> None:
    token = PersonalDataVault("secret-one").encrypt("+79102104567")
    with pytest.raises(PersonalDataError):
        PersonalDataVault("secret-two").decrypt(token)
    with pytest.raises(PersonalDataError):
        PersonalDataVault("secret-one").decrypt(token[:-4] + "AAAA")


def test_snils_hash_ignores_formatting_and_depends_on_the_key() -> None:
    one = PersonalDataVault("secret-one")
    digest = one.hash_snils("112-233-445 95")
    assert digest == one.hash_snils("11223344595") == one.hash_snils(" 112 233 445-95 ")
    assert len(digest) == 64
    assert "11223344595" not in digest
    assert digest != one.hash_snils("98765432183")
    assert digest != PersonalDataVault("secret-two").hash_snils("11223344595")


def test_identity_hash_is_stable_short_and_keyed() -> None:
    one = PersonalDataVault("secret-one")
    assert one.hash_identity("whatsapp:+79102104567") == one.hash_identity("whatsapp:+79102104567")
    assert len(one.hash_identity("x")) == 40
    assert one.hash_identity("x") != PersonalDataVault("secret-two").hash_identity("x")


@pytest.mark.parametrize(
    ("phone", "masked"),
    [
        ("+7 (910) 210-45-67", "+7 *** ***-**-67"),
        ("89155123344", "+7 *** ***-**-44"),
        ("12", "***"),
    ],
)
def test_mask_phone(phone: str, masked: str) -> None:
    assert mask_phone(phone) == masked
