"""Legal deadlines with fixed dates: business days, month clamping, extensions, at-risk and overdue."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pytest

from vendorprivacy.erasure import deadlines as d

D = dt.date


@pytest.mark.parametrize("start,n,expected", [
    (D(2026, 11, 2), 10, D(2026, 11, 16)),    # Monday + 10 business days = Monday two weeks on
    (D(2026, 11, 6), 1, D(2026, 11, 9)),      # Friday + 1 = Monday
    (D(2026, 11, 7), 1, D(2026, 11, 9)),      # received on a Saturday: the first business day after
    (D(2026, 11, 8), 10, D(2026, 11, 20)),    # Sunday + 10
    (D(2026, 11, 2), 0, D(2026, 11, 2)),
    (D(2026, 11, 2), 15, D(2026, 11, 23)),
])
def test_add_business_days(start, n, expected):
    assert d.add_business_days(start, n) == expected


def test_business_days_skip_holidays():
    # Thanksgiving (26 Nov 2026) and the day after
    holidays = [D(2026, 11, 26), D(2026, 11, 27)]
    assert d.add_business_days(D(2026, 11, 20), 5) == D(2026, 11, 27)
    assert d.add_business_days(D(2026, 11, 20), 5, holidays) == D(2026, 12, 1)
    assert not d.is_business_day(D(2026, 11, 26), holidays) and d.is_business_day(D(2026, 11, 25), holidays)
    with pytest.raises(ValueError):
        d.add_business_days(D(2026, 11, 20), -1)


@pytest.mark.parametrize("start,months,expected", [
    (D(2026, 1, 31), 1, D(2026, 2, 28)),
    (D(2028, 1, 31), 1, D(2028, 2, 29)),      # leap year
    (D(2026, 3, 31), 1, D(2026, 4, 30)),
    (D(2026, 1, 15), 1, D(2026, 2, 15)),
    (D(2026, 12, 31), 1, D(2027, 1, 31)),
    (D(2026, 11, 30), 3, D(2027, 2, 28)),
    (D(2026, 3, 31), -1, D(2026, 2, 28)),
])
def test_add_months_clamps_to_month_end(start, months, expected):
    assert d.add_months(start, months) == expected


def test_ccpa_erasure():
    x = d.deadlines_for("ccpa", "erasure", D(2026, 11, 2))
    assert x.ack_due == D(2026, 11, 16)              # 10 business days
    assert x.due == D(2026, 12, 17)                  # 45 calendar days
    assert x.extended_due == D(2027, 1, 31)          # +45 once


def test_gdpr_erasure_one_month_extendable_by_two():
    x = d.deadlines_for("gdpr", "erasure", D(2026, 1, 31))
    assert (x.ack_due, x.due, x.extended_due) == (None, D(2026, 2, 28), D(2026, 4, 30))
    x = d.deadlines_for("gdpr", "erasure", D(2026, 11, 20))
    assert (x.due, x.extended_due) == (D(2026, 12, 20), D(2027, 2, 20))


@pytest.mark.parametrize("regulation", ["ccpa", "gdpr"])
def test_opt_out_15_business_days_no_extension(regulation):
    x = d.deadlines_for(regulation, "opt_out", D(2026, 11, 20))  # a Friday
    assert (x.ack_due, x.due, x.extended_due) == (None, D(2026, 12, 11), None)
    holidays = [D(2026, 11, 26), D(2026, 11, 27)]
    assert d.deadlines_for(regulation, "opt_out", D(2026, 11, 20), holidays).due == D(2026, 12, 15)


def test_unknown_kinds_refused():
    with pytest.raises(ValueError, match="regulation"):
        d.deadlines_for("hipaa", "erasure", D(2026, 1, 1))
    with pytest.raises(ValueError, match="request type"):
        d.deadlines_for("gdpr", "access", D(2026, 1, 1))


def test_effective_due_only_after_notice():
    assert d.effective_due(D(2026, 12, 17), D(2027, 1, 31), extended=False) == D(2026, 12, 17)
    assert d.effective_due(D(2026, 12, 17), D(2027, 1, 31), extended=True) == D(2027, 1, 31)
    assert d.effective_due(D(2026, 12, 11), None, extended=True) == D(2026, 12, 11)


@dataclass
class P:
    due: dt.date
    final: bool = False


@pytest.mark.parametrize("now,margin,risk,late", [
    (D(2026, 12, 1), 7, False, False),    # 16 days left
    (D(2026, 12, 10), 7, True, False),    # 7 days left: inside the margin
    (D(2026, 12, 17), 7, True, False),    # the due date itself is still in time
    (D(2026, 12, 18), 7, True, True),     # one day late
    (dt.datetime(2026, 12, 18, 0, 5), 0, True, True),
    (D(2026, 12, 16), 0, False, False),
])
def test_at_risk_and_overdue(now, margin, risk, late):
    p = P(D(2026, 12, 17))
    assert d.at_risk(p, now, margin) is risk
    assert d.overdue(p, now) is late
    done = P(D(2026, 12, 17), final=True)
    assert not d.at_risk(done, now, margin) and not d.overdue(done, now)
    assert d.days_left(p.due, D(2026, 12, 20)) == -3
