"""The address normaliser: canonical street type and name, house, building, flat, ЖК."""

from __future__ import annotations

import pytest

from nlu.address import Address, StreetIndex, normalize, transliterate
from nlu.data_loader import load_training_data
from nlu.entities import EntityExtractor
from tests.nlu.conftest import DATA_DIR


@pytest.fixture(scope="module")
def index() -> StreetIndex:
    return StreetIndex(load_training_data(DATA_DIR).lookups["address"])


@pytest.mark.parametrize(
    ("span", "text"),
    [
        ("ул. Ленина, д. 10, кв. 5", "ул. Ленина, д. 10, кв. 5"),
        ("г. Курск, ул. Ленина, д. 10, кв. 5", "ул. Ленина, д. 10, кв. 5"),
        ("на Радищева 3", "ул. Радищева, д. 3"),
        ("улице Ленина дом 5", "ул. Ленина, д. 5"),
        ("карла маркса 12", "ул. Карла Маркса, д. 12"),
        ("К. Маркса 31, кв. 12", "ул. Карла Маркса, д. 31, кв. 12"),
        ("К.Маркса 31", "ул. Карла Маркса, д. 31"),
        ("50 лет Октября 98", "ул. 50 лет Октября, д. 98"),
        ("ул 50 лет Октября, д. 122/2", "ул. 50 лет Октября, д. 122/2"),
        ("Сумской 38 корпус 1", "ул. Сумская, д. 38, корп. 1"),
        ("СУМСКАЯ 12", "ул. Сумская, д. 12"),
        ("проспекте Дружбы 11, кв. 56", "пр-т Дружбы, д. 11, кв. 56"),
        ("Победы 40", "пр-т Победы, д. 40"),
        ("Хрущева 20", "пр-т Хрущёва, д. 20"),
        ("проезд Сергеева 9", "проезд Сергеева, д. 9"),
        ("Магистрального проезда 3", "проезд Магистральный, д. 3"),
        ("Переулок Садовый 4", "пер. Садовый, д. 4"),
        ("пер. Радищева 5", "пер. Радищева, д. 5"),
        ("Майский бульвар 15", "б-р Майский, д. 15"),
        ("ш. Сумское 7", "ш. Сумское, д. 7"),
        ("Студенческая 2б", "ул. Студенческая, д. 2б"),
        ("Аэродромная 9А", "ул. Аэродромная, д. 9а"),
        ("ул. Ленина 12 б кв 5", "ул. Ленина, д. 12б, кв. 5"),
        ("карла маркса 12 к2 кв 5", "ул. Карла Маркса, д. 12, корп. 2, кв. 5"),
        ("ул. Володарского, дом 10, строение 2", "ул. Володарского, д. 10, стр. 2"),
        ("Дом 17 по улице Гагарина", "ул. Гагарина, д. 17"),
        ("ЖК Европа, дом 3, корпус 2", "ЖК «Европа», д. 3, корп. 2"),
        ("жилом комплексе «Северный» дом 8", "ЖК «Северный», д. 8"),
        ("ЖК Европа, корпус 5", "ЖК «Европа», корп. 5"),
        ("Радищево 3", "ул. Радищева, д. 3"),  # one typo in a long name
        ("Смуское 7", "ул. Сумская, д. 7"),  # two letters swapped
        ("Ленна 5", "ул. Ленина, д. 5"),  # a letter dropped
        ("Ленина 12-а", "ул. Ленина, д. 12а"),
        ("Ленина дом №5", "ул. Ленина, д. 5"),
        ("na sumskoy 12", "ул. Сумская, д. 12"),
        ("mayskiy bulvar 15", "б-р Майский, д. 15"),
        ("zhk evropa, dom 3", "ЖК «Европа», д. 3"),
        ("Lenina 50", "ул. Ленина, д. 50"),
        ("ulitsa Radishcheva 9", "ул. Радищева, д. 9"),
        ("Сумской", "ул. Сумская"),
        # Not on the list: the name as written, in title case and, for an
        # adjective, in the nominative; a person's name stays in the genitive.
        ("улице Никитской 5", "ул. Никитская, д. 5"),
        ("Заречной улице 5", "ул. Заречная, д. 5"),
        ("ул. Ухтомского 12", "ул. Ухтомского, д. 12"),
        ("переулок тихий 3", "пер. Тихий, д. 3"),
    ],
)
def test_canonical_text(index: StreetIndex, span: str, text: str) -> None:
    address = normalize(span, index)
    assert address is not None
    assert address.text == text


def test_parts_of_a_full_address(index: StreetIndex) -> None:
    address = normalize("на улице карла маркса 12а к2 кв 5", index)
    assert address == Address(
        street_type="ул.",
        street="Карла Маркса",
        house="12а",
        building="корп. 2",
        flat="5",
        known=True,
    )
    assert address.parts()["street"] == "Карла Маркса"


def test_a_street_unknown_to_the_list_is_marked_so(index: StreetIndex) -> None:
    address = normalize("ул. Никитская 5", index)
    assert address is not None
    assert address.known is False
    known = normalize("ул. Ленина 5", index)
    assert known is not None
    assert known.known is True


@pytest.mark.parametrize("span", ["10", "д. 5", "кв. 12", "", "г. Курск"])
def test_no_street_no_address(index: StreetIndex, span: str) -> None:
    assert normalize(span, index) is None


def test_typos_are_not_matched_in_short_names(index: StreetIndex) -> None:
    # "Лена" is two letters from "Ленина", and short names need an exact
    # match anyway: the name stays as written.
    address = normalize("ул. Лена 5", index)
    assert address is not None
    assert address.street == "Лена"


def test_transliteration() -> None:
    assert transliterate("Radishcheva") == "Радищева"
    assert transliterate("ulitsa") == "улица"


def test_the_entity_carries_the_parts() -> None:
    (entity,) = EntityExtractor().extract("на проспекте Дружбы 7 корпус 2 холодно")
    assert entity.value == "пр-т Дружбы, д. 7, корп. 2"
    assert entity.model_dump()["additional_info"] == {
        "street_type": "пр-т",
        "street": "Дружбы",
        "house": "7",
        "building": "корп. 2",
        "flat": None,
        "complex": None,
        "known": True,
    }


@pytest.mark.parametrize(
    ("text", "span", "value"),
    [
        ("бабушка одна, Радищево 3, батарея ледяная", "Радищево 3", "ул. Радищева, д. 3"),
        ("Течёт стояк, дом 44 на Щепкина", "дом 44 на Щепкина", "ул. Щепкина, д. 44"),
        ("Lenina 50 net goryachey vody", "Lenina 50", "ул. Ленина, д. 50"),
        ("живу на Ухтомского 12, отопления нет", "Ухтомского 12", "ул. Ухтомского, д. 12"),
        ("Майский бульвар 15 не греют", "Майский бульвар 15", "б-р Майский, д. 15"),
        ("живу на Молодёжной 5, холодно", "Молодёжной 5", "ул. Молодёжная, д. 5"),
        ("в жк европа дом 3 нет воды", "жк европа дом 3", "ЖК «Европа», д. 3"),
        (
            "na ulitse soyuznoy 61 avariya",
            "ulitse soyuznoy 61",
            "ул. Союзная, д. 61",
        ),
    ],
)
def test_spans_the_rules_find(text: str, span: str, value: str) -> None:
    data = load_training_data(DATA_DIR)
    entities = EntityExtractor(data.lookups["address"], data.synonyms).extract(text)
    assert [(text[e.start : e.end], e.value) for e in entities if e.entity == "address"] == [
        (span, value)
    ]


@pytest.mark.parametrize(
    "text",
    [
        "на улице холодно, батареи ледяные",
        "на Новый год 3 дня не было воды",
        "живу на пятом этаже 5 лет",
        "оплатил 2800 руб на прошлой неделе",
        # A common street name counts only before a house number.
        "новая квартира, подключить к центральной теплосети",
        "в жк нет воды",
    ],
)
def test_no_address_in_plain_messages(text: str) -> None:
    assert [e.entity for e in EntityExtractor().extract(text) if e.entity == "address"] == []
