"""The nightly minimisation audit end to end: real feed deliveries to the sandbox vendors (OpenSSH, moto S3, the
HTTPS vendor API), a PostgreSQL ledger, real gpg; a clean night with no finding, then a night with one planted
violation of each kind, each found and named with its vendor and feed; the removal list really reaches the
advertising partner; the report renders in headless Chromium with its charts drawn; no personal value in the
report, its JSON twin, the data map or the logs.

The shop is generated "as of" 2030-06-01 so these deliveries (feed, day) never collide with other tests' in the
shared sandbox (a delivery id is uuid5(feed, day))."""
from __future__ import annotations

import datetime as dt
import json
import logging
import sqlite3
import uuid

import pytest
import sqlalchemy as sa

from vendorprivacy.audit import browser
from vendorprivacy.audit.context import AuditContext
from vendorprivacy.audit.run import run_audit
from vendorprivacy.keys import Keys
from vendorprivacy.ledger import Ledger
from vendorprivacy.ledger import tables as t
from vendorprivacy.minimise.eligibility import eligible_ids_query
from vendorprivacy.policy import load_notice, load_register
from vendorprivacy.policy.models import FieldSpec
from vendorprivacy.share import FeedRun, deliver, gate, prepare
from vendorprivacy.shop.generate import generate_shop

AS_OF = dt.date(2030, 6, 1)
CLEAN_DAY, BAD_DAY = AS_OF - dt.timedelta(days=1), AS_OF
KEYS = Keys(b"audit-it-token", b"audit-it-subject")
PG = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
REGISTER, NOTICE = load_register(), load_notice()
FEEDS = ("adgrid_customer_match", "parcelpost_manifest", "fraudshield_orders")


@pytest.fixture(scope="module")
def world(tmp_path_factory, sandbox):
    state = tmp_path_factory.mktemp("audit")
    shop_path = state / "shop.db"
    generate_shop(f"sqlite:///{shop_path}", customers=600, seed=23, as_of=AS_OF)
    schema = f"it_audit_{uuid.uuid4().hex[:10]}"
    ledger = Ledger(PG, schema=schema)
    ledger.migrate()
    yield {"state": state, "shop": f"sqlite:///{shop_path}", "shop_path": shop_path, "ledger": ledger}
    ledger.engine.dispose()
    with sa.create_engine(PG).begin() as conn:
        conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))


def _deliver(world, sandbox, feed_id: str, day: dt.date, feed=None) -> FeedRun:
    vendor, spec = REGISTER.feed(feed_id)
    run = FeedRun(vendor=vendor, feed=feed or spec, logical_date=day, shop_url=world["shop"], ledger=world["ledger"],
                  staging_root=world["state"] / "staging", keys=KEYS)
    prepare(run)
    gate(run)
    out = deliver(run)
    assert out["status"] == "delivered", out
    sandbox.ingest(vendor.vendor)  # file vendors load what they received into their store
    return run


def _audit(world, day: dt.date, **kw) -> dict:
    ctx = AuditContext(register=REGISTER, notice=NOTICE, ledger=world["ledger"], shop_url=world["shop"], keys=KEYS,
                       day=day, reports_dir=world["state"] / "reports", run_id=f"it-{day}-{uuid.uuid4().hex[:6]}",
                       protocol_options={"evidence_dir": world["state"] / "answers"}, **kw)
    summary = run_audit(ctx)
    summary["report"] = json.loads(open(summary["report_json"]).read())
    return summary


@pytest.fixture(scope="module")
def clean(world, sandbox, caplog_module):
    for feed_id in FEEDS:
        _deliver(world, sandbox, feed_id, CLEAN_DAY)
    return _audit(world, CLEAN_DAY)


@pytest.fixture(scope="module")
def planted(world, sandbox, clean):
    """The bad night: one violation of each kind."""
    # 1. extra field delivered: adgrid's feed as some old code ran it, with a field the register does not declare
    vendor, adgrid = REGISTER.feed("adgrid_customer_match")
    extra = adgrid.model_copy(update={"fields": [*adgrid.fields, FieldSpec(
        name="phone_country", category="user.location.imprecise", transform="keep")]})
    runs = {"adgrid": _deliver(world, sandbox, "adgrid_customer_match", BAD_DAY, feed=extra)}
    # 2. changed vendor copy: someone rewrites parcelpost's delivered file at the vendor
    runs["parcelpost"] = _deliver(world, sandbox, "parcelpost_manifest", BAD_DAY)
    runs["fraudshield"] = _deliver(world, sandbox, "fraudshield_orders", BAD_DAY)
    path = sandbox.drop_folder("parcelpost") / runs["parcelpost"].file_name
    path.write_bytes(path.read_bytes() + b"tampered")
    con = sqlite3.connect(world["shop_path"])
    # 3. a new personal-data column in a source table (and a harmless one)
    con.execute("ALTER TABLE customers ADD COLUMN mobile_alt TEXT")
    con.execute("UPDATE customers SET mobile_alt = phone")
    con.execute("ALTER TABLE orders ADD COLUMN gift_wrap INTEGER")
    con.execute("UPDATE orders SET gift_wrap = order_id % 2")
    # 4. two people in adgrid's audience opt out of sale/sharing / send GPC after the delivery
    sql, params = eligible_ids_query(adgrid, BAD_DAY)
    with sa.create_engine(world["shop"]).connect() as c:
        ids = [r[0] for r in c.execute(sa.text(sql + " ORDER BY c.customer_id"), params)][:2]
    delivered = world["ledger"].subjects_of(runs["adgrid"].delivery_id)
    assert {KEYS.subject_key_of(i) for i in ids} <= delivered
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None) + dt.timedelta(seconds=1)
    con.execute("UPDATE consents SET sale_share_opt_out = 1, updated_at = ? WHERE customer_id = ?", (str(now), ids[0]))
    con.execute("UPDATE consents SET gpc_signal = 1, updated_at = ? WHERE customer_id = ?", (str(now), ids[1]))
    con.commit()
    con.close()
    # 5. an overdue erasure: payflow was sent its request and never answered; the CCPA due date has passed
    rid = str(uuid.uuid4())
    with world["ledger"].engine.begin() as conn:
        conn.execute(t.erasure_requests.insert().values(
            request_id=rid, ticket="T-AUDIT-1", regulation="ccpa", request_type="erasure",
            received_on=BAD_DAY - dt.timedelta(days=60), source="cli", status="in_progress",
            due=BAD_DAY - dt.timedelta(days=15), extended_due=BAD_DAY + dt.timedelta(days=30),
            filed_at=dt.datetime(2030, 4, 2)))
        conn.execute(t.erasure_pairs.insert().values(
            pair_id=str(uuid.uuid4()), request_id=rid, vendor="payflow", status="sent", received_subject=True,
            created_at=dt.datetime(2030, 4, 2), updated_at=dt.datetime(2030, 4, 3)))
    return {"runs": runs, "opted_out": ids}


@pytest.fixture(scope="module")
def bad(world, planted, caplog_module):
    return _audit(world, BAD_DAY)


@pytest.fixture(scope="module")
def caplog_module():
    """Every log record of the module's audits (the PII scan reads them)."""
    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(self.format(record))

    handler = Keep(level=logging.DEBUG)
    root = logging.getLogger()
    old = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield records
    root.removeHandler(handler)
    root.setLevel(old)


def _find(summary, kind, vendor=None, feed=None, rule=None):
    return [f for f in summary["report"]["findings"] if f["kind"] == kind and (vendor is None or f["vendor"] == vendor)
            and (feed is None or f["feed"] == feed) and (rule is None or f["facts"].get("rule") == rule)]


# ------------------------------------------------------------------------------------------------ clean night
def test_a_clean_night_has_no_finding(clean):
    assert clean["report"]["findings"] == [], [f["title"] for f in clean["report"]["findings"]]
    assert clean["verdict"] == "pass"
    checks = clean["report"]["checks"]
    assert checks["delivery"]["delivered"] == 3 and checks["delivery"]["copies"]["verified"] == 3
    assert checks["consent_drift"]["people_checked"] > 100 and checks["schema_drift"]["tables"] >= 5


# ------------------------------------------------------------------------------------------------ the bad night
def test_extra_field_delivered_is_found(bad):
    [f] = _find(bad, "delivery", "adgrid", "adgrid_customer_match", "field_not_declared")
    assert f["severity"] == "critical" and f["facts"]["field"] == "phone_country"


def test_changed_vendor_copy_is_found_and_the_untouched_ones_verified(bad):
    [f] = _find(bad, "vendor_copy", "parcelpost", "parcelpost_manifest", "copy_differs")
    assert f["severity"] == "critical" and f["facts"]["held_sha256"] != f["facts"]["recorded_sha256"]
    copies = bad["report"]["checks"]["delivery"]["copies"]
    assert copies["verified"] == 2 and copies["differs"] == 1          # adgrid (s3) and fraudshield (https) match


def test_new_personal_data_column_is_found_per_feed_reading_it(bad):
    found = _find(bad, "schema_drift", rule="new_column")
    mobile = {(f["vendor"], f["feed"]) for f in found if f["facts"]["column"] == "mobile_alt"}
    readers = {(v.vendor, f.id) for v, f in REGISTER.feeds() if "customers" in f.query}
    assert mobile == readers and ("adgrid", "adgrid_customer_match") in mobile
    f = next(f for f in found if f["facts"]["column"] == "mobile_alt")
    assert f["severity"] == "warning" and f["facts"]["likelihood"] == "likely"
    assert f["facts"]["category"] == "user.contact.phone_number" and f["facts"]["signals"]["values"]["phone"] > 100
    harmless = [f for f in found if f["facts"]["column"] == "gift_wrap"]
    assert harmless and {f["severity"] for f in harmless} == {"info"}


def test_opted_out_people_in_an_audience_are_found_and_a_removal_list_sent(bad, sandbox, world):
    [f] = _find(bad, "consent_drift", "adgrid", "adgrid_customer_match")
    facts = f["facts"]
    assert facts["people"] == 2 and facts["by_reason"] == {"gpc": 1, "sale_share_opt_out": 1}
    assert facts["changed_after_delivery"] == 2 and f["severity"] == "warning"
    removal = facts["removal"]
    assert removal["sent"] and removal["protocol"] == "s3_removal_list" and removal["pairs"] == 2
    assert len(removal["sha256"]) == 64 and removal["batch_id"] in f["title"]
    # the partner really received it and removed the two people from its audience
    from vendorprivacy.audit import tables as at

    with world["ledger"].engine.connect() as conn:
        pairs = {r[0] for r in conn.execute(sa.select(at.audit_removals.c.pair_id).where(
            at.audit_removals.c.batch_id == removal["batch_id"]))}
    assert len(pairs) == 2
    sandbox.process_erasures("adgrid")
    outcomes = {o["pair_id"]: o for o in sandbox.erasure_outcomes("adgrid") if o["pair_id"] in pairs}
    assert set(outcomes) == pairs and {o["outcome"] for o in outcomes.values()} == {"deleted"}


def test_overdue_erasure_is_found_with_its_vendor_and_feed(bad):
    [f] = _find(bad, "deadline", "payflow")
    assert f["severity"] == "critical" and f["feed"] == "payflow_settlement" and f["facts"]["level"] == "overdue"
    assert bad["verdict"] == "fail" and bad["counts"]["critical"] >= 3


def test_a_rerun_of_the_night_sends_nobody_twice(world, bad):
    again = _audit(world, BAD_DAY)
    [f] = _find(again, "consent_drift", "adgrid", "adgrid_customer_match")
    assert f["facts"]["already_sent"] == 2 and "removal" not in f["facts"]
    # and the partner's signed answer to last time's list is read and recorded: both removed
    assert again["report"]["checks"]["consent_drift"]["removal_answers"] == {"completed": 2}
    from vendorprivacy.audit import tables as at

    with world["ledger"].engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(at.audit_removals)).scalar() == 2
        assert {r[0] for r in conn.execute(sa.select(at.audit_removals.c.outcome))} == {"completed"}


# ------------------------------------------------------------------------------------------------ report
def test_report_renders_in_chromium_with_its_charts_drawn(bad, world):
    if browser.find_chromium() is None:
        pytest.skip("chromium is not installed (Debian package 'chromium'; the Makefile's SYSTEM_PACKAGES installs it)")
    html = bad["report_html"]
    dom = browser.dump_dom(html)
    assert browser.charts_drawn(dom) == 3
    assert 'data-verdict="fail"' in dom and dom.count('class="finding critical"') >= 3
    png = browser.screenshot(html, world["state"] / "report.png", width=1240, height=1800)
    width, height = browser.png_size(png)
    assert (width, height) == (1240, 1800) and png.stat().st_size > 50_000      # a blank page is a few kB


def test_no_personal_value_in_report_json_data_map_or_logs(bad, clean, world, caplog_module):
    con = sqlite3.connect(world["shop_path"])
    needles = set()
    for email, phone, first, last, street in con.execute(
            "SELECT email, phone, first_name, last_name, street FROM customers"):
        needles |= {email.strip().lower(), email.strip(), phone, f"{first} {last}", street}
    for (ship_phone,) in con.execute("SELECT ship_phone FROM shipments"):
        needles.add(ship_phone)
    folder = world["state"] / "reports" / "audit"
    texts = [p.read_text(errors="replace") for p in folder.rglob("*") if p.is_file()]
    texts += caplog_module
    assert len(texts) >= 8 and len(needles) > 1000
    leaks = sorted({n for n in needles for text in texts if n and len(n) > 5 and n in text})
    assert leaks == []
