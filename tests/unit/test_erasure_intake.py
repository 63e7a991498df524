"""Intake: every bad-row kind gets a clear per-row error, batches are all or nothing, identifiers are
encrypted at rest under a key that comes from a secret."""
from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from vendorprivacy.erasure import intake
from vendorprivacy.erasure.identity import IdentityCipher, IdentityKeyError, identity_cipher
from vendorprivacy.erasure.requests import InvalidRequests
from vendorprivacy.ledger import tables as t

from tests.unit.test_erasure_support import (IDENTITY_SECRET, TODAY, cipher, customer, keys, ledger, shop,  # noqa: F401
                                             store)

GOOD = {"ticket": "T-100", "regulation": "ccpa", "type": "erasure", "email": "Jane.Doe@Example.com",
        "received": "2026-11-18"}


def _count(store) -> int:
    with store.engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(t.erasure_requests)).scalar()


def _errors(store, cipher, rows):
    with pytest.raises(InvalidRequests) as e:
        intake.file_requests(store, cipher, list(enumerate(rows, start=2)), today=TODAY)
    return e.value.errors


@pytest.mark.parametrize("change,field,words", [
    ({"email": "jane.doe@@example"}, "email", "not a valid e-mail"),
    ({"email": "jane doe@example.com"}, "email", "not a valid e-mail"),
    ({"email": "", "phone": ""}, "email", "no identifier"),
    ({"regulation": "hipaa"}, "regulation", "unknown regulation"),
    ({"regulation": ""}, "regulation", "missing"),
    ({"type": "delete"}, "type", "unknown request type"),
    ({"received": "2026-02-30"}, "received", "not a date"),
    ({"received": "20/11/2026"}, "received", "not a date"),
    ({"received": "2026-12-01"}, "received", "future"),
    ({"ticket": ""}, "ticket", "missing"),
    ({"ticket": "jane@example.com"}, "ticket", "never personal data"),
    ({"phone": "555-0100", "country": ""}, "phone", "needs --country"),
    ({"phone": "12", "country": "US"}, "phone", "not a valid phone"),
    ({"country": "USA", "phone": "650 253 0000"}, "country", "two-letter"),
])
def test_each_bad_row_kind_is_named_with_its_row_and_stores_nothing(store, cipher, change, field, words):
    rows = [dict(GOOD), {**GOOD, "ticket": "T-101", "email": "other@example.com", **change}]
    errors = _errors(store, cipher, rows)
    assert [(e.row, e.field) for e in errors if e.field == field] == [(3, field)], errors
    assert any(words in e.problem for e in errors)
    assert _count(store) == 0  # the good row 2 was not stored either: all or nothing


def test_error_messages_never_echo_the_identifier(store, cipher):
    errors = _errors(store, cipher, [{**GOOD, "email": "secret.person@@example.com"}])
    assert "secret.person" not in str(InvalidRequests(errors))


def test_duplicates_within_a_batch(store, cipher):
    rows = [GOOD, {**GOOD, "ticket": "T-101", "email": "  JANE.DOE@example.com "}, {**GOOD}]
    errors = _errors(store, cipher, rows)
    assert [(e.row, e.field) for e in errors] == [(3, "email"), (4, "ticket")]
    assert "row 2" in errors[0].problem
    assert _count(store) == 0


def test_duplicate_of_an_open_request_for_the_same_subject_and_type(store, cipher):
    intake.file_requests(store, cipher, [(2, GOOD)], today=TODAY)
    errors = _errors(store, cipher, [{**GOOD, "ticket": "T-200", "email": "jane.doe@example.COM"}])
    assert errors[0].field == "email" and "open erasure request T-100" in errors[0].problem
    # the same subject may ask for the other type, and a new ticket must not reuse an old one
    intake.file_requests(store, cipher, [(2, {**GOOD, "ticket": "T-201", "type": "opt_out"})], today=TODAY)
    errors = _errors(store, cipher, [{**GOOD, "email": "someone.else@example.com"}])
    assert "already has an erasure request" in errors[0].problem
    assert _count(store) == 2


def test_phone_only_request_and_deadlines_are_stored(store, cipher):
    filed = intake.file_requests(store, cipher, [(2, {"ticket": "T-7", "regulation": "gdpr", "type": "erasure",
                                                      "phone": "030 1234567", "country": "de",
                                                      "received": "2026-01-31"})], today=TODAY)[0]
    req = store.request(filed.request_id)
    assert (req.regulation, req.request_type, req.status) == ("gdpr", "erasure", "filed")
    assert req.due == dt.date(2026, 2, 28) and req.extended_due == dt.date(2026, 4, 30) and req.ack_due is None
    assert req.identifier_types == ["phone"]


def test_identifiers_are_encrypted_at_rest(store, cipher):
    filed = intake.file_requests(store, cipher, [(2, {**GOOD, "phone": "+1 650 253 0000"})], today=TODAY)[0]
    with store.engine.connect() as conn:
        row = conn.execute(sa.select(t.erasure_requests).where(
            t.erasure_requests.c.request_id == filed.request_id)).mappings().one()
        raw = " ".join(str(v) for v in row.values())
        everything = " ".join(str(v) for r in conn.execute(sa.select(t.erasure_events)) for v in r)
    for plain in ("jane.doe@example.com", "Jane.Doe", "6502530000", "+16502530000"):
        assert plain.lower() not in raw.lower() and plain.lower() not in everything.lower()
    opened = cipher.open(row["identity_ct"], aad=filed.request_id, key_id=row["key_id"])
    assert opened == {"emails": ["jane.doe@example.com"], "phones": [["+16502530000", "US"]]}


def test_wrong_key_and_moved_ciphertext_do_not_open(store, cipher):
    a, b = intake.file_requests(store, cipher, [(2, GOOD), (3, {**GOOD, "ticket": "T-101", "email": "b@example.com"})],
                                today=TODAY)
    ct, _, key_id = store.sealed(a.request_id)
    with pytest.raises(IdentityKeyError, match="sealed with identity key"):
        IdentityCipher("another-identity-key-9876543210").open(ct, aad=a.request_id, key_id=key_id)
    with pytest.raises(IdentityKeyError, match="do not open"):
        IdentityCipher("another-identity-key-9876543210").open(ct, aad=a.request_id)
    with pytest.raises(IdentityKeyError, match="another request"):
        cipher.open(ct, aad=b.request_id)  # bound to its own row


def test_missing_or_weak_key_is_a_clear_error_and_nothing_is_stored(store, monkeypatch):
    monkeypatch.delenv("VENDORPRIVACY_IDENTITY_KEY", raising=False)
    monkeypatch.delenv("AIRFLOW_CONN_VENDORPRIVACY_KEYS", raising=False)
    with pytest.raises(IdentityKeyError, match="identity_key.*VENDORPRIVACY_IDENTITY_KEY.*Nothing was stored"):
        identity_cipher()
    with pytest.raises(IdentityKeyError, match="at least 16"):
        IdentityCipher("short")
    monkeypatch.setenv("VENDORPRIVACY_IDENTITY_KEY", IDENTITY_SECRET)
    assert identity_cipher().key_id == IdentityCipher(IDENTITY_SECRET).key_id
    assert _count(store) == 0


def test_key_from_the_airflow_connection_wins_over_the_environment(monkeypatch):
    import json

    monkeypatch.setenv("VENDORPRIVACY_IDENTITY_KEY", "environment-identity-key-000")
    monkeypatch.setenv("AIRFLOW_CONN_VENDORPRIVACY_KEYS", json.dumps(
        {"conn_type": "generic", "extra": {"token_key": "t", "subject_key": "s", "identity_key": IDENTITY_SECRET}}))
    assert identity_cipher().key_id == IdentityCipher(IDENTITY_SECRET).key_id


def test_csv_import_all_or_nothing(store, cipher, tmp_path):
    good = tmp_path / "good.csv"
    good.write_text("ticket,regulation,type,email,phone,country,received\n"
                    "T-1,ccpa,erasure,a@example.com,,,2026-11-01\n"
                    "\n"
                    "T-2,gdpr,opt_out,,+44 20 7946 0958,,\n")
    filed = intake.import_csv(store, cipher, good, today=TODAY)
    assert [(f.ticket, f.request_type) for f in filed] == [("T-1", "erasure"), ("T-2", "opt_out")]
    bad = tmp_path / "bad.csv"
    bad.write_text("ticket,regulation,type,email\nT-3,ccpa,erasure,c@example.com\nT-4,ccpa,erase,d@example.com\n")
    with pytest.raises(InvalidRequests) as e:
        intake.import_csv(store, cipher, bad, today=TODAY)
    assert [str(x) for x in e.value.errors] == ["row 3: type: unknown request type (use erasure or opt_out)"]
    assert _count(store) == 2
    header = tmp_path / "header.csv"
    header.write_text("ticket,regulation,kind,mail\nT-5,ccpa,erasure,e@example.com\n")
    with pytest.raises(InvalidRequests, match=r"(?s)missing column.*type.*unknown column.*kind, mail"):
        intake.import_csv(store, cipher, header, today=TODAY)


def test_under_13s_get_an_erasure_and_an_opt_out_once(store, cipher, shop, keys):
    url, planted = shop
    counts = intake.file_under_13(store, cipher, url, keys, today=dt.date(2026, 11, 1))
    n = len(planted["under_13"])
    assert n > 0 and counts == {"under_13_found": n, "filed": 2 * n, "already_filed": 0, "invalid_rows": 0}
    reqs = store.requests()
    assert {r.source for r in reqs} == {"under_13_audit"}
    assert sorted(r.request_type for r in reqs) == ["erasure"] * n + ["opt_out"] * n
    assert all(r.ticket.startswith("U13-") and "@" not in r.ticket for r in reqs)
    again = intake.file_under_13(store, cipher, url, keys, today=dt.date(2026, 11, 2))
    assert again["filed"] == 0 and again["already_filed"] == 2 * n
