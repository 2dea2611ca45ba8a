"""A local stand-in for Twilio's REST API (the Messages resource), on a real port.

It speaks the wire format the twilio library expects: ``POST
/2010-04-01/Accounts/{AccountSid}/Messages.json`` with a form body and Basic
auth (the account SID and auth token, checked), answered with ``201`` and a
Message resource, or with Twilio's error JSON (``{"code": 63016, "message":
..., "more_info": ..., "status": 400}``). Every call is recorded. It runs its
own event loop in a thread and can be stopped and started again on the same
port (Twilio unreachable for a while).
"""

from __future__ import annotations

import asyncio
import base64
import secrets
import socket
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

from aiohttp import web

API_VERSION = "2010-04-01"


@dataclass(frozen=True, slots=True)
class MessageCall:
    """One accepted ``Messages.create``: the form Twilio received, and its SID."""

    sid: str
    form: dict[str, str]

    @property
    def to(self) -> str:
        return self.form.get("To", "")

    @property
    def body(self) -> str | None:
        return self.form.get("Body")


@dataclass(frozen=True, slots=True)
class ScriptedError:
    status: int
    code: int
    message: str


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class FakeTwilio:
    def __init__(self, account_sid: str, auth_token: str) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.port = free_port()
        self.messages: list[MessageCall] = []  # accepted, in order
        self.refused: list[dict[str, str]] = []  # answered with an error
        self.unauthorised = 0
        self._errors: list[ScriptedError] = []
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._runner: web.AppRunner | None = None
        self._open = asyncio.Event()  # cleared: requests wait (a slow Twilio)
        self._loop.call_soon_threadsafe(self._open.set)
        self.waiting = 0  # requests being held now

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # --- control (from the test's thread) ------------------------------------

    def start(self) -> FakeTwilio:
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)

    def close(self) -> None:
        self.stop()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def fail_next(self, status: int, code: int, message: str) -> None:
        """Answer the next create with this error (then normally again)."""
        with self._lock:
            self._errors.append(ScriptedError(status, code, message))

    def hold(self) -> None:
        """Keep every request waiting, unanswered, until :meth:`release`."""
        asyncio.run_coroutine_threadsafe(self._set_open(False), self._loop).result(10)

    def release(self) -> None:
        asyncio.run_coroutine_threadsafe(self._set_open(True), self._loop).result(10)

    async def _set_open(self, value: bool) -> None:
        if value:
            self._open.set()
        else:
            self._open.clear()

    def sent_to(self, number: str) -> list[MessageCall]:
        with self._lock:
            return [m for m in self.messages if m.to == f"whatsapp:{number}"]

    # --- the server ---------------------------------------------------------

    async def _start(self) -> None:
        if self._runner is not None:
            return
        app = web.Application()
        app.router.add_post(
            f"/{API_VERSION}/Accounts/{{account}}/Messages.json", self._create_message
        )
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.port, reuse_address=True).start()
        self._runner = runner

    async def _stop(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    def _authorised(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        expected = base64.b64encode(f"{self.account_sid}:{self.auth_token}".encode()).decode()
        return header == f"Basic {expected}"

    async def _create_message(self, request: web.Request) -> web.Response:
        account = request.match_info["account"]
        if not self._authorised(request) or account != self.account_sid:
            with self._lock:
                self.unauthorised += 1
            return _error(401, 20003, "Authenticate")
        form = {k: str(v) for k, v in (await request.post()).items()}
        if not self._open.is_set():
            self.waiting += 1
            try:
                await self._open.wait()
            finally:
                self.waiting -= 1
        with self._lock:
            scripted = self._errors.pop(0) if self._errors else None
            if scripted is not None:
                self.refused.append(form)
        if scripted is not None:
            return _error(scripted.status, scripted.code, scripted.message)
        if "To" not in form or not ({"Body", "ContentSid", "MediaUrl"} & form.keys()):
            return _error(400, 21619, "A text message body or media URL must be specified.")
        sid = "SM" + secrets.token_hex(16)
        with self._lock:
            self.messages.append(MessageCall(sid, form))
        return web.json_response(self._resource(sid, form), status=201)

    def _resource(self, sid: str, form: dict[str, str]) -> dict[str, Any]:
        now = format_datetime(datetime.now(UTC), usegmt=True)
        uri = f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/{sid}"
        return {
            "account_sid": self.account_sid,
            "api_version": API_VERSION,
            "body": form.get("Body", ""),
            "date_created": now,
            "date_sent": None,
            "date_updated": now,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": form.get("From"),
            "messaging_service_sid": None,
            "num_media": "0",
            "num_segments": "1",
            "price": None,
            "price_unit": "USD",
            "sid": sid,
            "status": "queued",
            "subresource_uris": {"media": f"{uri}/Media.json"},
            "to": form["To"],
            "uri": f"{uri}.json",
        }


def _error(status: int, code: int, message: str) -> web.Response:
    return web.json_response(
        {
            "code": code,
            "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status,
        },
        status=status,
    )
