"""Rule-based entity extraction for every entity of the contract.

Values are normalised so that the dialogs never parse free text again:

============== ==========================================================
entity         value
============== ==========================================================
account_number the digits, 8 to 12 of them: ``"1002003001"``
snils          the 11 digits without separators: ``"11223344595"``
reading_value  a decimal string with a point, no spaces: ``"1234.5"``
appeal_number  upper-case Latin ``A-YYYY-NNNNNN``: ``"A-2026-000123"``
meter_type     ``"heating"`` or ``"hot_water"``
address        canonical (nlu/address.py): ``"ул. Карла Маркса, д. 12, корп. 2, кв. 5"``
               for "карла маркса 12 к2 кв 5"; the parts in ``additional_info``
phone          11 digits starting with 7: ``"74712395555"``
date           ISO 8601, truncated when the text is: ``"2026-03-15"`` (a day),
               ``"2026-03"`` (a month with its year), ``"--03"`` (a month
               without a year, ISO 8601:2000), ``"--03-15"`` (day and month)
============== ==========================================================

:func:`resolve_date` turns the truncated forms into a concrete date for a
given "today". Numbers are disambiguated by their form first (separators,
``+7``, parentheses) and by the nearest keyword before them second
("снилс", "тел", "лс"...).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from nlu.address import Address, StreetIndex, normalize, transliterate
from nlu.types import Entity

EXTRACTOR = "RegexEntityExtractor"
# A customer message never holds more; a flood of numbers is noise, and
# capping keeps a 4096-character message of digits cheap to parse.
MAX_ENTITIES = 32

MONTH_STEMS: tuple[tuple[str, int], ...] = (
    ("январ", 1),
    ("феврал", 2),
    ("март", 3),
    ("апрел", 4),
    ("ма", 5),
    ("июн", 6),
    ("июл", 7),
    ("август", 8),
    ("сентябр", 9),
    ("октябр", 10),
    ("ноябр", 11),
    ("декабр", 12),
)
_MONTH = (
    r"(?P<month>январ[ьяею]|феврал[ьяею]|март[аеу]?|апрел[ьяею]|ма[йяею]|июн[ьяею]"
    r"|июл[ьяею]|август[аеу]?|сентябр[ьяею]|октябр[ьяею]|ноябр[ьяею]|декабр[ьяею])"
)
_YEAR_WORD = r"(?:\s*(?:года|году|год|г\.|г)(?!\w))?"

_APPEAL = re.compile(
    r"(?<![\w-])(?:[AaАа]-?(?P<y1>20\d{2})-(?P<n1>\d{1,6})|[AaАа]-?(?P<y2>20\d{2})(?P<n2>\d{6})"
    r"|(?P<y3>20\d{2})-(?P<n3>\d{6}))(?!\d)"
)
_DATE_NUMERIC = re.compile(
    r"(?<![\d.,])(?:(?P<d>\d{1,2})[./](?P<m>\d{1,2})[./](?P<y>\d{4}|\d{2})"
    r"|(?P<iy>20\d{2})-(?P<im>\d{2})-(?P<id>\d{2})"
    r"|(?P<mm>0?[1-9]|1[0-2])\.(?P<my>20\d{2}))(?![\d]|[.,]\d)"
)
_DATE_MONTH = re.compile(
    r"(?<!\w)(?:(?P<day>\d{1,2})(?:-?го)?\s+)?" + _MONTH + r"(?!\w)"
    r"(?:\s+(?P<year>20\d{2})" + _YEAR_WORD + ")?",
    re.IGNORECASE,
)
_SNILS = re.compile(r"(?<![\d\-])\d{3}[\s\-]\d{3}[\s\-]\d{3}[\s\-]{1,3}\d{2}(?![\d\-])")
_PHONE = re.compile(
    r"(?<![\d+\w])(?:\+\s?7|8|7)?[\s\-]*\(?\d{3,5}\)?[\s\-]*\d{1,3}[\s\-]*\d{2}[\s\-]*\d{2}(?![\d\-])"
)
_PHONE_LOCAL = re.compile(r"(?<![\d\-])\d{2}-\d{2}-\d{2}(?![\d\-])")
_BARE_DIGITS = re.compile(r"(?<![\w.,\-])\d{8,12}(?![\w\-]|[.,]\d)")
_READING = re.compile(
    r"(?<![\w.,:\-/(])(?:\d{1,3}(?:[ \u00a0\u202f]\d{3})+|\d+)(?:[.,]\d+)?"
    r"(?![\w:\-/)]|[.,]\d)"
)
_NOT_A_READING_AFTER = re.compile(
    r"\s*(?:руб|р\.|р(?!\w)|₽|коп|балл|бонус|%|гкал\s*/\s*ч|гкал\s+в\s+час|год|лет|г\.|г(?!\w)"
    r"|кв\.?\s*м|м2|дн|день|недел|мес|час|ч\.|мин|сек|числа|шт|раз|этаж|подъезд|человек|-?х\b"
    r"|-?й\b|-?го\b)",
    re.IGNORECASE,
)
_NOT_A_READING_BEFORE = re.compile(
    r"(?:№|(?<!\w)(?:номер|д\.|дом|кв\.?|квартир\w*|корп\.?|подъезд|этаж|с|со|по|до|в|к))\s*$",
    re.IGNORECASE,
)
_NOT_A_READING_BEFORE_STRICT = re.compile(
    r"(?:№|(?<!\w)(?:номер|д\.|дом|кв\.?|квартир\w*|корп\.?))\s*$", re.IGNORECASE
)
_KEYWORD = re.compile(
    r"снилс|snils|страхов\w*|тел\w*|моб\w*|звон\w*|ватсап|whatsapp|вацап|номер"
    r"|лицев\w*|л\s*/\s*с|лс|счет\w*|счёт\w*|licev\w*|schet\w*",
    re.IGNORECASE,
)
_HOT_WATER = re.compile(
    r"(?<!\w)(?:гвс|(?>горяч\w*)(?!\s+лини)(?:\s+вод\w*)?|гор\.\s*вод\w*|hot[\s_]?water"
    r"|(?>goryach\w*)(?:\s+vod\w*)?|gvs)(?!\w)",
    re.IGNORECASE,
)
_HEATING = re.compile(
    r"(?<!\w)(?:отоплени\w*|отопит\w*|тепл(?:о|а|у|ом)|теплосч[её]тчик\w*|теплов\w+\s+энерги\w*"
    r"|теплов\w+\s+сч[её]тчик\w*|heating|otopleni\w*|teplo)(?!\w)",
    re.IGNORECASE,
)
_NOT_A_METER_AFTER = re.compile(r"\s+лини", re.IGNORECASE)
_STREET_PREFIX = (
    r"(?:(?:г\.?\s*)?курск\w*\s*,?\s*)?"
    r"(?:(?:ул\.?|улиц\w*|пр-т\.?|пр-д\.?|просп\.?|проспект\w*|пер\.?|переул\w*|б-р\.?"
    r"|бульвар\w*|ш\.|шоссе|пл\.|площад\w*|проезд\w*)\s*)"
)
_HOUSE = (
    # A house letter ("12а", "12 б"), but not a one-letter preposition after a
    # space ("Сумской 12 к теплосети").
    r"(?:\s*,?\s*(?:д\.?|дом)?\s*№?\s*\d{1,4}"
    r"(?:(?:\s(?![квсуои](?!\w)))?(?i:[а-яa-z])(?!\w)|-(?i:[а-еж-ик-ю])(?!\w))?(?:/\d{1,3})?"
    r"(?:\s?к\s?\d{1,2}(?!\w))?"
    r"(?:\s*,?\s*(?:корп\.?|корпус\w*|к\.|стр\.?|строени\w*)\s*\d{1,3})?"
    r"(?:\s*,?\s*(?:кв\.?|квартир\w*|кв-р\w*)\s*№?\s*\d{1,4})?(?!\d|[.,]\d))"
)
_STREET_TYPE = (
    r"(?i:ул\.?|улиц\w*|пр-т\.?|пр-д\.?|просп\.?|проспект\w*|пер\.?|переул\w*|б-р\.?"
    r"|бульвар\w*|пл\.|площад\w*|проезд\w*|ш\.|шоссе|мкр\.?|микрорайон\w*)"
)
# After a street-type word any capitalised name is a street, whether or not
# the lookup knows it: "проезд Сергеева", "пр-т Победы", "ул. 1-я Пушкарная",
# "ул. 50 лет Октября"; a lower-case name counts only with a house number.
_STREET_NAME = (
    r"(?:(?:\d{1,2}-?(?:я|й|ая|ый|ой|го)\s+)|(?:\d{1,3}\s+лет\s+))?"
    r"[А-ЯЁ][а-яё]+(?:-[А-ЯЁа-яё]+)?(?:\s+[А-ЯЁ][а-яё]+)?"
)
_CAPITALISED_STREET = re.compile(
    r"(?<!\w)" + _STREET_TYPE + r"\s*(?P<name>" + _STREET_NAME + r")(?!\w)" + _HOUSE + "?"
)
_LOWER_CASE_STREET = re.compile(
    r"(?<!\w)" + _STREET_TYPE + r"\s+(?P<name>[а-яё]{3,}(?:\s+[а-яё]{3,})?)"
    r"(?=\s*,?\s*(?:д\.?|дом)?\s*\d)" + _HOUSE
)
# A residential complex: "ЖК Европа, дом 12", "в жилом комплексе «Солнечный»".
_COMPLEX = re.compile(
    r"(?<!\w)(?i:жк|жилом\s+комплексе|жилой\s+комплекс)\s*[«\"]?"
    r"(?P<name>[А-ЯЁA-Z][\w-]+(?:\s+[А-ЯЁA-Z][\w-]+)?)[»\"]?"
    r"(?:" + _HOUSE + r"|\s*,?\s*(?i:корп\.?|корпус\w*|стр\.?|строени\w*)\s*\d{1,3}(?!\d))?"
)

# "Майский бульвар 15", "Магистрального проезда 3": the type after the name.
_TYPE_AFTER = re.compile(
    r"(?<!\w)[А-ЯЁ][а-яё]+(?:\s+[А-ЯЁ][а-яё]+)?\s+(?i:улиц\w*|бульвар\w*|площад\w*|проезд\w*"
    r"|переул\w*|проспект\w*|шоссе)(?!\w)" + _HOUSE + "?"
)
# "живу на Ухтомского 12": a street the list does not know, named like one,
# after "на"/"по" and before a house number.
_UNKNOWN_STREET = re.compile(
    r"(?<=\b(?:на|по)\s)[А-ЯЁ][а-яё]+(?:ого|его|ова|ева|ина|ына|ская|цкая|ной|ской|цкой)"
    r"(?=\s*,?\s*(?:д\.?|дом)?\s*\d{1,4}(?:[а-я](?!\w))?(?!\w|[.,]\d|\s*(?:"
    + _MONTH
    + r"|лет|год|час|мин|руб|р\.|%|градус)))"
    + _HOUSE
)
# "жк европа, дом 3": a lower-case name only with a house or корпус after it.
_COMPLEX_LOWER = re.compile(
    r"(?<!\w)(?i:жк)\s*[«\"]?(?P<name>(?!(?:д|дом|корп\w*|кв)(?!\w))[а-яё][а-яё-]+)[»\"]?"
    r"(?=\s*,?\s*(?i:д\.?|дом|корп\.?|корпус|\d))(?:"
    + _HOUSE
    + r"|\s*,?\s*(?i:корп\.?|корпус\w*)\s*\d{1,3}(?!\d))"
)
# A word or two before a house number: a street when the index knows it.
_MAYBE_STREET = re.compile(
    r"(?<!\w)(?P<name>[А-ЯЁа-яё][а-яё]+(?:\s+(?!дом\b)[А-ЯЁа-яё][а-яё]+)?)" + _HOUSE
)

DEFAULT_STREETS: tuple[str, ...] = (
    "Ленина",
    "Радищева",
    "Карла Маркса",
    "Дзержинского",
    "Сумская",
    "Энтузиастов",
    "Студенческая",
    "Литовская",
    "Союзная",
)


@dataclass(frozen=True, slots=True)
class _Candidate:
    entity: str
    start: int
    end: int
    value: str
    priority: int
    info: dict[str, str | bool | None] | None = None


def _entity(c: _Candidate) -> Entity:
    fields: dict[str, object] = {
        "entity": c.entity,
        "start": c.start,
        "end": c.end,
        "value": c.value,
        "extractor": EXTRACTOR,
        "confidence_entity": 1.0,
    }
    if c.info is not None:
        fields["additional_info"] = c.info  # as Rasa's extractors report parts
    return Entity.model_validate(fields)


_LATIN_WORD = re.compile(r"[a-zA-Z]{3,}")
_LATIN_RUN = re.compile(r"[a-zA-Z']+")


def _transliterated(text: str) -> tuple[str, list[int]]:
    """A copy with Latin words in Cyrillic, and each copy character's origin."""
    out: list[str] = []
    origin: list[int] = []
    pos = 0
    for m in _LATIN_RUN.finditer(text):
        out.append(text[pos : m.start()])
        origin.extend(range(pos, m.start()))
        word = transliterate(m.group())
        word = word[:1].upper() + word[1:] if m.group()[:1].isupper() else word
        out.append(word)
        # Spread the word's characters over the original word's span.
        length = m.end() - m.start()
        origin.extend(
            m.start() + min(length - 1, i * length // len(word)) for i in range(len(word))
        )
        pos = m.end()
    out.append(text[pos:])
    origin.extend(range(pos, len(text)))
    return "".join(out), origin


def _digits(text: str) -> str:
    return "".join(ch for ch in text if ch.isdigit())


def _street_pattern(name: str) -> str:
    pattern = ""
    for word in name.split():
        lower = word.lower().replace("ё", "е")
        if lower.endswith(("ая", "яя")):
            part = re.escape(lower[:-2]) + r"(?:ая|ой|ую|яя|ей|юю)"
        elif lower.endswith(("ий", "ый")):
            part = re.escape(lower[:-2]) + r"(?:ий|ый|ого|ом|ому)"
        elif lower.endswith("ое"):
            part = re.escape(lower[:-2]) + r"(?:ое|ого|ом|ому)"
        else:
            part = re.escape(lower)
        if pattern:
            pattern += r"\s*" if pattern.endswith(r"\.") else r"[\s-]+"
        pattern += part.replace("е", "[её]")
    return pattern


def normalise_phone(raw: str) -> str | None:
    digits = _digits(raw)
    if len(digits) == 11 and digits[0] in "78":
        return "7" + digits[1:]
    if len(digits) == 10 and digits[0] in "3489":
        return "7" + digits
    return None


def normalise_reading(raw: str) -> str:
    return re.sub(r"[\s\u00a0\u202f]", "", raw).replace(",", ".")


def month_number(word: str) -> int:
    lower = word.lower()
    for stem, number in MONTH_STEMS:
        if lower.startswith(stem):
            return number
    raise ValueError(word)


def resolve_date(value: str, today: dt.date) -> dt.date:
    """A concrete date for a ``date`` entity value.

    ``"2026-03-15"`` is itself; ``"2026-03"`` is its first day; ``"--03"`` is
    the first day of the latest March not after ``today``; ``"--03-15"`` the
    latest 15 March not after ``today``.
    """
    if not value.startswith("--"):
        parts = [int(p) for p in value.split("-")]
        return dt.date(parts[0], parts[1], parts[2] if len(parts) > 2 else 1)
    parts = [int(p) for p in value[2:].split("-")]
    month, day = parts[0], parts[1] if len(parts) > 1 else 1
    year = today.year
    while True:
        try:
            candidate = dt.date(year, month, day)
        except ValueError:  # 29 February
            year -= 1
            continue
        if candidate <= today:
            return candidate
        year -= 1


class EntityExtractor:
    """Regex and lookup extraction with overlap resolution, Rasa-shaped output."""

    def __init__(
        self,
        streets: Iterable[str] = DEFAULT_STREETS,
        synonyms: Mapping[str, Iterable[str]] | None = None,
    ) -> None:
        self._index = StreetIndex(streets)
        names = self._index.names
        alternation = "|".join(_street_pattern(n) for n in names) or r"(?!x)x"
        self._street = re.compile(
            r"(?<!\w)" + _STREET_PREFIX + r"?(?P<street>" + alternation + r")(?!\w)" + _HOUSE + "?",
            re.IGNORECASE,
        )
        # "дом 5 по улице Ленина": the house first.
        self._house_first = re.compile(
            r"(?<!\w)(?:д\.?|дом)\s*\d{1,4}(?:[а-я](?!\w))?(?:/\d{1,3})?"
            r"(?:\s*,?\s*(?:кв\.?|квартир\w*)\s*\d{1,4})?\s+(?:по|на)\s+"
            r"(?:" + _STREET_PREFIX + r"?(?:" + alternation + r")|" + _STREET_TYPE + r"\s*"
            r"" + _STREET_NAME + r")(?!\w)",
            re.IGNORECASE,
        )
        self._meter_synonyms: list[tuple[re.Pattern[str], str]] = []
        for value, spellings in (synonyms or {}).items():
            if value not in {"heating", "hot_water"}:
                continue
            for spelling in spellings:
                pattern = re.compile(r"(?<!\w)" + re.escape(spelling) + r"(?!\w)", re.IGNORECASE)
                self._meter_synonyms.append((pattern, value))

    def normalize_address(self, span: str) -> Address | None:
        """The canonical address of a span found elsewhere (a Rasa entity)."""
        return normalize(span, self._index)

    def extract(self, text: str) -> list[Entity]:
        candidates = list(self._candidates(text))
        candidates.sort(key=lambda c: (c.priority, -(c.end - c.start), c.start))
        chosen: list[_Candidate] = []
        taken = bytearray(len(text))  # linear in the text, whatever the candidate count
        for cand in candidates:
            if not any(taken[cand.start : cand.end]):
                chosen.append(cand)
                taken[cand.start : cand.end] = b"\x01" * (cand.end - cand.start)
        chosen.sort(key=lambda c: c.start)
        return [_entity(c) for c in chosen[:MAX_ENTITIES]]

    # --- candidates -------------------------------------------------------

    def _candidates(self, text: str) -> Iterable[_Candidate]:
        yield from self._appeals(text)
        yield from self._numeric_dates(text)
        yield from self._snils(text)
        yield from self._phones(text)
        yield from self._addresses(text)
        yield from self._month_dates(text)
        yield from self._bare_numbers(text)
        yield from self._meter_types(text)
        yield from self._readings(text)

    def _appeals(self, text: str) -> Iterable[_Candidate]:
        for m in _APPEAL.finditer(text):
            year = m.group("y1") or m.group("y2") or m.group("y3")
            number = m.group("n1") or m.group("n2") or m.group("n3")
            yield _Candidate("appeal_number", m.start(), m.end(), f"A-{year}-{int(number):06d}", 0)

    def _numeric_dates(self, text: str) -> Iterable[_Candidate]:
        for m in _DATE_NUMERIC.finditer(text):
            try:
                if m.group("d"):
                    year = int(m.group("y"))
                    year = year + 2000 if year < 100 else year
                    value = dt.date(year, int(m.group("m")), int(m.group("d"))).isoformat()
                elif m.group("iy"):
                    value = dt.date(
                        int(m.group("iy")), int(m.group("im")), int(m.group("id"))
                    ).isoformat()
                else:
                    value = f"{int(m.group('my')):04d}-{int(m.group('mm')):02d}"
            except ValueError:
                continue
            yield _Candidate("date", m.start(), m.end(), value, 1)

    def _month_dates(self, text: str) -> Iterable[_Candidate]:
        for m in _DATE_MONTH.finditer(text):
            month = month_number(m.group("month"))
            day = int(m.group("day")) if m.group("day") else None
            year = int(m.group("year")) if m.group("year") else None
            if day is not None and not 1 <= day <= 31:
                continue
            if year is not None and day is not None:
                try:
                    value = dt.date(year, month, day).isoformat()
                except ValueError:
                    continue
            elif year is not None:
                value = f"{year:04d}-{month:02d}"
            elif day is not None:
                value = f"--{month:02d}-{day:02d}"
            else:
                value = f"--{month:02d}"
            yield _Candidate("date", m.start(), m.end(), value, 3)

    def _snils(self, text: str) -> Iterable[_Candidate]:
        for m in _SNILS.finditer(text):
            yield _Candidate("snils", m.start(), m.end(), _digits(m.group()), 2)

    def _phones(self, text: str) -> Iterable[_Candidate]:
        for m in _PHONE.finditer(text):
            raw = m.group().strip(" -")
            start = m.start() + m.group().index(raw)
            formatted = any(ch in raw for ch in "+()- ")
            if not formatted:
                continue  # a bare digit string: decided by _bare_numbers
            value = normalise_phone(raw)
            if value is not None:
                yield _Candidate("phone", start, start + len(raw), value, 2)
        for m in _PHONE_LOCAL.finditer(text):
            yield _Candidate("phone", m.start(), m.end(), "74712" + _digits(m.group()), 2)

    def _addresses(self, text: str) -> Iterable[_Candidate]:
        yield from self._address_spans(text, text, None)
        if _LATIN_WORD.search(text):
            # "ulitsa Lenina 10": found in a Cyrillic copy, spans mapped back.
            copy, origin = _transliterated(text)
            yield from self._address_spans(copy, text, origin)

    def _address_spans(
        self, text: str, original: str, origin: list[int] | None
    ) -> Iterable[_Candidate]:
        patterns = (
            self._street,
            self._house_first,
            _CAPITALISED_STREET,
            _LOWER_CASE_STREET,
            _COMPLEX,
            _COMPLEX_LOWER,
            _TYPE_AFTER,
            _UNKNOWN_STREET,
        )
        spans = [(m.start(), m.end()) for p in patterns for m in p.finditer(text)]
        for m in _MAYBE_STREET.finditer(text):
            # A street name with a typo ("Радищево 3"), before a house number.
            words = m.group("name").split()
            for name in (words[-1], " ".join(words)) if len(words) > 1 else (words[0],):
                if self._index.find(name, typos=len(name) >= 5) is not None:
                    start = m.start("name") + m.group("name").rindex(name)
                    spans.append((start, m.end()))
                    break
        for start, end in spans:
            span = text[start:end].rstrip(" ,")
            end = start + len(span)
            if origin is not None:
                start, end = origin[start], origin[end - 1] + 1
                span = original[start:end]
            address = normalize(span, self._index)
            if address is None:
                continue
            yield _Candidate("address", start, end, address.text, 3, address.parts())

    def _bare_numbers(self, text: str) -> Iterable[_Candidate]:
        for m in _BARE_DIGITS.finditer(text):
            digits = m.group()
            keyword = self._keyword_before(text, m.start())
            entity = "account_number"
            value = digits
            if keyword == "phone":
                phone = normalise_phone(digits)
                if phone is not None:
                    entity, value = "phone", phone
            elif keyword == "account":
                pass
            elif len(digits) == 11:
                if keyword == "snils":
                    entity = "snils"
                elif digits[:2] in {"79", "89"}:
                    entity, value = "phone", "7" + digits[1:]
                else:
                    entity = "snils"
            yield _Candidate(entity, m.start(), m.end(), value, 4)

    def _keyword_before(self, text: str, pos: int) -> str | None:
        window = text[max(0, pos - 40) : pos]
        last = None
        for m in _KEYWORD.finditer(window):
            last = m.group().lower()
        if last is None:
            return None
        if last.startswith(("снилс", "snils", "страхов")):
            return "snils"
        if last.startswith(("тел", "моб", "звон", "ватсап", "whatsapp", "вацап", "номер")):
            return "phone"
        return "account"

    def _meter_types(self, text: str) -> Iterable[_Candidate]:
        patterns = [(_HOT_WATER, "hot_water"), (_HEATING, "heating"), *self._meter_synonyms]
        for pattern, value in patterns:
            for m in pattern.finditer(text):
                if _NOT_A_METER_AFTER.match(text, m.end()):
                    continue  # "горячей линии" is the hotline
                yield _Candidate("meter_type", m.start(), m.end(), value, 5)

    def _readings(self, text: str) -> Iterable[_Candidate]:
        for m in _READING.finditer(text):
            raw = m.group()
            if _NOT_A_READING_AFTER.match(text, m.end()):
                continue
            before = text[max(0, m.start() - 12) : m.start()]
            has_fraction = "," in raw or "." in raw
            blocker = _NOT_A_READING_BEFORE_STRICT if has_fraction else _NOT_A_READING_BEFORE
            if blocker.search(before):
                continue
            if len(_digits(raw)) > 9 and not has_fraction:
                continue
            yield _Candidate("reading_value", m.start(), m.end(), normalise_reading(raw), 6)
