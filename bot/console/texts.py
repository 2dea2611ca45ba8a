"""What the console's API says to an operator (the UI shows ``detail``)."""

from __future__ import annotations

from typing import Final

NOT_LOGGED_IN: Final = "Войдите в консоль."
WRONG_ROLE: Final = "Недостаточно прав для этого действия."
BAD_CSRF: Final = "Страница устарела: обновите её и повторите действие."
BAD_LOGIN: Final = "Неверный логин или пароль."
LOCKED: Final = "Слишком много неудачных попыток входа. Учётная запись заблокирована до {until}."
NOT_OWNER: Final = "Этот чат ведёт другой оператор."
ALREADY_TAKEN: Final = "Этот чат уже взял другой оператор."
UNKNOWN_CHAT: Final = "Такого чата нет."
UNKNOWN_APPEAL: Final = "Такого обращения нет."
UNKNOWN_OPERATOR: Final = "Такого оператора нет."
EMPTY_TEXT: Final = "Сообщение пустое."
TEXT_TOO_LONG: Final = "Сообщение слишком длинное."
NOT_AVAILABLE: Final = "Сейчас это действие недоступно: {reason}"
OPERATOR_UNAVAILABLE: Final = "Этот оператор сейчас не в сети."
NOT_CUSTOMERS_ACCOUNT: Final = "Этот лицевой счёт не привязан к клиенту."
BAD_APPEAL: Final = "Опишите суть обращения (до 4000 символов)."
BAD_TRANSITION: Final = "Обращение нельзя перевести в этот статус."
APPEAL_REGISTERED: Final = (
    "Оператор зарегистрировал ваше обращение № {number}. Ответ будет не позднее {due}."
)
