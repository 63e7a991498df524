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
import queue
import shutil
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.ipc as ipc
from sqlalchemy import text as sa_text

from . import source
from .keys import Keys
from .ledger import Ledger
from .minimise.eligibility import eligible_among_query, eligible_ids_query
from .minimise.transform import minimise_batch, output_schema
from .policy import FeedSpec, Vendor, key_path
from .staging import SharedStaging

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
    shared: SharedStaging | None = None  # set when prepare, gate and deliver may run on different machines

    @property
    def delivery_id(self) -> str:
        return str(uuid.uuid5(DELIVERY_NAMESPACE, f"{self.feed.id}/{self.logical_date.isoformat()}"))

    @property
    def file_name(self) -> str:
        ext = "csv.pgp" if self.vendor.encryption.method == "pgp" else "json"
        return f"{self.feed.id}_{self.logical_date:%Y%m%d}_{self.delivery_id[:8]}.{ext}"

    @property
    def staging_key(self) -> str:
        return f"{self.feed.id}/{self.logical_date.isoformat()}"

    @property
    def staging_dir(self) -> Path:
        return self.staging_root / self.staging_key

    @property
    def window(self) -> tuple[dt.datetime, dt.datetime] | None:
        if self.feed.window != "previous_day":
            return None
        end = dt.datetime.combine(self.logical_date, dt.time())
        return end - dt.timedelta(days=1), end

    def field_list(self) -> list[dict]:
        return [{"name": f.name, "category": f.category, "transform": f.transform} for f in self.feed.sent_fields]


# Seconds spent in each part of a stage, per delivery id, for this process (benchmarks read them; the stage
# summaries, which Airflow keeps in XCom, stay as they are).
STAGE_TIMINGS: dict[str, dict[str, dict]] = {}


def _record_timings(run: "FeedRun", stage: str, **values) -> None:
    STAGE_TIMINGS.setdefault(run.delivery_id, {})[stage] = values


def _summary(run: FeedRun, status: str, **extra) -> dict:
    return {"delivery_id": run.delivery_id, "feed": run.feed.id, "vendor": run.vendor.vendor,
            "logical_date": run.logical_date.isoformat(), "status": status, **extra}


def excluded_subjects(run: FeedRun) -> set[str]:
    """Who this feed may never carry: erased/suppressed people, and for sale/share feeds also people who
    opted out of sale/sharing (kept apart from suppression so their orders still ship and get paid)."""
    excluded = run.ledger.suppressed()
    if "no_sale_share_opt_out" in run.feed.eligibility:
        excluded |= run.ledger.opted_out()
    return excluded


# ------------------------------------------------------------------ stage 1: prepare
def _prefetch(batches: Iterator[pa.RecordBatch], depth: int = 2) -> Iterator[pa.RecordBatch]:
    """Produce the next batches in a helper thread while this one is minimised (DuckDB and most Arrow
    kernels release the GIL, so reading and minimising overlap on two cores). Memory: ``depth`` batches."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def work() -> None:
        try:
            for b in batches:
                while not stop.is_set():
                    try:
                        q.put(b, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(done)
        except BaseException as e:  # noqa: BLE001 - handed to the consumer
            q.put(e)

    t = threading.Thread(target=work, name="vp-prefetch", daemon=True)
    t.start()
    try:
        while True:
            item = q.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        t.join(timeout=5)


class _Eligibility:
    """Per-batch eligibility for feeds read through SQLAlchemy: the rules evaluated in SQL for just the ids of
    the batch (a day's orders need not look at every customer), or, where the dialect has no list parameter,
    once for every customer."""

    def __init__(self, run: "FeedRun"):
        self.url = run.shop_url
        dialect = source.engine(run.shop_url).dialect.name
        self.among = eligible_among_query(run.feed, run.logical_date, dialect)
        self.dialect = dialect
        self._all: np.ndarray | None = None
        if self.among is None:
            sql, params = eligible_ids_query(run.feed, run.logical_date)
            self._all = np.sort(np.asarray(source.column(run.shop_url, sql, params).to_numpy(zero_copy_only=False),
                                           dtype=np.int64))

    def mask(self, ids: pa.Array) -> pa.Array:
        values = pc.fill_null(ids, -1).to_numpy(zero_copy_only=False).astype(np.int64)
        if self._all is None:
            candidates = np.unique(values)
            sql, params, name = self.among
            arg = json.dumps(candidates.tolist()) if self.dialect == "sqlite" else candidates.tolist()
            with source.engine(self.url).connect() as conn:
                found = np.sort(np.fromiter((r[0] for r in conn.execute(sa_text(sql), {**params, name: arg})),
                                            dtype=np.int64))
        else:
            found = self._all
        pos = np.searchsorted(found, values)
        hit = (pos < len(found)) & (found[np.minimum(pos, max(len(found) - 1, 0))] == values) if len(found) else \
            np.zeros(len(values), dtype=bool)
        return pa.array(hit & pc.is_valid(ids).to_numpy(zero_copy_only=False))


def _batches(run: "FeedRun", params: dict, via_duckdb: bool) -> Iterator[pa.RecordBatch]:
    """The feed's rows with an ``__eligible`` column."""
    if via_duckdb:
        eligible_sql, eligible_params = eligible_ids_query(run.feed, run.logical_date)
        key_sql, key_params = run.keys.subject_key_sql("{id}")
        yield from source.stream_with_eligibility(run.shop_url, run.feed.query, params, eligible_sql,
                                                  eligible_params, run.feed.subject_column, run.chunk_rows,
                                                  subject_key_sql=(key_sql, key_params))
        return
    checker = None
    for batch in source.stream(run.shop_url, run.feed.query, params, run.chunk_rows):
        checker = checker or _Eligibility(run)
        ids = pc.cast(batch.column(run.feed.subject_column), pa.int64())
        ok = checker.mask(ids) if batch.num_rows else pa.array([], pa.bool_())
        yield batch.append_column(source.ELIGIBLE, ok)


def prepare(run: FeedRun) -> dict:
    """Extract the feed's query, keep only eligible, unsuppressed subjects, minimise to the declared fields,
    and stage data.csv (exactly what would be sent) plus subjects.arrow (who each row is about, never sent).

    Whole-table (snapshot) feeds on a SQLite shop are read, joined with the eligibility rules and ordered in
    one DuckDB statement; day-window feeds are read through SQLAlchemy (SQLite's own access is quicker for a
    few rows) with the rules evaluated for just the ids read."""
    existing = run.ledger.get_delivery(run.delivery_id)
    if existing and existing.status == "delivered":
        return _summary(run, "already_delivered", rows=existing.row_count)
    run.ledger.begin_delivery(delivery_id=run.delivery_id, feed_id=run.feed.id, vendor=run.vendor.vendor,
                              logical_date=run.logical_date, window=run.window, transport=run.vendor.transport.kind,
                              file_name=run.file_name, fields=run.field_list())
    run.ledger.update_delivery(run.delivery_id, status="prepared", gate=None, error=None)  # new data, new gate
    started = time.perf_counter()
    timings = {"extract_s": 0.0, "filter_s": 0.0, "minimise_s": 0.0, "write_s": 0.0}
    suppressed = pa.array(sorted(excluded_subjects(run)), pa.string())
    token_key = run.keys.vendor_token_key(run.vendor.vendor)
    params = {"window_start": run.window[0], "window_end": run.window[1]} if run.window else {}
    via_duckdb = run.feed.window == "snapshot" and source.duck_available(run.shop_url)

    out_dir = run.staging_dir
    out_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp_data, tmp_subjects = out_dir / f".{DATA}.tmp", out_dir / f".{SUBJECTS}.tmp"
    counts = {"extracted": 0, "ineligible": 0, "suppressed": 0, "rows": 0}
    subject_schema = pa.schema([("customer_id", pa.int64()), ("subject_key", pa.string())])
    batches = _prefetch(_batches(run, params, via_duckdb))
    with pacsv.CSVWriter(tmp_data, output_schema(run.feed)) as data_out, \
            ipc.new_file(tmp_subjects, subject_schema) as subjects_out:
        t = time.perf_counter()
        for batch in batches:
            now = time.perf_counter()
            timings["extract_s"] += now - t
            counts["extracted"] += batch.num_rows
            if batch.num_rows == 0:
                t = time.perf_counter()
                continue
            allowed = pc.fill_null(batch.column(source.ELIGIBLE), False)
            ids = pc.cast(batch.column(run.feed.subject_column), pa.int64())
            allowed_ids = pc.filter(ids, allowed)
            if source.SUBJECT_KEY in batch.schema.names:  # computed by DuckDB during the scan
                keys = pc.filter(batch.column(source.SUBJECT_KEY), allowed)
                keys = keys if keys.type == pa.string() else pc.cast(keys, pa.string())
                batch = batch.drop_columns([source.ELIGIBLE, source.SUBJECT_KEY])
            else:
                batch = batch.drop_columns([source.ELIGIBLE])
                keys = run.keys.subject_keys(allowed_ids)  # only for the people who may be shared at all
            not_suppressed = pc.invert(pc.fill_null(pc.is_in(keys, value_set=suppressed), False))
            kept = batch.filter(allowed).filter(not_suppressed)
            n_allowed = len(allowed_ids)
            counts["ineligible"] += batch.num_rows - n_allowed
            counts["suppressed"] += n_allowed - kept.num_rows
            counts["rows"] += kept.num_rows
            t1 = time.perf_counter()
            timings["filter_s"] += t1 - now
            minimised = minimise_batch(run.feed, kept, token_key)
            t2 = time.perf_counter()
            timings["minimise_s"] += t2 - t1
            data_out.write_batch(minimised)
            subjects_out.write_batch(pa.RecordBatch.from_arrays(
                [pc.filter(allowed_ids, not_suppressed), pc.filter(keys, not_suppressed)], schema=subject_schema))
            t = time.perf_counter()
            timings["write_s"] += t - t2
    os.replace(tmp_data, out_dir / DATA)
    os.replace(tmp_subjects, out_dir / SUBJECTS)
    staged = str(out_dir)
    if run.shared:
        run.shared.publish(run.staging_key, out_dir, (DATA, SUBJECTS))
        shutil.rmtree(out_dir, ignore_errors=True)
        staged = run.shared.url(run.staging_key)
    _record_timings(run, "prepare", reader="duckdb" if via_duckdb else "sqlalchemy",
                    **{k: round(v, 3) for k, v in timings.items()})
    return _summary(run, "prepared", staged=staged, seconds=round(time.perf_counter() - started, 3), **counts)


@contextmanager
def _staged(run: FeedRun) -> Iterator[Path]:
    """The staged files on this machine for the length of a stage. From a shared store they are fetched
    first and removed afterwards, pass or fail: plaintext does not linger on a worker (a retry fetches again)."""
    if run.shared is None:
        yield run.staging_dir
        return
    try:
        run.shared.fetch(run.staging_key, run.staging_dir, (DATA, SUBJECTS))
        yield run.staging_dir
    finally:
        shutil.rmtree(run.staging_dir, ignore_errors=True)


# ------------------------------------------------------------------ stage 2: gate
def gate(run: FeedRun) -> dict:
    """Run the Great Expectations gate on the staged files. Fails closed: a failure raises and nothing leaves."""
    from .quality import run_gate  # GX is heavy: imported only when a gate runs

    existing = run.ledger.get_delivery(run.delivery_id)
    if existing and existing.status == "delivered":
        return _summary(run, "already_delivered")
    previous = run.ledger.last_delivered(run.feed.id, before=run.logical_date)
    try:
        with _staged(run) as staged:
            result = run_gate(run.feed, staged / DATA, staged / SUBJECTS, shop_url=run.shop_url,
                              run_date=run.logical_date, suppressed=excluded_subjects(run),
                              previous_row_count=previous.row_count if previous else None)
            # The verdict is bound to these exact files: deliver refuses any other.
            verdict = {**result.to_dict(), "validated_sha256": _sha256(staged / DATA),
                       "validated_subjects_sha256": _sha256(staged / SUBJECTS)}
    except Exception as e:  # an error in the gate is a failed gate, never a pass
        run.ledger.update_delivery(run.delivery_id, status="gate_failed", gate={"passed": False},
                                   error=f"gate error: {type(e).__name__}")
        raise
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
    """Distinct subject keys, sorted, yielded in slices: a person with many orders is recorded once, and
    index inserts in key order touch the ledger's B-trees sequentially (~1.5x faster on SQLite at 300k keys)."""
    unique = pc.unique(keys)
    unique = unique.take(pc.sort_indices(unique))
    for start in range(0, len(unique), chunk):
        yield from unique.slice(start, chunk).to_pylist()


def _csv_records(staged: Path, feed: FeedSpec) -> Iterator[list]:
    """The staged CSV's rows as lists of strings (None for empty cells), streamed block by block."""
    # A row must fit in one block. The register caps free text ('length', checked by the gate), so the
    # longest possible row is known: up to 4 bytes a character, doubled for CSV quote escaping.
    longest_row = sum(8 * (f.length or 1024) for f in feed.sent_fields)
    reader = pacsv.open_csv(staged, read_options=pacsv.ReadOptions(block_size=max(1 << 20, 2 * longest_row)),
                            parse_options=pacsv.ParseOptions(newlines_in_values=True),  # free text
                            convert_options=pacsv.ConvertOptions(
                                column_types={f.name: pa.string() for f in feed.sent_fields},
                                strings_can_be_null=True))
    for batch in reader:
        columns = [c.to_pylist() for c in batch.columns]
        yield from (list(r) for r in zip(*columns))


def deliver(run: FeedRun) -> dict:
    """Encrypt (file vendors) and deliver the gated file, then record it in the ledger with its subjects."""
    existing = run.ledger.get_delivery(run.delivery_id)
    if existing is None:
        raise DeliveryRefused(f"delivery {run.delivery_id} of feed {run.feed.id} was never prepared")
    if existing.status == "delivered":
        _remove_staged(run)  # a retry after a failed clean-up finishes it
        return _summary(run, "already_delivered", rows=existing.row_count, sha256=existing.sha256)
    gate_result = run.ledger.gate_of(run.delivery_id)  # the gate's verdict from the ledger, not from XCom
    if not (gate_result and gate_result.get("passed")):
        raise DeliveryRefused(f"feed {run.feed.id} delivery {run.delivery_id}: the quality gate has not passed; nothing sent")
    with _staged(run) as staged:
        summary = _deliver_staged(run, staged, gate_result)
    _remove_staged(run)
    return summary


def _remove_staged(run: FeedRun) -> None:
    """Plaintext personal data does not linger once delivered: not on this machine, not in the shared store."""
    shutil.rmtree(run.staging_dir, ignore_errors=True)
    if run.shared:
        run.shared.discard(run.staging_key)


def _deliver_staged(run: FeedRun, staged_dir: Path, gate_result: dict) -> dict:
    from .crypto import encrypt_file

    timings = {"verify_s": 0.0, "encrypt_s": 0.0, "upload_s": 0.0, "ledger_s": 0.0}
    t = time.perf_counter()
    staged = staged_dir / DATA
    plaintext_sha = _sha256(staged)
    subjects_sha = gate_result.get("validated_subjects_sha256")
    if plaintext_sha != gate_result.get("validated_sha256") or (subjects_sha and subjects_sha != _sha256(staged_dir / SUBJECTS)):
        raise DeliveryRefused(f"feed {run.feed.id} delivery {run.delivery_id}: the staged files are not the ones the gate passed; nothing sent")
    subjects = ipc.open_file(staged_dir / SUBJECTS).read_all()
    rows = subjects.num_rows
    # An erasure or opt-out may have landed after prepare: such a file must not leave (the next prepare drops them).
    late = pc.sum(pc.is_in(subjects.column("subject_key"), value_set=pa.array(sorted(excluded_subjects(run)), pa.string()))).as_py()
    if late:
        run.ledger.update_delivery(run.delivery_id, status="prepared", gate=None,
                                   error=f"{late} row(s) for people suppressed after prepare; re-run the feed")
        raise DeliveryRefused(f"feed {run.feed.id} delivery {run.delivery_id}: {late} row(s) are about people suppressed "
                              "or opted out after this file was prepared; nothing sent, re-run the feed")
    transport = _transport(run.vendor)
    timings["verify_s"] = time.perf_counter() - t
    try:
        if run.vendor.encryption.method == "pgp":
            t = time.perf_counter()
            sealed = staged_dir / run.file_name
            encrypt_file(staged, sealed, key_path(run.vendor))
            sha, size = _sha256(sealed), sealed.stat().st_size
            timings["encrypt_s"] = time.perf_counter() - t
            t = time.perf_counter()
            manifest = {"delivery_id": run.delivery_id, "feed": run.feed.id, "vendor": run.vendor.vendor,
                        "file": run.file_name, "sha256": sha, "bytes": size, "plaintext_sha256": plaintext_sha,
                        "rows": rows, "columns": [f.name for f in run.feed.sent_fields],
                        "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
            receipt = transport.put(sealed, run.file_name, json.dumps(manifest, indent=2).encode())
            timings["upload_s"] = time.perf_counter() - t
        else:
            t = time.perf_counter()
            receipt = transport.send(run.delivery_id, run.feed.id, [f.name for f in run.feed.sent_fields],
                                     _csv_records(staged, run.feed), batch_size=run.feed.batch_size)
            timings["upload_s"] = time.perf_counter() - t
    except Exception as e:
        run.ledger.update_delivery(run.delivery_id, status="failed", error=f"{type(e).__name__}: {e}"[:2000])
        raise
    t = time.perf_counter()
    run.ledger.mark_delivered(run.delivery_id, _distinct(subjects.column("subject_key")),
                              row_count=rows, sha256=receipt.sha256, bytes=receipt.bytes,
                              remote_path=receipt.remote_path, plaintext_sha256=plaintext_sha)
    timings["ledger_s"] = time.perf_counter() - t
    _record_timings(run, "deliver", **{k: round(v, 3) for k, v in timings.items()})
    return _summary(run, "delivered", rows=rows, bytes=receipt.bytes, sha256=receipt.sha256,
                    already_present=receipt.already_present, remote_path=receipt.remote_path)
