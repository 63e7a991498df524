"""Vendor shares end to end against the real sandbox vendors (OpenSSH, moto S3, HTTPS API), real gpg,
a SQLite shop and a PostgreSQL ledger. Expected sets are computed here from the shop's raw tables in
plain Python, independently of the pipeline's SQL filter and its GX gate."""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import sqlite3
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from vendorprivacy.keys import Keys
from vendorprivacy.policy import load_register
from vendorprivacy.quality import GateFailed
from vendorprivacy.share import DeliveryRefused, FeedRun, deliver, gate, prepare
from vendorprivacy.shop.generate import generate_shop

RUN_DAY = dt.date(2026, 11, 1)
KEYS = Keys(b"it-token-key", b"it-subject-key")
REGISTER = load_register()
ADS = ("adgrid", "socialreach")


def sha(v: str) -> str:
    return hashlib.sha256(v.encode()).hexdigest()


@pytest.fixture(scope="module")
def sandbox(module_sandbox):
    """This module's own vendors: its deliveries (feed, day) must not meet other modules' in a shared bucket."""
    return module_sandbox


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    path = tmp_path_factory.mktemp("shop") / "shop.db"
    planted = generate_shop(f"sqlite:///{path}", customers=2000, seed=7)
    return f"sqlite:///{path}", path, planted


@pytest.fixture(scope="module")
def ledger(module_ledger):
    return module_ledger


@pytest.fixture(scope="module")
def staging(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("staging")


def feed_run(shop, ledger, staging, feed_id: str, day: dt.date = RUN_DAY, vendor=None) -> FeedRun:
    v, f = REGISTER.feed(feed_id)
    return FeedRun(vendor=vendor or v, feed=f, logical_date=day, shop_url=shop[0], ledger=ledger,
                   staging_root=staging, keys=KEYS)


def run_all_stages(run: FeedRun, sandbox) -> dict:
    prepare(run)
    gate(run)
    out = deliver(run)
    sandbox.ingest(run.vendor.vendor)
    return out


def held(sandbox, run: FeedRun) -> list[dict]:
    return [e["row"] for e in sandbox.entries(run.vendor.vendor) if e["delivery_id"] == run.delivery_id]


# ---------------------------------------------------------------- independent expectations from the raw shop
def age(birth: str, on: dt.date) -> int:
    b = dt.date.fromisoformat(birth[:10])
    return on.year - b.year - ((on.month, on.day) < (b.month, b.day))


@pytest.fixture(scope="module")
def people(shop):
    con = sqlite3.connect(shop[1])
    con.row_factory = sqlite3.Row
    rows = con.execute("SELECT c.*, k.marketing_opt_in, k.sale_share_opt_out, k.gpc_signal, k.eea_ad_consent "
                       "FROM customers c JOIN consents k USING (customer_id)").fetchall()
    return {r["customer_id"]: dict(r) for r in rows}


def may_advertise(p: dict) -> bool:
    return (age(p["birth_date"], RUN_DAY) >= 16 and not p["sale_share_opt_out"] and not p["gpc_signal"]
            and (not p["is_eea"] or p["eea_ad_consent"]))


def tagless(email: str) -> str:
    local, _, domain = email.strip().lower().rpartition("@")
    return f"{local.split('+')[0]}@{domain}"


@pytest.fixture(scope="module")
def delivered(shop, ledger, staging, sandbox):
    """Every feed of the register, delivered once for RUN_DAY."""
    runs = {f.id: feed_run(shop, ledger, staging, f.id) for _, f in REGISTER.feeds()}
    results = {fid: run_all_stages(r, sandbox) for fid, r in runs.items()}
    return runs, results


def test_every_feed_is_delivered_and_recorded(delivered, ledger, sandbox):
    runs, results = delivered
    for feed_id, run in runs.items():
        assert results[feed_id]["status"] == "delivered", feed_id
        row = ledger.get_delivery(run.delivery_id)
        assert row.status == "delivered" and row.row_count == len(held(sandbox, run)), feed_id
        assert row.fields == [{"name": f.name, "category": f.category, "transform": f.transform}
                              for f in run.feed.sent_fields], feed_id
        assert row.sha256 and len(row.sha256) == 64 and row.bytes > 0, feed_id


def test_vendors_hold_exactly_the_declared_fields(delivered, sandbox):
    runs, _ = delivered
    for feed_id, run in runs.items():
        declared = [f.name for f in run.feed.sent_fields]
        rows = held(sandbox, run)
        assert all(list(r) == declared for r in rows), feed_id


def test_advertising_partners_hold_exactly_the_people_who_may_be_shared(delivered, sandbox, people):
    runs, _ = delivered
    eligible = [p for p in people.values() if may_advertise(p)]
    adgrid = {r["email_sha256"] for r in held(sandbox, runs["adgrid_customer_match"])}
    assert adgrid == {sha(p["email"].strip().lower()) for p in eligible}
    social = {r["email_sha256"] for r in held(sandbox, runs["socialreach_custom_audience"])}
    assert social == {sha(tagless(p["email"])) for p in eligible}
    phones = {r["phone_sha256"] for r in held(sandbox, runs["socialreach_custom_audience"])}
    assert all(len(h) == 64 for h in phones) and len(phones) == len(eligible)


def test_marketing_service_holds_exactly_opted_in_people_aged_13_or_more(delivered, sandbox, people):
    runs, _ = delivered
    expected = {p["email"].strip().lower() for p in people.values()
                if p["marketing_opt_in"] and age(p["birth_date"], RUN_DAY) >= 13}
    assert {r["email"] for r in held(sandbox, runs["mailwave_subscribers"])} == expected


def test_planted_hard_cases_come_out_right(delivered, sandbox, people, shop):
    runs, _ = delivered
    planted = shop[2]
    by_hash = {sha(p["email"].strip().lower()): cid for cid, p in people.items()}
    by_email = {p["email"].strip().lower(): cid for cid, p in people.items()}
    in_ads = {by_hash[r["email_sha256"]] for r in held(sandbox, runs["adgrid_customer_match"])}
    in_mail = {by_email[r["email"]] for r in held(sandbox, runs["mailwave_subscribers"])}
    for kind in ("under_13", "under_16", "sale_share_opt_out", "gpc", "eea_no_ad_consent"):
        assert planted[kind] and not (set(planted[kind]) & in_ads), kind
    assert not set(planted["under_13"]) & in_mail
    under16_opted_in = {c for c in planted["under_16"] if people[c]["marketing_opt_in"]}
    assert under16_opted_in and under16_opted_in <= in_mail  # marketing e-mail is not a sale: 13+ with opt-in
    assert set(planted.isolated["eea_with_ad_consent"]) <= in_ads
    # padded and mixed-case e-mails match in their normalised form
    for kind in ("email_padded", "email_mixed_case"):
        assert set(planted.isolated[kind]) <= in_ads, kind
    # +tag: Google-style keeps the tag, this Meta-style partner strips it
    social = {r["email_sha256"] for r in held(sandbox, runs["socialreach_custom_audience"])}
    for cid in planted.isolated["email_plus_tag"]:
        email = people[cid]["email"]
        assert "+" in email
        assert sha(email.strip().lower()) in {r["email_sha256"] for r in held(sandbox, runs["adgrid_customer_match"])}
        assert sha(tagless(email)) in social and sha(email.strip().lower()) not in social


def test_review_text_is_neutralised_and_scrubbed(delivered, sandbox, shop):
    runs, _ = delivered
    planted = shop[2]
    reviews = {int(r["review_id"]): r for r in held(sandbox, runs["reviewhub_reviews"])}
    formula = [reviews[i] for i in planted.reviews["review_formula_leading"] if i in reviews]
    assert formula and all(r["body"].startswith("'") and r["body"][1] in "=+-@" for r in formula)
    for kind, mask in (("review_contains_email", "[email removed]"), ("review_contains_phone", "[phone removed]")):
        held_kind = [reviews[i] for i in planted.reviews[kind] if i in reviews]
        assert held_kind and all(mask in r["body"] for r in held_kind), kind
    assert not any("@" in r["body"].lstrip("'@") and "." in r["body"].split("@")[-1][:20]
                   for r in reviews.values() if r["body"] and "[email removed]" not in r["body"])
    assert all("reviewer_token" in r and len(r["reviewer_token"]) == 64 for r in reviews.values())


def test_ledger_knows_who_received_whom(delivered, ledger, people, shop):
    planted = shop[2]
    adult = planted.isolated["gpc"][0]  # GPC: shared with service providers, never with advertisers
    received = ledger.recipients_of(KEYS.subject_key_of(adult))
    assert "mailwave" not in received or people[adult]["marketing_opt_in"]
    assert not received & set(ADS)
    eligible_adult = next(c for c, p in people.items() if may_advertise(p))
    assert set(ADS) <= ledger.recipients_of(KEYS.subject_key_of(eligible_adult))


def test_same_feed_and_date_twice_is_one_delivery(delivered, shop, ledger, staging, sandbox):
    runs, _ = delivered
    run = feed_run(shop, ledger, staging, "adgrid_customer_match")
    before = len(held(sandbox, run))
    again = run_all_stages(run, sandbox)
    assert again["status"] == "already_delivered"
    assert len(held(sandbox, run)) == before
    assert sandbox.deliveries("adgrid").count(run.delivery_id) == 1
    assert [d.delivery_id for d in ledger.deliveries("adgrid_customer_match")].count(run.delivery_id) == 1


@pytest.mark.parametrize("feed_id", ["socialreach_custom_audience", "mailwave_subscribers"])
def test_crash_after_upload_before_ledger_commit_does_not_deliver_twice(feed_id, shop, ledger, staging, sandbox):
    """The task died after the vendor got the file but before the ledger said so; the retry finds it there."""
    day = RUN_DAY + dt.timedelta(days=3)
    run = feed_run(shop, ledger, staging, feed_id, day)
    first = run_all_stages(run, sandbox)
    rows = len(held(sandbox, run))
    ledger.update_delivery(run.delivery_id, status="prepared")  # as if the ledger write had been lost
    second = run_all_stages(run, sandbox)
    assert second["status"] == "delivered" and second["already_present"] is True
    assert first["rows"] == second["rows"] == rows == len(held(sandbox, run))


# ---------------------------------------------------------------- the gate stops bad files: nothing leaves
def _tamper(run: FeedRun, change) -> None:
    path = run.staging_dir / "data.csv"
    table = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(strings_can_be_null=True,
                           column_types={f.name: pa.string() for f in run.feed.sent_fields}))
    pacsv.write_csv(change(table), path)


@pytest.mark.parametrize("case", ["extra_column", "raw_email_for_hash", "ineligible_person"])
def test_gate_failure_sends_nothing(case, shop, ledger, staging, sandbox, people):
    day = RUN_DAY + dt.timedelta(days={"extra_column": 10, "raw_email_for_hash": 11, "ineligible_person": 12}[case])
    run = feed_run(shop, ledger, staging, "adgrid_customer_match", day)
    prepare(run)
    if case == "extra_column":
        _tamper(run, lambda t: t.append_column("first_name", pa.array(["x"] * t.num_rows)))
    elif case == "raw_email_for_hash":
        raw = next(iter(people.values()))["email"]
        _tamper(run, lambda t: t.set_column(0, "email_sha256", pa.array([raw] + t.column(0).to_pylist()[1:])))
    else:  # a GPC customer slipped into the staged file and its subjects
        import pyarrow.ipc as ipc
        gpc = next(c for c, p in people.items() if p["gpc_signal"])
        subjects = ipc.open_file(run.staging_dir / "subjects.arrow").read_all()
        subjects = subjects.set_column(0, "customer_id", pa.array([gpc] + subjects.column(0).to_pylist()[1:], pa.int64()))
        with ipc.new_file(run.staging_dir / "subjects.arrow", subjects.schema) as w:
            w.write_table(subjects)
    with pytest.raises(GateFailed) as failure:
        gate(run)
    message = str(failure.value)
    assert "adgrid_customer_match" in message and "@" not in message
    with pytest.raises(DeliveryRefused):
        deliver(run)
    sandbox.ingest("adgrid")
    assert run.delivery_id not in sandbox.deliveries("adgrid")
    assert ledger.get_delivery(run.delivery_id).status == "gate_failed"


# ---------------------------------------------------------------- fail closed on transport and key problems
def _vendor_with(vendor_id: str, conn_id: str):
    v = REGISTER.vendor(vendor_id)
    return v.model_copy(update={"transport": v.transport.model_copy(update={"conn_id": conn_id})})


def _other_host_key() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()


def _prepared_and_gated(run: FeedRun) -> None:
    prepare(run)
    gate(run)


def test_changed_sftp_host_key_is_refused(shop, ledger, staging, sandbox, conn_override):
    from vendorprivacy.transports.errors import HostKeyMismatch

    conn_id = conn_override("payflow", {}, extra={"host_key": _other_host_key()})
    run = feed_run(shop, ledger, staging, "payflow_settlement", RUN_DAY - dt.timedelta(days=20), _vendor_with("payflow", conn_id))
    _prepared_and_gated(run)
    with pytest.raises(HostKeyMismatch) as e:
        deliver(run)
    assert conn_id in str(e.value)
    assert not any(run.delivery_id[:8] in p.name for p in sandbox.drop_folder("payflow").rglob("*"))
    assert ledger.get_delivery(run.delivery_id).status == "failed"


def test_missing_vendor_key_sends_nothing(shop, ledger, staging, sandbox, monkeypatch, tmp_path):
    from vendorprivacy.crypto import KeyMissingError

    monkeypatch.setenv("VENDORPRIVACY_KEYS_DIR", str(tmp_path))  # no keys here
    run = feed_run(shop, ledger, staging, "parcelpost_manifest", RUN_DAY - dt.timedelta(days=21))
    _prepared_and_gated(run)
    with pytest.raises(KeyMissingError, match="parcelpost.asc"):
        deliver(run)
    sandbox.ingest("parcelpost")
    assert run.delivery_id not in sandbox.deliveries("parcelpost")
    assert ledger.get_delivery(run.delivery_id).status == "failed"


@pytest.mark.parametrize("vendor_id,feed_id", [("callvault", "callvault_calls"), ("adgrid", "adgrid_customer_match"),
                                               ("fraudshield", "fraudshield_orders")])
def test_unreachable_vendor_fails_clearly(vendor_id, feed_id, shop, ledger, staging, sandbox, conn_override, closed_port):
    from vendorprivacy.transports.errors import VendorUnreachable

    changes = {"port": closed_port}
    extra = {"endpoint_url": f"http://127.0.0.1:{closed_port}"} if vendor_id == "adgrid" else None
    conn_id = conn_override(vendor_id, changes if vendor_id != "adgrid" else {}, extra=extra)
    run = feed_run(shop, ledger, staging, feed_id, RUN_DAY - dt.timedelta(days=22), _vendor_with(vendor_id, conn_id))
    _prepared_and_gated(run)
    with pytest.raises(VendorUnreachable) as e:
        deliver(run)
    assert conn_id in str(e.value)
    assert ledger.get_delivery(run.delivery_id).status == "failed"
    assert run.delivery_id not in sandbox.deliveries(vendor_id)


# ---------------------------------------------------------------- erasures and opt-outs reach the feeds
def test_opted_out_person_leaves_advertising_feeds_but_still_gets_service(shop, ledger, staging, sandbox, people):
    cid = next(c for c, p in people.items() if may_advertise(p) and p["marketing_opt_in"])
    key = KEYS.subject_key_of(cid)
    ledger.record_opt_out([key], request_ref="T-OPTOUT")
    day = RUN_DAY + dt.timedelta(days=30)
    ads = feed_run(shop, ledger, staging, "adgrid_customer_match", day)
    mail = feed_run(shop, ledger, staging, "mailwave_subscribers", day)
    run_all_stages(ads, sandbox)
    run_all_stages(mail, sandbox)
    assert sha(people[cid]["email"].strip().lower()) not in {r["email_sha256"] for r in held(sandbox, ads)}
    assert people[cid]["email"].strip().lower() in {r["email"] for r in held(sandbox, mail)}


def test_suppression_after_prepare_stops_the_delivery(shop, ledger, staging, sandbox, people):
    day = RUN_DAY + dt.timedelta(days=31)
    run = feed_run(shop, ledger, staging, "socialreach_custom_audience", day)
    prepare(run)
    gate(run)
    cid = next(c for c, p in people.items() if may_advertise(p) and c % 7 == 3)
    ledger.suppress([KEYS.subject_key_of(cid)], reason="erasure", request_ref="T-LATE")  # erasure lands now
    with pytest.raises(DeliveryRefused, match="suppressed or opted out after"):
        deliver(run)
    sandbox.ingest("socialreach")
    assert run.delivery_id not in sandbox.deliveries("socialreach")
    assert run_all_stages(run, sandbox)["status"] == "delivered"  # re-run: prepared again without them
    assert sha(tagless(people[cid]["email"])) not in {r["email_sha256"] for r in held(sandbox, run)}
