"""Recipients, suppression first, dry runs, a whole run with TEST-ONLY fake vendor protocols, re-runs that send
nothing twice, evidence without personal data, deadline alerts."""
from __future__ import annotations

import datetime as dt
import json

import pytest
import sqlalchemy as sa

from vendorprivacy.erasure import alerts, intake, propagate
from vendorprivacy.erasure import store as st
from vendorprivacy.erasure.recipients import plan_recipients
from vendorprivacy.ledger import tables as t
from vendorprivacy.minimise import normalise as n

from tests.unit.test_erasure_support import (TODAY, FakeVendors, cipher, customer, keys, ledger, make_ctx,  # noqa: F401
                                             mark_delivered, notice, register, shop, store)

SERVICE_PROVIDERS = {"callvault", "fraudshield", "mailwave", "parcelpost", "payflow", "reviewhub"}
ADVERTISERS = {"adgrid", "socialreach"}


# ---------------------------------------------------------------------------------------- recipients
def test_recipients_ledger_plus_always_notify_and_never_received_recorded(register, notice):
    counts = {v: {"email": 1} for v in register.vendors}
    plan = {p.vendor: p for p in plan_recipients("erasure", {"adgrid"}, register, notice, counts)}
    assert set(plan) == set(register.vendors)                       # every vendor has a pair: none skipped
    assert plan["adgrid"].status == "queued" and plan["adgrid"].received_subject
    assert plan["socialreach"].status == "not_applicable" and "never received" in plan["socialreach"].reason
    for v in SERVICE_PROVIDERS:                                     # §7022 / Art. 19: always told
        assert plan[v].status == "queued" and "always notified" in plan[v].reason


def test_opt_out_reaches_third_parties_only(register, notice):
    counts = {v: {"email": 1} for v in register.vendors}
    plan = {p.vendor: p for p in plan_recipients("opt_out", {"adgrid", "payflow"}, register, notice, counts)}
    assert plan["adgrid"].status == "queued"
    assert plan["socialreach"].status == "not_applicable" and "never received" in plan["socialreach"].reason
    for v in SERVICE_PROVIDERS:
        assert plan[v].status == "not_applicable" and "service provider" in plan[v].reason


def test_recipient_without_a_usable_identifier_is_flagged_not_skipped(register, notice):
    counts = {v: {"email": 1} for v in register.vendors} | {"callvault": {}}
    plan = {p.vendor: p for p in plan_recipients("erasure", {"callvault"}, register, notice, counts)}
    assert plan["callvault"].status == "failed" and "manual follow-up" in plan["callvault"].reason
    plan = {p.vendor: p for p in plan_recipients("erasure", set(), register, notice, counts)}
    assert plan["callvault"].status == "not_applicable"             # never received, nothing to match on


# ---------------------------------------------------------------------------------------- helpers
def _file(store, cipher, shop_url, cid, ticket="T-1", rtype="erasure", regulation="ccpa", received=None):
    c = customer(shop_url, cid)
    return intake.file_requests(store, cipher, [(2, {"ticket": ticket, "regulation": regulation, "type": rtype,
                                                     "email": c["email"].strip(),
                                                     "received": (received or TODAY).isoformat()})],
                                today=max(TODAY, received or TODAY))[0]


def _everything_shared(ledger, keys, cid, register):
    for i, vendor in enumerate(sorted(register.vendors)):
        mark_delivered(ledger, vendor, f"{vendor}_feed", [keys.subject_key_of(cid)], TODAY - dt.timedelta(days=i + 1))


def _counts(store, table):
    with store.engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(table)).scalar()


# ---------------------------------------------------------------------------------------- dry run
def test_dry_run_sends_nothing_and_suppresses_nothing(store, cipher, shop, keys, register, make_ctx, ledger):
    url, planted = shop
    cid = planted["email_mixed_case"][0]
    _everything_shared(ledger, keys, cid, register)
    filed = _file(store, cipher, url, cid)
    vendors = FakeVendors()
    ctx = make_ctx(vendors)
    result = propagate.run_once(ctx, "all pending", run_id="dry-1", dry_run=True)
    assert vendors.sent() == {} and vendors.by_vendor == {}           # no protocol was even built
    assert ledger.suppressed() == set() and ledger.opted_out() == set()
    assert _counts(store, t.erasure_pairs) == 0 and _counts(store, t.erasure_batches) == 0
    assert store.request(filed.request_id).status == "filed"
    shown = result["resolve"]
    assert shown["vendors"]["adgrid"] == {"pairs": {"queued": 1}, "identifier_types": {"email": 1, "phone": 1}}
    assert shown["subjects_found_in_shop"] == 1 and shown["suppressed_keys"] == 0
    text = json.dumps(result, default=str).lower()
    c = customer(url, cid)
    assert n.email(c["email"]) not in text and c["phone"] not in text and c["last_name"].lower() not in text


# ---------------------------------------------------------------------------------------- whole run
def test_run_suppresses_first_notifies_everyone_and_writes_evidence(store, cipher, shop, keys, register, make_ctx,
                                                                    ledger):
    url, planted = shop
    cid = planted["email_padded"][0]
    _everything_shared(ledger, keys, cid, register)
    filed = _file(store, cipher, url, cid)
    order = []
    vendors = FakeVendors()
    original = vendors.__call__

    def spy(vendor):  # the subject must be suppressed before any vendor is contacted
        order.append(("protocol", vendor.vendor, keys.subject_key_of(cid) in ledger.suppressed()))
        return original(vendor)

    ctx = make_ctx(spy)
    result = propagate.run_once(ctx, "T-1", run_id="run-1")
    assert order and all(suppressed for _, _, suppressed in order)
    assert keys.subject_key_of(cid) in ledger.suppressed()
    assert vendors.sent() == {v: 1 for v in register.vendors}        # every vendor once (all received the subject)
    pairs = {p.vendor: p for p in store.pairs([filed.request_id])}
    assert pairs["payflow"].status == "retained" and "tax law" in pairs["payflow"].reason
    assert {v for v, p in pairs.items() if p.status == "completed"} == set(register.vendors) - {"payflow"}
    req = store.request(filed.request_id)
    assert req.status == "complete" and req.purged_at is not None
    assert store.sealed(filed.request_id)[:2] == (None, None)        # identifiers purged once complete
    assert result["finish"]["complete"] == 1

    report = json.loads((ctx.reports_dir / f"{filed.request_id}.json").read_text())
    html = (ctx.reports_dir / f"{filed.request_id}.html").read_text()
    payflow = next(v for v in report["vendors"] if v["vendor"] == "payflow")
    assert payflow["status"] == "retained" and "tax law" in payflow["reason"] and payflow["sent"]["sha256"]
    assert [e["event"] for e in report["timeline"]][:3] == ["filed", "resolved", "suppressed"]
    c = customer(url, cid)
    for doc in (json.dumps(report).lower(), html.lower()):
        for pii in (n.email(c["email"]), c["first_name"].lower(), c["last_name"].lower(),
                    n.phone_e164(c["phone"], c["phone_country"]), n.sha256_hex(n.email(c["email"]))):
            assert pii not in doc
    assert "retained" in html and "Payment records" in html
    assert [e.event for e in store.timeline(filed.request_id)][-1] == "evidence"


def test_a_rerun_sends_nothing_twice(store, cipher, shop, keys, register, make_ctx, ledger):
    url, planted = shop
    cid = planted["email_mixed_case"][1]
    _everything_shared(ledger, keys, cid, register)
    filed = _file(store, cipher, url, cid)
    vendors = FakeVendors(mailwave={"answer": None})                  # mailwave never answers
    ctx = make_ctx(vendors)
    propagate.run_once(ctx, "all pending", run_id="run-1")
    events_before = len(store.timeline(filed.request_id))
    second = propagate.run_once(ctx, "all pending", run_id="run-2")   # the request is still open (mailwave)
    assert vendors.sent() == {v: 1 for v in register.vendors}
    assert all(not s["submitted"] for s in second["submitted"])
    assert len(store.timeline(filed.request_id)) == events_before
    assert store.request(filed.request_id).status == "in_progress"
    vendors.by_vendor["mailwave"].answer = "completed"                # the answer arrives later
    propagate.run_once(ctx, "all pending", run_id="run-3")
    assert store.request(filed.request_id).status == "complete" and vendors.sent()["mailwave"] == 1


def test_killed_after_submit_before_recording_resubmits_the_same_batch(store, cipher, shop, keys, register, make_ctx,
                                                                       ledger):
    url, planted = shop
    cid = planted["gpc"][0]
    _everything_shared(ledger, keys, cid, register)
    filed = _file(store, cipher, url, cid)
    vendors = FakeVendors()
    ctx = make_ctx(vendors)
    sel = propagate.select_requests(ctx, "all pending")
    propagate.resolve_and_suppress(ctx, sel["request_ids"], dry_run=False)
    plan = propagate.plan_batches(ctx, "run-1", sel["request_ids"])
    # the worker dies right after the vendor received the batch, before the ledger recorded it
    fraud = next(p for p in plan if p["vendor"] == "fraudshield")
    items = propagate._items(ctx, "fraudshield", store.batch(fraud["new_batch"]), store.pairs(batch_ids=fraud["batches"]))
    vendors(register.vendor("fraudshield")).submit(fraud["new_batch"], items)
    # a fresh run (new run id) picks the request up again
    propagate.run_once(ctx, "all pending", run_id="run-2")
    assert vendors.sent()["fraudshield"] == 1 and len(vendors.by_vendor["fraudshield"].submissions) == 1
    assert store.pair(next(p.pair_id for p in store.pairs([filed.request_id]) if p.vendor == "fraudshield")).status \
        == "completed"


def test_vendor_failure_leaves_subject_suppressed_and_pairs_queued(store, cipher, shop, keys, register, make_ctx,
                                                                   ledger):
    url, planted = shop
    cid = planted["sale_share_opt_out"][0]
    _everything_shared(ledger, keys, cid, register)
    filed = _file(store, cipher, url, cid)
    ctx = make_ctx(FakeVendors(parcelpost={"fail_submit": True}))
    with pytest.raises(ConnectionError):
        propagate.run_once(ctx, "all pending", run_id="run-1")
    assert keys.subject_key_of(cid) in ledger.suppressed()              # excluded from later feeds regardless
    parcel = next(p for p in store.pairs([filed.request_id]) if p.vendor == "parcelpost")
    assert parcel.status == "queued" and parcel.batch_id                # retried later under the same batch id


def test_opt_out_records_opt_out_not_full_suppression(store, cipher, shop, keys, register, make_ctx, ledger):
    url, planted = shop
    cid = planted["marketing_opt_in"][0]
    _everything_shared(ledger, keys, cid, register)
    filed = _file(store, cipher, url, cid, rtype="opt_out")
    vendors = FakeVendors()
    propagate.run_once(make_ctx(vendors), "all pending", run_id="run-1")
    assert keys.subject_key_of(cid) in ledger.opted_out() and keys.subject_key_of(cid) not in ledger.suppressed()
    assert set(vendors.sent()) == ADVERTISERS
    assert store.request(filed.request_id).status == "complete"


def test_selection_by_ticket_and_unknown_ticket(store, cipher, shop, make_ctx):
    url, planted = shop
    _file(store, cipher, url, planted["eea_no_ad_consent"][0], ticket="T-1")
    _file(store, cipher, url, planted["eea_no_ad_consent"][1], ticket="T-2")
    ctx = make_ctx()
    assert propagate.select_requests(ctx, "T-2")["requests"] == 1
    assert propagate.select_requests(ctx, " T-1, T-2 ")["requests"] == 2
    assert propagate.select_requests(ctx, "all pending")["requests"] == 2
    with pytest.raises(propagate.SelectionError, match="T-9"):
        propagate.select_requests(ctx, "T-1, T-9")
    with pytest.raises(propagate.SelectionError, match="ticket references"):
        propagate.select_requests(ctx, "jane@example.com")


# ---------------------------------------------------------------------------------------- deadlines
def test_deadline_check_raises_each_alert_once(store, cipher, shop, keys, register, make_ctx, ledger):
    url, planted = shop
    cid = planted["eea_with_ad_consent"][0]
    _everything_shared(ledger, keys, cid, register)
    filed = _file(store, cipher, url, cid, regulation="gdpr", received=dt.date(2026, 11, 2))   # due 2 Dec
    waiting = _file(store, cipher, url, planted["eea_with_ad_consent"][1], ticket="T-2",
                    received=dt.date(2026, 11, 2))                 # never propagated; CCPA due 17 Dec
    ctx = make_ctx(FakeVendors(reviewhub={"answer": None}))      # reviewhub never answers
    propagate.run_once(ctx, "T-1", run_id="run-1")
    assert alerts.deadline_check(store, dt.date(2026, 11, 20)) == []
    risk = alerts.deadline_check(store, dt.date(2026, 11, 26), register=register)
    assert [(a.level, a.ticket, a.vendor) for a in risk] == [("at_risk", "T-1", "reviewhub")]
    assert risk[0].days_left == 6 and risk[0].new and "@" not in risk[0].line()
    again = alerts.deadline_check(store, dt.date(2026, 11, 27))
    assert [a.new for a in again] == [False]
    late = alerts.deadline_check(store, dt.date(2026, 12, 12), register=register)
    assert {(a.level, a.ticket, a.vendor) for a in late} == {("overdue", "T-1", "reviewhub"), ("at_risk", "T-2", None)}
    events = [e.event for e in store.timeline(filed.request_id) if e.scope == "reviewhub"]
    assert events.count("alert_at_risk") == 1 and events.count("alert_overdue") == 1
    assert store.request(waiting.request_id).status == "filed"
    path = alerts.publish(late, ctx.reports_dir, now=dt.datetime(2026, 12, 12))
    assert json.loads(path.read_text())[0]["level"] == "overdue"
