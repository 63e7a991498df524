"""Who is who in the stack's synthetic shop, and what each sandbox vendor holds about a person, computed from
the raw shop values independently of the pipeline and the erasure code."""
from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import sqlalchemy as sa

from vendorprivacy.minimise import normalise as n


def customer(shop: Path, customer_id) -> dict:
    con = sqlite3.connect(shop)
    con.row_factory = sqlite3.Row
    row = dict(con.execute("SELECT * FROM customers WHERE customer_id = ?", (customer_id,)).fetchone())
    row["order_ids"] = {str(r[0]) for r in con.execute("SELECT order_id FROM orders WHERE customer_id = ?", (customer_id,))}
    row["call_ids"] = {str(r[0]) for r in con.execute("SELECT call_id FROM support_calls WHERE customer_id = ?",
                                                       (customer_id,))}
    return row


def most_shared_subject(shop: Path, ledger_url: str, keys) -> tuple[dict, set[str]]:
    """The customer the most vendors received (payflow among them if possible), and those vendors."""
    eng = sa.create_engine(ledger_url)
    with eng.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT ds.subject_key, array_agg(DISTINCT d.vendor) FROM delivery_subjects ds "
            "JOIN deliveries d ON d.delivery_id = ds.delivery_id WHERE d.status = 'delivered' GROUP BY 1")).all()
    eng.dispose()
    best_key, vendors = max(rows, key=lambda r: (len(r[1]), "payflow" in r[1], r[0]))
    con = sqlite3.connect(shop)
    for (cid,) in con.execute("SELECT customer_id FROM customers"):
        if keys.subject_key_of(cid) == best_key:
            return customer(shop, cid), set(vendors)
    raise LookupError("subject key not in the shop")


def held(vendors, person: dict, keys) -> dict[str, list[dict]]:
    """What each vendor holds about the person (matched on what its feed carries)."""
    email = n.email(person["email"])
    matchers = {
        "adgrid": lambda r: r.get("email_sha256") == hashlib.sha256(email.encode()).hexdigest(),
        "socialreach": lambda r: r.get("email_sha256") == hashlib.sha256(
            n.email_strip_plus_tag(person["email"]).encode()).hexdigest(),
        "mailwave": lambda r: r.get("email") == email,
        "reviewhub": lambda r: r.get("reviewer_token") == n.hmac_hex(keys.vendor_token_key("reviewhub"), email),
        "fraudshield": lambda r: str(r.get("order_id")) in person["order_ids"],
        "payflow": lambda r: str(r.get("order_id")) in person["order_ids"],
        "parcelpost": lambda r: str(r.get("order_id")) in person["order_ids"],
        "callvault": lambda r: str(r.get("call_id")) in person["call_ids"],
    }
    return {v: [r for r in vendors.records(v) if match(r)] for v, match in matchers.items()}
