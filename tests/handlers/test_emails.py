"""E-mail addresses: the recognizer, its mask, and redaction of stored text."""

from __future__ import annotations

import pytest

from handlers.emails import EMAIL_MARK, InvalidEmail, find_emails, mask_email, normalize_email
from handlers.pii import redact_payload, redact_text


def test_addresses_are_found_in_free_text() -> None:
    text = "пришлите на Ivan.Petrov@Mail.RU или на почта@почта.рф, спасибо"
    assert [m.email for m in find_emails(text)] == ["Ivan.Petrov@mail.ru", "почта@почта.рф"]


@pytest.mark.parametrize("text", ["ivan@mail", "ivan mail.ru", "@mail.ru", "ivan..p@mail.ru"])
def test_what_is_no_address(text: str) -> None:
    with pytest.raises(InvalidEmail):
        normalize_email(text)


def test_one_address_is_normalised_and_masked() -> None:
    assert normalize_email(" <ivan@Yandex.RU>. ") == "ivan@yandex.ru"
    assert mask_email("ivan@yandex.ru") == "i***@yandex.ru"


def test_redaction_removes_addresses_before_their_digits_read_as_a_phone() -> None:
    assert redact_text("мой адрес ivan89051234567@mail.ru") == f"мой адрес {EMAIL_MARK}"
    # The bot's own confirmation shows the mask, which is no address.
    assert redact_text("Пришлём на i***@mail.ru.") == "Пришлём на i***@mail.ru."


def test_an_email_payload_key_is_redacted_whatever_it_holds() -> None:
    assert EMAIL_MARK in redact_payload('/check_balance{"email":"ivan"}')
    assert "ivan@mail.ru" not in redact_payload('/check_balance{"note":"ivan@mail.ru"}')
