"""Rasa-style button payloads: ``/intent_name{"entity": "value"}``.

A button's payload names its intent outright, so it is not classified: the
result has confidence 1.0 and the entities of the JSON part, as Rasa's
``/model/parse`` answers for such a message.
"""

from __future__ import annotations

import json
import re

from nlu.types import FALLBACK_INTENT, INTENTS, Entity, Intent, ParseResult

_PAYLOAD = re.compile(r"^/(?P<intent>[A-Za-z_][A-Za-z0-9_]*)(?P<json>\{.*\})?$", re.DOTALL)
_KNOWN = frozenset([*INTENTS, FALLBACK_INTENT])


def parse_payload(payload: str) -> ParseResult | None:
    """The result for a payload, or None if the text is not one.

    Only intents of the contract are accepted, so a Telegram command such as
    ``/start`` is left to the classifier.
    """
    match = _PAYLOAD.match(payload.strip())
    if match is None or match.group("intent") not in _KNOWN:
        return None
    entities: list[Entity] = []
    if match.group("json"):
        try:
            data = json.loads(match.group("json"))
        except json.JSONDecodeError:
            return None
        if not isinstance(data, dict):
            return None
        for name, value in data.items():
            values = value if isinstance(value, list) else [value]
            entities.extend(
                Entity(entity=str(name), start=0, end=0, value=v, extractor=None) for v in values
            )
    intent = Intent(name=match.group("intent"), confidence=1.0)
    return ParseResult(
        text=payload, intent=intent, entities=tuple(entities), intent_ranking=(intent,)
    )
