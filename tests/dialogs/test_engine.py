"""The engine's form machinery on a small test form (no NLU: parse results given)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from config import Settings
from dialogs.context import FlowContext
from dialogs.engine import DialogEngine
from dialogs.flows import ALL_FLOWS
from dialogs.forms import Flow, Form, Outcome, Slot, Validated, answer, refuse, reply, yes_no
from dialogs.messages import Turn
from dialogs.state import DialogState, FormState
from nlu.payload import parse_payload
from nlu.types import Entity, Intent, ParseResult
from storage.crypto import PersonalDataVault
from storage.models import ChannelIdentity, Conversation


def _number(text: str) -> int | None:
    return int(text) if text.isdigit() else None


class Order(Form):
    name = "order"
    intents = frozenset({"order"})
    confirm = True
    resume_question = "Продолжим заказ?"
    slots = (
        Slot("size", "Какой размер?", from_text=_number),
        Slot("note", "Комментарий?", free_text=True),
    )

    async def validate_size(
        self, ctx: FlowContext, value: Any, slots: Mapping[str, Any]
    ) -> Validated:
        if int(value) > 10:
            return refuse("Слишком большой размер.")
        return {"size": value}

    async def confirmation(self, ctx: FlowContext, form: FormState) -> Any:
        return yes_no(f"Заказать размер {form.slots['size']}?")

    async def submit(self, ctx: FlowContext, form: FormState) -> Outcome:
        return answer(reply(f"Заказан размер {form.slots['size']}."))


def parse(
    text: str, intent: str = "nlu_fallback", confidence: float = 0.9, **ents: Any
) -> ParseResult:
    return ParseResult(
        text=text,
        intent=Intent(name=intent, confidence=confidence),
        entities=tuple(Entity(entity=k, start=0, end=0, value=v) for k, v in ents.items()),
    )


class Driver:
    def __init__(self, session: AsyncSession, settings: Settings) -> None:
        self.engine = DialogEngine(settings, [*ALL_FLOWS, Order()])
        self.state = DialogState()
        self.session = session
        self.settings = settings
        self.ctx: FlowContext | None = None

    async def start(self) -> None:
        identity = ChannelIdentity(channel="test", user_id="u1")
        self.session.add(identity)
        await self.session.flush()
        conv = Conversation(channel="test", chat_id="c1", identity_id=identity.id)
        self.session.add(conv)
        await self.session.flush()
        self.ctx = FlowContext(
            session=self.session,
            settings=self.settings,
            vault=PersonalDataVault("k"),
            now=datetime(2026, 11, 24, 9, tzinfo=UTC),
            identity=identity,
            conversation=conv,
            channel="test",
        )

    async def say(self, p: ParseResult) -> list[str]:
        assert self.ctx is not None
        turn: Turn = await self.engine.step(self.ctx, self.state, p)
        self.state = DialogState.model_validate(turn.state)
        return [r.text for r in turn.replies]


async def test_form_fills_validates_confirms_and_submits(
    db_session: AsyncSession, db_settings: Settings
) -> None:
    d = Driver(db_session, db_settings)
    await d.start()
    assert await d.say(parse("хочу заказ", "order")) == ["Какой размер?"]
    assert await d.say(parse("42")) == ["Слишком большой размер."]
    assert await d.say(parse("5")) == ["Комментарий?"]
    # a free-text slot takes even a confident other intent as its value
    assert await d.say(parse("привет", "greet", 0.99)) == ["Заказать размер 5?"]
    assert await d.say(parse("да", "affirm")) == ["Заказан размер 5."]
    assert d.state.active is None


async def test_interruption_offers_to_continue(
    db_session: AsyncSession, db_settings: Settings
) -> None:
    d = Driver(db_session, db_settings)
    await d.start()
    await d.say(parse("хочу заказ", "order"))
    replies = await d.say(parse("спасибо", "thanks", 0.95))
    assert replies[-1] == "Продолжим заказ?"
    assert await d.say(parse("да", "affirm")) == ["Какой размер?"]
    assert await d.say(parse("3")) == ["Комментарий?"]


async def test_value_after_offer_resumes_and_no_drops(
    db_session: AsyncSession, db_settings: Settings
) -> None:
    d = Driver(db_session, db_settings)
    await d.start()
    await d.say(parse("хочу заказ", "order"))
    await d.say(parse("спасибо", "thanks", 0.95))
    assert await d.say(parse("7")) == ["Комментарий?"]
    await d.say(parse("спасибо", "thanks", 0.95))
    await d.say(parse("нет", "deny"))
    assert d.state.active is None
    assert d.state.suspended == []


async def test_cancel_and_deny(db_session: AsyncSession, db_settings: Settings) -> None:
    d = Driver(db_session, db_settings)
    await d.start()
    await d.say(parse("хочу заказ", "order"))
    replies = await d.say(parse("Отмена!", "deny"))
    assert replies[0].startswith("Хорошо, отменил")
    assert d.state.active is None
    await d.say(parse("хочу заказ", "order", size=2))
    await d.say(parse("без комментариев"))
    assert await d.say(parse("нет", "deny")) == [Order.cancelled_text]


async def test_state_round_trips_as_json() -> None:
    st = DialogState(active=FormState(name="order", slots={"size": 3}, requested_slot="note"))
    st.remember_intent("order")
    import json

    again = DialogState.load(json.loads(json.dumps(st.dump())))
    assert again == st
    assert DialogState.load({"active": "garbage"}) == DialogState()


async def test_a_step_leaves_the_state_it_was_given_as_it_was(
    db_session: AsyncSession, db_settings: Settings
) -> None:
    d = Driver(db_session, db_settings)
    await d.start()
    await d.say(parse("хочу заказ", "order"))
    d.state.active.slots["notes"] = {"lines": ["первая"]}  # type: ignore[union-attr]
    d.state.facts["address"] = "Ленина, 1"
    before = d.state.model_dump()
    assert d.ctx is not None
    turn = await d.engine.step(d.ctx, d.state, parse("5"))
    assert d.state.model_dump() == before
    assert turn.state.active is not None
    turn.state.active.slots["notes"]["lines"].append("вторая")
    turn.state.recent_intents.append("greet")
    assert d.state.model_dump() == before


async def test_forms_of_an_older_release_are_dropped(
    db_session: AsyncSession, db_settings: Settings
) -> None:
    d = Driver(db_session, db_settings)
    await d.start()
    d.state = DialogState(
        active=FormState(name="gone_form", requested_slot="x"),
        suspended=[FormState(name="also_gone")],
        offered_resume=True,
    )
    assert await d.say(parse("спасибо", "thanks", 0.95)) == [
        "Пожалуйста! Обращайтесь, если будут вопросы."
    ]
    assert d.state.active is None
    assert d.state.suspended == []


def test_registry_refuses_a_one_turn_flow_that_requires_an_account() -> None:
    from dialogs.engine import FlowRegistryError
    from dialogs.forms import Flow
    from tests.conftest import make_settings

    class Points(Flow):
        name = "points"
        intents = frozenset({"points"})
        requires_account = True

        async def run(self, ctx: FlowContext, state: DialogState, parse: ParseResult) -> Outcome:
            return answer(reply("ok"))

    settings = make_settings("sqlite+aiosqlite://")
    with pytest.raises(FlowRegistryError, match="points"):
        DialogEngine(settings, flows=(*ALL_FLOWS, Points()))


class Ticket(Form):
    """Validators that fill two slots, wait for another, read and refuse."""

    name = "ticket"
    intents = frozenset({"ticket"})
    slots = (
        Slot("topic", "Какая тема?", from_text=lambda t: t if "тем" in t else None, loose=True),
        Slot("row", "Какой ряд?", from_text=_number),
        Slot("seat", "Какое место?", entity="seat", needs=("row",)),
    )

    async def validate_row(
        self, ctx: FlowContext, value: Any, slots: Mapping[str, Any]
    ) -> Validated:
        return {"row": int(value), "row_label": f"ряд {value}"}

    async def validate_seat(
        self, ctx: FlowContext, value: Any, slots: Mapping[str, Any]
    ) -> Validated:
        if int(value) > int(slots["row"]) * 10:
            return refuse(f"В ряду {slots['row']} нет места {value}.")
        return {"seat": int(value)}

    async def submit(self, ctx: FlowContext, form: FormState) -> Outcome:
        return answer(reply(f"Билет: {form.slots['row_label']}, место {form.slots['seat']}."))


async def test_a_validator_fills_several_slots_and_a_value_waits_for_what_it_needs(
    db_session: AsyncSession, db_settings: Settings
) -> None:
    d = Driver(db_session, db_settings)
    d.engine = DialogEngine(db_settings, [*ALL_FLOWS, Ticket()])
    await d.start()
    assert await d.say(parse("билет", "ticket")) == ["Какая тема?"]
    # The seat comes before the row; it is checked once the row is known.
    assert await d.say(parse("тема кино, место 35", seat="35")) == ["Какой ряд?"]
    assert d.state.active is not None
    assert d.state.active.pending == {"seat": "35"}
    # A refused value that waited is explained, then asked for (its prompt was never shown).
    assert await d.say(parse("2")) == ["В ряду 2 нет места 35.", "Какое место?"]
    assert await d.say(parse("место 12", seat="12")) == ["Билет: ряд 2, место 12."]


async def test_checking_values_stores_nothing(
    db_session: AsyncSession, db_settings: Settings
) -> None:
    d = Driver(db_session, db_settings)
    await d.start()
    assert d.ctx is not None
    form = Ticket()
    fs = FormState(name="ticket", slots={"row": 1})
    checked = await form.check(d.ctx, fs, {"seat": "50", "topic": "тема"})
    assert checked.accepted == {"topic": "тема"}
    assert [(name, r.text) for name, r in checked.refused] == [("seat", "В ряду 1 нет места 50.")]
    assert fs.slots == {"row": 1}


def test_a_misspelt_validator_is_refused_at_class_creation() -> None:
    with pytest.raises(TypeError, match="validate_sise"):

        class Typo(Form):
            name = "typo"
            slots = (Slot("size", "Какой размер?"),)

            async def validate_sise(
                self, ctx: FlowContext, value: Any, slots: Mapping[str, Any]
            ) -> Validated:
                return {"size": value}

            async def submit(self, ctx: FlowContext, form: FormState) -> Outcome:
                return answer()


async def test_interruption_threshold_is_a_setting(
    db_session: AsyncSession, db_settings: Settings
) -> None:
    d = Driver(db_session, db_settings)
    await d.start()
    await d.say(parse("хочу заказ", "order"))
    # 0.75 clears the default bar (0.7): the question is answered, the form offered again.
    replies = await d.say(parse("спасибо", "thanks", 0.75))
    assert replies[-1] == "Продолжим заказ?"

    strict = db_settings.model_copy(update={"form_interrupt_confidence": 0.8})
    d2 = Driver(db_session, strict)
    d2.ctx = d.ctx
    await d2.say(parse("хочу заказ", "order"))
    assert await d2.say(parse("спасибо", "thanks", 0.75)) == [
        "Не совсем понял ответ.",
        "Какой размер?",
    ]


async def test_a_keyword_answer_in_a_long_question_is_no_answer(
    db_session: AsyncSession, db_settings: Settings
) -> None:
    d = Driver(db_session, db_settings)
    d.engine = DialogEngine(db_settings, [*ALL_FLOWS, Ticket()])
    await d.start()
    await d.say(parse("билет", "ticket"))
    # "тем" matches the loose topic slot, but four words read as "thanks" are a question.
    replies = await d.say(parse("спасибо за эту тему", "thanks", 0.8))
    assert replies[-1] == "Продолжим?"
    assert d.state.suspended[-1].slots == {}
    await d.say(parse("да", "affirm"))
    # Short, it is the answer even when the NLU guesses another intent.
    assert await d.say(parse("тема кино", "thanks", 0.8)) == ["Какой ряд?"]


def test_registry_refuses_a_button_intent_outside_the_contract() -> None:
    from dialogs.engine import FlowRegistryError
    from tests.conftest import make_settings

    class Survey(Flow):
        name = "survey"
        button_intent = "take_survey"  # not in shared/intents.md: its buttons would be dead

        async def run(self, ctx: FlowContext, state: DialogState, parse: ParseResult) -> Outcome:
            return answer(reply("ok"))

    with pytest.raises(FlowRegistryError, match="take_survey"):
        DialogEngine(make_settings("sqlite+aiosqlite://"), flows=(*ALL_FLOWS, Survey()))


class Survey(Flow):
    name = "survey"
    button_intent = "thanks"

    async def run(self, ctx: FlowContext, state: DialogState, parse: ParseResult) -> Outcome:
        return answer(reply("Оцените нас от 0 до 10."))


async def test_a_button_starts_the_flow_it_names(
    db_session: AsyncSession, db_settings: Settings
) -> None:
    d = Driver(db_session, db_settings)
    d.engine = DialogEngine(db_settings, [*ALL_FLOWS, Survey()])
    await d.start()
    button = parse_payload(Survey.start_payload())
    assert button is not None
    assert await d.say(button) == ["Оцените нас от 0 до 10."]
    # Only a button names a flow: the same words in the text are just "thanks".
    typed = ParseResult(
        text="flow survey",
        intent=Intent(name="thanks", confidence=0.95),
        entities=(Entity(entity="flow", start=0, end=4, value="survey", extractor="regex"),),
    )
    assert await d.say(typed) == ["Пожалуйста! Обращайтесь, если будут вопросы."]
