"""nlu_fallback: not understood. Offers the menu; after repeated misses, an operator."""

from __future__ import annotations

from dialogs.context import FlowContext
from dialogs.forms import Flow, Outcome, answer, reply
from dialogs.state import DialogState
from dialogs.texts import MENU, OPERATOR_BUTTON
from nlu.types import FALLBACK_INTENT, ParseResult


class Texts:
    first = "Извините, я не понял вопрос. Вот с чем я могу помочь:"
    again = "Кажется, я снова вас не понял. Могу позвать оператора, или выберите тему из списка."
    menu_button = "Показать меню"


class NluFallback(Flow):
    name = "nlu_fallback"
    intents = frozenset({FALLBACK_INTENT})

    async def run(self, ctx: FlowContext, state: DialogState, parse: ParseResult) -> Outcome:
        # The engine counts consecutive fallbacks, this one included.
        if state.fallbacks >= ctx.settings.fallbacks_before_operator:
            return answer(reply(Texts.again, OPERATOR_BUTTON, *MENU[:-1]))
        return answer(reply(Texts.first, *MENU))


FLOWS = (NluFallback(),)
