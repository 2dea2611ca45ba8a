"""aiogram's aiohttp session, posting JSON instead of multipart forms.

The Bot API takes ``application/json`` for every method that carries no
file. aiogram's :class:`AiohttpSession` builds a multipart form for each call
(aiohttp's ``FormData``, one part per field, its JSON values encoded one by
one): under bench/load.py that form was the largest single cost of a reply's
send. This session is aiogram's documented extension point (a session given
to ``Bot``): the adapter still calls ``bot.send_message`` and
``bot.answer_callback_query``, the answer still goes through aiogram's
``check_response`` (so a 429 is ``TelegramRetryAfter``, a 403
``TelegramForbiddenError``, as before), and a method with a file to upload
takes aiogram's own multipart path.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final, cast

from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.exceptions import TelegramNetworkError
from aiogram.methods import TelegramMethod
from aiogram.methods.base import TelegramType
from aiohttp import ClientError, ClientTimeout

if TYPE_CHECKING:
    from aiogram import Bot

_JSON: Final = {"Content-Type": "application/json"}


class JsonAiohttpSession(AiohttpSession):
    """An :class:`AiohttpSession` whose file-less calls are JSON bodies."""

    def build_json(self, bot: Bot, method: TelegramMethod[Any]) -> dict[str, Any] | None:
        """The call's fields as aiogram prepares them, or None when it has a file."""
        files: dict[str, Any] = {}
        body: dict[str, Any] = {}
        for key, value in method.model_dump(warnings=False).items():
            prepared = self.prepare_value(value, bot=bot, files=files, _dumps_json=False)
            if prepared is not None:
                body[key] = prepared
        return None if files else body

    async def make_request(
        self,
        bot: Bot,
        method: TelegramMethod[TelegramType],
        timeout: int | None = None,  # noqa: ASYNC109 (aiogram's signature)
    ) -> TelegramType:
        body = self.build_json(bot, method)
        if body is None:
            return await super().make_request(bot, method, timeout)
        session = await self.create_session()
        url = self.api.api_url(token=bot.token, method=method.__api_method__)
        try:
            async with session.post(
                url,
                data=self.json_dumps(body),
                headers=_JSON,
                timeout=ClientTimeout(total=self.timeout if timeout is None else timeout),
            ) as resp:
                raw_result = await resp.text()
        except TimeoutError as e:
            raise TelegramNetworkError(method=method, message="Request timeout error") from e
        except ClientError as e:
            raise TelegramNetworkError(method=method, message=f"{type(e).__name__}: {e}") from e
        response = self.check_response(
            bot=bot, method=method, status_code=resp.status, content=raw_result
        )
        return cast(TelegramType, response.result)
