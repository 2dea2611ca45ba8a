"""nps: the 0-10 question after a resolved chat, as the customer answers it."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from dialogs.flows.nps import score_from_text, start_form
from dialogs.state import DialogState
from storage.models import Conversation, NpsResponse
from tests.harness import ChatClient


async def _resolved(chat: ChatClient) -> None:
    """The state resolving a chat leaves (bot/operators/service.py does it so)."""
    await chat.say("привет")
    async with chat.session() as s:
        conv = await s.scalar(select(Conversation))
        assert conv is not None
        state = DialogState.load(conv.state)
        state.active = start_form(None, None)
        conv.state = state.dump()
        await s.commit()


async def _answers(chat: ChatClient) -> list[NpsResponse]:
    async with chat.session() as s:
        return list(await s.scalars(select(NpsResponse)))


@pytest.mark.parametrize(
    ("text", "score"),
    [("9", 9), ("8 из 10", 8), ("на 7", 7), ("10/10", 10), ("0", 0), ("ставлю 15", 15)],
)
def test_a_score_is_one_number_in_a_short_message(text: str, score: int) -> None:
    assert score_from_text(text) == score


@pytest.mark.parametrize(
    "text", ["всё хорошо", "1 2 3", "оператор ответил через 10 минут, но всё решил"]
)
def test_other_text_is_no_score(text: str) -> None:
    assert score_from_text(text) is None


async def test_score_then_skip_the_comment(chat: ChatClient) -> None:
    await _resolved(chat)
    await chat.say("8 из 10")
    assert chat.button_titles == ["Пропустить"]
    await chat.press("Пропустить")
    assert chat.texts == ["Спасибо, ваш ответ записан. Если понадобится что-то ещё, пишите."]
    [answer] = await _answers(chat)
    assert (answer.score, answer.comment, answer.channel) == (8, None, "test")
    async with chat.session() as s:
        conv = await s.scalar(select(Conversation))
    assert conv is not None
    assert conv.state["active"] is None


async def test_no_comment_in_words(chat: ChatClient) -> None:
    await _resolved(chat)
    await chat.say("10")
    await chat.say("нет")
    assert chat.texts == ["Спасибо, ваш ответ записан. Если понадобится что-то ещё, пишите."]
    [answer] = await _answers(chat)
    assert (answer.score, answer.comment) == (10, None)


async def test_a_score_out_of_range_is_asked_again(chat: ChatClient) -> None:
    await _resolved(chat)
    await chat.say("12")
    assert chat.texts == ["Нужна оценка числом от 0 до 10."]
    await chat.say("3")
    await chat.say("Долго ждал ответа")
    [answer] = await _answers(chat)
    assert (answer.score, answer.comment) == (3, "Долго ждал ответа")


async def test_cancel_leaves_no_answer(chat: ChatClient) -> None:
    await _resolved(chat)
    await chat.say("отмена")
    assert await _answers(chat) == []
    await chat.say("сколько я должен")
    assert "лицевой счёт" in chat.last_text


async def test_an_old_skip_button_starts_nothing(chat: ChatClient) -> None:
    await chat.press_payload('/deny{"flow":"nps","skip":"yes"}', "Пропустить")
    assert chat.texts == ["Спасибо, ответ уже учтён. Чем ещё могу помочь?"]
    assert await _answers(chat) == []
