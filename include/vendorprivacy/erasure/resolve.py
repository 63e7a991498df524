"""Find a subject in the shop database: every customer record matching the filed e-mail or phone, and what
those records hold that any vendor might know them by (e-mails, phones, order ids, device and cookie ids).

Matching is on normal forms: an e-mail matches when trimmed and lower-cased it equals the filed one (a
'+tag' is part of the address: a tagged and an untagged address are not assumed to be the same person);
a phone matches when it parses (with the customer's phone country) to the same E.164 number. Many
subjects are resolved with a few set-based queries, so a batch of 1,000 costs about as much as one.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Mapping

import sqlalchemy as sa

from .requests import SubjectIdentity

_WS = " \t\r\n"
_CHUNK = 500


@dataclass
class ResolvedSubject:
    """What the shop knows of one subject (the union over every matching customer record)."""
    customer_ids: list[int] = field(default_factory=list)
    emails: list[str] = field(default_factory=list)                    # as stored, and as filed
    phones: list[tuple[str, str | None]] = field(default_factory=list) # (as stored or filed, region)
    order_ids: list[int] = field(default_factory=list)
    device_ids: list[str] = field(default_factory=list)
    cookie_ids: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"customer_ids": self.customer_ids, "emails": self.emails, "phones": [list(p) for p in self.phones],
                "order_ids": self.order_ids, "device_ids": self.device_ids, "cookie_ids": self.cookie_ids}

    @classmethod
    def from_json(cls, d: Mapping) -> "ResolvedSubject":
        return cls(list(d.get("customer_ids", [])), list(d.get("emails", [])),
                   [(p[0], p[1]) for p in d.get("phones", [])], list(d.get("order_ids", [])),
                   list(d.get("device_ids", [])), list(d.get("cookie_ids", [])))

    def counts(self) -> dict[str, int]:
        return {"customers": len(self.customer_ids), "emails": len(self.emails), "phones": len(self.phones),
                "orders": len(self.order_ids), "devices": len(self.device_ids)}


def _engine(url: str) -> sa.Engine:
    from vendorprivacy.source import engine

    return engine(url)


def _digits(col):
    expr = col
    for ch in (" ", "-", "(", ")", ".", "/", "+"):
        expr = sa.func.replace(expr, ch, "")
    return expr


def _norm_email_sql(col, dialect: str):
    trimmed = sa.func.btrim(col, _WS) if dialect == "postgresql" else sa.func.trim(col, _WS)
    return sa.func.lower(trimmed)


def _add(lst: list, value) -> None:
    if value is not None and value not in lst:
        lst.append(value)


def resolve_many(shop_url: str, identities: Mapping[str, SubjectIdentity]) -> dict[str, ResolvedSubject]:
    """{key: identity} -> {key: ResolvedSubject}; a subject the shop does not know resolves to its filed
    identifiers only (service providers are still told, by those)."""
    import phonenumbers

    from vendorprivacy.minimise.normalise import email as norm_email, phone_e164

    eng = _engine(shop_url)
    dialect = eng.dialect.name
    c = sa.table("customers", sa.column("customer_id"), sa.column("email"), sa.column("phone"), sa.column("phone_country"))
    ap = sa.table("appointments", sa.column("customer_id"), sa.column("email"))
    sc = sa.table("support_calls", sa.column("customer_id"), sa.column("phone"))
    orders = sa.table("orders", sa.column("order_id"), sa.column("customer_id"))
    devices = sa.table("devices", sa.column("device_id"), sa.column("customer_id"), sa.column("cookie_id"))

    by_email: dict[str, set[str]] = {}
    by_phone: dict[str, set[str]] = {}
    for key, ident in identities.items():
        for e in ident.emails:
            by_email.setdefault(e, set()).add(key)
        for p, _ in ident.phones:
            by_phone.setdefault(p, set()).add(key)

    matched: dict[str, set[int]] = {k: set() for k in identities}
    with eng.connect() as conn:
        # e-mails: customers and showroom appointments (both carry the customer id)
        wanted = sorted(by_email)
        for table in (c, ap):
            expr = _norm_email_sql(table.c.email, dialect)
            for i in range(0, len(wanted), _CHUNK):
                part = wanted[i:i + _CHUNK]
                for cid, raw in conn.execute(sa.select(table.c.customer_id, table.c.email).where(expr.in_(part))):
                    for key in by_email.get(norm_email(raw) or "", ()):
                        matched[key].add(int(cid))
        # phones: candidates by the national number at the end of the digits, confirmed by parsing
        by_len: dict[int, dict[str, str]] = {}
        for e164 in by_phone:
            nsn = phonenumbers.national_significant_number(phonenumbers.parse(e164))
            by_len.setdefault(len(nsn), {})[nsn] = e164
        for length, nsns in by_len.items():
            wanted_nsn = sorted(nsns)
            for table, region_join in ((c, False), (sc, True)):
                digits = _digits(table.c.phone)
                tail = sa.func.substr(digits, sa.func.length(digits) - length + 1)
                for i in range(0, len(wanted_nsn), _CHUNK):
                    part = wanted_nsn[i:i + _CHUNK]
                    if region_join:
                        q = (sa.select(table.c.customer_id, table.c.phone, c.c.phone_country)
                             .select_from(table.join(c, c.c.customer_id == table.c.customer_id)).where(tail.in_(part)))
                    else:
                        q = sa.select(c.c.customer_id, c.c.phone, c.c.phone_country).where(tail.in_(part))
                    for cid, raw, region in conn.execute(q):
                        e164 = phone_e164(raw, region)
                        for key in by_phone.get(e164 or "", ()):
                            matched[key].add(int(cid))

        all_ids = sorted({i for ids in matched.values() for i in ids})
        info: dict[int, dict] = {i: {"emails": [], "phones": [], "orders": [], "devices": [], "cookies": []} for i in all_ids}
        for i in range(0, len(all_ids), _CHUNK):
            part = all_ids[i:i + _CHUNK]
            for cid, email, phone, region in conn.execute(
                    sa.select(c.c.customer_id, c.c.email, c.c.phone, c.c.phone_country).where(c.c.customer_id.in_(part))):
                _add(info[cid]["emails"], email)
                _add(info[cid]["phones"], (phone, region))
            for cid, phone, region in conn.execute(
                    sa.select(sc.c.customer_id, sc.c.phone, c.c.phone_country)
                    .select_from(sc.join(c, c.c.customer_id == sc.c.customer_id)).where(sc.c.customer_id.in_(part))):
                _add(info[cid]["phones"], (phone, region))
            for oid, cid in conn.execute(sa.select(orders.c.order_id, orders.c.customer_id).where(orders.c.customer_id.in_(part))):
                _add(info[cid]["orders"], oid)
            for did, cid, cookie in conn.execute(
                    sa.select(devices.c.device_id, devices.c.customer_id, devices.c.cookie_id).where(devices.c.customer_id.in_(part))):
                _add(info[cid]["devices"], did)
                _add(info[cid]["cookies"], cookie)

    out: dict[str, ResolvedSubject] = {}
    for key, ident in identities.items():
        rs = ResolvedSubject()
        for cid in sorted(matched[key]):
            rs.customer_ids.append(cid)
            for e in info[cid]["emails"]:
                _add(rs.emails, e)
            for p in info[cid]["phones"]:
                _add(rs.phones, p)
            rs.order_ids.extend(o for o in sorted(info[cid]["orders"]) if o not in rs.order_ids)
            for d in info[cid]["devices"]:
                _add(rs.device_ids, d)
            for k in info[cid]["cookies"]:
                _add(rs.cookie_ids, k)
        # the filed identifiers too (the subject gave them to us to be found by): duplicates by normal form skipped
        known_emails = {norm_email(e) for e in rs.emails}
        for e in ident.emails:
            if e not in known_emails:
                rs.emails.append(e)
        known_phones = {phone_e164(p, r) for p, r in rs.phones}
        for p, r in ident.phones:
            if p not in known_phones:
                rs.phones.append((p, r))
        out[key] = rs
    return out


def resolve_subject(shop_url: str, identity: SubjectIdentity) -> ResolvedSubject:
    return resolve_many(shop_url, {"one": identity})["one"]


def under_13_customers(shop_url: str, today: dt.date) -> list[dict]:
    """Customers younger than 13 on `today` (the notice: never shared; deleted when found)."""
    from vendorprivacy.minimise.eligibility import born_by

    eng = _engine(shop_url)
    q = sa.text("SELECT customer_id, email, phone, phone_country, is_eea FROM customers "
                "WHERE birth_date > :born_by ORDER BY customer_id")
    with eng.connect() as conn:
        return [dict(r) for r in conn.execute(q, {"born_by": born_by(today, 13)}).mappings()]


def subject_keys_of(resolved: ResolvedSubject, keys) -> list[str]:
    return [keys.subject_key_of(cid) for cid in resolved.customer_ids]
