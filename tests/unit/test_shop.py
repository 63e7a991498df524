"""Tests of the synthetic shop generator: determinism, planted hard cases
(verified against the database, not against the generator's own bookkeeping),
phone validity, absence of card numbers, and PostgreSQL parity."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
import uuid
from datetime import date, timedelta
from pathlib import Path

import phonenumbers as pn
import pytest
from sqlalchemy import create_engine, select, text
from sqlalchemy.exc import OperationalError

from vendorprivacy.shop import (
    CUSTOMER_KINDS,
    EEA_COUNTRIES,
    REVIEW_KINDS,
    SHOP_TABLES,
    Planted,
    describe_shop,
    generate_shop,
)

AS_OF = date(2026, 11, 1)
SIZE = 1_500
PG_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
EMAIL_RE = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
POSTCODE_RE = {
    "US": r"\d{5}",
    "CA": r"[A-Z]\d[A-Z] \d[A-Z]\d",
    "GB": r"[A-Z]{1,2}\d[A-Z\d]? \d[A-Z]{2}",
    "DE": r"\d{5}", "FR": r"\d{5}", "ES": r"\d{5}", "IT": r"\d{5}",
    "NL": r"\d{4} [A-Z]{2}", "IE": r"[A-Z\d]{3} [A-Z\d]{4}",
    "AT": r"\d{4}", "BE": r"\d{4}", "DK": r"\d{4}", "CH": r"\d{4}",
    "PL": r"\d{2}-\d{3}", "SE": r"\d{3} \d{2}", "PT": r"\d{4}-\d{3}",
}


def _age(birth: date, on: date) -> int:
    return on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))


def _rows(db: Path, table: str) -> list[dict]:
    eng = create_engine(f"sqlite:///{db}")
    try:
        with eng.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(select(SHOP_TABLES[table]))]
    finally:
        eng.dispose()


def _dump(db: Path) -> str:
    con = sqlite3.connect(db)
    try:
        return "\n".join(con.iterdump())
    finally:
        con.close()


@pytest.fixture(scope="module")
def shop(tmp_path_factory) -> tuple[Path, Planted]:
    # A plain filesystem path (no sqlite:/// prefix) must be accepted too.
    db = tmp_path_factory.mktemp("shop") / "shop.db"
    return db, generate_shop(str(db), customers=SIZE, seed=7, as_of=AS_OF)


@pytest.fixture(scope="module")
def customers(shop) -> dict[int, dict]:
    return {r["customer_id"]: r for r in _rows(shop[0], "customers")}


@pytest.fixture(scope="module")
def consents(shop) -> dict[int, dict]:
    return {r["customer_id"]: r for r in _rows(shop[0], "consents")}


@pytest.fixture(scope="module")
def reviews(shop) -> dict[int, dict]:
    return {r["review_id"]: r for r in _rows(shop[0], "reviews")}


@pytest.fixture(scope="module")
def twins(tmp_path_factory) -> tuple[Path, Path, Planted]:
    """Two 1,000-customer shops from the same seed."""
    d = tmp_path_factory.mktemp("twins")
    a, b = d / "a.db", d / "b.db"
    pa = generate_shop(f"sqlite:///{a}", customers=1_000, seed=11, as_of=AS_OF)
    pb = generate_shop(f"sqlite:///{b}", customers=1_000, seed=11, as_of=AS_OF)
    assert pa == pb
    return a, b, pa


# ---- determinism ----------------------------------------------------------


def test_same_seed_gives_identical_databases(twins):
    a, b, _ = twins
    assert _dump(a) == _dump(b)
    ja, jb = (Path(str(p) + ".planted.json").read_bytes() for p in (a, b))
    assert ja == jb


def test_identical_across_processes_and_hash_seeds(twins, tmp_path):
    """Faker data kept in sets must not leak PYTHONHASHSEED into the output."""
    a, _, _ = twins
    c = tmp_path / "c.db"
    code = ("import sys, datetime; from vendorprivacy.shop import generate_shop; "
            "generate_shop(sys.argv[1], customers=1000, seed=11, "
            "as_of=datetime.date(2026, 11, 1))")
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONHASHSEED": "12345",
           "PYTHONPATH": os.pathsep.join([str(root / "include"), str(root)])}
    subprocess.run([sys.executable, "-c", code, str(c)], check=True, env=env)
    assert _dump(c) == _dump(a)


def test_different_seed_differs_and_regeneration_replaces(twins, tmp_path):
    a, _, _ = twins
    c = tmp_path / "c.db"
    generate_shop(str(c), customers=1_000, seed=12, as_of=AS_OF)
    first = _rows(c, "customers")
    assert first != _rows(a, "customers")
    # Regenerating into the same file drops and refills: no duplicates.
    generate_shop(str(c), customers=1_000, seed=12, as_of=AS_OF)
    assert _rows(c, "customers") == first
    assert describe_shop(str(c))["customers"] == 1_000


# ---- planted record -------------------------------------------------------


def test_planted_json_has_only_ids_and_counts(shop):
    db, planted = shop
    path = Path(str(db) + ".planted.json")
    raw = path.read_text()
    assert "@" not in raw and "+" not in raw  # no e-mails, no phones
    data = json.loads(raw)
    assert data["counts"] == planted.counts()
    for mapping in ("customers", "reviews", "isolated"):
        for ids in data[mapping].values():
            assert all(isinstance(i, int) for i in ids)
    assert Planted.from_json(path) == planted


def test_every_kind_present_with_isolated_members(shop):
    _, planted = shop
    counts = planted.counts()
    assert set(counts) == set(CUSTOMER_KINDS) | set(REVIEW_KINDS)
    for kind in counts:
        assert counts[kind] > 0, kind
        assert planted.isolated[kind], f"no isolated member of {kind}"
        assert planted[kind] == sorted(set(planted[kind]))
    assert counts["under_13"] >= 3 and counts["under_16"] >= 3


def test_isolated_customers_are_otherwise_clean(shop, customers, consents):
    _, planted = shop
    for kind in CUSTOMER_KINDS:
        for cid in planted.isolated[kind]:
            c, k = customers[cid], consents[cid]
            if kind not in ("under_13", "under_16"):
                assert _age(c["birth_date"], AS_OF) >= 18
            if kind != "sale_share_opt_out":
                assert not k["sale_share_opt_out"]
            if kind != "gpc":
                assert not k["gpc_signal"]
            if kind != "eea_no_ad_consent" and c["is_eea"]:
                assert k["eea_ad_consent"]
            e = c["email"]
            if kind != "email_padded":
                assert e == e.strip()
            if kind != "email_mixed_case":
                assert e.strip() == e.strip().lower()
            if kind != "email_plus_tag":
                assert "+" not in e


# ---- ages and consents ----------------------------------------------------


def test_age_bands_hold_at_as_of_and_six_months_later(shop, customers):
    _, planted = shop
    later = AS_OF + timedelta(days=183)
    under_13 = {i for i, c in customers.items() if _age(c["birth_date"], AS_OF) < 13}
    under_16 = {i for i, c in customers.items()
                if 13 <= _age(c["birth_date"], AS_OF) < 16}
    assert under_13 == set(planted["under_13"])
    assert under_16 == set(planted["under_16"])
    for i, c in customers.items():
        now, then = _age(c["birth_date"], AS_OF), _age(c["birth_date"], later)
        if i in under_13:
            assert 8 <= now <= 12 and then <= 12
        elif i in under_16:
            assert 13 <= now <= 15 and 13 <= then <= 15
        else:
            assert 18 <= now <= 90
        assert c["created_at"].date() < AS_OF


def test_consents_match_planted(shop, customers, consents):
    _, planted = shop
    assert {i for i, k in consents.items() if k["sale_share_opt_out"]} == set(
        planted["sale_share_opt_out"])
    assert {i for i, k in consents.items() if k["gpc_signal"]} == set(planted["gpc"])
    assert {i for i, k in consents.items() if k["marketing_opt_in"]} == set(
        planted["marketing_opt_in"])
    assert 0.35 <= len(planted["marketing_opt_in"]) / SIZE <= 0.45
    eea = {i for i, c in customers.items() if c["is_eea"]}
    assert {i for i in eea if not consents[i]["eea_ad_consent"]} == set(
        planted["eea_no_ad_consent"])
    assert {i for i in eea if consents[i]["eea_ad_consent"]} == set(
        planted["eea_with_ad_consent"])
    for i, c in customers.items():
        assert c["is_eea"] == (c["country"] in EEA_COUNTRIES)
        if not c["is_eea"]:
            assert not consents[i]["eea_ad_consent"]
    assert "GB" not in EEA_COUNTRIES and "CH" not in EEA_COUNTRIES


def test_country_mix_and_addresses(customers):
    by_country: dict[str, int] = {}
    for c in customers.values():
        by_country[c["country"]] = by_country.get(c["country"], 0) + 1
        assert re.fullmatch(POSTCODE_RE[c["country"]], c["postcode"]), c["postcode"]
        assert c["street"] == c["street"].strip() and c["city"] and c["region"]
    assert max(by_country, key=by_country.get) == "US"
    assert {"US", "GB", "CA", "DE", "FR", "ES", "NL", "IT", "IE"} <= set(by_country)
    assert 0.15 < sum(v for k, v in by_country.items() if k in EEA_COUNTRIES) / SIZE < 0.45


# ---- e-mails and phones ---------------------------------------------------


def test_emails(shop, customers):
    _, planted = shop
    emails = {i: c["email"] for i, c in customers.items()}
    normalised = [e.strip().lower() for e in emails.values()]
    assert len(set(normalised)) == len(normalised)
    # Unique even with +tags removed.
    untagged = [re.sub(r"\+[^@]*@", "@", e) for e in normalised]
    assert len(set(untagged)) == len(untagged)
    assert {i for i, e in emails.items() if e != e.strip()} == set(planted["email_padded"])
    assert {i for i, e in emails.items() if e.strip() != e.strip().lower()} == set(
        planted["email_mixed_case"])
    assert {i for i, e in emails.items() if "+" in e.split("@")[0]} == set(
        planted["email_plus_tag"])
    padded = [emails[i] for i in planted["email_padded"]]
    assert any(e[0] == " " for e in padded) and any(e[0] == "\t" for e in padded)
    assert any(e.endswith("\n") for e in padded) and any(e[-1] in " \t" for e in padded)
    for e in normalised:
        assert EMAIL_RE.fullmatch(e), e
        domain = e.split("@")[1]
        assert domain.endswith((".example", "example.com", "example.org", "example.net"))


def test_all_phones_valid_and_unique(shop, customers):
    _, planted = shop
    seen = set()
    shapes = set()
    for c in customers.values():
        assert c["phone_country"] == c["country"]
        num = pn.parse(c["phone"], c["phone_country"])
        assert pn.is_valid_number(num), c["phone"]
        seen.add(pn.format_number(num, pn.PhoneNumberFormat.E164))
        shapes.add(re.sub(r"\d", "9", c["phone"]))
    assert len(seen) == len(customers)
    assert len(shapes) > 40  # many national and international layouts
    intl = {i for i, c in customers.items() if c["phone"].startswith(("+", "00"))}
    assert intl == set(planted["phone_international_format"])
    assert set(customers) - intl == set(planted["phone_national_format"])
    phones = {c["phone"] for c in customers.values()}
    assert any(re.fullmatch(r"\(\d{3}\) \d{3}-\d{4}", p) for p in phones)
    assert any(re.fullmatch(r"\d{3}-\d{3}-\d{4}", p) for p in phones)
    assert any(p.startswith("+44 ") for p in phones)
    assert any(p.startswith("0049 ") or p.startswith("+49 ") for p in phones)


def test_ship_and_call_phones_valid(shop):
    db, _ = shop
    for s in _rows(db, "shipments"):
        assert pn.is_valid_number(pn.parse(s["ship_phone"], s["ship_country"]))
    cust = {r["customer_id"]: r for r in _rows(db, "customers")}
    for call in _rows(db, "support_calls"):
        c = cust[call["customer_id"]]
        assert pn.parse(call["phone"]) == pn.parse(c["phone"], c["phone_country"])


# ---- reviews --------------------------------------------------------------


def test_review_formula_and_control_leading(shop, reviews):
    _, planted = shop
    formula = {i for i, r in reviews.items() if r["body"][0] in "=+-@"}
    control = {i for i, r in reviews.items() if r["body"][0] in "\t\r"}
    assert formula == set(planted["review_formula_leading"])
    assert control == set(planted["review_control_leading"])
    assert {reviews[i]["body"][0] for i in formula} == set("=+-@")
    assert any(reviews[i]["body"].startswith("=HYPERLINK(") for i in formula)


def test_reviews_with_pii(shop, reviews, customers):
    _, planted = shop
    with_email = set(planted["review_contains_email"])
    with_phone = set(planted["review_contains_phone"])
    for rid, r in reviews.items():
        author = customers[r["customer_id"]]
        found_email = EMAIL_RE.search(r["body"])
        if rid in with_email:
            assert author["email"].strip().lower() in r["body"].lower()
        else:
            assert found_email is None, r["body"]
        matches = [m.number for m in pn.PhoneNumberMatcher(r["body"], author["phone_country"])]
        if rid in with_phone:
            assert pn.parse(author["phone"], author["phone_country"]) in matches
        else:
            assert not matches, r["body"]
        assert 1 <= r["rating"] <= 5
        assert (r["photo_url"] is not None) == r["has_photo"]


# ---- card data and shape --------------------------------------------------


def test_no_card_numbers_anywhere(shop):
    db, _ = shop
    long_run = re.compile(r"\d{13,19}")
    for table in SHOP_TABLES:
        for row in _rows(db, table):
            for col, value in row.items():
                if isinstance(value, str):
                    assert not long_run.search(value), (table, col, value)
    for p in _rows(db, "payments"):
        assert re.fullmatch(r"\d{4}", p["card_last4"])
        assert re.fullmatch(r"tok_[A-Za-z0-9]{24}", p["processor_token"])


def test_table_shapes(shop):
    db, _ = shop
    counts = describe_shop(f"sqlite:///{db}")
    assert counts["customers"] == counts["consents"] == SIZE
    assert 150 <= counts["products"] <= 250
    assert 1.3 <= counts["orders"] / SIZE <= 1.7
    orders = _rows(db, "orders")
    buyers = {o["customer_id"] for o in orders}
    assert 0 < SIZE - len(buyers) < SIZE // 2  # some customers never ordered
    items: dict[int, object] = {}
    for it in _rows(db, "order_items"):
        items[it["order_id"]] = items.get(it["order_id"], 0) + it["quantity"] * it["unit_price"]
    assert all(o["total_amount"] == items[o["order_id"]] for o in orders)
    per_customer: dict[int, int] = {}
    for d in _rows(db, "devices"):
        per_customer[d["customer_id"]] = per_customer.get(d["customer_id"], 0) + 1
        uuid.UUID(d["device_id"])
        assert d["first_seen"] <= d["last_seen"]
    assert max(per_customer.values()) <= 3
    for table in ("appointments", "support_calls", "wishlist", "reviews",
                  "payments", "shipments"):
        assert counts[table] > 0, table


# ---- PostgreSQL -----------------------------------------------------------


def test_postgres_matches_sqlite(twins):
    a, _, planted_sqlite = twins
    schema = f"shop_test_{uuid.uuid4().hex[:12]}"
    eng = create_engine(PG_URL)
    try:
        with eng.connect():
            pass
    except OperationalError as exc:  # pragma: no cover - environment dependent
        eng.dispose()
        pytest.skip(f"PostgreSQL not reachable: {exc}")
    try:
        planted = generate_shop(PG_URL, customers=1_000, seed=11, as_of=AS_OF,
                                schema=schema)
        assert planted == planted_sqlite
        assert describe_shop(PG_URL, schema=schema) == describe_shop(str(a))
        with eng.connect() as conn:
            conn = conn.execution_options(schema_translate_map={None: schema})
            pg_customers = [dict(r._mapping) for r in conn.execute(
                select(SHOP_TABLES["customers"]).order_by(text("customer_id")))]
        assert pg_customers == _rows(a, "customers")
    finally:
        with eng.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        eng.dispose()
