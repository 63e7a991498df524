"""Register drift: what the register declares (or the ledger shows was sent) that the notice no longer allows.

- The policy lint (vendorprivacy.policy.lint) against today's notice: a feed field whose data category the
  notice does not declare for the vendor's recipient category, a purpose it does not declare, a recipient
  category it no longer has, missing consent rules. Its errors are critical (tonight's feeds would send it),
  its warnings are warnings.
- A vendor registered under a recipient category the notice says receives no customer records (site tags,
  the customer's own posts): critical.
- Feeds and vendors the ledger shows delivered to in the last 12 months but the register no longer declares:
  the vendor may still hold that data. Warning.
"""
from __future__ import annotations

import datetime as dt
import re

import sqlalchemy as sa

from vendorprivacy.ledger import tables as t
from vendorprivacy.policy import lint

from .context import AuditContext
from .findings import CRITICAL, WARNING, Finding

_WHERE = re.compile(r"vendor '(?P<vendor>[^']+)'(?: › feed '(?P<feed>[^']+)')?(?: › field '(?P<field>[^']+)')?")


def drift(ctx: AuditContext) -> tuple[list[Finding], dict]:
    findings: list[Finding] = []
    problems = lint(ctx.register, ctx.notice)
    for p in problems:
        m = _WHERE.search(p.where)
        vendor, feed, field = (m.group("vendor"), m.group("feed"), m.group("field")) if m else (None, None, None)
        severity = CRITICAL if p.severity == "error" else WARNING
        findings.append(Finding(
            "register_drift", severity, p.message, vendor, feed,
            "Bring the register back within the notice (or update the notice, with legal review) before the "
            "feed runs again; `vendorprivacy policy check` shows the same." if severity == CRITICAL else
            "Review the register against the notice.",
            {"where": p.where, "field": field, "rule": "policy_lint"}))
    for v in ctx.register.vendors.values():
        rc = ctx.notice.recipient_categories.get(v.recipient_category)
        if rc is not None and rc.channel != "customer_records":
            for feed in v.feeds:
                findings.append(Finding(
                    "register_drift", CRITICAL,
                    f"the notice says {rc.title} receive no customer records ({rc.channel}), but this feed sends them",
                    v.vendor, feed.id, "Move the vendor to the right recipient category or stop the feed.",
                    {"recipient_category": v.recipient_category, "channel": rc.channel, "rule": "channel"}))
    since = ctx.day - dt.timedelta(days=365)
    d = t.deliveries.c
    q = (sa.select(d.vendor, d.feed_id, sa.func.max(d.logical_date), sa.func.count())
         .where(d.status == "delivered", d.logical_date >= since, d.logical_date <= ctx.day)
         .group_by(d.vendor, d.feed_id))
    with ctx.ledger.engine.connect() as conn:
        sent = list(conn.execute(q))
    declared = {(v.vendor, f.id) for v, f in ctx.register.feeds()}
    for vendor, feed_id, last, n in sent:
        if (vendor, feed_id) in declared:
            continue
        gone = "vendor" if vendor not in ctx.register.vendors else "feed"
        findings.append(Finding(
            "register_drift", WARNING,
            f"the register no longer declares this {gone}, but it received {n} deliveries in the last 12 months "
            f"(last {last})", vendor, feed_id,
            "The vendor may still hold the data: ask it to delete it (erasure process) or restore the register entry.",
            {"deliveries": n, "last_delivery": str(last), "rule": f"{gone}_no_longer_declared"}))
    return findings, {"lint_problems": len(problems), "feeds_declared": len(declared), "feeds_sent_12m": len(sent)}
