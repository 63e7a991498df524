"""Erasure protocols against the real sandbox vendors: sshd, moto S3, the HTTPS vendor API, real gpg.

Each vendor really holds rows and really deletes them; the questions asked are the vendor's own:
"what do you hold about this person now?" and "what did you answer?".
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid

import pytest
from vendorprivacy.erasure.protocols import (
    AnswerRejected,
    ErasureItem,
    ErasureProtocol,
    Outcome,
    protocol_for,
)
from vendorprivacy.erasure.protocols.openpgp import sign_detached
from vendorprivacy.keys import Keys
from vendorprivacy.minimise.normalise import hmac_hex, normalise, sha256_hex
from vendorprivacy.policy import load_register
from vendorprivacy.transports import AuthenticationFailed, SftpTransport

from sandbox import DEFAULT_VENDORS, POLICY_KEYS_DIR, SANDBOX_KEYS_DIR, Sandbox, specs_from_register

PAYFLOW_REASON = "Payment records are kept for 10 years under tax and anti-money-laundering law"


@pytest.fixture(scope="module")
def register():
    return load_register()


def by_pair(outcomes: list[Outcome]) -> dict[str, Outcome]:
    assert len({o.pair_id for o in outcomes}) == len(outcomes), "one outcome per pair"
    return {o.pair_id: o for o in outcomes}


def poll_until(proto, batch_id, items, *, timeout=10.0, terminal=True) -> list[Outcome]:
    deadline = time.monotonic() + timeout
    while True:
        outcomes = proto.poll(batch_id, items)
        if outcomes and (not terminal or all(o.terminal for o in outcomes)) and len(outcomes) == len(items):
            return outcomes
        if time.monotonic() > deadline:
            return outcomes
        time.sleep(0.1)


def new_batch() -> str:
    return str(uuid.uuid4())


# --------------------------------------------------------------------------- the contract
def test_register_and_sandbox_agree_on_every_transport(sandbox, register):
    assert set(specs_from_register(register)) == set(DEFAULT_VENDORS)
    env = sandbox.airflow_env()
    conn_ids = {v.transport.conn_id for v in register.vendors.values()}
    conn_ids |= {v.erasure.transport.conn_id for v in register.vendors.values() if v.erasure.transport}
    assert "vendor_payflow_api" in conn_ids
    assert {f"AIRFLOW_CONN_{c.upper()}" for c in conn_ids} <= set(env)
    for vendor in register.vendors.values():
        assert isinstance(protocol_for(vendor), ErasureProtocol)
    unstarted = Sandbox.from_register(register, "/nonexistent/not-started")
    assert unstarted.spec("payflow", role="erasure").conn_id == "vendor_payflow_api"
    assert unstarted.spec("payflow").conn_id == "vendor_payflow_sftp"


def test_erasure_item_is_validated_without_echoing_values():
    with pytest.raises(ValueError, match="uuid4"):
        ErasureItem("not-a-uuid", "gdpr", "erasure", {}, __import__("datetime").datetime.now().astimezone())
    with pytest.raises(ValueError) as exc:
        ErasureItem(str(uuid.uuid4()), "gdpr", "erasure", {"email": "secret@example.com"},
                    __import__("datetime").datetime.now().astimezone())
    assert "secret@example.com" not in str(exc.value)


# --------------------------------------------------------------------------- sftp_ack
def test_sftp_ack_deletes_the_subject_answers_signed_and_resubmit_sends_nothing(
        sandbox, register, make_delivery, erasure_item, tmp_path):
    tag = uuid.uuid4().hex[:8]
    ann, bob = f"ann.{tag}@example.com", f"bob.{tag}@example.com"
    columns = ["shipment_id", "order_id", "tracking_number", "email", "phone"]
    rows = [[f"s{tag}1", f"7{tag}1", "T1", ann, "+447700900001"],
            [f"s{tag}2", f"7{tag}2", "T2", ann, "+447700900001"],
            [f"s{tag}3", f"7{tag}3", "T3", bob, "+447700900002"]]
    d = make_delivery("parcelpost", columns, rows, feed="parcelpost_manifest")
    spec = sandbox.spec("parcelpost")
    SftpTransport(spec.conn_id, spec.base_path).put(d.path, d.name, d.manifest_bytes)
    assert d.name in sandbox.ingest("parcelpost").loaded
    assert len(sandbox.find("parcelpost", "email", ann)) == 2

    vendor = register.vendor("parcelpost")
    evidence = tmp_path / "evidence"
    proto = protocol_for(vendor, evidence_dir=evidence, work_dir=tmp_path / "work")
    present = erasure_item({"order_id": [f"7{tag}1", f"7{tag}2"], "email": [ann]})
    absent = erasure_item({"email": [f"nobody.{tag}@example.com"], "order_id": [f"9{tag}"]}, regulation="ccpa")
    batch = new_batch()

    receipt = proto.submit(batch, [present, absent])
    assert receipt.already_submitted is False and receipt.bytes > 0 and len(receipt.sha256) == 64
    folder = sandbox.erasure_folder("parcelpost")
    assert folder == sandbox.sshd.sftp_root / "parcelpost" / "erasure"
    assert ann.encode() not in (folder / f"{batch}.csv.pgp").read_bytes()

    report = sandbox.process_erasures("parcelpost")
    outcomes = by_pair(proto.poll(batch, [present, absent]))
    if not report.answered:  # the background poller answered first: fine, it is the same vendor
        assert outcomes
    assert outcomes[present.pair_id].status == "completed"
    assert outcomes[absent.pair_id].status == "not_found"
    ack = json.loads((folder / "acks" / f"{batch}.ack.json").read_bytes())
    assert outcomes[present.pair_id].vendor_reference == ack["vendor_reference"]
    assert outcomes[present.pair_id].evidence_sha256 == hashlib.sha256(
        (folder / "acks" / f"{batch}.ack.json").read_bytes()).hexdigest()
    assert (folder / "acks" / f"{batch}.ack.json.asc").read_bytes().startswith(b"-----BEGIN PGP SIGNATURE")
    kept = sorted(p.name for p in (evidence / "parcelpost").iterdir())
    stem = outcomes[present.pair_id].evidence_sha256
    assert kept == [f"{stem}.json", f"{stem}.json.asc"]  # the raw answer and its signature, as evidence
    assert ann.encode() not in (evidence / "parcelpost" / f"{stem}.json").read_bytes()
    assert not list((tmp_path / "work").iterdir())  # no plaintext left behind

    assert sandbox.find("parcelpost", "email", ann) == []  # really deleted
    assert [r["order_id"] for r in sandbox.find("parcelpost", "email", bob)] == [f"7{tag}3"]  # others kept

    again = proto.submit(batch, [absent, present])  # same batch, other order: same request
    assert again.already_submitted is True and again.sha256 == receipt.sha256
    assert sorted(p.name for p in folder.glob(f"{batch}*")) == [f"{batch}.csv.pgp", f"{batch}.csv.pgp.manifest.json"]
    sandbox.process_erasures("parcelpost")
    assert len(sandbox.erasure_outcomes("parcelpost", present.pair_id)) == 1  # processed once
    assert by_pair(proto.poll(batch, [present, absent])) == outcomes


def test_sftp_ack_is_answered_by_the_background_poller(sandbox, register, erasure_item):
    tag = uuid.uuid4().hex[:6]
    phone = f"+4477009{int(tag, 16) % 100000:05d}"
    sandbox.add_records("callvault", "callvault_calls", [
        {"call_id": f"c{tag}1", "caller_phone": phone, "duration_s": "31"},
        {"call_id": f"c{tag}2", "caller_phone": "+15005550006", "duration_s": "12"},
    ])
    proto = protocol_for(register.vendor("callvault"))
    item = erasure_item({"phone": [phone]})
    batch = new_batch()
    proto.submit(batch, [item])
    outcomes = poll_until(proto, batch, [item])  # nobody calls process_erasures()
    assert [o.status for o in outcomes] == ["completed"]
    assert sandbox.find("callvault", "caller_phone", phone) == []
    assert sandbox.find("callvault", "call_id", f"c{tag}2")


def test_forged_tampered_or_unsigned_acks_are_rejected(sandbox, register, erasure_item):
    tag = uuid.uuid4().hex[:8]
    email = f"carol.{tag}@example.com"
    sandbox.add_records("parcelpost", "parcelpost_manifest", [{"order_id": f"8{tag}", "email": email}])
    proto = protocol_for(register.vendor("parcelpost"))
    item = erasure_item({"email": [email]})
    batch = new_batch()
    proto.submit(batch, [item])
    sandbox.process_erasures("parcelpost")
    acks = sandbox.erasure_folder("parcelpost") / "acks"
    ack, sig = acks / f"{batch}.ack.json", acks / f"{batch}.ack.json.asc"
    genuine, genuine_sig = ack.read_bytes(), sig.read_bytes()
    assert [o.status for o in proto.poll(batch, [item])] == ["completed"]

    def rejected() -> AnswerRejected:
        with pytest.raises(AnswerRejected) as exc:
            proto.poll(batch, [item])
        message = str(exc.value)
        assert "parcelpost" in message and f"acks/{batch}.ack.json" in message
        assert email not in message
        return exc.value

    doc = json.loads(genuine)
    doc["results"][0]["outcome"] = "not_found"
    ack.write_bytes(json.dumps(doc, indent=2, sort_keys=True).encode())  # tampered, old signature
    assert "signature" in str(rejected())

    ack.write_bytes(genuine)
    sig.write_bytes(sign_detached(genuine, SANDBOX_KEYS_DIR / "callvault.sec.asc"))  # another vendor's key
    assert "signature" in str(rejected())

    sig.unlink()  # unsigned
    assert "unsigned" in str(rejected())

    garbage = b"{not json"
    ack.write_bytes(garbage)
    sig.write_bytes(sign_detached(garbage, SANDBOX_KEYS_DIR / "parcelpost.sec.asc"))  # signed but malformed
    assert "JSON" in str(rejected())

    other = dict(json.loads(genuine), batch_id=new_batch())
    raw = json.dumps(other).encode()
    ack.write_bytes(raw)
    sig.write_bytes(sign_detached(raw, SANDBOX_KEYS_DIR / "parcelpost.sec.asc"))  # signed, wrong batch
    assert "another batch" in str(rejected())

    ack.write_bytes(genuine)
    sig.write_bytes(genuine_sig)
    assert [o.status for o in proto.poll(batch, [item])] == ["completed"]


def test_a_request_the_vendor_cannot_decrypt_fails_every_pair_with_its_reason(
        sandbox, register, erasure_item, tmp_path):
    wrong_keys = tmp_path / "keys"
    wrong_keys.mkdir()
    (wrong_keys / "parcelpost.asc").write_bytes((POLICY_KEYS_DIR / "callvault.asc").read_bytes())
    sending = protocol_for(register.vendor("parcelpost"), keys_dir=wrong_keys)  # encrypts to the wrong key
    items = [erasure_item({"order_id": [f"1{uuid.uuid4().hex[:8]}"]}) for _ in range(2)]
    batch = new_batch()
    sending.submit(batch, items)
    sandbox.process_erasures("parcelpost")
    outcomes = protocol_for(register.vendor("parcelpost")).poll(batch, items)  # verified with the right key
    assert [o.status for o in outcomes] == ["failed", "failed"]
    assert all("decryption failed" in o.reason for o in outcomes)


def test_never_answering_vendor_polls_empty_and_retaining_vendor_keeps_rows(
        sandbox, register, erasure_item, erasure_behaviour):
    tag = uuid.uuid4().hex[:6]
    phone = f"+4477008{int(tag, 16) % 100000:05d}"
    sandbox.add_records("callvault", "callvault_calls", [{"call_id": f"n{tag}", "caller_phone": phone}])
    proto = protocol_for(register.vendor("callvault"))
    item = erasure_item({"phone": [phone]})

    erasure_behaviour("callvault", "never")
    batch = new_batch()
    proto.submit(batch, [item])
    assert sandbox.process_erasures("callvault").answered == {}
    time.sleep(0.5)  # the background poller does not answer either
    assert proto.poll(batch, [item]) == []
    assert sandbox.find("callvault", "caller_phone", phone)

    erasure_behaviour("callvault", "retain", reason="Litigation hold on call recordings")
    sandbox.process_erasures("callvault")
    [outcome] = proto.poll(batch, [item])
    assert (outcome.status, outcome.reason) == ("retained", "Litigation hold on call recordings")
    assert sandbox.find("callvault", "caller_phone", phone)  # nothing deleted

    erasure_behaviour("callvault", "slow", delay=1.0)
    slow, slow_batch = erasure_item({"phone": [phone]}), new_batch()
    started = time.monotonic()
    proto.submit(slow_batch, [slow])
    sandbox.process_erasures("callvault")
    assert proto.poll(slow_batch, [slow]) == []  # not yet
    assert [o.status for o in poll_until(proto, slow_batch, [slow])] == ["completed"]  # the poller, later
    assert time.monotonic() - started >= 1.0
    assert sandbox.find("callvault", "caller_phone", phone) == []


# --------------------------------------------------------------------------- s3_removal_list
@pytest.mark.parametrize("partner,email_norm,phone_norm", [
    ("adgrid", "email", "phone_e164"),
    ("socialreach", "email_strip_plus_tag", "phone_digits"),
])
def test_s3_removal_list_removes_audience_rows_in_the_partners_own_hashing(
        sandbox, register, erasure_item, partner, email_norm, phone_norm):
    tag = uuid.uuid4().hex[:8]
    raw_email, other_email = f" Dana.{tag}+news@Example.com ", f"eve.{tag}@example.com"
    phone = f"07400 {int(tag, 16) % 1000000:06d}"
    h_email = sha256_hex(normalise(email_norm, raw_email))
    h_phone = sha256_hex(normalise(phone_norm, phone, "GB"))
    feed = register.vendor(partner).feeds[0].id
    sandbox.add_records(partner, feed, [
        {"email_sha256": h_email, "phone_sha256": "", "country_code": "GB"},
        {"email_sha256": "", "phone_sha256": h_phone, "country_code": "GB"},
        {"email_sha256": sha256_hex(normalise(email_norm, other_email)), "phone_sha256": "", "country_code": "FR"},
    ])
    proto = protocol_for(register.vendor(partner))
    present = erasure_item({"email": [h_email], "phone": [h_phone]}, request_type="opt_out", regulation="ccpa")
    absent = erasure_item({"email": [sha256_hex(f"nobody.{tag}@example.com")]})
    batch = new_batch()

    receipt = proto.submit(batch, [present, absent])
    assert not receipt.already_submitted
    sandbox.process_erasures(partner)
    outcomes = by_pair(proto.poll(batch, [present, absent]))
    assert outcomes[present.pair_id].status == "completed"
    assert outcomes[absent.pair_id].status == "not_found"
    assert sandbox.find(partner, "email_sha256", h_email) == [] and sandbox.find(partner, "phone_sha256", h_phone) == []
    assert sandbox.find(partner, "email_sha256", sha256_hex(normalise(email_norm, other_email)))
    [logged] = sandbox.erasure_outcomes(partner, present.pair_id)
    assert (logged["matched"], logged["deleted"]) == (2, 2)

    assert proto.submit(batch, [present, absent]).already_submitted is True
    client = sandbox.s3.client()
    spec = sandbox.spec(partner)
    keys = sorted(o["Key"] for o in client.list_objects_v2(Bucket=spec.bucket, Prefix=spec.prefix).get("Contents", [])
                  if batch in o["Key"])
    assert keys == [f"{spec.prefix}removals/{batch}.csv.pgp", f"{spec.prefix}removals/{batch}.csv.pgp.manifest.json",
                    f"{spec.prefix}results/{batch}.json", f"{spec.prefix}results/{batch}.json.asc"]

    # a tampered result manifest is refused
    key = f"{spec.prefix}results/{batch}.json"
    doc = json.loads(client.get_object(Bucket=spec.bucket, Key=key)["Body"].read())
    doc["results"] = [dict(r, removed=0, matched=0) for r in doc["results"]]
    client.put_object(Bucket=spec.bucket, Key=key, Body=json.dumps(doc).encode())
    with pytest.raises(AnswerRejected, match=f"{partner}.*results/{batch}.json.*signature"):
        proto.poll(batch, [present, absent])


# --------------------------------------------------------------------------- opendsr
def _opendsr_case(vendor: str, tag: str):
    """(feed, rows held, identifiers of the present subject, a column to find its rows) per vendor."""
    email = f"fay.{tag}@example.com"
    if vendor == "fraudshield":
        h = sha256_hex(normalise("email", email))
        rows = [{"order_id": f"5{tag}1", "email_sha256": h, "amount": "10.00"},
                {"order_id": f"5{tag}2", "email_sha256": "", "amount": "12.00"}]
        return "fraudshield_orders", rows, {"email": [h], "order_id": [f"5{tag}2"]}, ("order_id", f"5{tag}1")
    if vendor == "reviewhub":
        token = hmac_hex(Keys.from_env().vendor_token_key("reviewhub"), normalise("email", email))
        rows = [{"review_id": f"r{tag}", "reviewer_token": token, "body": "Great kettle"}]
        return "reviewhub_reviews", rows, {"email": [token]}, ("reviewer_token", token)
    rows = [{"email": email, "first_name": "Fay", "subscriber_token": "t"}]
    return "mailwave_subscribers", rows, {"email": [email]}, ("email", email)


@pytest.mark.parametrize("vendor", ["fraudshield", "reviewhub", "mailwave"])
def test_opendsr_request_per_pair_really_deletes_and_is_idempotent(sandbox, register, erasure_item, vendor):
    tag = uuid.uuid4().hex[:8]
    feed, rows, identifiers, (col, value) = _opendsr_case(vendor, tag)
    sandbox.add_records(vendor, feed, rows)
    sandbox.add_records(vendor, feed, [{col: f"someone-else-{tag}"}])
    proto = protocol_for(register.vendor(vendor))
    present = erasure_item(identifiers)
    absent = erasure_item({k: [f"x{tag}{i}" for i, _ in enumerate(v)] for k, v in identifiers.items()})
    batch = new_batch()

    receipt = proto.submit(batch, [present, absent])
    assert receipt.already_submitted is False and receipt.vendor_reference is None
    held = sandbox.opendsr_requests(vendor, present.pair_id)
    assert len(held) == 1 and held[0]["body"]["subject_request_type"] == "erasure"
    if vendor == "reviewhub":  # HMAC tokens travel as controller_token / raw
        assert {(i["identity_type"], i["identity_format"]) for i in held[0]["body"]["subject_identities"]} == \
            {("controller_token", "raw")}

    sandbox.process_erasures(vendor)
    outcomes = by_pair(proto.poll(batch, [present, absent]))
    assert outcomes[present.pair_id].status == "completed"
    assert outcomes[absent.pair_id].status == "not_found"
    assert outcomes[present.pair_id].vendor_reference.startswith(f"{vendor}-dsr-")
    assert sandbox.find(vendor, col, value) == []
    assert sandbox.find(vendor, col, f"someone-else-{tag}")
    held = sandbox.opendsr_requests(vendor, present.pair_id)[0]
    assert all(i["identity_value"] is None for i in held["body"]["subject_identities"])  # vendor scrubbed them

    again = proto.submit(batch, [present, absent])
    assert again.already_submitted is True and again.sha256 == receipt.sha256
    assert len(sandbox.opendsr_requests(vendor, present.pair_id)) == 1
    assert len(sandbox.erasure_outcomes(vendor, present.pair_id)) == 1


def test_payflow_retains_payment_records_with_the_legal_reason(sandbox, register, make_delivery, erasure_item):
    tag = uuid.uuid4().hex[:8]
    columns = ["order_id", "processor_token", "amount", "currency", "paid_at"]
    d = make_delivery("payflow", columns, [[f"4{tag}1", f"tok_{tag}1", "19.99", "GBP", "2026-10-31T10:00:00"],
                                           [f"4{tag}2", f"tok_{tag}2", "5.00", "GBP", "2026-10-31T11:00:00"]],
                      feed="payflow_settlement")
    spec = sandbox.spec("payflow")  # the feed arrives over SFTP...
    SftpTransport(spec.conn_id, spec.base_path).put(d.path, d.name, d.manifest_bytes)
    sandbox.ingest("payflow")
    vendor = register.vendor("payflow")
    proto = protocol_for(vendor)  # ...erasure goes to the OpenDSR API on vendor_payflow_api
    assert (proto.conn_id, proto.endpoint) == ("vendor_payflow_api", "/payflow")
    present = erasure_item({"order_id": [f"4{tag}1"], "email": [f"gus.{tag}@example.com"]})
    absent = erasure_item({"order_id": [f"3{tag}"]})
    batch = new_batch()
    proto.submit(batch, [present, absent])
    sandbox.process_erasures("payflow")
    outcomes = by_pair(proto.poll(batch, [present, absent]))
    assert (outcomes[present.pair_id].status, outcomes[present.pair_id].reason) == ("retained", PAYFLOW_REASON)
    assert vendor.erasure.retention_exemptions[0].reason == PAYFLOW_REASON
    assert outcomes[absent.pair_id].status == "not_found"
    assert [r["processor_token"] for r in sandbox.find("payflow", "order_id", f"4{tag}1")] == [f"tok_{tag}1"]


def test_signed_callbacks_verify_and_forgeries_are_refused(sandbox, register, erasure_item, callback_receiver):
    from vendorprivacy.erasure.protocols import fetch_processor_cert, outcome_from_callback, verify_callback

    tag = uuid.uuid4().hex[:8]
    h = sha256_hex(f"hal.{tag}@example.com")
    sandbox.add_records("fraudshield", "fraudshield_orders", [{"order_id": f"6{tag}", "email_sha256": h}])
    vendor = register.vendor("fraudshield")
    cert = fetch_processor_cert(vendor)
    assert cert == sandbox.processor_cert("fraudshield")
    proto = protocol_for(vendor, callback_urls=[callback_receiver.url])
    item = erasure_item({"email": [h]})
    proto.submit(new_batch(), [item])
    sandbox.process_erasures("fraudshield")
    received = callback_receiver.wait(2)
    docs = [verify_callback(headers, body, cert, vendor="fraudshield", expected_callback_url=callback_receiver.url)
            for headers, body in received]
    assert [d["request_status"] for d in docs] == ["pending", "completed"]
    assert {d["subject_request_id"] for d in docs} == {item.pair_id}
    headers, body = received[-1]
    assert outcome_from_callback(headers, body, cert, vendor="fraudshield").status == "completed"

    tampered = body.replace(b'"completed"', b'"cancelled"')
    with pytest.raises(AnswerRejected, match="does not verify"):
        verify_callback(headers, tampered, cert, vendor="fraudshield")
    with pytest.raises(AnswerRejected, match="not the certificate"):  # another processor's certificate
        verify_callback(headers, body, sandbox.processor_cert("reviewhub"), vendor="fraudshield")
    unsigned = {k: v for k, v in headers.items() if k.lower() != "x-opendsr-signature"}
    with pytest.raises(AnswerRejected, match="unsigned"):
        verify_callback(unsigned, body, cert, vendor="fraudshield")
    with pytest.raises(AnswerRejected, match="another status_callback_url"):
        verify_callback(headers, body, cert, vendor="fraudshield", expected_callback_url="https://elsewhere.example/cb")


def test_opendsr_answers_signed_by_another_processor_are_rejected(sandbox, register, erasure_item):
    proto = protocol_for(register.vendor("mailwave"), processor_cert_pem=sandbox.processor_cert("reviewhub"))
    item = erasure_item({"email": [f"ivy.{uuid.uuid4().hex[:6]}@example.com"]})
    with pytest.raises(AnswerRejected, match=r"mailwave POST /opendsr/requests.*not the certificate"):
        proto.submit(new_batch(), [item])


def test_opendsr_never_answering_stays_acknowledged_and_slow_answers_later(
        sandbox, register, erasure_item, erasure_behaviour):
    email = f"jo.{uuid.uuid4().hex[:8]}@example.com"
    sandbox.add_records("mailwave", "mailwave_subscribers", [{"email": email, "first_name": "Jo"}])
    proto = protocol_for(register.vendor("mailwave"))
    item = erasure_item({"email": [email]})
    batch = new_batch()

    erasure_behaviour("mailwave", "never")
    proto.submit(batch, [item])
    sandbox.process_erasures("mailwave")
    time.sleep(0.3)  # the vendor's worker does not answer either
    [outcome] = proto.poll(batch, [item])
    assert outcome.status == "acknowledged" and not outcome.terminal  # received, never confirmed
    assert sandbox.find("mailwave", "email", email)

    erasure_behaviour("mailwave", "slow", delay=1.0)
    later = f"kim.{uuid.uuid4().hex[:8]}@example.com"
    sandbox.add_records("mailwave", "mailwave_subscribers", [{"email": later, "first_name": "Kim"}])
    slow_item = erasure_item({"email": [later]})
    slow_batch = new_batch()
    started = time.monotonic()
    proto.submit(slow_batch, [slow_item])
    sandbox.process_erasures("mailwave")  # answers the held-back request (it was due), not the slow one
    assert [o.status for o in proto.poll(batch, [item])] == ["completed"]
    assert [o.status for o in proto.poll(slow_batch, [slow_item])] == ["acknowledged"]
    assert sandbox.find("mailwave", "email", later)
    outcomes = poll_until(proto, slow_batch, [slow_item], timeout=8)  # the vendor's own worker answers
    assert [o.status for o in outcomes] == ["completed"] and time.monotonic() - started >= 1.0
    assert sandbox.find("mailwave", "email", later) == []


@pytest.mark.parametrize("status", [503, 429])
def test_opendsr_honours_retry_after_then_succeeds(sandbox, register, erasure_item, sleeps, status):
    proto = protocol_for(register.vendor("fraudshield"), sleep=sleeps.sleep, clock=sleeps.clock)
    item = erasure_item({"order_id": [f"2{uuid.uuid4().hex[:8]}"]})
    sandbox.vendor_api.set_fault("fraudshield", status=status, retry_after=3, count=1)
    try:
        receipt = proto.submit(new_batch(), [item])
    finally:
        sandbox.vendor_api.clear_fault("fraudshield")
    assert sleeps.calls == [3.0]
    assert receipt.already_submitted is False
    assert len(sandbox.opendsr_requests("fraudshield", item.pair_id)) == 1


def test_opendsr_batch_goes_out_in_parallel_each_pair_once_and_an_error_is_raised(sandbox, register, erasure_item):
    """One call per pair, 8 in flight: every pair is held once, one answer per pair comes back, and a
    call that fails fails the submission (a re-submission sends again safely: one request per pair id)."""
    tag = uuid.uuid4().hex[:8]
    proto = protocol_for(register.vendor("mailwave"), in_flight=8)
    items = [erasure_item({"email": [f"many.{tag}.{i}@example.com"]}) for i in range(40)]
    batch = new_batch()
    sandbox.vendor_api.set_fault("mailwave", status=401, count=1)   # refused credentials: never retried
    try:
        with pytest.raises(AuthenticationFailed):
            proto.submit(batch, items)
    finally:
        sandbox.vendor_api.clear_fault("mailwave")
    held_first = sum(len(sandbox.opendsr_requests("mailwave", i.pair_id)) for i in items)
    assert 0 <= held_first < len(items)
    receipt = proto.submit(batch, items)
    assert receipt.already_submitted is False
    assert [len(sandbox.opendsr_requests("mailwave", i.pair_id)) for i in items] == [1] * len(items)
    sandbox.process_erasures("mailwave")
    outcomes = proto.poll(batch, items)
    assert sorted(o.pair_id for o in outcomes) == sorted(i.pair_id for i in items)   # one answer per pair
    assert {o.status for o in outcomes} == {"not_found"}


def test_unknown_opendsr_request_yields_no_outcome(sandbox, register, erasure_item):
    proto = protocol_for(register.vendor("reviewhub"))
    assert proto.poll(new_batch(), [erasure_item({"email": ["0" * 64]})]) == []  # never submitted: no answer
