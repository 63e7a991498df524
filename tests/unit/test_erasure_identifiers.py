"""Identity resolution in the shop, and each vendor's identifiers built exactly as its feed sent them
(compared with vendorprivacy.minimise.transform.minimise_batch on the same customer)."""
from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from vendorprivacy import source
from vendorprivacy.erasure.identifiers import identifier_counts, vendor_identifiers
from vendorprivacy.erasure.requests import SubjectIdentity
from vendorprivacy.erasure.resolve import resolve_many, resolve_subject, under_13_customers
from vendorprivacy.minimise import normalise as n
from vendorprivacy.minimise.transform import minimise_batch

from tests.unit.test_erasure_support import customer, customers_where, keys, register, shop  # noqa: F401

ALL_TIME = {"window_start": dt.datetime(1900, 1, 1), "window_end": dt.datetime(2100, 1, 1)}
# feed column -> (erasure identifier type) per vendor: what the feed sent that the erasure list must match
FEED_COLUMNS = {
    "adgrid": {"email_sha256": "email", "phone_sha256": "phone"},
    "socialreach": {"email_sha256": "email", "phone_sha256": "phone"},
    "mailwave": {"email": "email"},
    "reviewhub": {"reviewer_token": "email"},
    "fraudshield": {"email_sha256": "email", "order_id": "order_id"},
    "parcelpost": {"order_id": "order_id", "email": "email"},
    "callvault": {"caller_phone": "phone"},
}


def _feed_values(shop_url, vendor, cid, keys) -> dict[str, set[str]]:
    feed = vendor.feeds[0]
    params = ALL_TIME if feed.window == "previous_day" else {}
    out: dict[str, set[str]] = {}
    for batch in source.stream(shop_url, feed.query, params):
        if batch.num_rows == 0:
            continue
        mine = batch.filter(pc.equal(pc.cast(batch.column("customer_id"), pa.int64()), cid))
        if mine.num_rows == 0:
            continue
        sent = minimise_batch(feed, mine, keys.vendor_token_key(vendor.vendor))
        for col, kind in FEED_COLUMNS[vendor.vendor].items():
            out.setdefault(kind, set()).update(v for v in sent.column(col).to_pylist() if v)
    return out


def _subject(shop_url, cid):
    c = customer(shop_url, cid)
    rs = resolve_subject(shop_url, SubjectIdentity(emails=(n.email(c["email"]),)))
    assert rs.customer_ids == [cid]
    return rs


def _pick(shop, kind: str, extra_sql: str = "") -> int:
    url, planted = shop
    ids = set(planted[kind]) if kind else None
    candidates = customers_where(url, f"SELECT customer_id FROM customers c {extra_sql} ORDER BY customer_id")
    return next(i for i in candidates if ids is None or i in ids)


@pytest.mark.parametrize("vendor_id", ["adgrid", "socialreach", "mailwave", "reviewhub", "fraudshield",
                                       "parcelpost", "callvault"])
@pytest.mark.parametrize("kind", ["email_plus_tag", "email_mixed_case", "email_padded", "phone_international_format"])
def test_vendor_identifiers_match_what_the_feed_sent(shop, keys, register, vendor_id, kind):
    url, _ = shop
    vendor = register.vendor(vendor_id)
    needs = {"reviewhub": "WHERE EXISTS (SELECT 1 FROM reviews r WHERE r.customer_id = c.customer_id)",
             "fraudshield": "WHERE EXISTS (SELECT 1 FROM orders o WHERE o.customer_id = c.customer_id)",
             "parcelpost": "WHERE EXISTS (SELECT 1 FROM shipments s JOIN orders o ON o.order_id = s.order_id "
                           "WHERE o.customer_id = c.customer_id)",
             "callvault": "WHERE EXISTS (SELECT 1 FROM support_calls s WHERE s.customer_id = c.customer_id)"}
    try:
        cid = _pick(shop, kind, needs.get(vendor_id, ""))
    except StopIteration:
        cid = _pick(shop, "", needs.get(vendor_id, ""))   # no planted case of this kind with that history
    fed = _feed_values(url, vendor, cid, keys)
    built = vendor_identifiers(vendor, _subject(url, cid), keys)
    assert fed, f"{vendor_id}: the feed sent nothing about customer {cid}"
    for kind_, values in fed.items():
        # everything the feed sent is in the erasure list, in the same form
        assert values <= set(built[kind_]), (vendor_id, kind_)
    if vendor_id in ("adgrid", "socialreach", "mailwave", "reviewhub"):
        assert {k: set(v) for k, v in built.items()} == fed  # snapshot feeds: exactly the same values


def test_vendor_forms_differ_per_vendor(shop, keys, register):
    url, _ = shop
    cid = _pick(shop, "email_plus_tag")
    rs = _subject(url, cid)
    ad, social = (vendor_identifiers(register.vendor(v), rs, keys) for v in ("adgrid", "socialreach"))
    raw = customer(url, cid)["email"]
    assert ad["email"] == [n.sha256_hex(n.email(raw))]
    assert social["email"] == [n.sha256_hex(n.email_strip_plus_tag(raw))] != ad["email"]
    e164 = n.phone_e164(customer(url, cid)["phone"], customer(url, cid)["phone_country"])
    assert ad["phone"] == [n.sha256_hex(e164)] and social["phone"] == [n.sha256_hex(e164[1:])]
    review = vendor_identifiers(register.vendor("reviewhub"), rs, keys)["email"]
    assert review == [n.hmac_hex(keys.vendor_token_key("reviewhub"), n.email(raw))]
    assert identifier_counts(ad) == {"email": 1, "phone": 1}


def test_resolve_by_phone_in_any_format_and_orders_devices(shop):
    url, planted = shop
    cid = planted["phone_national_format"][0]
    c = customer(url, cid)
    e164 = n.phone_e164(c["phone"], c["phone_country"])
    rs = resolve_subject(url, SubjectIdentity(phones=((e164, c["phone_country"]),)))
    assert cid in rs.customer_ids
    order_ids = [r for r in customers_where(url, f"SELECT order_id FROM orders WHERE customer_id = {cid}")]
    devices = customers_where(url, f"SELECT device_id FROM devices WHERE customer_id = {cid}")
    assert sorted(rs.order_ids) == sorted(order_ids) and sorted(rs.device_ids) == sorted(devices)


def test_resolve_many_and_unknown_subject(shop):
    url, planted = shop
    a, b = planted["email_padded"][:2]
    got = resolve_many(url, {"a": SubjectIdentity(emails=(n.email(customer(url, a)["email"]),)),
                             "b": SubjectIdentity(emails=(n.email(customer(url, b)["email"]),)),
                             "x": SubjectIdentity(emails=("nobody@nowhere.example",))})
    assert got["a"].customer_ids == [a] and got["b"].customer_ids == [b]
    assert got["x"].customer_ids == [] and got["x"].emails == ["nobody@nowhere.example"]


def test_a_plus_tag_is_not_assumed_to_be_the_same_person(shop):
    url, planted = shop
    cid = planted["email_plus_tag"][0]
    tagless = n.email_strip_plus_tag(customer(url, cid)["email"])
    assert resolve_subject(url, SubjectIdentity(emails=(tagless,))).customer_ids == []


def test_under_13_customers(shop):
    url, planted = shop
    found = under_13_customers(url, dt.date(2026, 11, 1))
    assert {c["customer_id"] for c in found} == set(planted["under_13"])
