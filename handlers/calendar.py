"""Russian working days for business rules (appeal deadlines, office slots).

The calendar itself is reference data in :mod:`storage.calendar`; this is
the name the handlers use.
"""

from storage.calendar import END_OF_DAY, add_working_days, is_working_day, next_working_days

__all__ = ["END_OF_DAY", "add_working_days", "is_working_day", "next_working_days"]
