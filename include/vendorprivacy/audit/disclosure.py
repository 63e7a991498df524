"""The right to know, for one person: the categories of their personal data shared with each category of third
party in the last 12 months, from the delivery ledger — never the data itself.

The person is found in the shop by the e-mail address or phone number they gave (vendorprivacy.erasure.resolve:
the same matching the erasure process uses); every matching customer record's pseudonymous subject key is looked
up in the ledger's record of who each delivery carried. The report names the privacy team's ticket, not the
person: it holds no identifier, only recipient categories, vendors, data categories (fideslang), purposes,
dates and counts. Written as JSON and HTML to <reports>/disclosure/<ticket>.{json,html}.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import re
from html import escape
from pathlib import Path

import sqlalchemy as sa

from vendorprivacy.ledger import tables as t

from .datamap import label

FORMAT = "vendorprivacy.disclosure/1"
_TICKET = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,63}$")


class DisclosureError(ValueError):
    pass


def subject_keys(shop_url: str, keys, *, email: str | None = None, phone: str | None = None,
                 country: str | None = None) -> list[str]:
    """Subject keys of every customer record matching the e-mail or phone (normal forms, as erasure matches)."""
    from vendorprivacy.erasure.requests import SubjectIdentity
    from vendorprivacy.erasure.resolve import resolve_many
    from vendorprivacy.minimise.normalise import email as norm_email
    from vendorprivacy.minimise.normalise import phone_e164

    emails = tuple(e for e in [norm_email(email)] if e) if email else ()
    phones = ()
    if phone:
        e164 = phone_e164(phone, country)
        if not e164:
            raise DisclosureError("the phone number is not valid for the country given")
        phones = ((e164, country),)
    if not emails and not phones:
        raise DisclosureError("give an e-mail address or a phone number (with its country)")
    resolved = resolve_many(shop_url, {"subject": SubjectIdentity(emails, phones)})["subject"]
    return [keys.subject_key_of(cid) for cid in resolved.customer_ids]


def build(ledger, register, notice, keys_of_subject: list[str], *, ticket: str, today: dt.date,
          months: int = 12) -> dict:
    if not _TICKET.match(ticket or ""):
        raise DisclosureError("the ticket reference must be letters, digits and . _ / - (never an e-mail or a name)")
    since = today - dt.timedelta(days=round(months * 365 / 12))
    d, s = t.deliveries.c, t.delivery_subjects.c
    found = []
    with ledger.engine.connect() as conn:
        ks = sorted(set(keys_of_subject))
        for i in range(0, len(ks), 500):
            q = (sa.select(d.delivery_id, d.vendor, d.feed_id, d.logical_date, d.fields).distinct()
                 .join(t.delivery_subjects, s.delivery_id == d.delivery_id)
                 .where(s.subject_key.in_(ks[i:i + 500]), d.status == "delivered", d.logical_date >= since,
                        d.logical_date <= today))
            found += [dict(r._mapping) for r in conn.execute(q)]
    groups: dict[str, dict] = {}
    seen_deliveries = set()
    for r in found:
        if r["delivery_id"] in seen_deliveries:
            continue
        seen_deliveries.add(r["delivery_id"])
        v = register.vendors.get(r["vendor"])
        rc_key = v.recipient_category if v else "unknown"
        rc = notice.recipient_categories.get(rc_key)
        g = groups.setdefault(rc_key, {
            "recipient_category": rc_key, "title": rc.title if rc else "Recipient no longer in the register",
            "relationship": ("third party (sale/sharing)" if rc.relationship == "third_party" else "service provider")
            if rc else "unknown",
            "vendors": set(), "purposes": set(), "categories": set(), "deliveries": 0, "first": None, "last": None})
        g["vendors"].add(v.name if v else r["vendor"])
        if v:
            g["purposes"].add(v.purpose)
        g["categories"].update(f.get("category") for f in (r["fields"] or []) if f.get("category"))
        g["deliveries"] += 1
        day = str(r["logical_date"])[:10]
        g["first"] = min(g["first"] or day, day)
        g["last"] = max(g["last"] or day, day)
    recipients = []
    for key in sorted(groups):
        g = groups[key]
        recipients.append({**g, "vendors": sorted(g["vendors"]),
                           "purposes": [{"key": p, "name": label(p)} for p in sorted(g["purposes"])],
                           "categories": [{"key": c, "name": label(c)} for c in sorted(g["categories"])]})
    return {"format": FORMAT, "ticket": ticket, "period": {"from": since.isoformat(), "to": today.isoformat()},
            "customer_records_found": len(set(keys_of_subject)),
            "generated_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "recipient_categories": recipients,
            "sold_or_shared": any(r["relationship"].startswith("third party") for r in recipients)}


def render_html(report: dict) -> str:
    blocks = []
    for r in report["recipient_categories"]:
        cats = "".join(f"<li>{escape(c['name'])} <code>{escape(c['key'])}</code></li>" for c in r["categories"])
        purposes = ", ".join(escape(p["name"]) for p in r["purposes"]) or "—"
        blocks.append(f"""<section><h2>{escape(r['title'])}</h2>
<p>{escape(r['relationship'])} · {escape(', '.join(r['vendors']))} · {r['deliveries']} disclosure(s) between
{escape(r['first'])} and {escape(r['last'])} · purpose: {purposes}</p><ul>{cats}</ul></section>""")
    none = "" if blocks else "<p><b>None of your personal data was shared with a third party in this period.</b></p>"
    sold = ("Some of it was shared with advertising partners: under the CCPA this is a 'sale' or 'sharing', which you "
            "can opt out of at any time." if report["sold_or_shared"] else "None of it was sold or shared for advertising.")
    return f"""<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">
<title>Your personal data shared with others ({escape(report['ticket'])})</title>
<style>body{{font-family:system-ui,Segoe UI,Roboto,Helvetica,Arial,sans-serif;max-width:780px;margin:32px auto;color:#1d1d1f;
line-height:1.45}}section{{border-left:4px solid #1f77b4;padding-left:14px;margin:18px 0}}code{{color:#666;font-size:12px}}</style>
</head><body><h1>What we shared about you, and with whom</h1>
<p>Request {escape(report['ticket'])}. From {escape(report['period']['from'])} to {escape(report['period']['to'])}, these
categories of your personal data were disclosed to these categories of recipients. This lists the <i>kinds</i> of
data, never the data itself. {escape(sold)}</p>{none}{''.join(blocks)}
<p style="color:#666;font-size:12px">Generated {escape(report['generated_at'])} from the delivery ledger.</p></body></html>
"""


def write(report: dict, folder: Path) -> dict[str, Path]:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", report["ticket"])
    paths = {"json": folder / f"{stem}.json", "html": folder / f"{stem}.html"}
    for key, text in (("json", json.dumps(report, indent=2)), ("html", render_html(report))):
        tmp = paths[key].with_name(f".{paths[key].name}.tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, paths[key])
    return paths
