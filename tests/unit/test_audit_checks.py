"""The audit's checks one by one, on a small SQLite shop and ledger, with a TEST-ONLY fake vendor protocol (the
real protocols and vendors are exercised in tests/integration/test_audit.py)."""
from __future__ import annotations

import datetime as dt
import hashlib
import shutil
import sqlite3
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from vendorprivacy.audit import consent, deadlines, deliveries, register, schema
from vendorprivacy.audit import tables as at
from vendorprivacy.audit.context import AuditContext
from vendorprivacy.audit.deliveries import DeliveryRow, check_delivery
from vendorprivacy.keys import Keys
from vendorprivacy.ledger import Ledger
from vendorprivacy.ledger import tables as t
from vendorprivacy.minimise import normalise as n
from vendorprivacy.minimise.eligibility import eligible_ids_query
from vendorprivacy.policy import load_notice, load_register

DAY = dt.date(2026, 11, 1)
KEYS = Keys(b"unit-audit-token", b"unit-audit-subject")
REGISTER, NOTICE = load_register(), load_notice()


@pytest.fixture(scope="module")
def shop_template(tmp_path_factory) -> Path:
    from vendorprivacy.shop.generate import generate_shop

    path = tmp_path_factory.mktemp("audit_shop") / "shop.db"
    generate_shop(f"sqlite:///{path}", customers=300, seed=31, as_of=DAY)
    return path


@pytest.fixture
def shop(shop_template, tmp_path) -> Path:
    path = tmp_path / "shop.db"
    shutil.copy(shop_template, path)
    return path


@pytest.fixture
def ledger(tmp_path) -> Ledger:
    led = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    led.migrate()
    at.migrate(led.engine)
    return led


class FakeProtocol:
    """TEST-ONLY vendor protocol: records what it was sent (the real ones are tested against the sandbox)."""

    def __init__(self):
        self.sent: list[tuple[str, list]] = []
        self.answer: str | None = None      # what poll() answers for every pair (None: no answer yet)
        self.polled: list[tuple[str, list]] = []

    def submit(self, batch_id, items):
        from vendorprivacy.erasure.protocols import SubmitReceipt

        body = repr([(i.pair_id, i.identifiers) for i in items]).encode()
        already = any(b == batch_id for b, _ in self.sent)
        if not already:
            self.sent.append((batch_id, items))
        return SubmitReceipt(batch_id, f"ref-{batch_id[:8]}", hashlib.sha256(body).hexdigest(), len(body), already)

    def poll(self, batch_id, items):
        from vendorprivacy.erasure.protocols import Outcome

        self.polled.append((batch_id, items))
        if self.answer is None:
            return []
        return [Outcome(i.pair_id, self.answer, "ref", "could not match" if self.answer == "failed" else None,
                        "e" * 64, dt.datetime(2026, 11, 3, tzinfo=dt.timezone.utc)) for i in items]


@pytest.fixture
def make_ctx(shop, ledger, tmp_path):
    protocols: dict[str, FakeProtocol] = {}

    def make(**kw) -> AuditContext:
        kw.setdefault("verify_copies", False)
        ctx = AuditContext(register=kw.pop("register", REGISTER), notice=kw.pop("notice", NOTICE), ledger=ledger,
                           shop_url=f"sqlite:///{shop}", keys=KEYS, day=kw.pop("day", DAY),
                           reports_dir=tmp_path / "reports",
                           protocol_factory=lambda v: protocols.setdefault(v.vendor, FakeProtocol()), **kw)
        ctx.fake_protocols = protocols
        return ctx

    return make


def record_delivery(ledger: Ledger, feed_id: str, subject_keys, *, day=DAY, fields=None, gate=None, rows=None,
                    delivered_at: dt.datetime | None = None, status="delivered") -> str:
    vendor, feed = REGISTER.feed(feed_id) if feed_id in {f.id for _, f in REGISTER.feeds()} else (None, None)
    did = str(uuid.uuid4())
    fields = fields if fields is not None else [{"name": f.name, "category": f.category, "transform": f.transform}
                                                for f in feed.sent_fields]
    keys = list(subject_keys)
    ledger.begin_delivery(delivery_id=did, feed_id=feed_id, vendor=vendor.vendor if vendor else feed_id.split("_")[0],
                          logical_date=day, window=None, transport=vendor.transport.kind if vendor else "sftp",
                          file_name=f"{feed_id}.csv.pgp", fields=fields)
    n_rows = len(keys) if rows is None else rows
    ledger.update_delivery(did, gate=gate if gate is not None else {"passed": True, "rows": n_rows,
                                                                     "validated_sha256": "a" * 64})
    if status == "delivered":
        ledger.mark_delivered(did, keys, row_count=n_rows, sha256="b" * 64, bytes=100, plaintext_sha256="a" * 64)
        if delivered_at:
            ledger.update_delivery(did, delivered_at=delivered_at)
    else:
        ledger.update_delivery(did, status=status, error="VendorUnreachable: connection refused")
    return did


def row_of(ledger, did) -> DeliveryRow:
    [row] = [d for d in deliveries.deliveries_between(ledger, DAY - dt.timedelta(days=400), DAY) if d.delivery_id == did]
    return row


def rules(found) -> dict[str, str]:
    return {f.facts.get("rule"): f.severity for f in found}


# ------------------------------------------------------------------------------------------ delivery re-check
def test_a_delivery_as_the_register_says_has_no_finding(make_ctx, ledger):
    did = record_delivery(ledger, "adgrid_customer_match", ["k1", "k2"])
    assert check_delivery(make_ctx(), row_of(ledger, did)) == []


def test_each_rule_a_delivery_can_break_today(make_ctx, ledger):
    fields = [{"name": "email_sha256", "category": "user.contact.email", "transform": "keep"},       # raw, was sha256
              {"name": "phone_sha256", "category": "user.contact.phone_number", "transform": "sha256"},
              {"name": "birth_date", "category": "user.demographic.date_of_birth", "transform": "keep"}]  # extra
    did = record_delivery(ledger, "adgrid_customer_match", ["k1"], fields=fields,
                          gate={"passed": True, "rows": 5, "validated_sha256": "c" * 64})
    found = check_delivery(make_ctx(), row_of(ledger, did))
    assert rules(found) == {"transform_changed": "critical", "raw_contact_to_advertiser": "critical",
                            "field_not_declared": "critical", "declared_field_absent": "info",
                            "gate_checksum_mismatch": "critical", "gate_rowcount_mismatch": "critical"}
    assert all(f.vendor == "adgrid" and f.feed == "adgrid_customer_match" for f in found)


def test_category_the_notice_does_not_declare_and_missing_gate(make_ctx, ledger):
    fields = [{"name": "order_id", "category": "user.behavior.purchase_history", "transform": "keep"},
              {"name": "processor_token", "category": "user.biometric.health", "transform": "keep"}]
    did = record_delivery(ledger, "payflow_settlement", ["k1"], fields=fields, gate={})
    found = rules(check_delivery(make_ctx(), row_of(ledger, did)))
    assert found["category_not_in_notice"] == "critical" and found["gate_not_passed"] == "critical"


def test_unknown_feed_and_row_count_jump(make_ctx, ledger):
    did = record_delivery(ledger, "retired_feed", ["k1"], fields=[])
    [f] = check_delivery(make_ctx(), row_of(ledger, did))
    assert f.severity == "critical" and "no longer declares" in f.title
    record_delivery(ledger, "mailwave_subscribers", [], rows=1000, day=DAY - dt.timedelta(days=1))
    did = record_delivery(ledger, "mailwave_subscribers", [], rows=4000)
    found = rules(check_delivery(make_ctx(), row_of(ledger, did)))
    assert found == {"row_count_implausible": "warning"}


def test_recheck_counts_failed_and_gate_stopped_deliveries(make_ctx, ledger):
    record_delivery(ledger, "payflow_settlement", [], status="failed")
    record_delivery(ledger, "mailwave_subscribers", [], status="gate_failed")
    found, stats = deliveries.recheck(make_ctx())
    assert rules(found) == {"delivery_failed": "warning", "gate_stopped": "info"}
    assert "connection refused" not in repr(found)             # the class of the error only, never its message
    assert stats["failed"] == 1 and stats["gate_failed"] == 1


# ------------------------------------------------------------------------------------------ register drift
def test_register_drift_when_the_notice_stops_declaring_a_category(make_ctx, ledger):
    sections = [s.model_copy(update={"collects": [c for c in s.collects if c.category != "user.contact.phone_number"]})
                if s.id == "ccpa_sale_and_interest_based_advertising" else s for s in NOTICE.sections]
    notice = NOTICE.model_copy(update={"sections": sections})
    record_delivery(ledger, "oldvendor_feed", ["k"], fields=[])
    found, stats = register.drift(make_ctx(notice=notice))
    crit = {(f.vendor, f.feed) for f in found if f.severity == "critical"}
    assert crit == {("adgrid", "adgrid_customer_match"), ("socialreach", "socialreach_custom_audience")}
    gone = [f for f in found if f.facts["rule"].endswith("no_longer_declared")]
    assert gone and gone[0].feed == "oldvendor_feed" and gone[0].severity == "warning"
    assert register.drift(make_ctx())[0] == [f for f in register.drift(make_ctx())[0] if f.facts["rule"] != "policy_lint"]


# ------------------------------------------------------------------------------------------ schema drift
def test_schema_drift_finds_new_columns_and_guesses_personal_data(make_ctx, shop, ledger):
    ctx = make_ctx()
    assert schema.drift(ctx)[0] == []                               # the reviewed schema: nothing new
    con = sqlite3.connect(shop)
    con.execute("ALTER TABLE customers ADD COLUMN secondary_email TEXT")
    con.execute("UPDATE customers SET secondary_email = email")
    con.execute("ALTER TABLE payments ADD COLUMN settlement_batch INTEGER")
    con.commit()
    found, stats = schema.drift(ctx)
    email = [f for f in found if f.facts["column"] == "secondary_email"]
    assert {f.feed for f in email} == {f.id for _, f in REGISTER.feeds() if "customers" in f.query}
    assert email[0].severity == "warning" and email[0].facts["likelihood"] == "likely"
    assert email[0].facts["category"] == "user.contact.email" and stats["new_columns"] == 2
    [batch] = [f for f in found if f.facts["column"] == "settlement_batch"]
    assert batch.severity == "info" and batch.feed == "payflow_settlement"
    assert "@" not in repr(found)                                    # counts only, never a sampled value
    with ledger.engine.connect() as conn:
        stored = conn.execute(sa.select(at.audit_source_columns.c.guess).where(
            at.audit_source_columns.c.column_name == "secondary_email")).scalar()
    assert stored["value_signals"]["email"] > 0 and "@" not in repr(stored)
    # reported every night until reviewed, with the day it was first seen
    later = schema.drift(make_ctx(day=DAY + dt.timedelta(days=3)))[0]
    assert {f.facts["first_seen"] for f in later if f.facts["column"] == "secondary_email"} == {str(DAY)}
    assert schema.accept_column(ledger, "customers", "secondary_email", "dpo", "reviewed: not sent anywhere")
    assert [f.facts["column"] for f in schema.drift(ctx)[0]] == ["settlement_batch"]


def test_tables_read_by_feeds():
    read = schema.tables_read(REGISTER)
    assert ("payflow", "payflow_settlement") in read["payments"] and "consents" not in read


# ------------------------------------------------------------------------------------------ consent drift
def _eligible(shop: Path, feed_id: str) -> list[int]:
    _, feed = REGISTER.feed(feed_id)
    sql, params = eligible_ids_query(feed, DAY)
    with sa.create_engine(f"sqlite:///{shop}").connect() as conn:
        return [r[0] for r in conn.execute(sa.text(sql + " ORDER BY c.customer_id"), params)]


def test_consent_drift_sends_advertising_partners_a_removal_list_once(make_ctx, shop, ledger):
    ids = _eligible(shop, "adgrid_customer_match")
    delivered_at = dt.datetime(2026, 11, 1, 6, 5)
    record_delivery(ledger, "adgrid_customer_match", [KEYS.subject_key_of(i) for i in ids], delivered_at=delivered_at)
    ctx = make_ctx()
    assert consent.drift(ctx)[0] == []
    con = sqlite3.connect(shop)
    after = str(delivered_at + dt.timedelta(hours=5))
    con.execute("UPDATE consents SET sale_share_opt_out = 1, updated_at = ? WHERE customer_id = ?", (after, ids[0]))
    con.execute("UPDATE consents SET gpc_signal = 1, updated_at = ? WHERE customer_id = ?", (after, ids[1]))
    con.commit()
    [f], stats = consent.drift(ctx)
    assert (f.vendor, f.feed, f.severity) == ("adgrid", "adgrid_customer_match", "warning")
    assert f.facts["by_reason"] == {"gpc": 1, "sale_share_opt_out": 1} and f.facts["removal"]["sent"]
    [(batch_id, items)] = ctx.fake_protocols["adgrid"].sent
    assert len(items) == 2 and {i.request_type for i in items} == {"opt_out"}
    row = con.execute("SELECT email FROM customers WHERE customer_id = ?", (ids[0],)).fetchone()
    assert n.sha256_hex(n.email(row[0])) in {v for i in items for v in i.identifiers["email"]}  # Google-style hash
    assert stats["removal_lists_sent"] == 1 and stats["people_in_removal_lists"] == 2
    [again], stats = consent.drift(make_ctx())                       # the next run: reported, not re-sent
    assert again.facts["already_sent"] == 2 and again.severity == "info" and len(ctx.fake_protocols["adgrid"].sent) == 1
    [(polled_batch, polled)] = ctx.fake_protocols["adgrid"].polled    # ...and the partner asked for its answer
    assert polled_batch == batch_id and len(polled) == 2 and all(i.identifiers == {} for i in polled)  # pair ids only
    assert stats["removal_answers"] == {"no answer": 2}
    # the partner answers that it could not remove them: critical, named with vendor and feed
    ctx.fake_protocols["adgrid"].answer = "failed"
    found, stats = consent.drift(make_ctx(day=DAY + dt.timedelta(days=2)))
    failed = [f for f in found if f.facts["rule"] == "removal_answer"]
    assert [(f.vendor, f.feed, f.severity) for f in failed] == [("adgrid", "adgrid_customer_match", "critical")]
    assert stats["removal_answers"] == {"failed": 2}
    assert consent.drift(make_ctx(day=DAY + dt.timedelta(days=3)))[1]["removal_batches_polled"] == 0  # final answers


def test_consent_drift_that_predates_the_delivery_is_critical(make_ctx, shop, ledger):
    ids = _eligible(shop, "socialreach_custom_audience")
    record_delivery(ledger, "socialreach_custom_audience", [KEYS.subject_key_of(i) for i in ids],
                    delivered_at=dt.datetime(2026, 11, 1, 6, 5))
    con = sqlite3.connect(shop)
    con.execute("UPDATE consents SET sale_share_opt_out = 1, updated_at = '2026-10-01 00:00:00' WHERE customer_id = ?",
                (ids[0],))
    con.commit()
    [f], _ = consent.drift(make_ctx())
    assert f.severity == "critical" and f.facts["ineligible_when_delivered"] == 1 and f.facts["removal"]["sent"]


def test_service_provider_drift_is_reported_without_a_removal_list(make_ctx, shop, ledger):
    ids = _eligible(shop, "mailwave_subscribers")
    record_delivery(ledger, "mailwave_subscribers", [KEYS.subject_key_of(i) for i in ids],
                    delivered_at=dt.datetime(2026, 11, 1, 5, 5))
    con = sqlite3.connect(shop)
    con.execute("UPDATE consents SET marketing_opt_in = 0, updated_at = '2026-11-01 09:00:00' WHERE customer_id = ?",
                (ids[0],))
    # a birth date corrected to someone under 13: never to be shared, whenever it is found
    con.execute("UPDATE customers SET birth_date = '2015-01-01' WHERE customer_id = ?", (ids[1],))
    con.commit()
    ctx = make_ctx()
    [f], _ = consent.drift(ctx)
    assert f.vendor == "mailwave" and f.severity == "critical" and "removal" not in f.facts
    assert f.facts["by_reason"] == {"marketing_opt_in": 1, "under_13": 1} and ctx.fake_protocols == {}


def test_people_already_handled_by_erasure_requests_are_left_to_them(make_ctx, shop, ledger):
    ids = _eligible(shop, "adgrid_customer_match")
    record_delivery(ledger, "adgrid_customer_match", [KEYS.subject_key_of(i) for i in ids],
                    delivered_at=dt.datetime(2026, 11, 1, 6, 5))
    con = sqlite3.connect(shop)
    con.execute("UPDATE consents SET sale_share_opt_out = 1, updated_at = '2026-11-01 09:00:00' WHERE customer_id = ?",
                (ids[0],))
    con.commit()
    ledger.record_opt_out([KEYS.subject_key_of(ids[0])], "T-9")
    assert consent.drift(make_ctx())[0] == []


# ------------------------------------------------------------------------------------------ deadlines
def test_deadlines_become_findings_named_with_vendor_and_feed(make_ctx, ledger):
    rid = str(uuid.uuid4())
    with ledger.engine.begin() as conn:
        conn.execute(t.erasure_requests.insert().values(
            request_id=rid, ticket="T-7", regulation="gdpr", request_type="erasure", received_on=DAY - dt.timedelta(days=40),
            source="cli", status="in_progress", due=DAY - dt.timedelta(days=9), filed_at=dt.datetime(2026, 9, 22)))
        for vendor, status in (("reviewhub", "sent"), ("payflow", "completed")):
            conn.execute(t.erasure_pairs.insert().values(
                pair_id=str(uuid.uuid4()), request_id=rid, vendor=vendor, status=status,
                created_at=dt.datetime(2026, 9, 22), updated_at=dt.datetime(2026, 9, 23)))
    found, stats = deadlines.check(make_ctx())
    [f] = found
    assert (f.vendor, f.feed, f.severity, f.facts["level"]) == ("reviewhub", "reviewhub_reviews", "critical", "overdue")
    assert stats["open_pairs"] == 1 and stats["pairs"] == [{"vendor": "reviewhub", "bucket": "overdue", "status": "sent",
                                                            "count": 1}]
    assert deadlines.bucket_of(0) == "0–7 days" and deadlines.bucket_of(31) == "31+ days"
