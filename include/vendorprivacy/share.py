"""One vendor feed run, stage by stage: prepare (extract, filter, minimise), gate, deliver, record.

Each stage is safe to repeat: the delivery id is derived from (feed, logical date), a delivered feed is
never sent again, staged files are written under a temporary name and renamed, and the transports
refuse to store the same delivery twice. Stages return PII-free summaries (ids, counts, paths, statuses)
because Airflow keeps them in XCom and logs.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.ipc as ipc

from . import source
from .keys import Keys
from .ledger import Ledger
from .minimise.eligibility import eligible_ids_query
from .minimise.transform import minimise_batch, output_schema
from .policy import FeedSpec, Vendor, key_path

DELIVERY_NAMESPACE = uuid.UUID("6f1c1d2e-3b5a-4c47-9a7e-0d5e8f4a9b10")
DATA, SUBJECTS = "data.csv", "subjects.arrow"


class DeliveryRefused(RuntimeError):
    """The delivery may not leave (gate not passed, key missing...). Nothing was sent."""


@dataclass(frozen=True)
class FeedRun:
    vendor: Vendor
    feed: FeedSpec
    logical_date: dt.date
    shop_url: str
    ledger: Ledger
    staging_root: Path
    keys: Keys
    chunk_rows: int = 50_000

    @property
    def delivery_id(self) -> str:
        return str(uuid.uuid5(DELIVERY_NAMESPACE, f"{self.feed.id}/{self.logical_date.isoformat()}"))

    @property
    def file_name(self) -> str:
        ext = "csv.pgp" if self.vendor.encryption.method == "pgp" else "json"
        return f"{self.feed.id}_{self.logical_date:%Y%m%d}_{self.delivery_id[:8]}.{ext}"

    @property
    def staging_dir(self) -> Path:
        return self.staging_root / self.feed.id / self.logical_date.isoformat()

    @property
    def window(self) -> tuple[dt.datetime, dt.datetime] | None:
        if self.feed.window != "previous_day":
            return None
        end = dt.datetime.combine(self.logical_date, dt.time())
        return end - dt.timedelta(days=1), end

    def field_list(self) -> list[dict]:
        return [{"name": f.name, "category": f.category, "transform": f.transform} for f in self.feed.sent_fields]


def _summary(run: FeedRun, status: str, **extra) -> dict:
    return {"delivery_id": run.delivery_id, "feed": run.feed.id, "vendor": run.vendor.vendor,
            "logical_date": run.logical_date.isoformat(), "status": status, **extra}


# ------------------------------------------------------------------ stage 1: prepare
def prepare(run: FeedRun) -> dict:
    """Extract the feed's query, keep only eligible, unsuppressed subjects, minimise to the declared fields,
    and stage data.csv (exactly what would be sent) plus subjects.arrow (who each row is about, never sent)."""
    existing = run.ledger.get_delivery(run.delivery_id)
    if existing and existing.status == "delivered":
        return _summary(run, "already_delivered", rows=existing.row_count)
    run.ledger.begin_delivery(delivery_id=run.delivery_id, feed_id=run.feed.id, vendor=run.vendor.vendor,
                              logical_date=run.logical_date, window=run.window, transport=run.vendor.transport.kind,
                              file_name=run.file_name, fields=run.field_list())
    run.ledger.update_delivery(run.delivery_id, status="prepared", gate=None, error=None)  # new data, new gate
    started = time.perf_counter()
    eligible_sql, eligible_params = eligible_ids_query(run.feed, run.logical_date)
    eligible = source.column(run.shop_url, eligible_sql, eligible_params)
    suppressed = pa.array(sorted(run.ledger.suppressed()), pa.string())
    token_key = run.keys.vendor_token_key(run.vendor.vendor)
    params = {"window_start": run.window[0], "window_end": run.window[1]} if run.window else {}

    out_dir = run.staging_dir
    out_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp_data, tmp_subjects = out_dir / f".{DATA}.tmp", out_dir / f".{SUBJECTS}.tmp"
    counts = {"extracted": 0, "ineligible": 0, "suppressed": 0, "rows": 0}
    subject_schema = pa.schema([("customer_id", pa.int64()), ("subject_key", pa.string())])
    with pacsv.CSVWriter(tmp_data, output_schema(run.feed)) as data_out, \
            ipc.new_file(tmp_subjects, subject_schema) as subjects_out:
        for batch in source.stream(run.shop_url, run.feed.query, params, run.chunk_rows):
            counts["extracted"] += batch.num_rows
            if batch.num_rows == 0:
                continue
            ids = pc.cast(batch.column(run.feed.subject_column), pa.int64())
            allowed = pc.is_in(ids, value_set=eligible)
            keys = run.keys.subject_keys(ids)
            not_suppressed = pc.invert(pc.is_in(keys, value_set=suppressed))
            keep = pc.and_(allowed, not_suppressed)
            counts["ineligible"] += batch.num_rows - pc.sum(allowed).as_py() if batch.num_rows else 0
            counts["suppressed"] += pc.sum(pc.and_(allowed, pc.invert(not_suppressed))).as_py() or 0
            kept = batch.filter(keep)
            counts["rows"] += kept.num_rows
            data_out.write_batch(minimise_batch(run.feed, kept, token_key))
            subjects_out.write_batch(pa.RecordBatch.from_arrays(
                [pc.filter(ids, keep), pc.filter(keys, keep)], schema=subject_schema))
    os.replace(tmp_data, out_dir / DATA)
    os.replace(tmp_subjects, out_dir / SUBJECTS)
    return _summary(run, "prepared", staged=str(out_dir), seconds=round(time.perf_counter() - started, 3), **counts)


# ------------------------------------------------------------------ stage 2: gate
def gate(run: FeedRun) -> dict:
    """Run the Great Expectations gate on the staged files. Fails closed: a failure raises and nothing leaves."""
    from .quality import run_gate  # GX is heavy: imported only when a gate runs

    existing = run.ledger.get_delivery(run.delivery_id)
    if existing and existing.status == "delivered":
        return _summary(run, "already_delivered")
    previous = run.ledger.last_delivered(run.feed.id, before=run.logical_date)
    try:
        result = run_gate(run.feed, run.staging_dir / DATA, run.staging_dir / SUBJECTS, shop_url=run.shop_url,
                          run_date=run.logical_date, suppressed=run.ledger.suppressed(),
                          previous_row_count=previous.row_count if previous else None)
    except Exception as e:  # an error in the gate is a failed gate, never a pass
        run.ledger.update_delivery(run.delivery_id, status="gate_failed", gate={"passed": False},
                                   error=f"gate error: {type(e).__name__}")
        raise
    verdict = {**result.to_dict(), "validated_sha256": _sha256(run.staging_dir / DATA)}
    run.ledger.update_delivery(run.delivery_id, gate=verdict,
                               status="prepared" if result.passed else "gate_failed",
                               error=None if result.passed else result.message())
    result.raise_for_failure()
    return _summary(run, "gate_passed", rows=result.rows, seconds=round(result.duration_s, 3))


# ------------------------------------------------------------------ stage 3: deliver and record
def _transport(vendor: Vendor):
    from .transports import HttpsRecordTransport, S3Transport, SftpTransport

    t = vendor.transport
    if t.kind == "sftp":
        return SftpTransport(t.conn_id, t.path)
    if t.kind == "s3":
        return S3Transport(t.conn_id, t.bucket, t.path)
    return HttpsRecordTransport(t.conn_id, t.path)


def _sha256(path: Path) -> str:
    from .crypto import sha256_file

    return sha256_file(path)


def _distinct(keys: pa.ChunkedArray, chunk: int = 50_000):
    """Distinct subject keys, yielded in slices: a person with many orders is recorded once."""
    unique = pc.unique(keys)
    for start in range(0, len(unique), chunk):
        yield from unique.slice(start, chunk).to_pylist()


def deliver(run: FeedRun) -> dict:
    """Encrypt (file vendors) and deliver the gated file, then record it in the ledger with its subjects."""
    from .crypto import encrypt_file

    existing = run.ledger.get_delivery(run.delivery_id)
    if existing is None:
        raise DeliveryRefused(f"delivery {run.delivery_id} of feed {run.feed.id} was never prepared")
    if existing.status == "delivered":
        return _summary(run, "already_delivered", rows=existing.row_count, sha256=existing.sha256)
    gate_result = run.ledger.gate_of(run.delivery_id)  # the gate's verdict from the ledger, not from XCom
    if not (gate_result and gate_result.get("passed")):
        raise DeliveryRefused(f"feed {run.feed.id} delivery {run.delivery_id}: the quality gate has not passed; nothing sent")

    staged = run.staging_dir / DATA
    subjects = ipc.open_file(run.staging_dir / SUBJECTS).read_all()
    rows = subjects.num_rows
    plaintext_sha = _sha256(staged)
    if plaintext_sha != gate_result.get("validated_sha256"):
        raise DeliveryRefused(f"feed {run.feed.id} delivery {run.delivery_id}: the staged file is not the one the gate passed; nothing sent")
    transport = _transport(run.vendor)
    try:
        if run.vendor.encryption.method == "pgp":
            sealed = run.staging_dir / run.file_name
            encrypt_file(staged, sealed, key_path(run.vendor))
            sha, size = _sha256(sealed), sealed.stat().st_size
            manifest = {"delivery_id": run.delivery_id, "feed": run.feed.id, "vendor": run.vendor.vendor,
                        "file": run.file_name, "sha256": sha, "bytes": size, "plaintext_sha256": plaintext_sha,
                        "rows": rows, "columns": [f.name for f in run.feed.sent_fields],
                        "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
            receipt = transport.put(sealed, run.file_name, json.dumps(manifest, indent=2).encode())
        else:
            reader = pacsv.open_csv(staged, convert_options=pacsv.ConvertOptions(
                column_types={f.name: pa.string() for f in run.feed.sent_fields}, strings_can_be_null=True))
            records = (list(r.values()) for b in reader for r in b.to_pylist())  # streamed, batch by batch
            receipt = transport.send(run.delivery_id, run.feed.id, reader.schema.names, records,
                                     batch_size=run.feed.batch_size)
    except Exception as e:
        run.ledger.update_delivery(run.delivery_id, status="failed", error=f"{type(e).__name__}: {e}"[:2000])
        raise
    run.ledger.mark_delivered(run.delivery_id, _distinct(subjects.column("subject_key")),
                              row_count=rows, sha256=receipt.sha256, bytes=receipt.bytes,
                              remote_path=receipt.remote_path, plaintext_sha256=plaintext_sha)
    shutil.rmtree(run.staging_dir, ignore_errors=True)  # plaintext personal data does not linger on disk
    return _summary(run, "delivered", rows=rows, bytes=receipt.bytes, sha256=receipt.sha256,
                    already_present=receipt.already_present, remote_path=receipt.remote_path)
