"""Shared fixtures of the erasure unit tests (imported by the test_erasure_* modules; holds no tests itself).

FakeProtocol below is a TEST-ONLY stand-in for a vendor protocol client (vendorprivacy.erasure.protocols):
it records what it was sent and answers as scripted. It uses the real contract types (ErasureItem,
Outcome, SubmitReceipt) from vendorprivacy.erasure.protocols; the real clients are exercised against the
sandbox vendors in tests/integration/test_erasure_run.py.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.conftest import pg_ledger
from vendorprivacy.erasure import propagate
from vendorprivacy.erasure import store as st
from vendorprivacy.erasure.identity import IdentityCipher
from vendorprivacy.keys import Keys
from vendorprivacy.ledger import Ledger
from vendorprivacy.policy import load_notice, load_register

IDENTITY_SECRET = "unit-test-identity-key-0123456789"
TODAY = dt.date(2026, 11, 20)


@pytest.fixture
def ledger():
    """A fresh ledger in its own PostgreSQL schema, dropped afterwards."""
    with pg_ledger("ut_erasure") as led:
        yield led


@pytest.fixture
def store(ledger) -> st.ErasureStore:
    return st.ErasureStore(ledger)


@pytest.fixture
def cipher() -> IdentityCipher:
    return IdentityCipher(IDENTITY_SECRET)


@pytest.fixture(scope="session")
def keys() -> Keys:
    return Keys(b"unit-token-key", b"unit-subject-key")


@pytest.fixture(scope="session")
def register():
    return load_register()


@pytest.fixture(scope="session")
def notice():
    return load_notice()


@pytest.fixture(scope="session")
def shop(tmp_path_factory):
    """A small synthetic shop (SQLite) shared by the session; returns (url, planted)."""
    from vendorprivacy.shop.generate import generate_shop

    path = tmp_path_factory.mktemp("shop") / "shop.db"
    planted = generate_shop(f"sqlite:///{path}", customers=300, seed=7)
    return f"sqlite:///{path}", planted


def customer(shop_url: str, customer_id: int) -> dict:
    with sa.create_engine(shop_url).connect() as conn:
        return dict(conn.execute(sa.text("SELECT * FROM customers WHERE customer_id = :i"), {"i": customer_id})
                    .mappings().one())


def customers_where(shop_url: str, sql: str) -> list[int]:
    with sa.create_engine(shop_url).connect() as conn:
        return [r[0] for r in conn.execute(sa.text(sql))]


# ------------------------------------------------------------------------- TEST-ONLY fake protocol
@dataclass
class FakeProtocol:
    """TEST-ONLY vendor protocol: records submissions; answers per `answer` ('completed', 'retained', None =
    never answers, 'ack' = acknowledges only). Idempotent per batch id like the real clients."""
    vendor: str
    answer: str | None = "completed"
    reason: str | None = None
    submissions: list = field(default_factory=list)       # (batch_id, [items]) actually sent
    seen_batches: dict = field(default_factory=dict)
    fail_submit: bool = False

    def submit(self, batch_id, items):
        from vendorprivacy.erasure.propagate import contract

        if self.fail_submit:
            raise ConnectionError(f"{self.vendor} unreachable")
        body = json.dumps([[i.pair_id, i.identifiers] for i in items], sort_keys=True).encode()
        sha = hashlib.sha256(body).hexdigest()
        already = batch_id in self.seen_batches
        if not already:
            self.seen_batches[batch_id] = items
            self.submissions.append((batch_id, items))
        return contract().SubmitReceipt(batch_id=batch_id, vendor_reference=f"{self.vendor}-{batch_id[:8]}",
                                        sha256=sha, bytes=len(body), already_submitted=already)

    def poll(self, batch_id, items):
        from vendorprivacy.erasure.propagate import contract

        Outcome = contract().Outcome
        if self.answer is None or batch_id not in self.seen_batches:
            return []
        now = dt.datetime.now(dt.timezone.utc)
        status = "acknowledged" if self.answer == "ack" else self.answer
        return [Outcome(pair_id=i.pair_id, status=status, vendor_reference=f"{self.vendor}-case",
                        reason=self.reason if status in ("retained", "failed") else None,
                        evidence_sha256=hashlib.sha256(f"{i.pair_id}/{status}".encode()).hexdigest(), at=now)
                for i in items]


class FakeVendors:
    """TEST-ONLY: one FakeProtocol per vendor, payflow retaining payment records by default."""

    def __init__(self, **overrides):
        self.by_vendor: dict[str, FakeProtocol] = {}
        self.overrides = overrides

    def __call__(self, vendor):
        if vendor.vendor not in self.by_vendor:
            kw = {"answer": "retained", "reason": "Payment records are kept for 10 years under tax law"} \
                if vendor.vendor == "payflow" else {}
            kw.update(self.overrides.get(vendor.vendor, {}))
            self.by_vendor[vendor.vendor] = FakeProtocol(vendor.vendor, **kw)
        return self.by_vendor[vendor.vendor]

    def sent(self) -> dict[str, int]:
        return {v: sum(len(items) for _, items in p.submissions) for v, p in self.by_vendor.items() if p.submissions}


@pytest.fixture
def make_ctx(store, shop, keys, cipher, register, notice, tmp_path):
    def make(protocols=None) -> propagate.Context:
        return propagate.Context(store=store, shop_url=shop[0], keys=keys, cipher=cipher, register=register,
                                 notice=notice, reports_dir=Path(tmp_path) / "reports",
                                 protocol_factory=protocols or FakeVendors())
    return make


def mark_delivered(ledger: Ledger, vendor: str, feed_id: str, subject_keys: list[str], day: dt.date = TODAY) -> None:
    """Record in the ledger that `vendor` received these subjects (as the feed pipeline does)."""
    did = str(uuid.uuid4())
    ledger.begin_delivery(delivery_id=did, feed_id=feed_id, vendor=vendor, logical_date=day, window=None,
                          transport="sftp", file_name=f"{feed_id}.csv", fields=[])
    ledger.mark_delivered(did, subject_keys, row_count=len(subject_keys), sha256="0" * 64, bytes=1)
