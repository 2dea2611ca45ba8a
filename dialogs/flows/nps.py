"""nps: after an operator resolved the chat, the customer's 0-10 and an
optional comment.

Nothing starts it from an intent or a button: resolving a chat
(bot/operators/service.py) makes it the active form with
:func:`start_form` and asks :func:`question`; the customer's next messages
are its answers. "отмена", "нет" or "Пропустить" at the comment skip it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

from dialogs.context import FlowContext
from dialogs.forms import Form, Outcome, Slot, Validated, answer, refuse, reply
from dialogs.messages import Button, Reply
from dialogs.state import FormState
from handlers.nps import MAX_SCORE, MIN_SCORE, NpsAnswer, record_nps
from nlu.types import ParseResult


class Texts:
    question = (
        "Оцените, пожалуйста, помощь оператора: насколько вероятно, что вы порекомендуете "
        "нашу поддержку знакомым? Напишите число от 0 до 10."
    )
    bad_score = "Нужна оценка числом от 0 до 10."
    ask_comment = (
        "Спасибо за оценку. Если хотите, напишите одним сообщением, что нам стоит улучшить, "
        "или нажмите «Пропустить»."
    )
    skip = "Пропустить"
    thanks = "Спасибо, ваш ответ записан. Если понадобится что-то ещё, пишите."
    resume = "Оцените разговор с оператором?"
    cancelled = "Хорошо, без оценки. Чем ещё могу помочь?"
    not_understood = "Не понял оценку."
    stale = "Спасибо, ответ уже учтён. Чем ещё могу помочь?"


NAME: Final = "nps"
SKIPPED: Final = "-"
_NUMBER = re.compile(r"\d+")
_SKIP_WORDS = re.compile(
    r"^(нет|не\s*хочу|не\s*надо|пропустить|пропуск|ничего|без\s+комментари\w*|-+)\W*$",
    re.IGNORECASE,
)
_MAX_SCORE_WORDS: Final = 5


def score_from_text(text: str) -> int | None:
    """ "9", "8 из 10", "на 7", "10/10": one number in a short message."""
    if len(text.split()) > _MAX_SCORE_WORDS:
        return None
    numbers = _NUMBER.findall(text)
    if len(numbers) == 2 and numbers[1] == str(MAX_SCORE) and re.search(r"из|/", text):
        numbers = numbers[:1]  # "8 из 10"
    if len(numbers) != 1 or len(numbers[0]) > 3:
        return None
    return int(numbers[0])


def start_form(handoff_id: int | None, operator_id: int | None) -> FormState:
    """The form as resolving a chat leaves it: waiting for the score."""
    return FormState(
        name=NAME,
        slots={"handoff_id": handoff_id, "operator_id": operator_id},
        requested_slot="score",
    )


def question() -> Reply:
    return reply(Texts.question)


class Nps(Form):
    name = NAME
    # The skip button carries a contract intent (never one that interrupts).
    button_intent = "deny"
    resume_question = Texts.resume
    cancelled_text = Texts.cancelled
    not_understood_text = Texts.not_understood
    slots = (
        Slot("score", Texts.question, from_text=score_from_text),
        Slot("comment", Texts.ask_comment, free_text=True),
    )

    async def on_start(
        self, ctx: FlowContext, form: FormState, parse: ParseResult
    ) -> Outcome | None:
        # Only resolving a chat starts it; an old "Пропустить" pressed later does not.
        return answer(reply(Texts.stale))

    async def prompt(self, ctx: FlowContext, form: FormState, slot: str) -> Reply:
        if slot == "comment":
            return reply(Texts.ask_comment, Button(Texts.skip, self.start_payload(skip="yes")))
        return await super().prompt(ctx, form, slot)

    async def extract(
        self, ctx: FlowContext, form: FormState, parse: ParseResult
    ) -> dict[str, Any]:
        if form.requested_slot == "comment" and (
            parse.entity("skip") is not None
            or parse.intent.name == "deny"
            or _SKIP_WORDS.match(parse.text.strip())
        ):
            return {"comment": SKIPPED}
        return await super().extract(ctx, form, parse)

    async def validate_score(
        self, ctx: FlowContext, value: Any, slots: Mapping[str, Any]
    ) -> Validated:
        try:
            score = int(value)
        except (TypeError, ValueError):
            return refuse(Texts.bad_score)
        if not MIN_SCORE <= score <= MAX_SCORE:
            return refuse(Texts.bad_score)
        return {"score": score}

    async def submit(self, ctx: FlowContext, form: FormState) -> Outcome:
        comment = form.slots.get("comment")
        await record_nps(
            ctx.session,
            NpsAnswer(
                conversation_id=ctx.conversation.id,
                channel=ctx.channel,
                score=int(form.slots["score"]),
                comment=None if comment in (None, SKIPPED) else str(comment),
                handoff_id=_int_or_none(form.slots.get("handoff_id")),
                operator_id=_int_or_none(form.slots.get("operator_id")),
            ),
            ctx.now,
        )
        return answer(reply(Texts.thanks))


def _int_or_none(value: object) -> int | None:
    return int(value) if isinstance(value, int | str) and str(value).isdigit() else None


FLOWS = (Nps(),)
