"""Entity extraction: values normalised, spans exact, overlapping numbers told apart."""

from __future__ import annotations

import datetime as dt

import pytest

from nlu.data_loader import load_training_data
from nlu.entities import EntityExtractor, resolve_date
from tests.nlu.conftest import DATA_DIR


@pytest.fixture(scope="module")
def extractor() -> EntityExtractor:
    data = load_training_data(DATA_DIR)
    return EntityExtractor(data.lookups["address"], data.synonyms)


def found(extractor: EntityExtractor, text: str) -> list[tuple[str, str, str]]:
    return [(e.entity, text[e.start : e.end], e.value) for e in extractor.extract(text)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1002003001", [("account_number", "1002003001", "1002003001")]),
        ("лс 100200300100", [("account_number", "100200300100", "100200300100")]),
        ("112-233-445 95", [("snils", "112-233-445 95", "11223344595")]),
        ("снилс 112 233 445 95", [("snils", "112 233 445 95", "11223344595")]),
        ("снилс 11223344595", [("snils", "11223344595", "11223344595")]),
        ("1 234,5", [("reading_value", "1 234,5", "1234.5")]),
        ("1234,5", [("reading_value", "1234,5", "1234.5")]),
        ("показания 1234", [("reading_value", "1234", "1234")]),
        ("148.62", [("reading_value", "148.62", "148.62")]),
        ("+7 (4712) 39-55-55", [("phone", "+7 (4712) 39-55-55", "74712395555")]),
        ("8 800 100-19-00", [("phone", "8 800 100-19-00", "78001001900")]),
        ("тел 89102104567", [("phone", "89102104567", "79102104567")]),
        ("A-2026-000123", [("appeal_number", "A-2026-000123", "A-2026-000123")]),
        ("обращение а-2026-000002", [("appeal_number", "а-2026-000002", "A-2026-000002")]),
        ("А-2026-15", [("appeal_number", "А-2026-15", "A-2026-000015")]),
        ("за март", [("date", "март", "--03")]),
        ("15.03.2026", [("date", "15.03.2026", "2026-03-15")]),
        ("за декабрь 2025 года", [("date", "декабрь 2025 года", "2025-12")]),
        ("с 15 марта", [("date", "15 марта", "--03-15")]),
        ("ГВС", [("meter_type", "ГВС", "hot_water")]),
        ("по горячей воде", [("meter_type", "горячей воде", "hot_water")]),
        ("отопление", [("meter_type", "отопление", "heating")]),
        ("телефон горячей линии", []),
        (
            "ул. Ленина, д. 10, кв. 5",
            [("address", "ул. Ленина, д. 10, кв. 5", "ул. Ленина, д. 10, кв. 5")],
        ),
        ("на Ленина д.10 кв 5", [("address", "Ленина д.10 кв 5", "ул. Ленина, д. 10, кв. 5")]),
        ("у нас на Сумской 40", [("address", "Сумской 40", "ул. Сумская, д. 40")]),
        ("ывапролд", []),
    ],
)
def test_single_entities(
    extractor: EntityExtractor, text: str, expected: list[tuple[str, str, str]]
) -> None:
    assert found(extractor, text) == expected


def test_account_and_snils_in_one_message(extractor: EntityExtractor) -> None:
    text = "лс 1002003001 снилс 112-233-445 95"
    assert found(extractor, text) == [
        ("account_number", "1002003001", "1002003001"),
        ("snils", "112-233-445 95", "11223344595"),
    ]


def test_bare_eleven_digits_next_to_snils_keyword_is_snils_not_phone(
    extractor: EntityExtractor,
) -> None:
    assert found(extractor, "счет 1002003001 снилс 89123456701") == [
        ("account_number", "1002003001", "1002003001"),
        ("snils", "89123456701", "89123456701"),
    ]


def test_reading_with_meter_and_numbers_that_are_not_readings(extractor: EntityExtractor) -> None:
    assert found(extractor, "гвс 415,3 оплатил 2800 руб 10 дней назад") == [
        ("meter_type", "гвс", "hot_water"),
        ("reading_value", "415,3", "415.3"),
    ]


def test_house_numbers_are_part_of_the_address_not_readings(extractor: EntityExtractor) -> None:
    assert found(extractor, "Радищева 3 нет горячей воды") == [
        ("address", "Радищева 3", "ул. Радищева, д. 3"),
        ("meter_type", "горячей воды", "hot_water"),
    ]


def test_entities_carry_rasa_fields(extractor: EntityExtractor) -> None:
    (entity,) = extractor.extract("лс 1002003001")
    assert entity.model_dump() == {
        "entity": "account_number",
        "start": 3,
        "end": 13,
        "value": "1002003001",
        "extractor": "RegexEntityExtractor",
        "confidence_entity": 1.0,
    }


@pytest.mark.parametrize(
    ("value", "today", "expected"),
    [
        ("2026-03-15", dt.date(2026, 11, 27), dt.date(2026, 3, 15)),
        ("2025-12", dt.date(2026, 11, 27), dt.date(2025, 12, 1)),
        ("--03", dt.date(2026, 11, 27), dt.date(2026, 3, 1)),
        ("--12", dt.date(2026, 11, 27), dt.date(2025, 12, 1)),
        ("--11-30", dt.date(2026, 11, 27), dt.date(2025, 11, 30)),
    ],
)
def test_resolve_date(value: str, today: dt.date, expected: dt.date) -> None:
    assert resolve_date(value, today) == expected


def test_markup_numbers_are_not_readings(extractor: EntityExtractor) -> None:
    assert found(extractor, "<script>alert(1)</script>; DROP TABLE users; --") == []


def test_a_flood_of_numbers_is_capped(extractor: EntityExtractor) -> None:
    from nlu.entities import MAX_ENTITIES

    entities = extractor.extract("1 " * 2048)
    assert len(entities) == MAX_ENTITIES
    assert [e.start for e in entities] == sorted(e.start for e in entities)


def test_address_does_not_swallow_a_preposition_after_the_house() -> None:
    from nlu.entities import EntityExtractor

    text = "подключить дом на Сумской 12 к теплосети"
    found = [text[e.start : e.end] for e in EntityExtractor().extract(text)]
    assert "Сумской 12" in found
    letters = [e.value for e in EntityExtractor().extract("ул. Ленина 12 б кв 5")]
    assert "ул. Ленина, д. 12б, кв. 5" in letters


@pytest.mark.parametrize(
    ("text", "span", "value"),
    [
        (
            "Живём на проезде Сергеева, 5, когда дадут воду?",
            "проезде Сергеева, 5",
            "проезд Сергеева, д. 5",
        ),
        ("Батареи еле тёплые, ЖК Европа, дом 12.", "ЖК Европа, дом 12", "ЖК «Европа», д. 12"),
        (
            "Это на улице Дзержинского, 70, приезжайте",
            "улице Дзержинского, 70",
            "ул. Дзержинского, д. 70",
        ),
        (
            "Адрес ул. Карла Маркса, д. 59б, что случилось?",
            "ул. Карла Маркса, д. 59б",
            "ул. Карла Маркса, д. 59б",
        ),
        (
            "на проспекте Дружбы 7 корпус 2 холодно",
            "проспекте Дружбы 7 корпус 2",
            "пр-т Дружбы, д. 7, корп. 2",
        ),
        ("ул 50 лет Октября 112", "ул 50 лет Октября 112", "ул. 50 лет Октября, д. 112"),
        (
            "на улице 1-я Пушкарная 15 нет воды",
            "улице 1-я Пушкарная 15",
            "ул. 1-я Пушкарная, д. 15",
        ),
        ("на улице дзержинского 70 течёт", "улице дзержинского 70", "ул. Дзержинского, д. 70"),
        (
            "в жилом комплексе «Солнечный» дом 3 нет воды",
            "жилом комплексе «Солнечный» дом 3",
            "ЖК «Солнечный», д. 3",
        ),
        ("пер. Радищева 3", "пер. Радищева 3", "пер. Радищева, д. 3"),
    ],
)
def test_addresses_after_any_street_type_or_a_residential_complex(
    extractor: EntityExtractor, text: str, span: str, value: str
) -> None:
    addresses = [(e.value, text[e.start : e.end]) for e in extractor.extract(text)]
    assert (value, span) in addresses


def test_a_street_type_alone_with_a_lower_case_word_is_no_address(
    extractor: EntityExtractor,
) -> None:
    assert [e.entity for e in extractor.extract("на улице холодно, батареи ледяные")] == []
