"""subscribe_news: subscribe this chat to the news, or unsubscribe it ("отпишите
меня" is the same intent: the words or a button decide)."""

from __future__ import annotations

import re

from dialogs.context import FlowContext
from dialogs.forms import Flow, Outcome, answer, payload, reply
from dialogs.messages import Button
from dialogs.state import DialogState
from handlers.subscriptions import is_subscribed, subscribe, unsubscribe
from nlu.types import ParseResult

SUBSCRIBE = "subscribe"
UNSUBSCRIBE = "unsubscribe"


class Texts:
    subscribed = (
        "Готово: этот чат подписан на новости — плановые отключения, изменения тарифов, "
        "акции ЭнергоБонус. Отписаться можно в любой момент."
    )
    already = "Этот чат уже подписан на новости."
    unsubscribed = "Готово: новости в этот чат больше приходить не будут."
    not_subscribed = "Этот чат и так не подписан на новости."
    ask_subscribed = "Этот чат подписан на новости. Отписаться?"
    ask_not_subscribed = "Подписать этот чат на новости: плановые отключения, тарифы, акции?"
    subscribe_button = "Подписаться"
    unsubscribe_button = "Отписаться"
    keep_button = "Оставить как есть"
    kept = "Хорошо, оставляю как есть."


_UNSUBSCRIBE = re.compile(
    r"отпис|отпиш|отказ|не\s+(?:присылай|присылайте|отправляй|пишите|надо|нужн)|"
    r"больше\s+не|хватит|удалит|unsubscribe|otpis|stop",
    re.IGNORECASE,
)
_SUBSCRIBE = re.compile(r"подпис|подпиш|присылайте|хочу\s+получать|subscribe|podpis", re.IGNORECASE)


def wanted_action(parse: ParseResult) -> str | None:
    """``subscribe``, ``unsubscribe`` or None when the message does not say."""
    entity = parse.entity("action")
    if entity is not None and entity.value in {SUBSCRIBE, UNSUBSCRIBE, "keep"}:
        return str(entity.value)
    if parse.text.startswith("/"):
        return None
    if _UNSUBSCRIBE.search(parse.text):
        return UNSUBSCRIBE
    if _SUBSCRIBE.search(parse.text):
        return SUBSCRIBE
    return None


class SubscribeNews(Flow):
    name = "subscribe_news"
    intents = frozenset({"subscribe_news"})

    async def run(self, ctx: FlowContext, state: DialogState, parse: ParseResult) -> Outcome:
        chat_id = ctx.conversation.chat_id
        action = wanted_action(parse)
        if action == SUBSCRIBE:
            status = await subscribe(ctx.session, ctx.channel, chat_id, ctx.now)
            return answer(reply(Texts.subscribed if status.changed else Texts.already))
        if action == UNSUBSCRIBE:
            status = await unsubscribe(ctx.session, ctx.channel, chat_id, ctx.now)
            return answer(reply(Texts.unsubscribed if status.changed else Texts.not_subscribed))
        if action == "keep":
            return answer(reply(Texts.kept))
        keep = Button(Texts.keep_button, payload("subscribe_news", action="keep"))
        if await is_subscribed(ctx.session, ctx.channel, chat_id):
            return answer(
                reply(
                    Texts.ask_subscribed,
                    Button(Texts.unsubscribe_button, payload("subscribe_news", action=UNSUBSCRIBE)),
                    keep,
                )
            )
        return answer(
            reply(
                Texts.ask_not_subscribed,
                Button(Texts.subscribe_button, payload("subscribe_news", action=SUBSCRIBE)),
                keep,
            )
        )


FLOWS = (SubscribeNews(),)
