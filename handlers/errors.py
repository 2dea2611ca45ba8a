"""The root of the handlers' errors: one base class, a subclass per area."""

from __future__ import annotations


class HandlerError(Exception):
    """A business action could not be done (data missing, rule broken)."""
