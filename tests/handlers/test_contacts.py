from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from config import Settings
from handlers.contacts import InvalidPhone, contact_info, normalize_phone
from storage.models import Office
from tests.handlers.service_factories import NOW


@pytest.mark.parametrize(
    "raw",
    ["+7 (910) 210-45-67", "8 910 210 45 67", "89102104567", "9102104567", "+7-910-210-45-67"],
)
def test_phone_formats(raw: str) -> None:
    assert normalize_phone(raw) == "+79102104567"


@pytest.mark.parametrize("raw", ["", "123", "позвоните мне", "+1 202 555 0100 12", "<b>8910</b>"])
def test_not_a_phone(raw: str) -> None:
    with pytest.raises(InvalidPhone):
        normalize_phone(raw)


async def test_contact_info(db_session: AsyncSession, db_settings: Settings) -> None:
    db_session.add(
        Office(name="Офис", address="ул. Ленина, 69", phone="+7 (4712) 39-55-55", hours="пн–пт")
    )
    await db_session.flush()
    info = await contact_info(db_session, db_settings, NOW)  # Friday 10:15 Moscow
    assert info.hotline_phone == db_settings.hotline_phone
    assert (info.open_hour, info.close_hour) == (8, 20)
    assert info.is_open_now
    assert [o.address for o in info.offices] == ["ул. Ленина, 69"]
    assert info.next_open_at == NOW
    sunday = NOW + timedelta(days=2)
    on_sunday = await contact_info(db_session, db_settings, sunday)
    assert not on_sunday.is_open_now
    assert on_sunday.next_open_at == datetime(2026, 11, 30, 5, 0, tzinfo=UTC)  # 8:00 Moscow
    friday_night = NOW + timedelta(hours=10)  # 20:15 Moscow
    assert not (await contact_info(db_session, db_settings, friday_night)).is_open_now
