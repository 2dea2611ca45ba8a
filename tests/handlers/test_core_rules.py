"""Pure business rules of the dialog core's handlers: SNILS, hours, readings."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from config import load_settings
from handlers.hours import is_open, next_opening
from handlers.payments import payment_offer
from handlers.readings import (
    READINGS_CUTOFF_DAY,
    MeterInfo,
    Verdict,
    check_reading,
    counts_in,
    parse_reading_value,
)
from handlers.snils import check_number, is_valid_snils, redact_snils, snils_digits
from storage.models import MeterType

SETTINGS = load_settings(environment="test", secret_key="k")


@pytest.mark.parametrize(
    ("snils", "ok"),
    [
        ("112-233-445 95", True),
        ("987-654-321 83", True),
        ("11223344595", True),
        ("112-233-445 96", False),
        ("001-001-998 00", True),  # issued before checksums: not checked
        ("001-001-999 00", False),
        ("123", False),
    ],
)
def test_snils_checksum(snils: str, ok: bool) -> None:
    assert is_valid_snils(snils) is ok


def test_checksum_edge_rules() -> None:
    # weights 9..1: 9*9 + 9*2 + 1*1 = 100 -> 00; 101 -> 00; 9*45 = 405 -> 405 mod 101 = 1
    assert check_number("000000091") == 19
    assert check_number("900000091") == 0
    assert check_number("900000092") == 0
    assert check_number("999999999") == 1


def test_snils_in_text_and_redaction() -> None:
    assert snils_digits("мой снилс 112 233 445 95, счёт 1002003001") == "11223344595"
    assert redact_snils("снилс 112-233-445 95") == "снилс ***-***-*** **"
    assert redact_snils("счёт 1002003001") == "счёт 1002003001"


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1234,5", Decimal("1234.5")),
        ("1 234.5", Decimal("1234.5")),
        ("1234", Decimal("1234")),
        ("показание 149,8 гкал", Decimal("149.8")),
        ("нет", None),
    ],
)
def test_reading_formats(text: str, value: Decimal | None) -> None:
    assert parse_reading_value(text) == value


def _meter(last: str, usual: str) -> MeterInfo:
    return MeterInfo(1, MeterType.HEATING, "s", "Гкал", Decimal(last), None, Decimal(usual))


def test_reading_verdicts() -> None:
    meter = _meter("100", "2")
    assert check_reading(meter, Decimal("101"), SETTINGS).verdict is Verdict.OK
    assert check_reading(meter, Decimal("106"), SETTINGS).verdict is Verdict.OK
    assert check_reading(meter, Decimal("106.1"), SETTINGS).verdict is Verdict.JUMP
    assert check_reading(meter, Decimal("99.9"), SETTINGS).verdict is Verdict.BELOW_PREVIOUS
    assert check_reading(meter, Decimal("301"), SETTINGS).verdict is Verdict.ABSURD
    assert check_reading(meter, Decimal("1e7"), SETTINGS).verdict is Verdict.ABSURD


def test_a_rise_is_judged_per_month_since_the_last_reading() -> None:
    now = datetime(2026, 11, 24, 7, 0, tzinfo=UTC)
    recent = MeterInfo(
        1, MeterType.HEATING, "s", "Гкал", Decimal(100), now - timedelta(days=30), Decimal(2)
    )
    skipped = dataclasses.replace(recent, last_taken_at=now - timedelta(days=92))
    # +15 Гкал: 7.5x usual in one month, but about 2.5x a month over three.
    assert check_reading(recent, Decimal(115), SETTINGS, now).verdict is Verdict.JUMP
    assert check_reading(skipped, Decimal(115), SETTINGS, now).verdict is Verdict.OK
    assert check_reading(skipped, Decimal(120), SETTINGS, now).verdict is Verdict.JUMP


def test_reading_cutoff_day() -> None:
    tz = SETTINGS.tz
    assert READINGS_CUTOFF_DAY == 25
    assert counts_in(datetime(2026, 11, 25, 20, 59, tzinfo=UTC), tz) == date(2026, 11, 1)
    # 21:00 UTC on the 25th is already the 26th in Moscow
    assert counts_in(datetime(2026, 11, 25, 21, 0, tzinfo=UTC), tz) == date(2026, 12, 1)
    assert counts_in(datetime(2026, 12, 28, 9, 0, tzinfo=UTC), tz) == date(2027, 1, 1)


@pytest.mark.parametrize(
    ("now", "open_", "opening"),
    [
        # Tuesday 10:00 Moscow: open
        (datetime(2026, 11, 24, 7, 0, tzinfo=UTC), True, datetime(2026, 11, 24, 7, 0, tzinfo=UTC)),
        # Tuesday 20:00 Moscow: closed until Wednesday 8:00
        (
            datetime(2026, 11, 24, 17, 0, tzinfo=UTC),
            False,
            datetime(2026, 11, 25, 5, 0, tzinfo=UTC),
        ),
        # Saturday 19:59 Moscow: still open
        (
            datetime(2026, 11, 28, 16, 59, tzinfo=UTC),
            True,
            datetime(2026, 11, 28, 16, 59, tzinfo=UTC),
        ),
        # Sunday: Monday 8:00
        (datetime(2026, 11, 29, 9, 0, tzinfo=UTC), False, datetime(2026, 11, 30, 5, 0, tzinfo=UTC)),
        # New Year holidays: closed until 9 January 2027 (a Saturday)
        (datetime(2026, 12, 31, 18, 0, tzinfo=UTC), False, datetime(2027, 1, 9, 5, 0, tzinfo=UTC)),
    ],
)
def test_contact_center_hours(now: datetime, open_: bool, opening: datetime) -> None:
    assert is_open(SETTINGS, now) is open_
    assert next_opening(SETTINGS, now) == opening


def test_payment_link_never_negative() -> None:
    offer = payment_offer(SETTINGS, "1002003002", Decimal("-150"))
    assert offer.url.endswith("account=1002003002&amount=0.00")
    assert offer.amount == Decimal("0.00")
