"""Legal deadlines of privacy requests, as pure functions of dates (no clock, no database).

CCPA (Cal. Code Regs. tit. 11 §7021, §7026):
  - erasure: confirm receipt within 10 business days; respond within 45 calendar days of receipt,
    extendable once by 45 more calendar days with notice to the consumer.
  - opt-out of sale/sharing: honour within 15 business days of receipt; no extension.
GDPR (Art. 12(3)): respond within one month of receipt, extendable by two further months where necessary.
  "One month" is the same day number in the next month, clamped to its last day (31 Jan -> 28/29 Feb).
  An objection to marketing/sharing (our opt_out under GDPR) is also held to the 15-business-day opt-out
  rule: it is shorter than a month, and one rule for every opt-out is simpler to run and to prove.
Business days skip Saturdays, Sundays and any holidays passed in. Counting starts the day after receipt.
"""
from __future__ import annotations

import calendar
import datetime as dt
from dataclasses import dataclass
from typing import Iterable

REGULATIONS = ("ccpa", "gdpr")
REQUEST_TYPES = ("erasure", "opt_out")
CCPA_ACK_BUSINESS_DAYS = 10
CCPA_RESPONSE_DAYS = 45
CCPA_EXTENSION_DAYS = 45
GDPR_RESPONSE_MONTHS = 1
GDPR_EXTENSION_MONTHS = 2
OPT_OUT_BUSINESS_DAYS = 15
DEFAULT_MARGIN_DAYS = 7


def is_business_day(day: dt.date, holidays: Iterable[dt.date] = ()) -> bool:
    return day.weekday() < 5 and day not in set(holidays)


def add_business_days(start: dt.date, days: int, holidays: Iterable[dt.date] = ()) -> dt.date:
    """The `days`-th business day after `start` (start itself never counts)."""
    if days < 0:
        raise ValueError("days must be >= 0")
    off = set(holidays)
    day = start
    left = days
    while left:
        day += dt.timedelta(days=1)
        if day.weekday() < 5 and day not in off:
            left -= 1
    return day


def add_months(start: dt.date, months: int) -> dt.date:
    """Same day number `months` later, clamped to the end of a shorter month (31 Jan + 1 -> 28/29 Feb)."""
    index = start.month - 1 + months
    year, month = start.year + index // 12, index % 12 + 1
    return dt.date(year, month, min(start.day, calendar.monthrange(year, month)[1]))


@dataclass(frozen=True)
class Deadlines:
    ack_due: dt.date | None          # CCPA erasure: confirm receipt to the consumer
    due: dt.date                     # respond / honour by
    extended_due: dt.date | None     # the latest possible due date after the one allowed extension (None: none)


def deadlines_for(regulation: str, request_type: str, received: dt.date,
                  holidays: Iterable[dt.date] = ()) -> Deadlines:
    if regulation not in REGULATIONS:
        raise ValueError(f"unknown regulation '{regulation}' (known: {', '.join(REGULATIONS)})")
    if request_type not in REQUEST_TYPES:
        raise ValueError(f"unknown request type '{request_type}' (known: {', '.join(REQUEST_TYPES)})")
    holidays = tuple(holidays)
    if request_type == "opt_out":
        return Deadlines(None, add_business_days(received, OPT_OUT_BUSINESS_DAYS, holidays), None)
    if regulation == "ccpa":
        due = received + dt.timedelta(days=CCPA_RESPONSE_DAYS)
        return Deadlines(add_business_days(received, CCPA_ACK_BUSINESS_DAYS, holidays), due,
                         due + dt.timedelta(days=CCPA_EXTENSION_DAYS))
    return Deadlines(None, add_months(received, GDPR_RESPONSE_MONTHS),
                     add_months(received, GDPR_RESPONSE_MONTHS + GDPR_EXTENSION_MONTHS))


def effective_due(due: dt.date, extended_due: dt.date | None, extended: bool) -> dt.date:
    """The due date in force: the extended one only once the extension was noticed."""
    return extended_due if extended and extended_due else due


def _day(now: dt.datetime | dt.date) -> dt.date:
    return now.date() if isinstance(now, dt.datetime) else now


def days_left(due: dt.date, now: dt.datetime | dt.date) -> int:
    return (due - _day(now)).days


def is_overdue(due: dt.date, now: dt.datetime | dt.date, final: bool = False) -> bool:
    """Still open after the due date (the due date itself is still in time)."""
    return not final and _day(now) > due


def at_risk(pair, now: dt.datetime | dt.date, margin_days: int = DEFAULT_MARGIN_DAYS) -> bool:
    """An open pair whose due date is within `margin_days` (or already past: overdue is at risk too).

    `pair` needs `.due` (date) and `.final` (bool), like store.PairView.
    """
    if pair.final:
        return False
    return days_left(pair.due, now) <= margin_days


def overdue(pair, now: dt.datetime | dt.date) -> bool:
    return is_overdue(pair.due, now, pair.final)
