"""Everything the outer shell itself says to a customer, in one place.

The dialog flows keep their own wording in ``dialogs/``; these are the
transport-level answers (the widget's errors, the terminal chat).
"""

from __future__ import annotations

from typing import Final

# --- web widget ------------------------------------------------------------
WIDGET_FRAME_TOO_BIG: Final = "Слишком большое сообщение, его не получилось принять."
WIDGET_BAD_FRAME: Final = (
    "Не получилось прочитать сообщение. Обновите страницу и попробуйте ещё раз."
)
WIDGET_UNAVAILABLE: Final = (
    "Не получилось обработать сообщение: сервис временно недоступен. "
    "Попробуйте отправить его ещё раз через минуту."
)
WIDGET_NOT_READY: Final = "Чат ещё запускается. Подождите несколько секунд и отправьте снова."
WIDGET_BAD_TEXT: Final = (
    "В сообщении есть символы, которые не получилось прочитать. Наберите его заново, пожалуйста."
)
WIDGET_RATE_LIMITED: Final = "Вы пишете слишком часто, подождите немного и отправьте ещё раз."
WIDGET_PENDING: Final = (
    "Сообщение получено. Ответ придёт чуть позже, отправлять его ещё раз не нужно."
)

# --- terminal chat ------------------------------------------------------------
CLI_WELCOME: Final = (
    "Чат с ботом «{company}». Напишите сообщение и нажмите Enter; "
    "номер — нажать кнопку; Ctrl+D — выход."
)
CLI_BOT: Final = "Бот"
CLI_YOU: Final = "Вы"
CLI_ERROR: Final = "Не получилось обработать сообщение: {error}"
CLI_BYE: Final = "До свидания!"
