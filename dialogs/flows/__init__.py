"""The registry of every flow the engine knows.

Each flow module exports ``FLOWS``, a tuple of its flow objects, and has no
import side effects. ``ALL_FLOWS`` is the one explicit list the engine uses:
to add a flow, import its module here and add ``*module.FLOWS`` below (one
line per module, grouped by owner). An intent may belong to one flow only;
the engine refuses duplicates at start-up.
"""

from __future__ import annotations

from dialogs.flows import (
    billing,
    chitchat,
    fallback,
    greet,
    human_handoff,
    link_account,
    submit_reading,
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
    # --- service flows (service-flows engineer): add one line per module ---
)
