"""Stopping background tasks without losing the caller's own cancellation."""

from __future__ import annotations

import asyncio
from typing import Any


async def cancel_and_wait(task: asyncio.Task[Any], within: float | None = None) -> bool:
    """Cancel ``task`` and wait until it has ended; False if it outlived ``within`` seconds.

    The usual ``task.cancel(); with suppress(CancelledError): await task``
    also swallows a cancellation aimed at the *caller* while it waits (a
    shutdown's timeout, a lock holder being stopped), and the caller then
    carries on as if nothing happened. ``asyncio.wait`` lets that one through.
    """
    task.cancel()
    done, _ = await asyncio.wait([task], timeout=within)
    if task in done and not task.cancelled():
        task.exception()  # retrieved: an error while stopping is not news
    return task in done
