"""Erasure deadlines: requests and (request, vendor) pairs at risk of missing, or past, their legal due date.

The check itself is vendorprivacy.erasure.alerts.deadline_check (the erasure DAG's last task runs it too);
here its alerts become findings: overdue is critical, at risk and a vendor slower than its register promise
are warnings. Each alert is recorded once in the request's timeline. The chart data is every open pair's
days to its due date, per vendor.
"""
from __future__ import annotations

from .context import AuditContext
from .findings import CRITICAL, WARNING, Finding

ADVICE = {
    "overdue": "The legal due date has passed: chase the vendor today (its contact is in the register), and record "
               "the outcome; if the request can still be extended (once, with notice), do so.",
    "at_risk": "Due soon: chase the vendor, or use the one extension the law allows (with notice to the person).",
    "vendor_late": "The vendor has not answered within the time it promised: chase it.",
}
BUCKETS = [("overdue", None, -1), ("0–7 days", 0, 7), ("8–14 days", 8, 14), ("15–30 days", 15, 30),
           ("31+ days", 31, None)]


def bucket_of(days_left: int) -> str:
    for label, lo, hi in BUCKETS:
        if (lo is None or days_left >= lo) and (hi is None or days_left <= hi):
            return label
    return BUCKETS[-1][0]


def check(ctx: AuditContext) -> tuple[list[Finding], dict]:
    from vendorprivacy.erasure import alerts
    from vendorprivacy.erasure import store as st

    store = ctx.erasure_store
    found = alerts.deadline_check(store, ctx.day, margin_days=ctx.margin_days, register=ctx.register,
                                  record=ctx.record_alerts)
    findings = []
    for a in found:
        feeds = [f.id for f in ctx.register.vendors[a.vendor].feeds] if a.vendor in ctx.register.vendors else []
        when = f"{-a.days_left} day(s) overdue" if a.days_left < 0 else f"{a.days_left} day(s) left"
        who = "the vendor" if a.vendor else "the request (not yet sent to any vendor)"
        findings.append(Finding(
            "deadline", CRITICAL if a.level == "overdue" else WARNING,
            f"{a.regulation.upper()} {a.request_type.replace('_', '-')} {a.ticket}: {who} is '{a.status}', "
            f"due {a.due} ({when})", a.vendor, ", ".join(feeds) or None, ADVICE[a.level],
            {"level": a.level, "ticket": a.ticket, "request_id": a.request_id, "status": a.status,
             "due": a.due.isoformat(), "days_left": a.days_left, "first_raised_tonight": a.new, "feeds": feeds,
             "rule": f"deadline_{a.level}"}))
    counted: dict[tuple[str, str, str], int] = {}   # (vendor, bucket, status) -> open pairs: XCom stays small
    for p in store.pairs(statuses=st.OPEN):
        key = (p.vendor, bucket_of((p.due - ctx.day).days), p.status)
        counted[key] = counted.get(key, 0) + 1
    open_pairs = [{"vendor": v, "bucket": b, "status": s, "count": n} for (v, b, s), n in sorted(counted.items())]
    waiting = [r for r in store.requests(statuses=[st.FILED])]
    stats = {"alerts": len(found), "open_pairs": sum(counted.values()), "requests_not_yet_sent": len(waiting),
             "by_level": {lvl: sum(a.level == lvl for a in found) for lvl in alerts.LEVELS}}
    return findings, {**stats, "pairs": open_pairs}

