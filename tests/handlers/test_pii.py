"""SNILS and phone recognition and redaction: one recognizer each, and
redaction removes exactly what the link_account flow accepts (properties
over separators, spacing and surrounding text)."""

from __future__ import annotations

import asyncio
import re
from typing import cast

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dialogs.context import FlowContext
from dialogs.flows.link_account import LinkAccount
from dialogs.state import FormState
from handlers.contacts import PHONE_MARK, find_phones, normalize_phone
from handlers.pii import WORDING_EXAMPLES, decrypt_payload, redact_payload, redact_text
from handlers.snils import SNILS_MARK, check_number, find_snils, is_valid_snils
from handlers.usernames import USERNAME_MARK
from nlu.entities import EntityExtractor
from nlu.types import Intent, ParseResult
from storage.crypto import PersonalDataVault

SEPARATORS = ["-", " ", "  ", ".", "/", "—", "–", " - ", " — ", "  –  ", " / ", ". ", ""]
BEFORE = [
    "",
    "СНИЛС ",
    "мой снилс: ",
    "Снилс — ",
    "вот номер страхового свидетельства ",
    "(",
    "«",
    "счёт 1002003001, СНИЛС ",
    "лицевой 1002003001 ",
    "показание 1234,5; снилс ",
    "обращение A-2026-000123, ",
]
AFTER = ["", ".", ",", "!", ")", "»", " спасибо", " счёт 1002003001", ", показание 345", "?"]
_RUNS = re.compile(r"\d+")
_EXTRACTOR = EntityExtractor()

snils_digits = st.text("0123456789", min_size=11, max_size=11)


@st.composite
def valid_snils(draw: st.DrawFn) -> str:
    first9 = draw(st.text("0123456789", min_size=9, max_size=9).filter(lambda d: d > "001001998"))
    return f"{first9}{check_number(first9) % 100:02d}"


def written(digits: str, seps: list[str]) -> str:
    return f"{digits[:3]}{seps[0]}{digits[3:6]}{seps[1]}{digits[6:9]}{seps[2]}{digits[9:]}"


def no_run_of(digits: str, text: str) -> bool:
    return all(digits not in run for run in _RUNS.findall(text))


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(
    digits=snils_digits,
    seps=st.lists(st.sampled_from(SEPARATORS), min_size=3, max_size=3),
    before=st.sampled_from(BEFORE),
    after=st.sampled_from(AFTER),
)
def test_a_snils_however_written_is_found_and_redacted(
    digits: str, seps: list[str], before: str, after: str
) -> None:
    snils = written(digits, seps)
    text = before + snils + after
    assert [m.digits for m in find_snils(text)] == [digits]
    redacted = redact_text(text)
    # Exactly the SNILS goes (a plain run of 11 digits may read as a phone);
    # the account number, the reading and the appeal number stay.
    assert redacted in {before + SNILS_MARK + after, before + PHONE_MARK + after}
    assert no_run_of(digits, redacted)


async def _linked(text: str, requested: str | None) -> dict[str, object]:
    parse = ParseResult(
        text=text,
        intent=Intent(name="link_account", confidence=1.0),
        entities=tuple(_EXTRACTOR.extract(text)),
    )
    form = FormState(name="link_account", requested_slot=requested)
    # extract() reads only the form and the parse, never the context.
    return await LinkAccount().extract(cast(FlowContext, None), form, parse)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    digits=st.one_of(valid_snils(), snils_digits),
    seps=st.lists(st.sampled_from(SEPARATORS), min_size=3, max_size=3),
    before=st.sampled_from(BEFORE),
    after=st.sampled_from(AFTER),
    requested=st.sampled_from([None, "snils", "account_number"]),
)
def test_what_linking_accepts_as_a_snils_is_what_redaction_removes(
    digits: str, seps: list[str], before: str, after: str, requested: str | None
) -> None:
    text = before + written(digits, seps) + after
    found = asyncio.run(_linked(text, requested))
    accepted = found.get("snils")
    formatted = any(seps)
    if formatted or requested == "snils" or is_valid_snils(digits):
        assert accepted == digits
    if isinstance(accepted, str) and len(accepted) == 11:
        assert no_run_of(accepted, redact_text(text))
        # The account number beside it still links (redaction never sees it).
        if "1002003001" in before + after:
            assert found.get("account_number") == "1002003001"


PHONE_PREFIXES = ["+7", "+7 ", "8", "8 ", "+7-", "8-", "+ 7 "]
PHONE_GAPS = ["", " ", "-", "  ", " - "]


@st.composite
def phone_text(draw: st.DrawFn) -> tuple[str, str]:
    """A Russian number as people type it, and its normalised form."""
    national = draw(
        st.one_of(
            st.from_regex(r"9\d{9}", fullmatch=True),
            st.from_regex(r"4712\d{6}", fullmatch=True),
            st.from_regex(r"8[08]0\d{7}", fullmatch=True),
        )
    )
    prefix = draw(st.sampled_from(PHONE_PREFIXES))
    area_len = 4 if national.startswith("4712") else 3
    area, rest = national[:area_len], national[area_len:]
    if draw(st.booleans()):
        area = f"({area})" + draw(st.sampled_from(["", " "]))
    else:
        area += draw(st.sampled_from(PHONE_GAPS))
    groups = [rest[:-4], rest[-4:-2], rest[-2:]]
    gaps = draw(st.lists(st.sampled_from(PHONE_GAPS), min_size=2, max_size=2))
    body = groups[0] + gaps[0] + groups[1] + gaps[1] + groups[2]
    return prefix + area + body, "+7" + national


PHONE_BEFORE = ["", "мой телефон ", "звоните: ", "тел. ", "счёт 1002003001, телефон ", "("]
PHONE_AFTER = ["", ".", ",", ")", " вечером", " — после 18:00", ", счёт 1002003001"]


@settings(max_examples=300)
@given(phone=phone_text(), before=st.sampled_from(PHONE_BEFORE), after=st.sampled_from(PHONE_AFTER))
def test_a_phone_however_written_is_found_and_redacted(
    phone: tuple[str, str], before: str, after: str
) -> None:
    typed, normalised = phone
    text = before + typed + after
    assert [p.phone for p in find_phones(text)] == [normalised]
    assert normalize_phone(typed) == normalised
    redacted = redact_text(text)
    # 8 905123456-78 is as much a SNILS as a phone: either mark, nothing more.
    assert redacted in {before + PHONE_MARK + after, before + SNILS_MARK + after}
    assert no_run_of(normalised[2:], redacted)


@settings(max_examples=300)
@given(
    account=st.one_of(
        st.from_regex(r"[1-8]\d{7,9}", fullmatch=True), st.from_regex(r"\d{12}", fullmatch=True)
    ),
    reading=st.from_regex(r"[1-9]\d{0,5}([.,]\d{1,3})?", fullmatch=True),
)
def test_account_numbers_readings_and_appeal_numbers_are_left_alone(
    account: str, reading: str
) -> None:
    text = f"Лицевой счёт {account}, показание {reading}, обращение A-2026-000123, 24.11.2026"
    assert redact_text(text) == text


@pytest.mark.parametrize(
    ("typed", "normalised"),
    [
        ("+7 (4712) 39-55-55", "+74712395555"),
        ("8 800 100-19-00", "+78001001900"),
        ("89051234567", "+79051234567"),
        ("+79051234567", "+79051234567"),
        ("39-55-55", "+74712395555"),
    ],
)
def test_the_formats_of_the_issue(typed: str, normalised: str) -> None:
    assert [p.phone for p in find_phones(f"звоните {typed} днём")] == [normalised]
    assert redact_text(f"звоните {typed} днём") == f"звоните {PHONE_MARK} днём"


@pytest.mark.parametrize(
    "typed",
    [
        "112.233.445.95",
        "112-233-445  95",
        "112 - 233 - 445 - 95",
        "112—233—445 95",
        "112/233/445/95",
    ],
)
def test_the_snils_formats_of_the_issue(typed: str) -> None:
    assert redact_text(f"СНИЛС {typed}, счёт 1002003001") == f"СНИЛС {SNILS_MARK}, счёт 1002003001"


def test_a_payload_keeps_its_shape_without_the_personal_values() -> None:
    assert redact_payload('/link_account{"snils": "11223344595"}') == (
        f'/link_account{{"snils": "{SNILS_MARK}"}}'
    )
    # A value under any key, and a number rather than a string.
    assert "11223344595" not in redact_payload('/link_account{"x": 11223344595}')
    assert "9051234567" not in redact_payload('/file_appeal{"phone": "+7 905 123-45-67"}')
    # A button's own values stay: they are not personal.
    assert redact_payload('/file_appeal{"phone": "skip"}') == '/file_appeal{"phone": "skip"}'
    assert redact_payload('/link_account{"account_number": "1002003001"}') == (
        '/link_account{"account_number": "1002003001"}'
    )
    # Not JSON: redacted as text.
    assert redact_payload("/link_account{snils: 112-233-445 95") == (
        f"/link_account{{snils: {SNILS_MARK}"
    )


def test_the_wording_examples_are_kept_only_when_asked() -> None:
    text = "например 123-456-789 01 или +7 910 123-45-67"
    assert redact_text(text, WORDING_EXAMPLES) == text
    assert redact_text(text) == f"например {SNILS_MARK} или {PHONE_MARK}"


def test_an_inbox_payload_is_read_encrypted_or_as_written_before() -> None:
    vault = PersonalDataVault("a test key that nobody else uses")
    payload = '/link_account{"snils": "11223344595"}'
    assert decrypt_payload(vault, {"payload_enc": vault.encrypt(payload)}) == payload
    # An entry left unprocessed by the previous version still replays.
    assert decrypt_payload(vault, {"payload": payload}) == payload
    assert decrypt_payload(vault, {"payload_enc": None}) is None


@settings(max_examples=200)
@given(
    digits=st.text("0123456789", min_size=10, max_size=12),
    seps=st.lists(st.sampled_from([s for s in SEPARATORS if s]), min_size=3, max_size=3),
    before=st.sampled_from(BEFORE),
    after=st.sampled_from(AFTER),
)
def test_a_written_snils_of_the_wrong_length_is_redacted_too(
    digits: str, seps: list[str], before: str, after: str
) -> None:
    # Linking answers "В СНИЛС 11 цифр"; the stored text keeps none of it
    # (ten digits written 905 123 456 7 are as much a phone).
    text = before + written(digits, seps) + after
    # A phone's mark takes an opening bracket with it: "(471) 200-000-0".
    phone_before = before.removesuffix("(")
    assert redact_text(text) in {
        before + SNILS_MARK + after,
        before + PHONE_MARK + after,
        phone_before + PHONE_MARK + after,
    }


@pytest.mark.parametrize(
    "written",
    [
        "@ivan_petrov_85",
        "t.me/ivan_petrov_85",
        "https://t.me/Ivan_Petrov_85",
        "telegram.me/@ivan_petrov_85",
        "www.t.me/ivan_petrov_85",
    ],
)
@pytest.mark.parametrize(("before", "after"), [("", ""), ("мой телеграм ", ", пишите"), ("(", ")")])
def test_a_telegram_username_is_redacted(written: str, before: str, after: str) -> None:
    redacted = redact_text(f"{before}{written}{after}")
    assert redacted == f"{before}{USERNAME_MARK}{after}"


@pytest.mark.parametrize(
    "text",
    [
        "ivan.petrov85@mail.ru",  # an e-mail address: its own mark
        "@ivan",  # shorter than a Telegram username can be
        "оплатил 100 @ 5",
        "напишите на @_underscore_first",
        "почта ivan_petrov_85@yandex.ru",
        "Справка отправлена на i***@yandex.ru",  # a masked e-mail in the bot's reply
    ],
)
def test_what_is_no_username_is_not_taken_for_one(text: str) -> None:
    assert USERNAME_MARK not in redact_text(text)
