"""Per-feed benchmark: the real feed run (prepare, gate, deliver) and its floor, each in a fresh process.

The floor is the same number of rows of the same feed query, exported with no minimisation, no eligibility,
no checks and no encryption (plain CSV of the raw source columns), then delivered over the same transport
class to the same sandbox vendor: the cost of moving those rows at all. Feeds are reported as a ratio to it,
which holds on a machine shared with other work.

``python bench/feeds.py`` is kept for the old command line; it runs ``python -m bench run``.
"""
from __future__ import annotations

import datetime as dt
import json
import sys
import time
import uuid
from pathlib import Path

if __package__ in (None, ""):  # `python bench/feeds.py ...`: the old entry point
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from bench.__main__ import main as _main

    sys.exit(_main(["run", *sys.argv[1:]]))

from bench.common import DAY, KEYS, emit, peak_rss_mb, rss_mb


def warm_worker(gx: bool = True) -> float:
    """What a warm Airflow worker has already imported (paid once per worker, reported apart): GX, the
    transports and provider hooks, and phonenumbers' metadata for the regions the shop uses."""
    t = time.perf_counter()
    if gx:
        import great_expectations  # noqa: F401
        import vendorprivacy.quality.gate  # noqa: F401
    import vendorprivacy.crypto  # noqa: F401
    import vendorprivacy.transports  # noqa: F401
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook  # noqa: F401
    from airflow.providers.http.hooks.http import HttpHook  # noqa: F401
    from airflow.providers.sftp.hooks.sftp import SFTPHook  # noqa: F401

    import duckdb  # noqa: F401
    import pyarrow as pa
    from vendorprivacy.minimise import phones

    regions = "US GB CA DE FR ES IT NL IE AT BE PL SE PT DK CH".split()
    phones.e164_array(pa.array(["+1 650 253 0000"] * len(regions)), pa.array(regions), check=0)
    return time.perf_counter() - t


def _run(feed_id: str, shop: str, ledger_url: str, staging: str, day: dt.date):
    from vendorprivacy.keys import Keys
    from vendorprivacy.ledger import Ledger
    from vendorprivacy.policy import load_register
    from vendorprivacy.share import FeedRun

    vendor, feed = load_register().feed(feed_id)
    return FeedRun(vendor, feed, day, shop, Ledger(ledger_url), Path(staging), Keys(*KEYS))


def one_feed(feed_id: str, shop: str, ledger_url: str, staging: str, day: dt.date = DAY) -> dict:
    """Runs in the child process: every stage of one feed run, timed."""
    from vendorprivacy.share import STAGE_TIMINGS, deliver, gate, prepare

    imports = warm_worker()
    rss_warm = rss_mb()
    run = _run(feed_id, shop, ledger_url, staging, day)
    t0 = time.perf_counter()
    prepared = prepare(run)
    t1 = time.perf_counter()
    gated = gate(run)
    t2 = time.perf_counter()
    delivered = deliver(run)
    t3 = time.perf_counter()
    total = t3 - t0
    rows = delivered["rows"]
    parts = STAGE_TIMINGS.get(run.delivery_id, {})
    prepared = {**prepared, "timings": {k: v for k, v in parts.get("prepare", {}).items() if k != "reader"},
                "reader": parts.get("prepare", {}).get("reader")}
    delivered = {**delivered, "timings": parts.get("deliver", {})}
    return {"feed": feed_id, "vendor": run.vendor.vendor, "transport": run.vendor.transport.kind,
            "reader": prepared.get("reader"), "extracted": prepared["extracted"], "rows": rows,
            "bytes": delivered["bytes"], "status": delivered["status"],
            "worker_imports_s": round(imports, 3), "rss_after_imports_mb": rss_warm,
            "prepare_s": round(t1 - t0, 3), "gate_s": round(t2 - t1, 3), "deliver_s": round(t3 - t2, 3),
            "stages": {**{f"prepare.{k}": v for k, v in prepared.get("timings", {}).items()},
                       "gate.validate_s": gated.get("seconds"),
                       **{f"deliver.{k}": v for k, v in delivered.get("timings", {}).items()}},
            "total_s": round(total, 3), "rows_per_s": round(rows / total) if total else None,
            "extracted_rows_per_s": round(prepared["extracted"] / total) if total else None,
            "peak_rss_mb": peak_rss_mb()}


def one_floor(feed_id: str, shop: str, rows: int, staging: str, day: dt.date = DAY) -> dict:
    """Runs in the child process: the same number of rows of the feed's query, raw, to the same vendor."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    from vendorprivacy import source
    from vendorprivacy.share import _csv_records, _transport

    imports = warm_worker(gx=False)
    run = _run(feed_id, shop, "sqlite://", staging, day)
    feed, vendor = run.feed, run.vendor
    columns = list(dict.fromkeys(f.source_column for f in feed.sent_fields))
    out_dir = Path(staging) / f"floor_{feed_id}"
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path = out_dir / "floor.csv"
    params = {"window_start": run.window[0], "window_end": run.window[1]} if run.window else {}
    t0 = time.perf_counter()
    if feed.window == "snapshot" and source.duck_available(shop):
        # a plain export: one DuckDB statement from the SQLite shop to CSV
        con = source.duck_connect(shop)
        q, p = source.duck_sql(feed.query.strip().rstrip(";"), params)
        cols = ", ".join('"' + c.replace('"', '""') + '"' for c in columns)
        quoted = str(csv_path).replace("'", "''")
        con.execute(f"COPY (SELECT {cols} FROM ({q}) AS __feed LIMIT {int(rows)}) TO '{quoted}' "
                    f"(FORMAT csv, HEADER true)", p)
        con.close()
    else:
        left = rows
        writer = None
        for batch in source.stream(shop, feed.query, params):
            part = batch.select(columns).slice(0, left)
            part = pa.RecordBatch.from_arrays([c.cast(pa.string()) for c in part.columns], names=columns)
            writer = writer or pacsv.CSVWriter(csv_path, part.schema)
            writer.write_batch(part)
            left -= part.num_rows
            if left <= 0:
                break
        if writer is None:
            pacsv.write_csv(pa.table({c: pa.array([], pa.string()) for c in columns}), csv_path)
        else:
            writer.close()
    t1 = time.perf_counter()
    transport = _transport(vendor)
    name = f"floor_{feed_id}_{uuid.uuid4().hex[:8]}.csv"
    if vendor.transport.kind in ("sftp", "s3"):
        manifest = json.dumps({"floor": True, "feed": feed_id, "rows": rows}).encode()
        receipt = transport.put(csv_path, name, manifest)
    else:
        class _Fields:  # the floor's columns, read back as strings like deliver() does
            sent_fields = [type("F", (), {"name": c}) for c in columns]

        receipt = transport.send(f"floor-{uuid.uuid4()}", feed_id, columns, _csv_records(csv_path, _Fields),
                                 batch_size=feed.batch_size)
    t2 = time.perf_counter()
    size = csv_path.stat().st_size
    csv_path.unlink(missing_ok=True)
    return {"feed": feed_id, "rows": rows, "csv_bytes": size, "bytes": receipt.bytes,
            "worker_imports_s": round(imports, 3), "export_s": round(t1 - t0, 3), "upload_s": round(t2 - t1, 3),
            "total_s": round(t2 - t0, 3), "peak_rss_mb": peak_rss_mb()}
