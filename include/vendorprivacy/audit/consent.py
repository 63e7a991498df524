"""Consent drift: people a vendor last received who may no longer be shared, and what was done about it tonight.

For every feed, the latest delivery up to the audited night is what the vendor last received (for snapshot
feeds: its whole current audience). Each person in it (pseudonymous subject key in the ledger) is held to the
feed's eligibility rules as the shop's data stands now:

  no_sale_share_opt_out  opted out of sale/sharing since          -> "sale_share_opt_out"
  no_gpc                 sent a Global Privacy Control signal     -> "gpc"
  eea_ad_consent         EEA resident, advertising consent gone   -> "eea_ad_consent"
  marketing_opt_in       withdrew marketing consent               -> "marketing_opt_in"
  min_age_13 / 16        under 13 / under 16 on the audited night -> "under_13" / "under_16"

Ages only grow, so an age rule failing now failed when the delivery left too (a corrected birth date, or a
feed that should not have included the person): always critical. A consent rule that fails now is drift when
the shop's consent record changed after the delivery; when it changed before, the delivery itself was wrong
(critical). People already suppressed or opted out through an erasure / opt-out request are left to that
process (vendorprivacy.erasure) and only counted.

Advertising partners (third parties: sale/sharing) get a removal list the same night, through their erasure
protocol (vendorprivacy.erasure.protocols: s3_removal_list, sftp_ack or opendsr), as `opt_out` items in their
own identifiers; the batch (id, checksum, size, vendor reference) goes into the finding and into the
audit_removals table, so a person is sent once, not every night until the next delivery replaces the
audience. Service providers (e.g. the e-mail marketing service) are not sent a list: the finding says so.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import logging
import uuid
from collections import Counter

import sqlalchemy as sa

from vendorprivacy.ledger import tables as t
from vendorprivacy.minimise.eligibility import RULE_SQL, born_by

from . import tables as at
from .context import AuditContext
from .findings import CRITICAL, INFO, WARNING, Finding

log = logging.getLogger(__name__)
REMOVAL_NAMESPACE = uuid.UUID("0b7b6c3e-2f4a-4e55-9d0c-6a1e2f3b4c5d")
REASONS = {
    "min_age_13": ("under_13", "under 13"),
    "min_age_16": ("under_16", "under 16"),
    "no_sale_share_opt_out": ("sale_share_opt_out", "opted out of sale/sharing"),
    "no_gpc": ("gpc", "sent a Global Privacy Control signal"),
    "eea_ad_consent": ("eea_ad_consent", "EEA resident without advertising consent"),
    "marketing_opt_in": ("marketing_opt_in", "withdrew marketing consent"),
}
AGE_RULES = frozenset({"min_age_13", "min_age_16"})
_CHUNK = 500


def _latest_deliveries(ledger, day: dt.date) -> dict[str, dict]:
    """{feed_id: latest delivered delivery (id, vendor, logical_date, delivered_at)} up to `day`."""
    d = t.deliveries.c
    latest = (sa.select(d.feed_id, sa.func.max(d.logical_date).label("last"))
              .where(d.status == "delivered", d.logical_date <= day).group_by(d.feed_id).subquery())
    q = (sa.select(d.delivery_id, d.feed_id, d.vendor, d.logical_date, d.delivered_at)
         .join(latest, sa.and_(latest.c.feed_id == d.feed_id, latest.c.last == d.logical_date))
         .where(d.status == "delivered"))
    with ledger.engine.connect() as conn:
        return {r.feed_id: dict(r._mapping) for r in conn.execute(q)}


class Population:
    """Who fails each eligibility rule on the audited night (customer ids), and their subject keys; cached."""

    def __init__(self, shop_url: str, keys, day: dt.date):
        from vendorprivacy.source import engine

        self.engine = engine(shop_url)
        self.keys = keys
        self.day = day
        self._failing: dict[str, set[int]] = {}
        self._all: set[int] | None = None
        self._key: dict[int, str] = {}

    def _ids(self, sql: str, params: dict) -> set[int]:
        with self.engine.connect() as conn:
            return {int(r[0]) for r in conn.execute(sa.text(sql), params)}

    def failing(self, rule: str) -> set[int]:
        if rule not in self._failing:
            if self._all is None:
                self._all = self._ids("SELECT customer_id FROM customers", {})
            sql = (f"SELECT c.customer_id FROM customers c LEFT JOIN consents k ON k.customer_id = c.customer_id "
                   f"WHERE ({RULE_SQL[rule]})")
            params = {"born_by_13": born_by(self.day, 13), "born_by_16": born_by(self.day, 16), "true": True, "false": False}
            self._failing[rule] = self._all - self._ids(sql, {k: v for k, v in params.items() if f":{k}" in sql})
        return self._failing[rule]

    def key(self, customer_id: int) -> str:
        k = self._key.get(customer_id)
        if k is None:
            k = self._key[customer_id] = self.keys.subject_key_of(customer_id)
        return k

    def consent_updates(self, ids: list[int]) -> dict[int, dt.datetime | None]:
        out: dict[int, dt.datetime | None] = {}
        with self.engine.connect() as conn:
            for i in range(0, len(ids), _CHUNK):
                part = ids[i:i + _CHUNK]
                for cid, at_ in conn.execute(sa.text("SELECT customer_id, updated_at FROM consents WHERE customer_id IN "
                                                     f"({','.join(str(int(x)) for x in part)})")):
                    out[int(cid)] = _as_dt(at_)
        return out


def _as_dt(v) -> dt.datetime | None:
    if v is None or isinstance(v, dt.datetime):
        return v
    return dt.datetime.fromisoformat(str(v))


def _subjects(shop_url: str, ids: list[int]):
    """What the shop holds for each customer id that a vendor could know them by (ResolvedSubject), and is_eea."""
    from vendorprivacy.erasure.resolve import ResolvedSubject
    from vendorprivacy.source import engine

    out = {i: ResolvedSubject(customer_ids=[i]) for i in ids}
    eea: dict[int, bool] = {}
    with engine(shop_url).connect() as conn:
        for i in range(0, len(ids), _CHUNK):
            part = ",".join(str(int(x)) for x in ids[i:i + _CHUNK])
            for cid, email, phone, region, is_eea in conn.execute(sa.text(
                    f"SELECT customer_id, email, phone, phone_country, is_eea FROM customers WHERE customer_id IN ({part})")):
                out[cid].emails.append(email)
                out[cid].phones.append((phone, region))
                eea[cid] = bool(is_eea)
            for oid, cid in conn.execute(sa.text(f"SELECT order_id, customer_id FROM orders WHERE customer_id IN ({part}) "
                                                 "ORDER BY order_id")):
                out[cid].order_ids.append(oid)
            for did, cid, cookie in conn.execute(sa.text(
                    f"SELECT device_id, customer_id, cookie_id FROM devices WHERE customer_id IN ({part}) ORDER BY device_id")):
                out[cid].device_ids.append(did)
                out[cid].cookie_ids.append(cookie)
    return out, eea


def _pair_id(batch_id: str, subject_key: str) -> str:
    """A uuid4-shaped pair id fixed by (batch, subject): a re-run of the same night builds the same batch."""
    return str(uuid.UUID(bytes=hashlib.sha256(f"{batch_id}/{subject_key}".encode()).digest()[:16], version=4))


def _already_sent(ledger, vendor: str, delivery_id: str) -> dict[str, dict]:
    c = at.audit_removals.c
    with ledger.engine.connect() as conn:
        return {r.subject_key: dict(r._mapping) for r in conn.execute(
            sa.select(at.audit_removals).where(c.vendor == vendor, c.delivery_id == delivery_id))}


def _send_removals(ctx: AuditContext, vendor, feed_id: str, delivery_id: str, people: dict[int, str],
                   reasons: dict[int, list[str]]) -> dict:
    """Send the vendor one opt_out batch for these people; record it. Returns PII-free facts."""
    from vendorprivacy.erasure.identifiers import vendor_identifiers
    from vendorprivacy.erasure.protocols import ErasureItem

    keys = sorted(people.values())
    batch_id = str(uuid.uuid5(REMOVAL_NAMESPACE, f"{ctx.day}/{vendor.vendor}/{delivery_id}/{','.join(keys)}"))
    subjects, eea = _subjects(ctx.shop_url, sorted(people))
    submitted = dt.datetime.combine(ctx.day, dt.time(23, 30), tzinfo=dt.timezone.utc)
    items, rows, no_identifier = [], [], 0
    for cid, key in sorted(people.items(), key=lambda kv: kv[1]):
        identifiers = vendor_identifiers(vendor, subjects[cid], ctx.keys)
        if not identifiers:
            no_identifier += 1
            continue
        pid = _pair_id(batch_id, key)
        items.append(ErasureItem(pair_id=pid, regulation="gdpr" if eea.get(cid) else "ccpa", request_type="opt_out",
                                 identifiers=identifiers, submitted_at=submitted))
        rows.append({"vendor": vendor.vendor, "subject_key": key, "delivery_id": delivery_id, "feed_id": feed_id,
                     "reason": REASONS[reasons[cid][0]][0], "batch_id": batch_id, "pair_id": pid, "audit_day": ctx.day})
    facts = {"protocol": vendor.erasure.protocol, "batch_id": batch_id, "pairs": len(items),
             "without_identifier": no_identifier}
    if not items:
        return {**facts, "sent": False, "error": "no identifier the vendor can match on"}
    receipt = ctx.protocol(vendor.vendor).submit(batch_id, items)
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    with ctx.ledger.engine.begin() as conn:
        present = {r[0] for r in conn.execute(sa.select(at.audit_removals.c.subject_key).where(
            at.audit_removals.c.vendor == vendor.vendor, at.audit_removals.c.delivery_id == delivery_id))}
        new = [{**r, "sent_at": now, "sha256": receipt.sha256, "vendor_reference": receipt.vendor_reference}
               for r in rows if r["subject_key"] not in present]
        if new:
            conn.execute(at.audit_removals.insert(), new)
    log.info("consent drift: removal list %s sent to %s (%d people, %d bytes)", batch_id, vendor.vendor, len(items),
             receipt.bytes)
    return {**facts, "sent": True, "sha256": receipt.sha256, "bytes": receipt.bytes,
            "vendor_reference": receipt.vendor_reference, "already_submitted": receipt.already_submitted,
            "sent_at": now.isoformat(timespec="seconds")}


def poll_answers(ctx: AuditContext) -> tuple[list[Finding], dict]:
    """Ask partners about removal lists sent on earlier nights that have no final answer yet; record the answers.
    A partner that failed to remove people is critical; one that has not answered within the time its register
    entry promises (erasure.expected_response_days) is a warning. Only pair ids go back to the partner."""
    from vendorprivacy.erasure.protocols import TERMINAL_STATUSES, ErasureItem

    c = at.audit_removals.c
    with ctx.ledger.engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(sa.select(at.audit_removals).where(
            sa.or_(c.outcome.is_(None), c.outcome == "acknowledged")))]
    batches: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        batches.setdefault((r["vendor"], r["batch_id"]), []).append(r)
    findings: list[Finding] = []
    stats = Counter()
    for (vendor_id, batch_id), pairs in sorted(batches.items()):
        vendor = ctx.register.vendors.get(vendor_id)
        if vendor is None:
            continue
        items = [ErasureItem(pair_id=p["pair_id"], regulation="ccpa", request_type="opt_out", identifiers={},
                             submitted_at=_as_dt(p["sent_at"]).replace(tzinfo=dt.timezone.utc)) for p in pairs]
        try:
            outcomes = ctx.protocol(vendor_id).poll(batch_id, items)
        except Exception as e:  # noqa: BLE001 - an unreadable answer is reported, the night goes on
            log.warning("consent drift: answer of %s for removal list %s unreadable: %s", vendor_id, batch_id,
                        type(e).__name__)
            stats["unreadable"] += 1
            outcomes = []
        by_pair = {o.pair_id: o for o in outcomes}
        with ctx.ledger.engine.begin() as conn:
            for o in outcomes:
                conn.execute(at.audit_removals.update().where(c.vendor == vendor_id, c.pair_id == o.pair_id)
                             .values(outcome=o.status, answered_at=o.at.astimezone(dt.timezone.utc).replace(tzinfo=None)))
        got = Counter(by_pair[p["pair_id"]].status if p["pair_id"] in by_pair else (p["outcome"] or "no answer")
                      for p in pairs)
        stats.update(got)
        feed = pairs[0]["feed_id"]
        sent_on = min(_as_dt(p["sent_at"]) for p in pairs).date()
        facts = {"batch_id": batch_id, "answers": dict(sorted(got.items())), "sent_on": str(sent_on),
                 "rule": "removal_answer"}
        if got.get("failed"):
            reasons = sorted({(by_pair[p["pair_id"]].reason or "")[:200] for p in pairs
                              if p["pair_id"] in by_pair and by_pair[p["pair_id"]].status == "failed"})
            findings.append(Finding("consent_drift", CRITICAL, f"the partner failed to remove {got['failed']} people "
                                    f"of removal list {batch_id} (sent {sent_on})", vendor_id, feed,
                                    "Contact the partner: these people opted out and are still in its audience.",
                                    {**facts, "reasons": reasons}))
        elif not set(got) <= TERMINAL_STATUSES and (ctx.day - sent_on).days > vendor.erasure.expected_response_days:
            findings.append(Finding("consent_drift", WARNING, f"no final answer to removal list {batch_id} (sent "
                                    f"{sent_on}) after {(ctx.day - sent_on).days} days", vendor_id, feed,
                                    f"The partner promises an answer within {vendor.erasure.expected_response_days} "
                                    "days: chase it.", facts))
    return findings, {"removal_answers": dict(sorted(stats.items())), "removal_batches_polled": len(batches)}


def drift(ctx: AuditContext) -> tuple[list[Finding], dict]:
    findings_answers, stats_answers = poll_answers(ctx) if ctx.send_removals else ([], {})
    latest = _latest_deliveries(ctx.ledger, ctx.day)
    pop = Population(ctx.shop_url, ctx.keys, ctx.day)
    suppressed, opted_out = ctx.ledger.suppressed(), ctx.ledger.opted_out()
    findings: list[Finding] = []
    everyone: set[str] = set()
    stats = {"feeds": 0, "subjects_checked": 0, "people_checked": 0, "drifted": 0, "removal_lists_sent": 0,
             "people_in_removal_lists": 0}
    for vendor, feed in ctx.register.feeds():
        d = latest.get(feed.id)
        if d is None or not feed.eligibility:
            continue
        stats["feeds"] += 1
        delivered = ctx.ledger.subjects_of(d["delivery_id"])
        stats["subjects_checked"] += len(delivered)
        everyone |= delivered
        reasons: dict[int, list[str]] = {}
        for rule in sorted(set(feed.eligibility)):
            for cid in pop.failing(rule):
                if pop.key(cid) in delivered:
                    reasons.setdefault(cid, []).append(rule)
        if not reasons:
            continue
        rc = ctx.notice.recipient_categories.get(vendor.recipient_category)
        third_party = rc is not None and rc.relationship == "third_party"
        # erased people, and (for sale/sharing) people with an opt-out request, are the erasure process's to handle
        handled = {cid for cid in reasons if pop.key(cid) in suppressed or
                   (third_party and pop.key(cid) in opted_out and not set(reasons[cid]) & AGE_RULES)}
        people = {cid: pop.key(cid) for cid in reasons if cid not in handled}
        if not people:
            continue
        stats["drifted"] += len(people)
        delivered_at = _as_dt(d["delivered_at"])
        updates = pop.consent_updates(sorted(people))
        before: set[int] = set()
        for cid in people:
            if set(reasons[cid]) & AGE_RULES:
                before.add(cid)
            elif updates.get(cid) is None or delivered_at is None or updates[cid] <= delivered_at:
                before.add(cid)
        by_reason = Counter(REASONS[r][0] for cid in people for r in reasons[cid])
        facts = {"delivery_id": d["delivery_id"], "logical_date": str(d["logical_date"]), "people": len(people),
                 "by_reason": dict(sorted(by_reason.items())), "changed_after_delivery": len(people) - len(before),
                 "ineligible_when_delivered": len(before), "handled_by_requests": len(handled),
                 "third_party": third_party, "rule": "consent_drift"}
        summary = ", ".join(f"{n} {REASONS[r][1]}" for r, n in sorted(
            Counter(reasons[cid][0] for cid in people).items()))
        where = f"{vendor.name}'s last delivery ({d['logical_date']})"
        severity = CRITICAL if before else WARNING
        if third_party:
            already = _already_sent(ctx.ledger, vendor.vendor, d["delivery_id"])
            todo = {cid: k for cid, k in people.items() if k not in already}
            facts["already_sent"] = len(people) - len(todo)
            if todo and ctx.send_removals:
                try:
                    facts["removal"] = _send_removals(ctx, vendor, feed.id, d["delivery_id"], todo, reasons)
                except Exception as e:  # noqa: BLE001 - a failed send is a critical finding, not a crash
                    log.warning("consent drift: removal list to %s failed: %s", vendor.vendor, type(e).__name__)
                    facts["removal"] = {"protocol": vendor.erasure.protocol, "sent": False, "error": type(e).__name__}
                if facts["removal"].get("sent"):
                    stats["removal_lists_sent"] += 1
                    stats["people_in_removal_lists"] += facts["removal"]["pairs"]
                else:
                    severity = CRITICAL
            elif todo:
                severity = CRITICAL
                facts["removal"] = {"protocol": vendor.erasure.protocol, "sent": False, "error": "sending disabled"}
            elif not before:
                severity = INFO
            removal = facts.get("removal") or {}
            if removal.get("sent"):
                done = (f"removal list sent tonight by {removal['protocol']} (batch {removal['batch_id']}, "
                        f"{removal['pairs']} people)")
            elif todo:
                done = f"REMOVAL LIST NOT SENT ({removal.get('error')})"
            else:
                days = sorted({str(r['audit_day']) for r in already.values()})
                done = f"removal list already sent ({', '.join(days)})"
            title = f"{len(people)} people in {where} may no longer be shared ({summary}); {done}"
            advice = ("The partner must drop them from its audience; the next delivery leaves them out. "
                      + ("Some were already ineligible when the delivery left: find out why the feed included them."
                         if before else "Nothing else to do unless the partner's answer reports a failure.")
                      if removal.get("sent") or not todo else
                      "Send the removal list (re-run the audit once the vendor is reachable) and check the feed.")
        else:
            title = f"{len(people)} people in {where} may no longer be shared ({summary})"
            advice = ("The vendor is a service provider: no removal list is sent; the next delivery leaves them out. "
                      + ("Some were already ineligible when the delivery left: find out why the feed included them."
                         if before else "If the vendor keeps a list (e.g. subscribers), make sure it is replaced."))
        findings.append(Finding("consent_drift", severity, title, vendor.vendor, feed.id, advice, facts))
    stats["people_checked"] = len(everyone)
    return findings_answers + findings, {**stats, **stats_answers}
