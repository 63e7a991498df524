"""Signed OpenDSR status callbacks: a good signature moves the pair once; a bad one is refused with 403 and
changes nothing. Exercised through the Airflow plugin's FastAPI app (plugins/erasure_callbacks.py)."""
from __future__ import annotations

import base64
import datetime as dt
import importlib.util
import json

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from vendorprivacy.erasure import callbacks, intake
from vendorprivacy.ledger import Ledger
from vendorprivacy.erasure.store import ErasureStore

from tests.conftest import ROOT
from tests.unit.test_erasure_support import IDENTITY_SECRET, TODAY, cipher  # noqa: F401

DOMAIN = "privacy.fraudshield.example"


def _cert(domain: str):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, domain)])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(domain)]), critical=False)
            .sign(key, hashes.SHA256()))
    return key, cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture
def world(tmp_path, monkeypatch, cipher):
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    ledger.migrate()
    monkeypatch.setenv("AIRFLOW_CONN_LEDGER_DB", json.dumps({"conn_type": "sqlite", "host": str(tmp_path / "ledger.db")}))
    monkeypatch.setenv(callbacks.BASE_URL_ENV, "https://airflow.example.com")
    store = ErasureStore(ledger)
    filed = intake.file_requests(store, cipher, [(2, {"ticket": "T-5", "regulation": "gdpr", "type": "erasure",
                                                      "email": "a@example.com"})], today=TODAY)[0]
    with store.engine.begin() as conn:
        store.record_resolutions(conn, [{"request_id": filed.request_id, "resolved_ct": "x", "subject_keys": [],
                                         "suppression": None, "detail": "-", "pairs": [
                                             {"vendor": "fraudshield", "status": "queued", "reason": "always notified",
                                              "received_subject": False, "identifier_types": {"email": 1}}]}],
                                 at=dt.datetime.now())
    pair = store.pairs([filed.request_id])[0]
    bid, _ = store.assign_batch("fraudshield", "run-1", [filed.request_id])
    store.record_submission(bid, sha256="a" * 64, size=10, vendor_reference=None)
    key, pem = _cert(DOMAIN)
    monkeypatch.setitem(callbacks._CERTS, "fraudshield", pem)
    spec = importlib.util.spec_from_file_location("erasure_callbacks_plugin", ROOT / "plugins" / "erasure_callbacks.py")
    plugin = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(plugin)
    from fastapi.testclient import TestClient

    return {"store": store, "pair": pair, "key": key, "client": TestClient(plugin.app), "plugin": plugin,
            "request_id": filed.request_id}


def _body(pair_id: str, status="completed", outcome="deleted", url="https://airflow.example.com/erasure-callbacks/opendsr/fraudshield"):
    doc = {"subject_request_id": pair_id, "request_status": status, "status_callback_url": url,
           "extensions": {DOMAIN: {"reference": "FS-77", "erasure_outcome": {
               "outcome": outcome, "deleted": 3, "retained": 0, "reason": None,
               "processed_at": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}}}}
    return json.dumps(doc).encode()


def _headers(key, body: bytes, domain: str = DOMAIN) -> dict:
    sig = key.sign(body, ec.ECDSA(hashes.SHA256()))
    return {"X-OpenDSR-Processor-Domain": domain, "X-OpenDSR-Signature": base64.b64encode(sig).decode(),
            "Content-Type": "application/json"}


def test_plugin_is_an_airflow_plugin_with_the_receiver(world):
    plugin = world["plugin"]
    [entry] = plugin.ErasureCallbacksPlugin.fastapi_apps
    assert entry["url_prefix"] == callbacks.PREFIX and entry["app"] is plugin.app


def test_signed_callback_moves_the_pair_once(world):
    body = _body(world["pair"].pair_id)
    r = world["client"].post("/opendsr/fraudshield", content=body, headers=_headers(world["key"], body))
    assert r.status_code == 200 and r.json() == {"pair_id": world["pair"].pair_id, "status": "completed", "applied": True}
    again = world["client"].post("/opendsr/fraudshield", content=body, headers=_headers(world["key"], body))
    assert again.status_code == 200 and again.json()["applied"] is False          # a repeat changes nothing
    p = world["store"].pair(world["pair"].pair_id)
    assert (p.status, p.vendor_reference) == ("completed", "FS-77")
    assert [e.actor for e in world["store"].timeline(world["request_id"]) if e.event == "completed"] == \
        ["fraudshield (callback)"]
    assert world["store"].request(world["request_id"]).status == "complete"


@pytest.mark.parametrize("tamper", ["body", "signature", "unsigned", "domain", "other_key", "other_url"])
def test_bad_callbacks_are_refused_and_change_nothing(world, tamper):
    body = _body(world["pair"].pair_id)
    headers = _headers(world["key"], body)
    if tamper == "body":
        body = body.replace(b"deleted", b"not_found")
    elif tamper == "signature":
        headers["X-OpenDSR-Signature"] = base64.b64encode(b"\x30" * 70).decode()
    elif tamper == "unsigned":
        headers.pop("X-OpenDSR-Signature")
    elif tamper == "domain":
        headers["X-OpenDSR-Processor-Domain"] = "privacy.evil.example"
    elif tamper == "other_key":
        headers = _headers(_cert(DOMAIN)[0], body)
    elif tamper == "other_url":
        body = _body(world["pair"].pair_id, url="https://elsewhere.example/cb")
        headers = _headers(world["key"], body)
    r = world["client"].post("/opendsr/fraudshield", content=body, headers=headers)
    assert r.status_code == 403 and "refused" in r.json()["error"]
    assert world["store"].pair(world["pair"].pair_id).status == "sent"


def test_callback_for_another_vendors_pair_or_unknown_vendor(world):
    body = _body(world["pair"].pair_id)
    r = world["client"].post("/opendsr/adgrid", content=body, headers=_headers(world["key"], body))
    assert r.status_code == 404                                                    # not an OpenDSR vendor
    assert world["store"].pair(world["pair"].pair_id).status == "sent"


def test_runs_give_processors_the_callback_url(world, monkeypatch):
    from vendorprivacy.erasure import propagate
    from vendorprivacy.policy import load_notice, load_register

    seen = {}
    monkeypatch.setattr(propagate, "contract", lambda: type("C", (), {
        "protocol_for": staticmethod(lambda vendor, **kw: seen.setdefault(vendor.vendor, kw))}))
    ctx = propagate.Context(store=world["store"], shop_url="sqlite://", keys=None, cipher=None,
                            register=load_register(), notice=load_notice(), reports_dir=ROOT,
                            callback_base_url=callbacks.base_url())
    ctx.protocol("fraudshield")
    ctx.protocol("parcelpost")
    assert seen["fraudshield"]["callback_urls"] == ["https://airflow.example.com/erasure-callbacks/opendsr/fraudshield"]
    assert "callback_urls" not in seen["parcelpost"]
