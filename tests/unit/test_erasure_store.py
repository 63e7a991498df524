"""The (request, vendor) state machine: legal moves only, idempotent, every transition in the timeline once."""
from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from vendorprivacy.erasure import intake
from vendorprivacy.erasure import store as st
from vendorprivacy.ledger import tables as t

from tests.unit.test_erasure_support import TODAY, cipher, ledger, store  # noqa: F401


@pytest.fixture
def pair(store, cipher):
    """One filed request with one queued pair for 'payflow' and one not_applicable pair for 'adgrid'."""
    filed = intake.file_requests(store, cipher, [(2, {"ticket": "T-1", "regulation": "ccpa", "type": "erasure",
                                                      "email": "a@example.com"})], today=TODAY)[0]
    at = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    with store.engine.begin() as conn:
        item = {"request_id": filed.request_id, "resolved_ct": "x", "subject_keys": ["k1"], "suppression": "1 key",
                "detail": "1 customer", "pairs": [
                    {"vendor": "payflow", "status": "queued", "reason": "always notified",
                     "received_subject": True, "identifier_types": {"order_id": 2}},
                    {"vendor": "adgrid", "status": "not_applicable", "reason": "never received",
                     "received_subject": False, "identifier_types": {}}]}
        assert store.record_resolutions(conn, [item], at=at) == [filed.request_id]
        assert store.record_resolutions(conn, [item], at=at) == []      # resolved once: a re-run records nothing
    pairs = {p.vendor: p for p in store.pairs([filed.request_id])}
    return filed.request_id, pairs["payflow"].pair_id


def _events(store, request_id):
    return [(e.scope, e.event, e.from_status) for e in store.timeline(request_id)]


def test_happy_path_and_timeline(store, pair):
    rid, pid = pair
    bid, n = store.assign_batch("payflow", "run-1", [rid])
    assert n == 1
    counts = store.record_submission(bid, sha256="a" * 64, size=100, vendor_reference="PF-1")
    assert counts == {"applied": 1, "already": 0, "stale": 0}
    assert store.transition(pid, "acknowledged", evidence_sha256="b" * 64) == "applied"
    assert store.transition(pid, "retained", reason="tax law: 10 years", vendor_reference="PF-case-9",
                            evidence_sha256="c" * 64) == "applied"
    p = store.pair(pid)
    assert (p.status, p.reason, p.vendor_reference, p.evidence_sha256, p.final) == (
        "retained", "tax law: 10 years", "PF-case-9", "c" * 64, True)
    assert _events(store, rid) == [
        ("request", "filed", None), ("request", "resolved", None), ("request", "suppressed", None),
        ("payflow", "queued", None), ("adgrid", "not_applicable", None),
        ("payflow", "sent", "queued"), ("payflow", "acknowledged", "sent"), ("payflow", "retained", "acknowledged")]
    assert store.refresh_status([rid]) == [rid]
    assert store.request(rid).status == "complete"
    assert store.refresh_status([rid]) == []  # completes once


@pytest.mark.parametrize("path,bad,match", [
    ([], "completed", "only an answer to a sent pair"),        # queued -> completed: skipping 'sent'
    ([], "acknowledged", "not allowed"),
    (["sent", "completed"], "failed", "not allowed"),          # a final answer contradicting another
    (["sent", "completed"], "not_found", "not allowed"),
    ([], "retained", "legal reason"),                          # retained needs the vendor's reason
    ([], "deleted", "unknown pair status"),
])
def test_illegal_transitions_are_refused(store, pair, path, bad, match):
    _, pid = pair
    for s in path:
        store.transition(pid, s)
    before = store.pair(pid).status
    with pytest.raises(st.IllegalTransition, match=match):
        store.transition(pid, bad)
    assert store.pair(pid).status == before


def test_not_applicable_pairs_never_move(store, pair):
    rid, _ = pair
    na = next(p for p in store.pairs([rid]) if p.vendor == "adgrid")
    with pytest.raises(st.IllegalTransition):
        store.transition(na.pair_id, "sent")


def test_repeats_and_stale_answers_change_nothing(store, pair):
    rid, pid = pair
    store.transition(pid, "sent")
    assert store.transition(pid, "sent") == "already"
    store.transition(pid, "completed")
    assert store.transition(pid, "completed") == "already"
    assert store.transition(pid, "acknowledged") == "stale"     # an older answer read after the final one
    assert store.transition(pid, "sent") == "stale"
    assert store.pair(pid).status == "completed"
    events = _events(store, rid)
    assert events.count(("payflow", "completed", "sent")) == 1 and len([e for e in events if e[0] == "payflow"]) == 3


def test_batches_are_fixed_before_sending_and_reused(store, pair):
    rid, pid = pair
    bid, n = store.assign_batch("payflow", "run-1", [rid])
    assert (bid, n) == (st.batch_id_of("run-1", "payflow", [rid]), 1)
    assert store.assign_batch("payflow", "run-2", [rid]) == (None, 0)   # already batched: a new run reuses it
    assert store.pair(pid).batch_id == bid and store.batch(bid)["status"] == "planned"
    store.record_submission(bid, sha256="a" * 64, size=1, vendor_reference=None)
    again = store.record_submission(bid, sha256="a" * 64, size=1, vendor_reference=None)
    assert again == {"applied": 0, "already": 1, "stale": 0}
    with pytest.raises(st.IllegalTransition, match="belongs to batch"):
        store.transition(pid, "completed", batch_id="some-other-batch")


def test_unique_constraint_keeps_each_event_once(store, pair):
    rid, _ = pair
    with store.engine.begin() as conn:
        assert store.add_event(conn, rid, "request", "approved", actor="alice") is True
        assert store.add_event(conn, rid, "request", "approved", actor="bob") is False
    with store.engine.connect() as conn:
        n = conn.execute(sa.select(sa.func.count()).select_from(t.erasure_events).where(
            t.erasure_events.c.event == "approved")).scalar()
    assert n == 1


def test_purge_identifiers_only_when_complete_and_expiry(store, pair):
    rid, pid = pair
    assert store.purge_identifiers(rid) is False            # still open
    store.transition(pid, "sent")
    store.transition(pid, "completed")
    store.refresh_status([rid])
    assert store.purge_identifiers(rid) is True
    assert store.sealed(rid) == (None, None, store.sealed(rid)[2])
    assert store.request(rid).purged_at is not None
    # kept 24 months after completion, then deleted (suppression stays)
    store.ledger.suppress(["k1"], "erasure", "T-1")
    assert store.purge_expired(now=dt.datetime.now() + dt.timedelta(days=700)) == 0
    assert store.purge_expired(now=dt.datetime.now() + dt.timedelta(days=740)) == 1
    assert store.request(rid) is None and store.pairs([rid]) == [] and store.timeline(rid) == []
    assert "k1" in store.ledger.suppressed()


def test_extension_once_with_notice(store, pair):
    rid, _ = pair
    req = store.request(rid)
    assert req.effective_due == req.due
    ext = store.extend(rid, TODAY + dt.timedelta(days=10), actor="dpo")
    assert ext.effective_due == req.extended_due == req.due + dt.timedelta(days=45)
    assert all(p.due == ext.effective_due for p in store.pairs([rid]))
    with pytest.raises(ValueError, match="already extended"):
        store.extend(rid, TODAY + dt.timedelta(days=11))


def test_transition_many_applies_answers_in_one_go_with_the_same_rules(store, pair):
    rid, pid = pair
    bid, _ = store.assign_batch("payflow", "run-1", [rid])
    store.record_submission(bid, sha256="a" * 64, size=1, vendor_reference="PF-1")
    na = next(p.pair_id for p in store.pairs([rid]) if p.vendor == "adgrid")
    counts = store.transition_many([
        {"pair_id": pid, "to": "acknowledged"},
        {"pair_id": pid, "to": "acknowledged"},                        # a repeat in the same poll
        {"pair_id": pid, "to": "retained"},                            # no reason: refused
        {"pair_id": pid, "to": "completed", "vendor_reference": "PF-9", "evidence_sha256": "e" * 64},
        {"pair_id": pid, "to": "acknowledged"},                        # older answer after the final one
        {"pair_id": na, "to": "completed"},                            # not applicable: refused
        {"pair_id": "00000000-0000-4000-8000-000000000000", "to": "completed"},
    ], batch_id=bid)
    assert (counts["applied"], counts["already"], counts["stale"]) == (2, 1, 1)
    assert [why for _, why in counts["refused"]] == ["payflow: a vendor that retains data must state its legal reason",
                                                     "adgrid: not applicable: nothing is sent to it or expected",
                                                     "no such pair"]
    p = store.pair(pid)
    assert (p.status, p.vendor_reference, p.evidence_sha256) == ("completed", "PF-9", "e" * 64)
    assert [e for e in _events(store, rid) if e[0] == "payflow"][-2:] == [
        ("payflow", "acknowledged", "sent"), ("payflow", "completed", "acknowledged")]
