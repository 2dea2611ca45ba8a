"""aiogram imported with its types' validators deferred (bot.channels.aiogram_types):
nothing is built at import, and every type and method still builds when first used."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# In a fresh interpreter: this test process may have imported aiogram already.
_PROBE = """
import json
import bot.channels.telegram  # imports aiogram the adapter's way
import aiogram.methods
import aiogram.types
from aiogram.methods.base import TelegramMethod
from pydantic import BaseModel

def models(module):
    for name in module.__all__:
        obj = getattr(module, name)
        if isinstance(obj, type) and issubclass(obj, BaseModel):
            yield obj

types = list(models(aiogram.types))
methods = [m for m in models(aiogram.methods) if issubclass(m, TelegramMethod)]
built_at_import = sorted(m.__name__ for m in types if m.__pydantic_complete__)
failed = []
for model in types + methods:
    try:
        model.__pydantic_validator__.validate_python  # builds a deferred model
        model.__pydantic_serializer__.to_python
    except Exception as exc:
        failed.append(f"{model.__name__}: {type(exc).__name__}: {exc}"[:200])
update = aiogram.types.Update.model_validate_json(
    '{"update_id": 1, "callback_query": {"id": "c", "chat_instance": "i", "data": "d",'
    ' "from": {"id": 7, "is_bot": false, "first_name": "A"},'
    ' "message": {"message_id": 5, "date": 0, "chat": {"id": 7, "type": "private"},'
    ' "text": "q", "reply_markup": {"inline_keyboard": [[{"text": "a", "callback_data": "b"}]]}}}}'
)
sent = aiogram.methods.SendMessage(
    chat_id=7,
    text="x",
    reply_markup=aiogram.types.ReplyKeyboardMarkup(
        keyboard=[[aiogram.types.KeyboardButton(text="phone", request_contact=True)]]
    ),
).model_dump(mode="json", exclude_none=True, exclude_defaults=True)
print(json.dumps({
    "types": len(types),
    "methods": len(methods),
    "built_at_import": built_at_import,
    "failed": failed,
    "button": update.callback_query.message.reply_markup.inline_keyboard[0][0].callback_data,
    "sent": sent,
}))
"""


def test_aiogram_types_are_built_on_first_use_and_all_of_them_build() -> None:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        timeout=300,
    )
    probe = json.loads(out.stdout.strip().splitlines()[-1])
    assert probe["types"] > 300
    assert probe["methods"] > 100
    # Built at import, every one of them would cost ~100 MB resident in the process.
    assert probe["built_at_import"] == []
    # Each forward reference resolves, whichever model is built first.
    assert probe["failed"] == []
    assert probe["button"] == "b"
    assert probe["sent"]["reply_markup"] == {
        "keyboard": [[{"text": "phone", "request_contact": True}]]
    }
