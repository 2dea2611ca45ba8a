"""The demo data of docs/demo-data.md, relative to the moment of loading.

Public API::

    await load_demo_data(session, vault, settings, now=None) -> bool
    await ensure_demo_data(session_factory, settings, now=None) -> bool

``load_demo_data`` commits its own transaction. It is idempotent: when account
1002003001 exists it returns False and changes nothing (a concurrent loader
that loses the race on the unique account number also gets False).

Choices the contract leaves open (other code may rely on them):

- Streets are stored as written in addresses, ``"ул. Ленина"`` (accounts and
  the outage alike); network zones list bare lower-case names (``"ленина"``).
- Readings: on the 20th, 12:00 Moscow, of the last 12 months; the last one in
  this month once this month's 20th has passed, else in the previous month.
  The last values are the ones of the contract (148.620, 412.500, ...).
- Charges: one per service for each of the 12 full months before the current
  one (period = first day of the month); volume = that month's consumption
  (the difference between consecutive readings), amount = volume x the tariff
  valid on the period's first day, rounded half up to kopecks.
- Payments pay the previous month's charges, on the 10th (1002003001), 12th
  (1002003002) or 15th (1002003003) at 11:00 Moscow, when that moment is in the
  past. 1002003001 pays nothing after the 10th two months ago (2 800.00).
- The opening balance closes the ledger on the exact contract balance.
- Office slots: the next 10 Russian working days after today (Moscow),
  starts at 9:00, 9:30 ... 16:30 Moscow (the last ends at 17:00), 30 minutes.
- Appeal deadlines follow the business rule: review 48 hours after creation,
  decision at the end of the 10th working day after the creation day.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from zoneinfo import ZoneInfo

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from config import Settings
from storage.calendar import add_working_days, next_working_days
from storage.crypto import PersonalDataVault, mask_phone
from storage.models import (
    Account,
    Appeal,
    AppealCategory,
    AppealStatus,
    AppealStatusChange,
    BonusEntry,
    Charge,
    Customer,
    Meter,
    MeterType,
    NetworkZone,
    NumberSequence,
    Office,
    OfficeSlot,
    Outage,
    OutageKind,
    Payment,
    Priority,
    Reading,
    Service,
    Tariff,
)

log = logging.getLogger(__name__)

CENT = Decimal("0.01")
MILLI = Decimal("0.001")

# Public facts of the contract, for tests and the CLI.
DEMO_ACCOUNT_NUMBERS: tuple[str, ...] = ("1002003001", "1002003002", "1002003003")
DEMO_BALANCES: dict[str, Decimal] = {
    "1002003001": Decimal("3456.78"),
    "1002003002": Decimal("-150.00"),
    "1002003003": Decimal("0.00"),
}
DEMO_BONUS_POINTS: dict[str, int] = {"1002003001": 350, "1002003002": 1200, "1002003003": 0}
DEMO_SNILS: dict[str, str] = {
    "1002003001": "112-233-445 95",
    "1002003002": "987-654-321 83",
    "1002003003": "112-233-445 95",
}
SLOT_DAYS = 10
SLOT_FIRST = time(9, 0)
SLOT_LAST = time(16, 30)
SLOT_MINUTES = 30

# Usual monthly consumption by calendar month (heating season October-April).
# fmt: off
_HEATING_A = {1: "2.150", 2: "1.980", 3: "1.760", 4: "1.520", 5: "0.380", 6: "0.260",
              7: "0.210", 8: "0.220", 9: "0.310", 10: "1.540", 11: "1.870", 12: "2.080"}
_HEATING_B = {1: "1.940", 2: "1.810", 3: "1.630", 4: "1.500", 5: "0.340", 6: "0.240",
              7: "0.200", 8: "0.200", 9: "0.280", 10: "1.510", 11: "1.720", 12: "1.890"}
_WATER_A = {1: "3.600", 2: "3.300", 3: "3.700", 4: "3.400", 5: "3.200", 6: "3.000",
            7: "3.100", 8: "3.300", 9: "3.500", 10: "3.800", 11: "3.600", 12: "3.900"}
_WATER_B = {1: "3.200", 2: "3.000", 3: "3.400", 4: "3.100", 5: "3.300", 6: "3.000",
            7: "3.000", 8: "3.200", 9: "3.300", 10: "3.500", 11: "3.400", 12: "3.700"}
# fmt: on


@dataclass(frozen=True, slots=True)
class _TariffSpec:
    service: Service
    name: str
    unit: str
    price: Decimal
    valid_from: date
    valid_to: date | None


TARIFFS: tuple[_TariffSpec, ...] = (
    _TariffSpec(Service.HEATING, "Тепловая энергия", "Гкал", Decimal("2290.15"),
                date(2025, 7, 1), date(2026, 9, 30)),
    _TariffSpec(Service.HEATING, "Тепловая энергия", "Гкал", Decimal("2588.37"),
                date(2026, 10, 1), None),
    _TariffSpec(Service.HOT_WATER, "Горячая вода", "м³", Decimal("231.40"),
                date(2025, 7, 1), date(2026, 9, 30)),
    _TariffSpec(Service.HOT_WATER, "Горячая вода", "м³", Decimal("261.48"),
                date(2026, 10, 1), None),
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class _MeterSpec:
    meter_type: MeterType
    serial: str
    unit: str
    last_value: Decimal
    monthly: dict[int, str]


@dataclass(frozen=True, slots=True)
class _AccountSpec:
    number: str
    street: str
    house: str
    flat: str
    area_m2: Decimal
    meters: tuple[_MeterSpec, ...]
    payment_day: int
    bonus: tuple[tuple[int, str, int], ...]  # (points, reason, days ago)


_HEATING, _WATER = MeterType.HEATING, MeterType.HOT_WATER
_ACCOUNTS: tuple[_AccountSpec, ...] = (
    _AccountSpec(
        "1002003001", "ул. Ленина", "10", "5", Decimal("54.30"),
        (
            _MeterSpec(_HEATING, "ТЭМ-104 №310522", "Гкал", Decimal("148.620"), _HEATING_A),
            _MeterSpec(_WATER, "СГВ-15 №778812", "м³", Decimal("412.500"), _WATER_A),
        ),
        payment_day=10,
        bonus=(
            (150, "Своевременная оплата за квартал", 200),
            (100, "Показания переданы онлайн", 120),
            (100, "Своевременная оплата за квартал", 95),
        ),
    ),
    _AccountSpec(
        "1002003002", "ул. Радищева", "3", "12", Decimal("61.80"),
        (_MeterSpec(_WATER, "СГВ-15 №556001", "м³", Decimal("210.400"), _WATER_B),),
        payment_day=12,
        bonus=(
            (500, "Подключение к программе «ЭнергоБонус»", 300),
            (400, "Своевременная оплата за полугодие", 150),
            (300, "Показания переданы онлайн", 40),
        ),
    ),
    _AccountSpec(
        "1002003003", "ул. Карла Маркса", "25", "40", Decimal("72.50"),
        (_MeterSpec(_HEATING, "ТЭМ-106 №400117", "Гкал", Decimal("96.300"), _HEATING_B),),
        payment_day=15,
        bonus=(),
    ),
)  # fmt: skip

_PAYMENT_METHODS = ("Сбербанк Онлайн", "касса офиса", "СБП", "Почта России")

_OFFICES = (
    ("Центральный офис обслуживания", "г. Курск, ул. Ленина, д. 69", "+7 (4712) 39-55-55",
     "пн–пт 8:00–20:00, сб 9:00–15:00"),
    ("Офис на Сумской", "г. Курск, ул. Сумская, д. 40", "+7 (4712) 39-55-56",
     "пн–пт 9:00–18:00"),
)  # fmt: skip

_ZONES = (
    ("ТЭЦ-1, центр", "ТЭЦ-1", "ленина,радищева,карла маркса,дзержинского", Decimal("5.0")),
    ("ТЭЦ Северо-Западная", "ТЭЦ Северо-Западная", "сумская,энтузиастов,студенческая",
     Decimal("0.8")),
    ("Котельная Промышленная", "Котельная Промышленная", "литовская,союзная", Decimal("0.0")),
)  # fmt: skip


def _add_months(first_of_month: date, months: int) -> date:
    index = first_of_month.year * 12 + first_of_month.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def _local(day: date, at: time, tz: ZoneInfo) -> datetime:
    return datetime.combine(day, at, tzinfo=tz).astimezone(UTC)


def _money(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def tariff_price(service: Service, on: date) -> Decimal:
    """The demo tariff of ``service`` valid on ``on`` (the earliest before 2025-07)."""
    specs = [t for t in TARIFFS if t.service == service]
    for spec in specs:
        if spec.valid_from <= on and (spec.valid_to is None or on <= spec.valid_to):
            return spec.price
    return specs[0].price


# --------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------


async def load_demo_data(
    session: AsyncSession,
    vault: PersonalDataVault,
    settings: Settings,
    now: datetime | None = None,
) -> bool:
    """Load the demo data and commit; False (and no change) if already there."""
    exists = await session.scalar(
        select(Account.id).where(Account.number == DEMO_ACCOUNT_NUMBERS[0])
    )
    if exists is not None:
        return False
    now = (now or datetime.now(UTC)).astimezone(UTC)
    try:
        await _build(session, vault, settings, now)
        await session.commit()
    except IntegrityError:
        # Another process loaded it at the same moment.
        await session.rollback()
        return False
    log.info("demo data loaded")
    return True


async def ensure_demo_data(
    session_factory: async_sessionmaker[AsyncSession],
    settings: Settings,
    now: datetime | None = None,
) -> bool:
    """Load the demo data if ``settings.load_demo_data`` and not yet loaded
    (the first embedded start)."""
    if not settings.load_demo_data:
        return False
    vault = PersonalDataVault(settings.secret_key.get_secret_value())
    async with session_factory() as session:
        return await load_demo_data(session, vault, settings, now)


async def _build(
    session: AsyncSession, vault: PersonalDataVault, settings: Settings, now: datetime
) -> None:
    tz = settings.tz
    today = now.astimezone(tz).date()
    this_month = today.replace(day=1)

    ivanov = Customer(
        full_name="Иванов Иван Петрович",
        snils_hash=vault.hash_snils(DEMO_SNILS["1002003001"]),
        phone_enc=vault.encrypt("+79102104567"),
        phone_masked=mask_phone("+79102104567"),
    )
    petrova = Customer(
        full_name="Петрова Анна Сергеевна",
        snils_hash=vault.hash_snils(DEMO_SNILS["1002003002"]),
        phone_enc=vault.encrypt("+79155123344"),
        phone_masked=mask_phone("+79155123344"),
    )
    owners = {"1002003001": ivanov, "1002003002": petrova, "1002003003": ivanov}
    session.add_all([ivanov, petrova])

    # Readings: the 20th of the last 12 months.
    last_reading_month = this_month
    if _local(this_month.replace(day=20), time(12), tz) > now:
        last_reading_month = _add_months(this_month, -1)
    reading_months = [_add_months(last_reading_month, k - 11) for k in range(12)]
    charge_periods = [_add_months(this_month, k - 12) for k in range(12)]

    accounts: dict[str, Account] = {}
    meters: dict[str, list[Meter]] = {}
    for spec in _ACCOUNTS:
        account = Account(
            number=spec.number,
            customer=owners[spec.number],
            city="Курск",
            street=spec.street,
            house=spec.house,
            flat=spec.flat,
            area_m2=spec.area_m2,
            opening_balance=Decimal("0.00"),
        )
        accounts[spec.number] = account
        session.add(account)
        meters[spec.number] = [
            Meter(
                account=account,
                meter_type=m.meter_type,
                serial=m.serial,
                unit=m.unit,
                installed_on=date(today.year - 4, 9, 1),
                next_check_on=date(today.year + 2, 9, 1),
                active=True,
            )
            for m in spec.meters
        ]
        session.add_all(meters[spec.number])
    await session.flush()  # ids for the tables without relationships

    readings: list[dict[str, object]] = []
    charges: list[dict[str, object]] = []
    for spec in _ACCOUNTS:
        account = accounts[spec.number]
        monthly_totals: dict[date, Decimal] = {p: Decimal("0.00") for p in charge_periods}
        for m, meter in zip(spec.meters, meters[spec.number], strict=True):
            use = {k: Decimal(v) for k, v in m.monthly.items()}
            value = m.last_value
            values: list[Decimal] = []
            for month in reversed(reading_months):
                values.append(value)
                value -= use[month.month]
            # Oldest first, so that ids grow with time.
            for month, value in zip(reading_months, reversed(values), strict=True):
                readings.append(
                    {
                        "meter_id": meter.id,
                        "value": value.quantize(MILLI),
                        "taken_at": _local(month.replace(day=20), time(12), tz),
                        "channel": "widget",
                        "flagged": False,
                    }
                )
            service = Service(m.meter_type.value)
            for period in charge_periods:
                volume = use[period.month]
                price = tariff_price(service, period)
                amount = _money(volume * price)
                monthly_totals[period] += amount
                charges.append(
                    {
                        "account_id": account.id,
                        "period": period,
                        "service": service,
                        "volume": volume,
                        "tariff": price,
                        "amount": amount,
                    }
                )

        paid = Decimal("0.00")
        last_allowed = _add_months(this_month, -2) if spec.number == "1002003001" else None
        for i, period in enumerate(charge_periods):
            pay_month = _add_months(period, 1)
            if last_allowed is not None and pay_month > last_allowed:
                continue
            paid_at = _local(pay_month.replace(day=spec.payment_day), time(11), tz)
            if paid_at >= now:
                continue
            amount = monthly_totals[period]
            if last_allowed is not None and pay_month == last_allowed:
                amount = Decimal("2800.00")
            paid += amount
            session.add(
                Payment(
                    account_id=account.id,
                    paid_at=paid_at,
                    amount=amount,
                    method=_PAYMENT_METHODS[i % len(_PAYMENT_METHODS)],
                )
            )
        charged = sum(monthly_totals.values(), Decimal("0.00"))
        account.opening_balance = DEMO_BALANCES[spec.number] - charged + paid

        for points, reason, days_ago in spec.bonus:
            session.add(
                BonusEntry(
                    account_id=account.id,
                    points=points,
                    reason=reason,
                    created_at=now - timedelta(days=days_ago),
                )
            )

    for s in TARIFFS:
        session.add(
            Tariff(
                service=s.service,
                name=s.name,
                unit=s.unit,
                price=s.price,
                valid_from=s.valid_from,
                valid_to=s.valid_to,
                note="Цена с НДС",
            )
        )

    slot_days = next_working_days(today + timedelta(days=1), SLOT_DAYS)
    starts: list[time] = []
    t = datetime.combine(today, SLOT_FIRST)
    while t.time() <= SLOT_LAST:
        starts.append(t.time())
        t += timedelta(minutes=SLOT_MINUTES)
    offices = [
        Office(name=name, address=address, phone=phone, hours=hours)
        for name, address, phone, hours in _OFFICES
    ]
    session.add_all(offices)
    await session.flush()
    slots = [
        {"office_id": office.id, "starts_at": _local(day, start, tz), "minutes": SLOT_MINUTES}
        for office in offices
        for day in slot_days
        for start in starts
    ]
    # Bulk inserts (executemany): the ORM unit of work is slow for ~400 rows.
    await session.execute(insert(Reading), readings)
    await session.execute(insert(Charge), charges)
    await session.execute(insert(OfficeSlot), slots)

    hour = now.replace(minute=0, second=0, microsecond=0)
    session.add(
        Outage(
            kind=OutageKind.PLANNED,
            service=Service.HOT_WATER,
            street="ул. Радищева",
            houses="1,3,5,7",
            reason="плановые гидравлические испытания тепловых сетей",
            starts_at=hour - timedelta(days=1),
            ends_at=hour + timedelta(days=9),
        )
    )

    for name, source, streets, spare in _ZONES:
        session.add(NetworkZone(name=name, source=source, streets=streets, spare_load_gcal_h=spare))

    _add_appeals(session, accounts["1002003001"], settings, now)


def _appeal_deadlines(created: datetime, settings: Settings) -> tuple[datetime, datetime]:
    review = created + timedelta(hours=settings.appeal_review_hours)
    decision = add_working_days(created, settings.appeal_decision_working_days, settings.tz)
    return review, decision


def _add_appeals(
    session: AsyncSession, account: Account, settings: Settings, now: datetime
) -> None:
    year = now.astimezone(settings.tz).year
    address = account.address

    created = (now - timedelta(days=68)).replace(second=0, microsecond=0)
    resolved = (now - timedelta(days=60)).replace(second=0, microsecond=0)
    review_due, decision_due = _appeal_deadlines(created, settings)
    first = Appeal(
        number=f"A-{year}-000001",
        account_id=account.id,
        channel=None,
        category=AppealCategory.CHARGES,
        description="Прошу сделать перерасчёт за отопление за январь",
        address=address,
        priority=Priority.NORMAL,
        status=AppealStatus.RESOLVED,
        created_at=created,
        review_due_at=review_due,
        decision_due_at=decision_due,
        resolved_at=resolved,
    )
    for status, comment, at in (
        (AppealStatus.REGISTERED, "Обращение зарегистрировано", created),
        (AppealStatus.IN_REVIEW, "Передано в расчётный отдел", created + timedelta(days=1)),
        (
            AppealStatus.RESOLVED,
            "Перерасчёт за январь выполнен, сумма учтена в ближайшей квитанции",
            resolved,
        ),
    ):
        session.add(
            AppealStatusChange(appeal=first, status=status, comment=comment, changed_at=at,
                               notified_at=at)
        )  # fmt: skip

    created = (now - timedelta(days=3)).replace(second=0, microsecond=0)
    review_due, decision_due = _appeal_deadlines(created, settings)
    second = Appeal(
        number=f"A-{year}-000002",
        account_id=account.id,
        channel=None,
        category=AppealCategory.HEATING_QUALITY,
        description="Слабо греют батареи в спальне",
        address=address,
        priority=Priority.NORMAL,
        status=AppealStatus.IN_REVIEW,
        created_at=created,
        review_due_at=review_due,
        decision_due_at=decision_due,
        resolved_at=None,
    )
    for status, comment, at in (
        (AppealStatus.REGISTERED, "Обращение зарегистрировано", created),
        (AppealStatus.IN_REVIEW, "Передано инженеру участка", created + timedelta(hours=3)),
    ):
        session.add(
            AppealStatusChange(appeal=second, status=status, comment=comment, changed_at=at,
                               notified_at=at)
        )  # fmt: skip
    session.add_all([first, second])
    session.add(NumberSequence(name=f"A-{year}", last_value=2))
