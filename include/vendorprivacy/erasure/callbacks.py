"""OpenDSR status callbacks: a processor tells us, signed, that a request moved on.

The receiver (plugins/erasure_callbacks.py, served by the Airflow API server under /erasure-callbacks)
hands each POST to `receive`: the signature over the raw body is verified against the processor's
certificate (vendorprivacy.erasure.protocols.opendsr.outcome_from_callback) before anything is parsed
or believed; a bad or missing signature, another processor's domain, or a callback addressed to another
URL is refused with 403 and changes nothing. A verified answer moves its (request, vendor) pair along the
same state machine as a polled answer (so a callback and a poll of the same answer count once).

Callbacks are optional: without VENDORPRIVACY_CALLBACK_BASE_URL no callback URL is given to the
processors and the run's answer sensor polls instead.
"""
from __future__ import annotations

import logging
import os
import threading

log = logging.getLogger(__name__)
PREFIX = "/erasure-callbacks"
BASE_URL_ENV = "VENDORPRIVACY_CALLBACK_BASE_URL"
_CERTS: dict[str, bytes] = {}
_LOCK = threading.Lock()


def base_url() -> str | None:
    """Where the Airflow API server is reachable from the processors, e.g. https://airflow.example.com."""
    value = os.environ.get(BASE_URL_ENV)
    if not value:
        try:
            from airflow.sdk import Variable

            value = Variable.get("vendorprivacy_callback_base_url", default=None)
        except Exception:  # outside Airflow: no callbacks
            value = None
    return value.rstrip("/") if value else None


def callback_url(base: str, vendor: str) -> str:
    return f"{base.rstrip('/')}{PREFIX}/opendsr/{vendor}"


def processor_cert(vendor) -> bytes:
    """The processor's certificate, from its /discovery over the TLS-verified connection, fetched once."""
    with _LOCK:
        if vendor.vendor not in _CERTS:
            from .protocols.opendsr import fetch_processor_cert

            _CERTS[vendor.vendor] = fetch_processor_cert(vendor)
        return _CERTS[vendor.vendor]


def handle(store, register, vendor_id: str, headers: dict, body: bytes, *, cert: bytes | None = None,
           expected_url: str | None = None) -> tuple[int, dict]:
    """Verify and apply one callback. Returns (HTTP status, PII-free JSON body)."""
    from .protocols import AnswerRejected
    from .protocols.opendsr import outcome_from_callback

    vendor = register.vendors.get(vendor_id)
    if vendor is None or vendor.erasure.protocol != "opendsr":
        return 404, {"error": "unknown vendor"}
    try:
        outcome = outcome_from_callback(headers, body, cert if cert is not None else processor_cert(vendor),
                                        vendor=vendor_id, expected_callback_url=expected_url)
    except AnswerRejected as e:
        log.warning("erasure callback refused: %s", e)  # vendor, endpoint and why: no personal data
        return 403, {"error": "callback refused: signature or content not accepted"}
    pair = store.pair(outcome.pair_id)
    if pair is None or pair.vendor != vendor_id:
        return 404, {"error": "unknown request"}
    result = store.transition_many([{"pair_id": outcome.pair_id, "to": outcome.status, "at": outcome.at,
                                     "evidence_sha256": outcome.evidence_sha256, "reason": outcome.reason,
                                     "vendor_reference": outcome.vendor_reference, "actor": f"{vendor_id} (callback)"}])
    if result["refused"]:
        log.warning("erasure callback from %s for pair %s not applied: %s", vendor_id, outcome.pair_id,
                    result["refused"][0][1])
        return 409, {"error": "answer conflicts with the recorded status", "pair_id": outcome.pair_id}
    if result["applied"]:
        store.refresh_status([pair.request_id])
    return 200, {"pair_id": outcome.pair_id, "status": store.pair(outcome.pair_id).status,
                 "applied": bool(result["applied"])}


def receive(vendor_id: str, headers: dict, body: bytes) -> tuple[int, dict]:
    """The plugin's entry point: settings from the Airflow connections / environment."""
    from vendorprivacy.orchestration import settings
    from vendorprivacy.policy import load_register

    from .store import ErasureStore

    base = base_url()
    return handle(ErasureStore(settings.ledger()), load_register(), vendor_id, headers, body,
                  expected_url=callback_url(base, vendor_id) if base else None)
