"""The ledger's record of who each delivery was about, on both back ends (PostgreSQL through COPY, SQLite
through the driver's executemany): every key once, a repeat replaces rather than adds, the status flips in the
same transaction."""
from __future__ import annotations

import datetime as dt
import hashlib
import uuid

import pytest
import sqlalchemy as sa

from tests.conftest import pg_ledger
from vendorprivacy.ledger import Ledger

@pytest.fixture(params=["postgresql", "sqlite"])
def ledger(request, tmp_path):
    if request.param == "sqlite":
        led = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
        led.migrate()
        yield led
        led.engine.dispose()
        return
    with pg_ledger("ut_ledger") as led:
        yield led


def keys(n: int, salt: str = "") -> list[str]:
    return sorted(hashlib.sha256(f"{salt}{i}".encode()).hexdigest() for i in range(n))


def begin(ledger: Ledger, vendor: str = "adgrid") -> str:
    did = str(uuid.uuid4())
    ledger.begin_delivery(delivery_id=did, feed_id=f"{vendor}_feed", vendor=vendor, logical_date=dt.date(2026, 11, 1),
                          window=None, transport="s3", file_name="f.csv.pgp", fields=[])
    return did


def test_every_subject_is_recorded_once_across_chunks(ledger):
    did, recorded = begin(ledger), keys(123_457)   # more than one COPY / executemany chunk
    ledger.mark_delivered(did, iter(recorded), row_count=len(recorded), sha256="a" * 64, bytes=10)
    assert ledger.subjects_of(did) == set(recorded)
    d = ledger.get_delivery(did)
    assert d.status == "delivered" and d.row_count == len(recorded)
    assert ledger.recipients_of(recorded[-1]) == {"adgrid"}


def test_recording_again_replaces_the_subjects(ledger):
    did = begin(ledger)
    ledger.mark_delivered(did, keys(50, "first"), row_count=50, sha256="a" * 64, bytes=10)
    ledger.mark_delivered(did, keys(7, "second"), row_count=7, sha256="a" * 64, bytes=10)
    assert ledger.subjects_of(did) == set(keys(7, "second"))


def test_a_failed_recording_leaves_nothing_half_written(ledger):
    did = begin(ledger)
    with pytest.raises(sa.exc.DBAPIError):
        ledger.mark_delivered(did, keys(30_000) + [keys(1)[0]], row_count=1, sha256="a" * 64, bytes=10)  # a duplicate
    assert ledger.subjects_of(did) == set() and ledger.get_delivery(did).status != "delivered"
