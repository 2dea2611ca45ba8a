from sqlalchemy import select

from storage.models import Customer


async def test_customer_roundtrip(db_session) -> None:  # type: ignore[no-untyped-def]
    db_session.add(Customer(full_name="Тест", snils_hash="x" * 64))
    await db_session.commit()
    rows = (await db_session.execute(select(Customer))).scalars().all()
    assert [c.full_name for c in rows] == ["Тест"]
