"""greet: hello and the menu of what the bot can do."""

from __future__ import annotations

from dialogs.context import FlowContext
from dialogs.forms import Flow, Outcome, answer, reply
from dialogs.state import DialogState
from dialogs.texts import MENU
from nlu.types import ParseResult


class Texts:
    hello = "Здравствуйте! Я виртуальный помощник компании «{company}». Чем могу помочь?"
    hello_linked = (
        "Здравствуйте! Я виртуальный помощник компании «{company}». "
        "Работаем со счётом {account}. Чем могу помочь?"
    )


class Greet(Flow):
    name = "greet"
    intents = frozenset({"greet"})

    async def run(self, ctx: FlowContext, state: DialogState, parse: ParseResult) -> Outcome:
        account = await ctx.current_account()
        company = ctx.settings.company_name
        if account is None:
            text = Texts.hello.format(company=company)
        else:
            text = Texts.hello_linked.format(company=company, account=account.number)
        return answer(reply(text, *MENU))


FLOWS = (Greet(),)
