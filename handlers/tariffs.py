"""Tariffs: what is charged now, what it was before, what is coming."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Service, Tariff


@dataclass(frozen=True, slots=True)
class TariffInfo:
    service: Service
    name: str
    unit: str
    price: Decimal  # roubles per unit, VAT included
    valid_from: date
    valid_to: date | None
    note: str | None


@dataclass(frozen=True, slots=True)
class ServiceTariffs:
    service: Service
    current: TariffInfo | None
    previous: TariffInfo | None  # the last change is current.valid_from
    upcoming: TariffInfo | None

    @property
    def upcoming_change_percent(self) -> Decimal | None:
        return _percent(self.current, self.upcoming)

    @property
    def last_change_percent(self) -> Decimal | None:
        return _percent(self.previous, self.current)


def _percent(old: TariffInfo | None, new: TariffInfo | None) -> Decimal | None:
    if old is None or new is None or old.price == 0:
        return None
    return ((new.price - old.price) / old.price * 100).quantize(Decimal("0.1"))


def _info(t: Tariff) -> TariffInfo:
    return TariffInfo(
        service=t.service,
        name=t.name,
        unit=t.unit,
        price=t.price,
        valid_from=t.valid_from,
        valid_to=t.valid_to,
        note=t.note,
    )


async def tariff_overview(session: AsyncSession, today: date) -> list[ServiceTariffs]:
    """Per service (heating first): the tariff in force ``today`` (a local
    date), the one before it and the next one announced."""
    rows = [
        _info(t)
        for t in (
            await session.execute(select(Tariff).order_by(Tariff.service, Tariff.valid_from))
        ).scalars()
    ]
    result: list[ServiceTariffs] = []
    for service in Service:
        mine = [t for t in rows if t.service == service]
        if not mine:
            continue
        current = next(
            (
                t
                for t in reversed(mine)
                if t.valid_from <= today and (t.valid_to is None or today <= t.valid_to)
            ),
            None,
        )
        past = [t for t in mine if t.valid_from <= today and t is not current]
        future = [t for t in mine if t.valid_from > today]
        result.append(
            ServiceTariffs(
                service=service,
                current=current,
                previous=past[-1] if current is not None and past else None,
                upcoming=future[0] if future else None,
            )
        )
    return result
