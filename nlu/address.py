"""Address normaliser: a span as the customer wrote it -> a canonical address.

``"на улице карла маркса 12 к2 кв 5"`` -> ``ул. Карла Маркса, д. 12, корп. 2, кв. 5``.

The street name is looked up among Kursk's streets (nlu/address_kursk.py plus
the training lookup) by a key that survives Russian case endings
("на Сумской" = "Сумская"), initials ("К. Маркса"), the letter ё, hyphens and
one typo in a long name ("Радищево"). A street the list does not know keeps
the name as written, in title case, and an adjective name after "ул." is put
back in the nominative ("на Заречной улице" -> "ул. Заречная").

Pure Python and regexes: a span normalises in tens of microseconds.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from nlu.address_kursk import ALIASES, COMMON_STREETS, KURSK_STREETS

# (pattern of the ways it is written, canonical abbreviation, grammatical gender)
_TYPES: tuple[tuple[str, str, str], ...] = (
    (r"ул\.?|улиц\w*|ulitsa|ulica|ul\.?", "ул.", "femn"),
    (r"пр-т\.?|просп\.?|проспект\w*|prospekt", "пр-т", "masc"),
    (r"пр-д\.?|проезд\w*|proezd", "проезд", "masc"),
    (r"пер\.?|переул\w*|pereulok", "пер.", "masc"),
    (r"б-р\.?|бульвар\w*|бул\.", "б-р", "masc"),
    (r"пл\.|площад\w*", "пл.", "femn"),
    (r"ш\.|шоссе", "ш.", "neut"),
    (r"наб\.?|набережн\w*", "наб.", "femn"),
    (r"мкр\.?|микрорайон\w*", "мкр.", "masc"),
    (r"туп\.?|тупик\w*", "туп.", "masc"),
)
TYPE_WORDS = "|".join(p for p, _, _ in _TYPES)
_TYPE = re.compile(rf"(?<![\w-])(?:{TYPE_WORDS})(?![\w-])", re.IGNORECASE)
_TYPE_OF = [(re.compile(rf"(?:{p})$", re.IGNORECASE), canon, g) for p, canon, g in _TYPES]
_GENDER = {canon: g for _, canon, g in _TYPES}

_CITY = re.compile(r"(?<!\w)(?:г\.?\s*|город\w*\s+)?курск\w*(?!\w)\s*,?", re.IGNORECASE)
_COMPLEX = re.compile(
    r"(?<!\w)(?:жк|жилом\w*\s+комплекс\w*|жилой\s+комплекс|жилого\s+комплекса)\s*[«\"“]?"
    r"(?P<name>[\w-]+(?:\s+(?![дк]\.|дом|кв|корп)[А-ЯЁA-Z][\w-]+)?)[»\"”]?",
    re.IGNORECASE,
)
_FLAT = re.compile(r"(?<!\w)(?:кв\.?|квартир\w*|кв-р\w*|оф\.?|офис)\s*№?\s*(?P<n>\d{1,4})", re.I)
_BUILDING = re.compile(
    r"(?<!\w)(?:(?P<k>корп\.?|корпус\w*|к\.?)|(?P<s>стр\.?|строени\w*))\s*(?P<n>\d{1,3})(?!\d)",
    re.IGNORECASE,
)
# The house: digits, a letter ("12а", "12 б"), a fraction ("12/1"), a building
# glued on ("12к2"); not an ordinal ("1-я") nor "50 лет".
_HOUSE = re.compile(
    r"(?<![\w-])(?:(?:д\.?|дом\w*|№)\s*)?(?P<n>\d{1,4})"
    r"(?:\s?(?P<l>[а-яё](?![а-яё]))|-(?P<l2>[а-еж-ик-ю](?![а-яё]))|(?:\s?[-/]\s?(?P<f>\d{1,3})))?"
    r"(?:\s?к\s?(?P<k>\d{1,2}))?(?![\w-]|\s*лет(?!\w))",
    re.IGNORECASE,
)
_LEADING = frozenset(
    {"на", "по", "в", "во", "у", "около", "возле", "адрес", "адресу", "адресе", "это"}
    | {"дом", "дома", "живу", "живём", "живем", "мой", "наш"}
)
_PUNCT = re.compile(r"[\s,.;:\"«»“”()!?]+")
# "ога": the commonest misspelt ending ("Луначарскога").
_ADJECTIVE_ENDING = re.compile(
    r"(?:ого|ога|его|ому|ему|ая|яя|ой|ей|ую|юю|ый|ий|ом|ем|ых|их|ое|ее)$"
)
_LAT = {
    "shch": "щ", "sch": "щ", "zh": "ж", "kh": "х", "ts": "ц", "ch": "ч", "sh": "ш",
    "yu": "ю", "ya": "я", "yo": "ё", "ye": "е", "tsk": "тск",
    "a": "а", "b": "б", "v": "в", "g": "г", "d": "д", "e": "е", "z": "з", "i": "и",
    "j": "й", "k": "к", "l": "л", "m": "м", "n": "н", "o": "о", "p": "п", "r": "р",
    "s": "с", "t": "т", "u": "у", "f": "ф", "h": "х", "c": "ц", "y": "ы", "w": "в",
    "x": "кс", "q": "к", "'": "ь",
}  # fmt: skip
_LAT_SHORT_I = re.compile(r"(?<=[aeiouy])y(?![aeiou])|(?<=\d-)y(?![a-z])")
_LAT_TOKEN = re.compile("|".join(sorted(map(re.escape, _LAT), key=len, reverse=True)))


def transliterate(text: str) -> str:
    """Latin letters to Cyrillic, the way people type Russian without a layout."""

    def one(m: re.Match[str]) -> str:
        return _LAT[m.group().lower()]

    # "y" after a vowel and not before one is "й": "sumskoy", "mayskiy", "boytsov".
    out = _LAT_TOKEN.sub(one, _LAT_SHORT_I.sub("й", text.lower()))
    return out if text[:1].islower() else out[:1].upper() + out[1:]


def _fold(word: str) -> str:
    return word.lower().replace("ё", "е")


def name_key(name: str) -> str:
    """A lookup key that survives case endings: ``на Сумской`` -> ``сумск``."""
    words = _PUNCT.sub(" ", _fold(name).replace("-", " ")).split()
    return " ".join(_ADJECTIVE_ENDING.sub("", w) if len(w) >= 6 else w for w in words)


def _deletions(key: str) -> set[str]:
    return {key[:i] + key[i + 1 :] for i in range(len(key))}


def _transpositions(key: str) -> list[str]:
    return [key[:i] + key[i + 1] + key[i] + key[i + 2 :] for i in range(len(key) - 1)]


@dataclass(frozen=True, slots=True)
class Street:
    type: str
    name: str


@dataclass(frozen=True, slots=True)
class Address:
    """A normalised address; ``text`` is what the dialogs store and show."""

    street_type: str | None = None
    street: str | None = None
    house: str | None = None
    building: str | None = None  # "корп. 2", "стр. 1"
    flat: str | None = None
    complex: str | None = None  # a residential complex (ЖК)
    known: bool = False  # the street is on the Kursk list

    @property
    def text(self) -> str:
        parts: list[str] = []
        if self.complex:
            parts.append(f"ЖК «{self.complex}»")
        if self.street:
            parts.append(f"{self.street_type or 'ул.'} {self.street}")
        if self.house:
            parts.append(f"д. {self.house}")
        if self.building:
            parts.append(self.building)
        if self.flat:
            parts.append(f"кв. {self.flat}")
        return ", ".join(parts)

    def parts(self) -> dict[str, str | bool | None]:
        return {
            "street_type": self.street_type if self.street else None,
            "street": self.street,
            "house": self.house,
            "building": self.building,
            "flat": self.flat,
            "complex": self.complex,
            "known": self.known,
        }


class StreetIndex:
    """Kursk's streets by name key, with one-typo and alias look-ups."""

    def __init__(
        self,
        extra_names: Iterable[str] = (),
        streets: Iterable[str] = KURSK_STREETS,
        aliases: Mapping[str, str] = ALIASES,
        common: Iterable[str] = COMMON_STREETS,
    ) -> None:
        self._by_key: dict[str, list[Street]] = {}
        for line in streets:
            kind, name = line.split(" ", 1)
            self._add(name_key(name), Street(kind, name))
        self._common: set[str] = set()
        for line in common:
            kind, name = line.split(" ", 1)
            if name_key(name) not in self._by_key:
                self._common.add(name)
                self._add(name_key(name), Street(kind, name))
        for alias, target in aliases.items():
            for street in self._by_key.get(name_key(target), []):
                self._add(name_key(alias), street)
        for name in extra_names:
            name = name.strip()
            if name and name_key(name) not in self._by_key:
                self._add(name_key(name), Street("ул.", name))
        self._typos: dict[str, str] = {}
        for key in self._by_key:
            if len(key) >= 5:
                for d in _deletions(key):
                    self._typos.setdefault(d, key)

    def _add(self, key: str, street: Street) -> None:
        entries = self._by_key.setdefault(key, [])
        if street not in entries:
            entries.append(street)

    @property
    def names(self) -> list[str]:
        """The spellings the span finder may match anywhere (common names only
        before a house number, through :meth:`find`)."""
        seen = {s.name for entries in self._by_key.values() for s in entries} - self._common
        return sorted(seen | set(ALIASES), key=len, reverse=True)

    def find(self, name: str, kind: str | None = None, *, typos: bool = True) -> Street | None:
        key = name_key(name)
        entries = self._by_key.get(key)
        if entries is None and typos and len(key) >= 5:
            # One letter dropped, doubled, swapped with its neighbour or
            # wrong, in a name of six letters or more.
            near = (
                self._typos.get(key)
                or next((d for d in _deletions(key) if d in self._by_key and len(d) >= 6), None)
                or next((t for t in _transpositions(key) if t in self._by_key), None)
                or next((self._typos[d] for d in _deletions(key) if d in self._typos), None)
            )
            entries = self._by_key.get(near) if near else None
        if not entries:
            return None
        if kind is not None:
            for street in entries:
                if street.type == kind:
                    return street
        return entries[0]

    def knows(self, name: str) -> bool:
        return self.find(name, typos=False) is not None


def _canonical_type(word: str) -> tuple[str, str]:
    for pattern, canon, gender in _TYPE_OF:
        if pattern.fullmatch(word.strip()):
            return canon, gender
    return "ул.", "femn"


def _title(word: str) -> str:
    if word.lower() == "лет" or re.match(r"\d", word):
        return word.lower()
    return "-".join(p[:1].upper() + p[1:].lower() for p in word.split("-"))


def _nominative(word: str, gender: str) -> str:
    """An adjective name back in the nominative, where its ending is plain:
    ``Заречной``/``Заречную`` -> ``Заречная`` after ``ул.``."""
    lower = word.lower()
    if not re.search(r"(?:[нк]|ск|цк)(?:ой|ую|ей|юю|ого|ому|ом|ая|ый|ий|ое)$", lower):
        return word
    stem = re.sub(r"(?:ой|ую|ей|юю|ого|ому|ом|ая|ый|ий|ое)$", "", lower)
    soft = stem.endswith(("к", "г", "х"))
    ending = {"femn": "ая", "masc": "ий" if soft else "ый", "neut": "ое"}[gender]
    if gender == "masc" and lower.endswith("ой"):
        return word  # "Полевой проезд": already nominative
    if gender != "masc" and lower.endswith("ого"):
        return word  # "ул. Ухтомского": a person's name, in the genitive
    return word[: len(stem)] + ending


def normalize(span: str, index: StreetIndex) -> Address | None:
    """The canonical address in a span, or None when it names no street or ЖК."""
    text = span
    if re.search(r"[a-zA-Z]{3}", text) and not re.search(r"[а-яА-ЯёЁ]{3}", text):
        text = " ".join(transliterate(w) if re.search("[a-zA-Z]", w) else w for w in text.split())
    text = _CITY.sub(" ", text)
    complex_name: str | None = None
    m = _COMPLEX.search(text)
    if m:
        complex_name = " ".join(_title(w) for w in m.group("name").split())
        text = text[: m.start()] + " " + text[m.end() :]
    flat: str | None = None
    m = _FLAT.search(text)
    if m:
        flat = m.group("n")
        text = text[: m.start()] + " " + text[m.end() :]
    building: str | None = None
    m = _BUILDING.search(text)
    # "к. 2" only after a house number; "корпус 5" of a ЖК alone too.
    if m and (re.search(r"\d", text[: m.start()]) or len(m.group("k") or m.group("s")) > 2):
        building = ("корп. " if m.group("k") else "стр. ") + m.group("n")
        text = text[: m.start()] + " " + text[m.end() :]
    house: str | None = None
    last = None
    for last in _HOUSE.finditer(text):  # noqa: B007 - the last number is the house
        continue
    if last is not None:
        house = last.group("n") + (last.group("l") or last.group("l2") or "").lower()
        if last.group("f"):
            house += "/" + last.group("f")
        if last.group("k") and building is None:
            building = "корп. " + last.group("k")
        text = text[: last.start()] + " " + text[last.end() :]
    kind: str | None = None
    gender = "femn"
    m = _TYPE.search(text)
    if m:
        kind, gender = _canonical_type(m.group())
        text = text[: m.start()] + " " + text[m.end() :]
    words = [w for w in _PUNCT.sub(" ", text).split() if w.strip("-")]
    while words and words[0].lower() in _LEADING:
        words.pop(0)
    if not words:
        if complex_name:
            return Address(house=house, building=building, flat=flat, complex=complex_name)
        return None
    raw_name = " ".join(words)
    street = index.find(raw_name, kind)
    if street is None and len(words) > 1:
        # "Сумская 12, подъезд 3": a trailing word that is not the name.
        street = index.find(words[0], kind, typos=False)
    if street is not None:
        return Address(
            street_type=kind or street.type,
            street=street.name,
            house=house,
            building=building,
            flat=flat,
            complex=complex_name,
            known=True,
        )
    if not re.search(r"[а-яё]", raw_name, re.IGNORECASE):
        return None
    kind = kind or "ул."
    named = [_title(w) for w in words]
    if len(named) == 1 or named[-1].lower() in {"улица", "проезд"}:
        named[0] = _nominative(named[0], _GENDER.get(kind, gender))
    return Address(
        street_type=kind,
        street=" ".join(named),
        house=house,
        building=building,
        flat=flat,
        complex=complex_name,
    )
