"""The ledger's subject recording (`Ledger.mark_delivered`) at feed sizes, on SQLite and PostgreSQL, against
the SQLAlchemy `executemany` it replaced. `python -m bench ledger --keys 300000 790000`."""
from __future__ import annotations

import datetime as dt
import hashlib
import time
import uuid

import sqlalchemy as sa

from bench.common import RESULTS, STATE, machine, write_json

PG = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"


def _keys(n: int) -> list[str]:
    return sorted(hashlib.sha256(str(i).encode()).hexdigest() for i in range(n))  # deliver hands them sorted


def _sqlalchemy_executemany(ledger, delivery_id: str, keys: list[str], chunk: int = 10_000) -> None:
    from vendorprivacy.ledger import tables as t

    with ledger.engine.begin() as conn:
        for i in range(0, len(keys), chunk):
            conn.execute(t.delivery_subjects.insert(), [{"delivery_id": delivery_id, "subject_key": k}
                                                         for k in keys[i:i + chunk]])


def _one(url: str, schema: str | None, keys: list[str], how: str) -> float:
    from vendorprivacy.ledger import Ledger

    ledger = Ledger(url, schema=schema)
    ledger.migrate()
    did = str(uuid.uuid4())
    ledger.begin_delivery(delivery_id=did, feed_id="bench_feed", vendor="adgrid", logical_date=dt.date(2026, 11, 1),
                          window=None, transport="s3", file_name="f.csv.pgp", fields=[])
    started = time.perf_counter()
    if how == "current":
        ledger.mark_delivered(did, iter(keys), row_count=len(keys), sha256="a" * 64, bytes=1)
    else:
        _sqlalchemy_executemany(ledger, did, keys)
    seconds = time.perf_counter() - started
    assert len(ledger.subjects_of(did)) == len(keys)
    ledger.engine.dispose()
    return round(seconds, 3)


def bench_ledger(sizes: list[int]) -> dict:
    out: dict = {"machine": machine(), "sizes": {}}
    for n in sizes:
        keys, row = _keys(n), {}
        for how in ("sqlalchemy_executemany", "current"):
            db = STATE / f"ledger_bench_{uuid.uuid4().hex[:8]}.db"
            STATE.mkdir(parents=True, exist_ok=True)
            try:
                row[f"sqlite.{how}_s"] = _one(f"sqlite:///{db}", None, keys, how)
            finally:
                db.unlink(missing_ok=True)
            schema = f"bench_ledger_{uuid.uuid4().hex[:8]}"
            try:
                row[f"postgresql.{how}_s"] = _one(PG, schema, keys, how)
            finally:
                with sa.create_engine(PG).begin() as conn:
                    conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        out["sizes"][n] = row
        print(n, row, flush=True)
    write_json(RESULTS / "ledger.json", out)
    return out
