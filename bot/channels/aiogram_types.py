"""aiogram, imported so that a Telegram type's validator is built when first used.

aiogram declares its Telegram types ``defer_build=True``, but ``aiogram.types``
then calls ``model_rebuild`` on every one of them at import, to resolve their
forward references, and pydantic-core builds a validator and a serializer for
each: some 900 of them, each with its own copies of the nested ones (Message
inside Update, inside CallbackQuery, inside ...). That is about 100 MB resident
in every process that serves Telegram (aiogram issue #1513), of which the
adapter uses a few (Update, the keyboards, the results of the methods it calls).

Importing aiogram through :func:`import_aiogram` turns that loop into what
``defer_build`` means: each rebuild only records the namespace the forward
references resolve in, and pydantic builds a type's schema, in that
namespace, the first time it validates or serializes one (an Update: about
4 MB and 0.1 s, once). The method models, whose build at class creation
then stops at a deferred type, are built the same way on first use.
Validation and serialization are pydantic's, unchanged; only when they are
built moves. tests/bot/test_telegram_types.py builds every type and method.

Import this module before anything imports aiogram (``bot.channels.telegram``
does): once aiogram is imported, it does nothing.
"""

from __future__ import annotations

import sys
from typing import Any

from pydantic import BaseModel

# The classmethod object itself, to call its function with any class.
_model_rebuild: Any = BaseModel.__dict__["model_rebuild"]
# The namespace aiogram.types rebuilds its types in (all of them, List, Optional...).
_namespace: dict[str, Any] = {}


def _deferred_rebuild(
    cls: type[BaseModel],
    *,
    force: bool = False,
    raise_errors: bool = True,
    _parent_namespace_depth: int = 2,
    _types_namespace: Any = None,
) -> bool | None:
    if (
        _types_namespace is not None
        and not force
        and cls.model_config.get("defer_build")
        and not cls.__pydantic_complete__
    ):
        _namespace.update(_types_namespace)  # the same for every type
        return None
    # One frame deeper than pydantic expects: the caller's namespace is one up.
    depth = _parent_namespace_depth + 1 if _parent_namespace_depth > 0 else 0
    result: bool | None = _model_rebuild.__func__(
        cls,
        force=force,
        raise_errors=raise_errors,
        _parent_namespace_depth=depth,
        _types_namespace=_types_namespace,
    )
    return result


def _rebuild_in_namespace(
    cls: type[BaseModel],
    *,
    force: bool = False,
    raise_errors: bool = True,
    _parent_namespace_depth: int = 2,
    _types_namespace: Any = None,
) -> bool | None:
    result: bool | None = _model_rebuild.__func__(
        cls,
        force=force,
        raise_errors=raise_errors,
        _parent_namespace_depth=0,
        _types_namespace=_namespace if _types_namespace is None else _types_namespace,
    )
    return result


def import_aiogram() -> None:
    """Import aiogram with its types' schemas deferred (no-op if already imported)."""
    if "aiogram" in sys.modules:
        return
    setattr(BaseModel, "model_rebuild", classmethod(_deferred_rebuild))  # noqa: B010
    try:
        import aiogram  # noqa: F401
    finally:
        setattr(BaseModel, "model_rebuild", _model_rebuild)  # noqa: B010
    from aiogram.methods.base import Response, TelegramMethod
    from aiogram.types.base import TelegramObject

    # A deferred model is built by pydantic's model_rebuild, which looks for the
    # names of forward references ("Message", "Chat": imported by aiogram's
    # modules for type checkers only) in a caller's frame some levels up: give
    # it aiogram's namespace instead, whatever the stack.
    for base in (TelegramObject, TelegramMethod, Response):
        setattr(base, "model_rebuild", classmethod(_rebuild_in_namespace))  # noqa: B010


import_aiogram()
