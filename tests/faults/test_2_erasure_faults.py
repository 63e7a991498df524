"""Erasure faults: a vendor that never confirms, forged and malformed acknowledgements, callbacks with bad
signatures or for unknown vendors. Run through vendorprivacy.erasure.propagate (the erasure DAG's task
functions) against the sandbox vendors and the proxied PostgreSQL ledger."""
from __future__ import annotations

import base64
import datetime as dt
import json
import sqlite3
import time
import uuid

import pytest

IDENTITY_KEY = "faults-identity-key-0123456789abcdef"


@pytest.fixture
def ctx(ledger, shop, keys, tmp_path):
    from vendorprivacy.erasure import propagate
    from vendorprivacy.erasure.identity import IdentityCipher
    from vendorprivacy.erasure.store import ErasureStore
    from vendorprivacy.policy import load_notice, load_register

    return propagate.Context(store=ErasureStore(ledger), shop_url=f"sqlite:///{shop}", keys=keys,
                             cipher=IdentityCipher(IDENTITY_KEY), register=load_register(), notice=load_notice(),
                             reports_dir=tmp_path / "reports")


_used: set[str] = set()


def _customer_email(shop) -> str:
    con = sqlite3.connect(shop)
    for (email,) in con.execute("SELECT email FROM customers ORDER BY customer_id DESC"):
        e = email.strip()
        if "@" in e and " " not in e and e == e.lower() and e not in _used:
            _used.add(e)
            return e
    raise LookupError


def _file(ctx, shop, *, received: dt.date | None = None) -> str:
    from vendorprivacy.erasure.intake import file_request

    ticket = f"F-{uuid.uuid4().hex[:8]}"
    file_request(ctx.store, ctx.cipher, ticket=ticket, regulation="ccpa", request_type="erasure",
                 email=_customer_email(shop), received=received)
    return ticket


def _pairs(ctx, ticket) -> dict:
    [req] = ctx.store.requests(tickets=[ticket])
    return {p.vendor: p for p in ctx.store.pairs([req.request_id])}


def test_vendor_never_confirms(row, ctx, shop, sandbox):
    from vendorprivacy.erasure import alerts, propagate

    r = row("vendor never confirms (parcelpost silent, request received 80 days ago)",
            "pair stays sent; overdue alert raised once; completes once the vendor answers")
    received = dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=80)
    ticket = _file(ctx, shop, received=received)
    sandbox.set_erasure_behaviour("parcelpost", "never")
    try:
        first = propagate.run_once(ctx, ticket, run_id=f"faults-{ticket}", wait_seconds=4, poll_every=0.5)
        silent = _pairs(ctx, ticket)["parcelpost"].status
        found = alerts.deadline_check(ctx.store, register=ctx.register)
        mine = [a for a in found if a.ticket == ticket]
        published = alerts.publish(found, ctx.reports_dir)
        again = [a for a in alerts.deadline_check(ctx.store, register=ctx.register) if a.ticket == ticket]
    finally:
        sandbox.set_erasure_behaviour("parcelpost", "normal")
    sandbox.process_erasures("parcelpost")
    later = propagate.run_once(ctx, ticket, run_id=f"faults-{ticket}-2", wait_seconds=20, poll_every=0.5)
    pairs = _pairs(ctx, ticket)
    [req] = ctx.store.requests(tickets=[ticket])
    levels = sorted({(a.vendor or "request", a.level) for a in mine})
    r["observed"] = (f"after run 1: parcelpost '{silent}', others final: {sum(p.final for p in pairs.values()) - 1}; "
                     f"alerts {levels} (new: {sum(a.new for a in mine)}, on re-check new: {sum(a.new for a in again)}); "
                     f"after answer: parcelpost '{pairs['parcelpost'].status}', request '{req.status}'")
    assert first["finish"]["complete"] == 0 and silent in ("sent", "acknowledged")
    assert any(a.vendor == "parcelpost" and a.level == "overdue" for a in mine) and all(a.new for a in mine)
    assert not any(a.new for a in again) and published is not None
    assert pairs["parcelpost"].final and req.status == "complete"
    assert len(sandbox.erasure_outcomes("parcelpost", pairs["parcelpost"].pair_id)) == 1
    assert later["finish"]["complete"] == 1


def _wait_for(path, timeout=15.0) -> bool:
    deadline = time.monotonic() + timeout
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    return path.exists()


def test_forged_and_malformed_acknowledgements(row, ctx, shop, sandbox):
    from sandbox import SANDBOX_KEYS_DIR
    from vendorprivacy.erasure import propagate

    r = row("forged (tampered, other vendor's signature) and malformed ack file",
            "refused with a clear error, pair unchanged; the genuine ack then completes it once")
    ticket = _file(ctx, shop)
    sel = propagate.select_requests(ctx, ticket)
    propagate.resolve_and_suppress(ctx, sel["request_ids"], dry_run=False)
    plan = {p["vendor"]: p for p in propagate.plan_batches(ctx, f"faults-{ticket}", sel["request_ids"])}
    batches = plan["parcelpost"]["batches"]
    propagate.submit_vendor(ctx, "parcelpost", batches)
    acks = sandbox.erasure_folder("parcelpost") / "acks"
    ack, sig = acks / f"{batches[0]}.ack.json", acks / f"{batches[0]}.ack.json.asc"
    assert _wait_for(sig), "the vendor did not answer"
    time.sleep(0.3)
    genuine, genuine_sig = ack.read_bytes(), sig.read_bytes()
    from vendorprivacy.erasure.protocols.openpgp import sign_detached

    errors = []
    doc = json.loads(genuine)
    doc["results"][0]["outcome"] = "not_found"
    attempts = [("tampered", json.dumps(doc).encode(), genuine_sig),
                ("other vendor's key", genuine, sign_detached(genuine, SANDBOX_KEYS_DIR / "callvault.sec.asc")),
                ("malformed JSON", b"{not json", sign_detached(b"{not json", SANDBOX_KEYS_DIR / "parcelpost.sec.asc"))]
    for label, body, signature in attempts:
        ack.write_bytes(body)
        sig.write_bytes(signature)
        with pytest.raises(Exception) as exc:
            propagate.poll_vendor(ctx, "parcelpost", batches)
        errors.append((label, type(exc.value).__name__, str(exc.value)))
        assert _pairs(ctx, ticket)["parcelpost"].status == "sent"
    ack.write_bytes(genuine)
    sig.write_bytes(genuine_sig)
    polled = propagate.poll_vendor(ctx, "parcelpost", batches)
    status = _pairs(ctx, ticket)["parcelpost"].status
    r["observed"] = ("; ".join(f"{label}: {name}" for label, name, _ in errors)
                     + f"; pair stayed 'sent'; genuine ack -> '{status}' (open {polled['open']})")
    assert all(name == "AnswerRejected" for _, name, _ in errors), errors
    assert all("parcelpost" in msg for _, _, msg in errors)
    assert status in ("completed", "not_found") and polled["open"] == 0


def test_callbacks_with_bad_signatures_or_unknown_vendors(row, ctx, shop, sandbox):
    from vendorprivacy.erasure import callbacks, propagate

    r = row("OpenDSR callback: bad signature / unsigned / unknown vendor",
            "403 / 403 / 404, nothing changes")
    ticket = _file(ctx, shop)
    sandbox.set_erasure_behaviour("fraudshield", "never")
    try:
        propagate.run_once(ctx, ticket, run_id=f"faults-{ticket}", wait_seconds=0)
    finally:
        sandbox.set_erasure_behaviour("fraudshield", "normal")
    pair = _pairs(ctx, ticket)["fraudshield"]
    before = pair.status
    body = json.dumps({"subject_request_id": pair.pair_id, "request_status": "completed",
                       "processor_id": "fraudshield", "results_count": 0}).encode()
    cert = sandbox.processor_cert("fraudshield")
    forged = {"X-OpenDSR-Processor-Domain": "fraudshield.sandbox.invalid",
              "X-OpenDSR-Signature": base64.b64encode(b"\x01" * 256).decode()}
    results = {
        "bad signature": callbacks.handle(ctx.store, ctx.register, "fraudshield", forged, body, cert=cert),
        "unsigned": callbacks.handle(ctx.store, ctx.register, "fraudshield", {}, body, cert=cert),
        "unknown vendor": callbacks.handle(ctx.store, ctx.register, "nosuchvendor", forged, body, cert=cert),
    }
    after = _pairs(ctx, ticket)["fraudshield"].status
    r["observed"] = ", ".join(f"{k}: {v[0]}" for k, v in results.items()) + f"; pair '{before}' -> '{after}'"
    assert results["bad signature"][0] == 403 and results["unsigned"][0] == 403
    assert results["unknown vendor"][0] == 404
    assert after == before and after in ("sent", "acknowledged")
