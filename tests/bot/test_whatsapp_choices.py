"""The numbered choices shared by WhatsApp and the terminal, and the keyed hash
that stands for a customer's phone number."""

from __future__ import annotations

import pytest

from bot.channels.choices import render_text, resolve_choice
from bot.cli import CLI_CHOICE_STYLE
from dialogs.messages import Button, Reply
from storage.crypto import PersonalDataVault

MENU = (
    Button("Передать показания", "/submit_reading"),
    Button("Баланс и начисления", "/check_balance"),
    Button("Связаться с оператором", "/request_operator"),
)


def test_buttons_become_a_numbered_list_after_the_text() -> None:
    reply = Reply("Чем могу помочь?", MENU)
    assert render_text(reply) == (
        "Чем могу помочь?\n\n"
        "1. Передать показания\n2. Баланс и начисления\n3. Связаться с оператором"
    )
    assert render_text(Reply("Готово.")) == "Готово."
    assert render_text(reply, CLI_CHOICE_STYLE).endswith("  [3] Связаться с оператором")


@pytest.mark.parametrize(
    ("answer", "payload"),
    [
        ("2", "/check_balance"),
        (" 3 ", "/request_operator"),
        ("1.", "/submit_reading"),
        ("3)", "/request_operator"),
        ("баланс и начисления", "/check_balance"),
        ("  Передать   показания ", "/submit_reading"),
    ],
)
def test_a_digit_or_the_label_presses_the_button(answer: str, payload: str) -> None:
    pressed = resolve_choice(answer, MENU)
    assert pressed is not None
    assert pressed.payload == payload


@pytest.mark.parametrize("answer", ["0", "4", "149", "149,9", "баланс", "", "2 3"])
def test_anything_else_is_free_text(answer: str) -> None:
    assert resolve_choice(answer, MENU) is None


def test_no_buttons_no_press() -> None:
    assert resolve_choice("1", ()) is None


def test_address_hash_ignores_formatting_and_hides_the_number() -> None:
    vault = PersonalDataVault("secret-one")
    digest = vault.hash_address("whatsapp", "+79101234567")
    assert digest == vault.hash_address("whatsapp", "whatsapp:+7 910 123-45-67")
    assert "9101234567" not in digest
    assert digest != vault.hash_address("telegram", "+79101234567")
    assert digest != vault.hash_address("whatsapp", "+79101234568")
    assert digest != PersonalDataVault("secret-two").hash_address("whatsapp", "+79101234567")
