"""PostgreSQL goes away while Twilio's webhooks arrive: the webhook answers 5xx
(so Twilio delivers again) and keeps nothing half-done; the delivery Twilio
repeats once the database is back is answered, once."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from bot.app import create_app
from config import Settings
from tests.bot.test_whatsapp import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    STATUS,
    Customer,
    inbound_form,
    sign,
    twilio_overrides,
)
from tests.conftest import (
    cut_pg_database,
    make_settings,
    own_pg_database,
    reopen_pg_database,
)
from tests.fakes.twilio_api import FakeTwilio

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def twilio() -> Iterator[FakeTwilio]:
    fake = FakeTwilio(ACCOUNT_SID, AUTH_TOKEN).start()
    yield fake
    fake.close()


@pytest.fixture(scope="module")
def pg_wa_settings(nlu_model_path: Path, twilio: FakeTwilio) -> Iterator[Settings]:
    with own_pg_database("wa_outage") as url:
        yield make_settings(url, nlu_model_path=nlu_model_path, **twilio_overrides(twilio))


def test_postgres_down_while_webhooks_arrive_nothing_accepted_is_lost(
    pg_wa_settings: Settings, twilio: FakeTwilio
) -> None:
    name = pg_wa_settings.database_url.rsplit("/", 1)[1]
    with TestClient(create_app(pg_wa_settings)) as client:
        me = Customer(client, twilio)
        assert me.say("Здравствуйте")
        first_sid = me.calls()[0].sid

        cut_pg_database(name)
        try:
            during = inbound_form(me.number, "Как оплатить?")
            for _ in range(2):  # Twilio tries again; still down
                answer = me.post(during)
                assert answer.status_code == 503
                assert "<Response" not in answer.text
            # A new customer (whose number is not known yet) is refused the same way.
            stranger = Customer(client, twilio)
            assert stranger.post(inbound_form(stranger.number, "Алло")).status_code == 503
            # Status callbacks too: Twilio sends them again.
            url = me.calls()[0].form["StatusCallback"]
            status = {"MessageSid": first_sid, "MessageStatus": "delivered"}
            got = client.post(
                url.split("bot.example.test", 1)[1],
                data=status,
                headers={"X-Twilio-Signature": sign(url, status)},
            )
            assert got.status_code == 503
            assert me.received() == []
        finally:
            reopen_pg_database(name)

        # Twilio's next delivery of the same message is answered, once.
        again = me.post(during)
        assert again.status_code == 200, again.text
        answers = me.received()
        assert answers
        assert "счёт" in "\n".join(answers).lower()
        assert me.post(during).status_code == 200
        assert me.received() == []
        assert client.post(STATUS, data=status).status_code == 401  # unsigned, still refused
