"""Transports against the real sandbox vendors: sshd, moto S3, the HTTPS vendor API, real gpg."""

from __future__ import annotations

import json
import time

import pytest
from vendorprivacy.crypto import KeyMissingError, encrypt_file
from vendorprivacy.transports import (
    AuthenticationFailed,
    DeliveryConflict,
    HostKeyMismatch,
    HttpsRecordTransport,
    S3Transport,
    SftpTransport,
    TlsVerificationFailed,
    TransportError,
    VendorUnavailable,
    VendorUnreachable,
)
from vendorprivacy.transports.https import canonical_records_sha256

COLUMNS = ["customer_token", "email_sha256", "postcode"]
ROWS = [
    ["tok-001", "a" * 64, "SW1A 1AA"],
    ["tok-002", "b" * 64, ""],  # empty stays empty, not NULL
    ["tok-003", "c" * 64, "=SUM(A1)"],  # odd but legal content survives the round trip
]


def sftp_transport(sandbox, vendor="payflow", **kw) -> SftpTransport:
    spec = sandbox.spec(vendor)
    return SftpTransport(spec.conn_id, spec.base_path, **kw)


def s3_transport(sandbox, vendor="adgrid") -> S3Transport:
    spec = sandbox.spec(vendor)
    return S3Transport(spec.conn_id, spec.bucket, spec.prefix)


def https_transport(sandbox, sleeps, vendor="fraudshield", conn_id=None, **kw) -> HttpsRecordTransport:
    spec = sandbox.spec(vendor)
    return HttpsRecordTransport(conn_id or spec.conn_id, spec.base_endpoint, sleep=sleeps.sleep,
                                clock=sleeps.clock, **kw)


# --------------------------------------------------------------------------- file vendors
@pytest.mark.parametrize("vendor", ["payflow", "adgrid"])
def test_encrypted_csv_is_delivered_and_vendor_holds_exactly_those_rows(sandbox, make_delivery, unique, vendor):
    feed = unique("feed")
    d = make_delivery(vendor, COLUMNS, ROWS, feed=feed)
    transport = sftp_transport(sandbox, vendor) if vendor == "payflow" else s3_transport(sandbox, vendor)

    receipt = transport.put(d.path, d.name, d.manifest_bytes)

    assert receipt.already_present is False
    assert receipt.bytes == d.path.stat().st_size and receipt.sha256 == d.manifest["sha256"]
    assert receipt.remote_path.endswith(d.name)
    assert d.name in transport.list() and d.name + ".manifest.json" in transport.list()
    assert transport.get(d.name + ".manifest.json") == d.manifest_bytes
    report = sandbox.ingest(vendor)
    assert d.name in report.loaded and not report.rejected
    assert sandbox.records(vendor, feed=feed) == d.expected_records()
    assert sandbox.find(vendor, "customer_token", "tok-002") == [d.expected_records()[1]]
    assert d.manifest["delivery_id"] in sandbox.deliveries(vendor)
    assert sandbox.ingest(vendor).loaded == []  # a file is ingested once


def test_sftp_leaves_no_temporary_files_and_data_is_ciphertext(sandbox, make_delivery):
    d = make_delivery("parcelpost", COLUMNS, ROWS)
    sftp_transport(sandbox, "parcelpost").put(d.path, d.name, d.manifest_bytes)
    folder = sandbox.drop_folder("parcelpost")
    names = {p.name for p in folder.iterdir()}
    assert {d.name, d.name + ".manifest.json"} <= names
    assert not [n for n in names if n.endswith(".part")]
    landed = (folder / d.name).read_bytes()
    assert landed == d.path.read_bytes()
    assert b"tok-001" not in landed  # encrypted at rest at the vendor's drop folder


def test_s3_object_is_write_once_encrypted_and_checksummed(sandbox, make_delivery):
    d = make_delivery("socialreach", COLUMNS, ROWS)
    transport = s3_transport(sandbox, "socialreach")
    transport.put(d.path, d.name, d.manifest_bytes)
    spec = sandbox.spec("socialreach")
    head = sandbox.s3.client().head_object(Bucket=spec.bucket, Key=spec.prefix + d.name, ChecksumMode="ENABLED")
    assert head["ServerSideEncryption"] == "AES256"
    assert head["Metadata"]["sha256"] == d.manifest["sha256"]
    assert head.get("ChecksumSHA256")  # moto stored the SHA-256 checksum we sent


@pytest.mark.parametrize("vendor", ["callvault", "socialreach"])
def test_same_delivery_twice_uploads_once(sandbox, make_delivery, unique, vendor):
    feed = unique("feed")
    d = make_delivery(vendor, COLUMNS, ROWS, feed=feed)
    transport = sftp_transport(sandbox, vendor) if vendor == "callvault" else s3_transport(sandbox, vendor)

    first = transport.put(d.path, d.name, d.manifest_bytes)
    before = transport.list(prefix=d.manifest["delivery_id"])
    second = transport.put(d.path, d.name, d.manifest_bytes)
    # a retried task re-encrypts: same plaintext, different ciphertext -> still the same delivery
    again = make_delivery(vendor, COLUMNS, ROWS, feed=feed, delivery_id=d.manifest["delivery_id"])
    assert again.manifest["sha256"] != d.manifest["sha256"]
    third = transport.put(again.path, again.name, again.manifest_bytes)

    assert (first.already_present, second.already_present, third.already_present) == (False, True, True)
    assert third.sha256 == d.manifest["sha256"]  # the receipt describes what the vendor holds
    assert transport.list(prefix=d.manifest["delivery_id"]) == before == [d.name, d.name + ".manifest.json"]
    sandbox.ingest(vendor)
    assert sandbox.records(vendor, feed=feed) == d.expected_records()  # one copy, not two or three


@pytest.mark.parametrize("vendor", ["payflow", "adgrid"])
def test_different_file_under_same_name_is_a_conflict(sandbox, make_delivery, vendor):
    d = make_delivery(vendor, COLUMNS, ROWS)
    other = make_delivery(vendor, COLUMNS, ROWS[:1], delivery_id=d.manifest["delivery_id"], name=d.name)
    transport = sftp_transport(sandbox, vendor) if vendor == "payflow" else s3_transport(sandbox, vendor)
    transport.put(d.path, d.name, d.manifest_bytes)

    with pytest.raises(DeliveryConflict) as err:
        transport.put(other.path, other.name, other.manifest_bytes)

    assert sandbox.spec(vendor).conn_id in str(err.value)
    assert transport.get(d.name) == d.path.read_bytes()  # the vendor's copy is untouched


def test_changed_host_key_is_refused_and_nothing_lands(sandbox, make_delivery):
    d = make_delivery("payflow", COLUMNS, ROWS)
    old_key = sandbox.sshd.host_key
    sandbox.sshd.restart(new_host_key=True)  # the connection still pins the old key
    try:
        assert sandbox.sshd.host_key != old_key
        with pytest.raises(HostKeyMismatch) as err:
            sftp_transport(sandbox, "payflow", retry_wait=0).put(d.path, d.name, d.manifest_bytes)
        message = str(err.value)
        assert "vendor_payflow_sftp" in message and f"127.0.0.1:{sandbox.sshd.port}" in message
        landed = [p.name for p in sandbox.drop_folder("payflow").iterdir() if d.manifest["delivery_id"] in p.name]
        assert landed == []
    finally:
        sandbox.apply_env()  # pin the vendor's new key (what an operator would do after verifying it)
    receipt = sftp_transport(sandbox, "payflow").put(d.path, d.name, d.manifest_bytes)
    assert receipt.already_present is False


def test_missing_or_invalid_public_key_raises_key_missing_naming_the_path(tmp_path):
    plain = tmp_path / "plain.csv"
    plain.write_text("a,b\n1,2\n")
    missing = tmp_path / "keys" / "nobody.asc"
    with pytest.raises(KeyMissingError, match=str(missing)):
        encrypt_file(plain, tmp_path / "out.pgp", missing)
    garbage = tmp_path / "garbage.asc"
    garbage.write_text("-----BEGIN PGP PUBLIC KEY BLOCK-----\nnot a key\n")
    with pytest.raises(KeyMissingError, match=str(garbage)):
        encrypt_file(plain, tmp_path / "out.pgp", garbage)
    assert not (tmp_path / "out.pgp").exists()


def test_stopped_sftp_server_is_unreachable_quickly(sandbox, make_delivery, sleeps):
    d = make_delivery("payflow", COLUMNS, ROWS)
    sandbox.sshd.stop()
    try:
        started = time.monotonic()
        with pytest.raises(VendorUnreachable) as err:
            sftp_transport(sandbox, "payflow", connect_attempts=3, sleep=sleeps.sleep).put(
                d.path, d.name, d.manifest_bytes)
        assert time.monotonic() - started < 5
    finally:
        sandbox.sshd.start()
    assert "vendor_payflow_sftp" in str(err.value) and "3 attempt" in str(err.value)
    assert len(sleeps.calls) == 2 and sleeps.calls[1] > sleeps.calls[0]  # bounded, backing off


def test_closed_s3_port_is_unreachable_quickly(sandbox, make_delivery, conn_override, closed_port):
    d = make_delivery("adgrid", COLUMNS, ROWS)
    conn_id = conn_override("adgrid", {}, extra={
        "endpoint_url": f"http://127.0.0.1:{closed_port}",
        "config_kwargs": {"retries": {"mode": "standard", "max_attempts": 2}, "connect_timeout": 2},
    })
    started = time.monotonic()
    with pytest.raises(VendorUnreachable) as err:
        S3Transport(conn_id, "adgrid-audiences", "namdar/").put(d.path, d.name, d.manifest_bytes)
    assert time.monotonic() - started < 10
    assert conn_id in str(err.value) and "adgrid-audiences" in str(err.value)


def test_closed_https_port_is_unreachable_after_bounded_retries(sandbox, conn_override, closed_port, sleeps):
    conn_id = conn_override("fraudshield", {"port": closed_port})
    transport = https_transport(sandbox, sleeps, conn_id=conn_id, max_attempts=4)
    started = time.monotonic()
    with pytest.raises(VendorUnreachable) as err:
        transport.send("d-unreachable", "fraud_feed", ["a"], [["1"]])
    assert time.monotonic() - started < 5
    assert len(sleeps.calls) == 3
    assert conn_id in str(err.value) and f"127.0.0.1:{closed_port}/fraudshield" in str(err.value)


def test_tampered_ciphertext_is_rejected_by_vendor_ingest(sandbox, make_delivery, unique):
    feed = unique("feed")
    transport = sftp_transport(sandbox, "callvault")
    folder = sandbox.drop_folder("callvault")

    # 1. bytes flipped after delivery: the manifest's ciphertext hash no longer matches
    flipped = make_delivery("callvault", COLUMNS, ROWS, feed=feed)
    transport.put(flipped.path, flipped.name, flipped.manifest_bytes)
    data = bytearray((folder / flipped.name).read_bytes())
    data[len(data) // 2] ^= 0x01
    (folder / flipped.name).write_bytes(bytes(data))
    # 2. bytes flipped and the manifest "fixed" to match: OpenPGP's integrity check still fails
    forged = make_delivery("callvault", COLUMNS, ROWS, feed=feed)
    data = bytearray(forged.path.read_bytes())
    data[len(data) // 2] ^= 0x01
    forged.path.write_bytes(bytes(data))
    forged.manifest["sha256"] = __import__("hashlib").sha256(bytes(data)).hexdigest()
    transport.put(forged.path, forged.name, forged.manifest_bytes)
    # 3. a manifest that lies about the row count
    miscounted = make_delivery("callvault", COLUMNS, ROWS, feed=feed)
    miscounted.manifest["rows"] = 2
    transport.put(miscounted.path, miscounted.name, miscounted.manifest_bytes)

    report = sandbox.ingest("callvault")

    assert set(report.rejected) == {flipped.name, forged.name, miscounted.name}
    assert "sha256" in report.rejected[flipped.name]
    assert "decrypt" in report.rejected[forged.name]
    assert "rows" in report.rejected[miscounted.name]
    assert sandbox.records("callvault", feed=feed) == []
    log = {e["name"]: e for e in sandbox.delivery_log("callvault")}
    assert all(log[n]["status"] == "rejected" for n in report.rejected)
    assert all("tok-" not in (log[n]["reason"] or "") for n in report.rejected)  # reasons carry no data


# --------------------------------------------------------------------------- https vendors
def _rows(n: int, prefix: str = "r") -> list[list]:
    return [[f"{prefix}{i:03d}", f"user{i}@example.invalid", i, None if i % 3 == 0 else "x"] for i in range(n)]


HTTPS_COLUMNS = ["order_ref", "email", "amount", "note"]


def test_https_records_land_once_even_if_batches_are_replayed(sandbox, sleeps, unique):
    feed, delivery = unique("fraud_feed"), unique("delivery")
    rows = _rows(5)
    transport = https_transport(sandbox, sleeps)

    first = transport.send(delivery, feed, HTTPS_COLUMNS, iter(rows), batch_size=2)
    # replay one batch exactly as a retry after a lost response would
    replay_body = {"feed": feed, "delivery_id": delivery, "batch_index": 1, "columns": HTTPS_COLUMNS,
                   "records": rows[2:4]}
    with transport:
        resp = transport.request("POST", "/v1/records", replay_body, idempotency_key=f"{delivery}:1")
    second = transport.send(delivery, feed, HTTPS_COLUMNS, iter(rows), batch_size=2)

    expected_sha, expected_rows, _ = canonical_records_sha256(rows)
    assert (first.already_present, second.already_present) == (False, True)
    assert first.sha256 == second.sha256 == expected_sha
    assert resp.headers["Idempotent-Replayed"] == "true" and resp.json()["accepted"] == 2
    held = sandbox.records("fraudshield", feed=feed)
    assert held == [dict(zip(HTTPS_COLUMNS, r)) for r in rows]  # 5 rows, once each, in order, types kept
    assert len(held) == expected_rows
    assert delivery in sandbox.deliveries("fraudshield")
    assert sandbox.find("fraudshield", "email", "user3@example.invalid") == [dict(zip(HTTPS_COLUMNS, rows[3]))]


def test_https_same_key_different_body_is_a_conflict(sandbox, sleeps, unique):
    feed, delivery = unique("feed"), unique("delivery")
    transport = https_transport(sandbox, sleeps, vendor="reviewhub")
    transport.send(delivery, feed, HTTPS_COLUMNS, _rows(3), batch_size=3)
    with pytest.raises(DeliveryConflict, match="vendor_reviewhub_api"):
        transport.send(delivery, feed, HTTPS_COLUMNS, _rows(3, prefix="changed"), batch_size=3)
    assert [r["order_ref"] for r in sandbox.records("reviewhub", feed=feed)] == ["r000", "r001", "r002"]


def test_https_vendor_holding_more_than_we_sent_fails_the_completion_check(sandbox, sleeps, unique):
    feed, delivery = unique("feed"), unique("delivery")
    transport = https_transport(sandbox, sleeps, vendor="mailwave")
    transport.send(delivery, feed, HTTPS_COLUMNS, _rows(4), batch_size=3)
    with pytest.raises(TransportError, match="vendor holds 4 rows") as err:
        transport.send(delivery, feed, HTTPS_COLUMNS, _rows(3), batch_size=3)  # batch 0 replays, 3 != 4
    assert type(err.value) is TransportError


def test_https_429_with_retry_after_is_honoured_then_succeeds(sandbox, sleeps, unique):
    feed, delivery = unique("feed"), unique("delivery")
    sandbox.vendor_api.set_fault("fraudshield", status=429, retry_after=7, count=2)
    try:
        before = sandbox.vendor_api.stats("fraudshield")
        receipt = https_transport(sandbox, sleeps).send(delivery, feed, HTTPS_COLUMNS, _rows(3))
        after = sandbox.vendor_api.stats("fraudshield")
    finally:
        sandbox.vendor_api.clear_fault("fraudshield")
    assert sleeps.calls == [7, 7]  # waited exactly what the vendor asked, twice
    assert after["faults_served"] - before["faults_served"] == 2
    assert receipt.already_present is False
    assert len(sandbox.records("fraudshield", feed=feed)) == 3


def test_https_503_beyond_the_attempt_budget_fails_clearly(sandbox, sleeps, unique):
    feed, delivery = unique("feed"), unique("delivery")
    sandbox.vendor_api.set_fault("fraudshield", status=503, count=50)
    try:
        with pytest.raises(VendorUnavailable) as err:
            https_transport(sandbox, sleeps, max_attempts=3).send(delivery, feed, HTTPS_COLUMNS, _rows(3))
    finally:
        sandbox.vendor_api.clear_fault("fraudshield")
    message = str(err.value)
    assert "vendor_fraudshield_api" in message and "/fraudshield" in message
    assert "gave up after 3 attempt(s)" in message and "HTTP 503" in message
    assert err.value.retryable is True
    assert len(sleeps.calls) == 2 and all(s > 0 for s in sleeps.calls)  # exponential backoff with jitter
    assert sandbox.records("fraudshield", feed=feed) == []


def test_https_total_time_budget_is_bounded(sandbox, sleeps, unique):
    sandbox.vendor_api.set_fault("fraudshield", status=503, retry_after=20, count=50)
    try:
        with pytest.raises(VendorUnavailable):
            https_transport(sandbox, sleeps, max_attempts=100, max_total_seconds=45).send(
                unique("d"), unique("feed"), HTTPS_COLUMNS, _rows(1))
    finally:
        sandbox.vendor_api.clear_fault("fraudshield")
    assert sleeps.calls == [20, 20]  # a third wait would pass the 45 s budget


def test_https_wrong_token_is_rejected_and_nothing_stored(sandbox, sleeps, unique, conn_override):
    feed = unique("feed")
    conn_id = conn_override("fraudshield", {"password": "not-the-token"})
    with pytest.raises(AuthenticationFailed, match="401") as err:
        https_transport(sandbox, sleeps, conn_id=conn_id).send(unique("d"), feed, HTTPS_COLUMNS, _rows(2))
    assert "not-the-token" not in str(err.value)
    assert sleeps.calls == []  # not retried
    assert sandbox.records("fraudshield", feed=feed) == []


def test_https_untrusted_certificate_is_refused(sandbox, sleeps, unique, conn_override, tmp_path):
    from sandbox.tls import make_ca_and_server_cert

    other_ca = make_ca_and_server_cert(tmp_path / "other")["ca"]
    conn_id = conn_override("fraudshield", {}, extra={"verify": str(other_ca)})
    feed = unique("feed")
    with pytest.raises(TlsVerificationFailed, match=conn_id):
        https_transport(sandbox, sleeps, conn_id=conn_id).send(unique("d"), feed, HTTPS_COLUMNS, _rows(2))
    assert sandbox.records("fraudshield", feed=feed) == []


def test_https_refuses_plain_http_and_disabled_verification(sandbox, sleeps, conn_override):
    for changes, extra in (({"schema": "http"}, None), ({}, {"verify": False})):
        conn_id = conn_override("fraudshield", changes, extra=extra)
        with pytest.raises(TransportError, match="refusing"):
            https_transport(sandbox, sleeps, conn_id=conn_id).send("d", "f", ["a"], [["1"]])


def test_canonical_hash_definition():
    # documented: sha256 over json.dumps(record, separators=(",", ":"), ensure_ascii=False) + "\n" per record
    sha, rows, size = canonical_records_sha256([["a", 1, None], ["é", 2.5, True]])
    expected = __import__("hashlib").sha256('["a",1,null]\n["é",2.5,true]\n'.encode()).hexdigest()
    assert (sha, rows, size) == (expected, 2, len('["a",1,null]\n["é",2.5,true]\n'.encode()))
    assert json.loads('["é",2.5,true]') == ["é", 2.5, True]
