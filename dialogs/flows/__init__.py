"""The registry of every flow the engine knows.

Each flow module exports ``FLOWS``, a tuple of its flow objects, and has no
import side effects. ``ALL_FLOWS`` is the one explicit list the engine uses:
to add a flow, import its module here and add ``*module.FLOWS`` below (one
line per module, grouped by owner). An intent may belong to one flow only;
the engine refuses duplicates at start-up.
"""

from __future__ import annotations

from dialogs.flows import (
    appeal_status,
    billing,
    bonus_balance,
    chitchat,
    connection_request,
    contacts_hours,
    debt_certificate,
    fallback,
    file_appeal,
    greet,
    human_handoff,
    link_account,
    nps,
    office_appointment,
    report_outage,
    submit_reading,
    subscribe_news,
    tariff_info,
)
from dialogs.forms import Flow

ALL_FLOWS: tuple[Flow, ...] = (
    # --- conversation basics (dialog core) ---
    *greet.FLOWS,
    *chitchat.FLOWS,
    *fallback.FLOWS,
    # --- accounts, readings, billing, handoff (dialog core) ---
    *link_account.FLOWS,
    *submit_reading.FLOWS,
    *billing.FLOWS,
    *human_handoff.FLOWS,
    # --- operators (ownership): the NPS question after a resolved chat ---
    *nps.FLOWS,
    # --- service flows (service-flows engineer): add one line per module ---
    *file_appeal.FLOWS,
    *appeal_status.FLOWS,
    *report_outage.FLOWS,
    *connection_request.FLOWS,
    *contacts_hours.FLOWS,
    *tariff_info.FLOWS,
    *bonus_balance.FLOWS,
    *subscribe_news.FLOWS,
    *office_appointment.FLOWS,
    *debt_certificate.FLOWS,
)
