"""goodbye, thanks, out_of_scope and a stray "да"/"нет": short answers."""

from __future__ import annotations

from dialogs.context import FlowContext
from dialogs.forms import Flow, Outcome, answer, reply
from dialogs.state import DialogState
from dialogs.texts import MENU
from nlu.types import ParseResult


class Texts:
    goodbye = "Всего доброго! Если понадобится помощь, пишите в любое время."
    thanks = "Пожалуйста! Обращайтесь, если будут вопросы."
    out_of_scope = (
        "С этим я помочь не смогу: я отвечаю на вопросы о теплоснабжении и горячей воде. "
        "Вот что я умею:"
    )
    stray_yes_no = "Чем могу помочь? Выберите, что нужно:"


class Goodbye(Flow):
    name = "goodbye"
    intents = frozenset({"goodbye"})

    async def run(self, ctx: FlowContext, state: DialogState, parse: ParseResult) -> Outcome:
        return answer(reply(Texts.goodbye))


class Thanks(Flow):
    name = "thanks"
    intents = frozenset({"thanks"})

    async def run(self, ctx: FlowContext, state: DialogState, parse: ParseResult) -> Outcome:
        return answer(reply(Texts.thanks))


class OutOfScope(Flow):
    name = "out_of_scope"
    intents = frozenset({"out_of_scope"})

    async def run(self, ctx: FlowContext, state: DialogState, parse: ParseResult) -> Outcome:
        return answer(reply(Texts.out_of_scope, *MENU))


class StrayYesNo(Flow):
    """ "да" or "нет" when nothing was asked."""

    name = "stray_yes_no"
    intents = frozenset({"affirm", "deny"})

    async def run(self, ctx: FlowContext, state: DialogState, parse: ParseResult) -> Outcome:
        return answer(reply(Texts.stray_yes_no, *MENU))


FLOWS = (Goodbye(), Thanks(), OutOfScope(), StrayYesNo())
