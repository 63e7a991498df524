"""What each sandbox vendor holds: one SQLite database per vendor, ``<state>/vendors/<vendor>.db``.

Tables:

- ``records``: every row the vendor received and still holds — ``feed``, ``delivery_id``,
  ``source`` (sftp|s3|https), ``file``, ``batch_index``, ``position`` and ``row`` (a JSON object
  column -> value, in column order).
- ``deliveries``: one line per file / API delivery with ``status`` (loaded | rejected | receiving |
  complete | mismatch) and, for rejections, a ``reason`` (never contents).
- ``idempotency``: the vendor API's stored answers per ``Idempotency-Key``.
- ``erasure_batches``: erasure request files seen (sftp_ack / s3_removal_list), when first seen, and
  whether they were answered (``received`` | ``answered`` | ``rejected``).
- ``opendsr_requests``: OpenDSR requests received (identity values are scrubbed once processed).
- ``erasure_outcomes``: what the vendor did per pair (outcome, matched / deleted / retained counts).

File vendors (sftp/s3) receive ``*.csv.pgp`` plus ``*.csv.pgp.manifest.json``; ``ingest_*`` load a
file once its manifest exists, after checking the ciphertext's size and sha256, decrypting with the
vendor's secret key, checking the plaintext sha256, the header against ``columns`` and the row
count against ``rows``. A file failing any check is recorded as rejected and nothing of it is
loaded. Each file is considered once (loaded or rejected).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import sqlite3
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

DATA_SUFFIX = ".csv.pgp"
MANIFEST_SUFFIX = ".manifest.json"

SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    feed TEXT NOT NULL,
    delivery_id TEXT NOT NULL,
    source TEXT NOT NULL,
    file TEXT,
    batch_index INTEGER NOT NULL DEFAULT 0,
    position INTEGER NOT NULL,
    row TEXT NOT NULL,
    received_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS records_by_delivery ON records (delivery_id, batch_index, position);
CREATE INDEX IF NOT EXISTS records_by_feed ON records (feed);
CREATE TABLE IF NOT EXISTS deliveries (
    source TEXT NOT NULL,
    name TEXT NOT NULL,
    delivery_id TEXT,
    feed TEXT,
    status TEXT NOT NULL,
    reason TEXT,
    row_count INTEGER,
    sha256 TEXT,
    received_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (source, name)
);
CREATE TABLE IF NOT EXISTS erasure_batches (
    channel TEXT NOT NULL,
    batch_id TEXT NOT NULL,
    name TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT,
    reference TEXT,
    request_sha256 TEXT,
    pairs INTEGER,
    first_seen_at TEXT NOT NULL,
    answered_at TEXT,
    answer TEXT,
    PRIMARY KEY (channel, batch_id)
);
CREATE TABLE IF NOT EXISTS opendsr_requests (
    subject_request_id TEXT PRIMARY KEY,
    body_sha256 TEXT NOT NULL,
    body TEXT NOT NULL,
    regulation TEXT NOT NULL,
    status TEXT NOT NULL,
    reference TEXT NOT NULL,
    received_at TEXT NOT NULL,
    due_at TEXT NOT NULL,
    expected_completion_time TEXT NOT NULL,
    processed_at TEXT,
    outcome TEXT
);
CREATE TABLE IF NOT EXISTS erasure_outcomes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    channel TEXT NOT NULL,
    request_ref TEXT NOT NULL,
    pair_id TEXT NOT NULL,
    outcome TEXT NOT NULL,
    matched INTEGER NOT NULL,
    deleted INTEGER NOT NULL,
    retained INTEGER NOT NULL,
    reason TEXT,
    at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS idempotency (
    key TEXT PRIMARY KEY,
    request_sha256 TEXT NOT NULL,
    status INTEGER NOT NULL,
    response TEXT NOT NULL,
    created_at TEXT NOT NULL
);
"""


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def store_path(state_dir: Path, vendor: str) -> Path:
    return Path(state_dir) / "vendors" / f"{vendor}.db"


def _json_path(column: str) -> str:
    return '$."' + column.replace("\\", "\\\\").replace('"', '\\"') + '"'


class VendorStore:
    """One vendor's SQLite store. Safe to use from several processes (WAL, busy timeout)."""

    def __init__(self, path: Path, vendor: str | None = None) -> None:
        self.path = Path(path)
        self.vendor = vendor or self.path.stem
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.connect() as conn:
            conn.executescript(SCHEMA)

    @contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            yield conn
        finally:
            conn.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` … ``COMMIT`` (rolled back on error)."""
        with self.connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    # ------------------------------------------------------------------ writes
    @staticmethod
    def insert_rows(conn: sqlite3.Connection, *, feed: str, delivery_id: str, source: str,
                    rows: Iterable[dict[str, Any]], file: str | None = None, batch_index: int = 0) -> int:
        at = now_iso()
        data = [
            (feed, delivery_id, source, file, batch_index, position, json.dumps(row, ensure_ascii=False), at)
            for position, row in enumerate(rows)
        ]
        conn.executemany(
            "INSERT INTO records (feed, delivery_id, source, file, batch_index, position, row, received_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            data,
        )
        return len(data)

    @staticmethod
    def upsert_delivery(conn: sqlite3.Connection, *, source: str, name: str, status: str,
                        delivery_id: str | None = None, feed: str | None = None, reason: str | None = None,
                        row_count: int | None = None, sha256: str | None = None) -> None:
        at = now_iso()
        conn.execute(
            "INSERT INTO deliveries (source, name, delivery_id, feed, status, reason, row_count, sha256, "
            "received_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (source, name) DO UPDATE SET status = excluded.status, reason = excluded.reason, "
            "row_count = COALESCE(excluded.row_count, row_count), sha256 = COALESCE(excluded.sha256, sha256), "
            "feed = COALESCE(excluded.feed, feed), delivery_id = COALESCE(excluded.delivery_id, delivery_id), "
            "updated_at = excluded.updated_at",
            (source, name, delivery_id, feed, status, reason, row_count, sha256, at, at),
        )

    def add_records(self, feed: str, rows: Iterable[dict[str, Any]], *, delivery_id: str | None = None,
                    source: str = "seed") -> str:
        """Put rows straight into the store (tests, demos); returns the delivery id used."""
        import uuid

        delivery_id = delivery_id or f"{source}-{uuid.uuid4().hex[:12]}"
        with self.transaction() as conn:
            n = self.insert_rows(conn, feed=feed, delivery_id=delivery_id, source=source, rows=rows)
            self.upsert_delivery(conn, source=source, name=delivery_id, status="loaded", delivery_id=delivery_id,
                                 feed=feed, row_count=n)
        return delivery_id

    @staticmethod
    def erase(conn: sqlite3.Connection, criteria: Iterable[tuple[str, Any]], *,
              retain: Sequence[tuple[str, str]] = (), retain_all: str | None = None) -> dict[str, Any]:
        """Really delete every held row matching any ``(column, value)``, except rows kept by a rule.

        ``retain``: ``(column, legal reason)`` — a matching row holding a non-empty ``column`` is kept.
        ``retain_all``: keep every matching row with this reason (the vendor refuses to delete).
        Returns ``{"matched", "deleted", "retained", "reason"}`` (reasons of kept rows, de-duplicated).
        """
        matched: dict[int, dict] = {}
        for column, value in criteria:
            for r in conn.execute("SELECT id, row FROM records WHERE json_extract(row, ?) = ?",
                                  (_json_path(column), value)):
                matched.setdefault(r["id"], json.loads(r["row"]))
        doomed: list[int] = []
        reasons: list[str] = []
        kept = 0
        for row_id, row in matched.items():
            reason = retain_all or next((why for col, why in retain if row.get(col) not in (None, "")), None)
            if reason:
                kept += 1
                if reason not in reasons:
                    reasons.append(reason)
            else:
                doomed.append(row_id)
        conn.executemany("DELETE FROM records WHERE id = ?", [(i,) for i in doomed])
        return {"matched": len(matched), "deleted": len(doomed), "retained": kept,
                "reason": "; ".join(reasons) or None}

    @staticmethod
    def log_outcome(conn: sqlite3.Connection, *, channel: str, request_ref: str, pair_id: str, outcome: str,
                    matched: int, deleted: int, retained: int, reason: str | None) -> None:
        conn.execute(
            "INSERT INTO erasure_outcomes (channel, request_ref, pair_id, outcome, matched, deleted, retained, "
            "reason, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (channel, request_ref, pair_id, outcome, matched, deleted, retained, reason, now_iso()),
        )

    def erasure_outcomes(self, pair_id: str | None = None) -> list[dict[str, Any]]:
        """What this vendor did per pair, oldest first."""
        sql, args = "SELECT * FROM erasure_outcomes", ()
        if pair_id is not None:
            sql, args = sql + " WHERE pair_id = ?", (pair_id,)
        with self.connect() as conn:
            return [dict(r) for r in conn.execute(sql + " ORDER BY id", args)]

    def erasure_batches(self) -> list[dict[str, Any]]:
        with self.connect() as conn:
            return [dict(r) for r in conn.execute("SELECT * FROM erasure_batches ORDER BY first_seen_at")]

    def opendsr_requests(self, subject_request_id: str | None = None) -> list[dict[str, Any]]:
        """OpenDSR requests held (``body`` parsed; identity values scrubbed once processed)."""
        sql, args = "SELECT * FROM opendsr_requests", ()
        if subject_request_id is not None:
            sql, args = sql + " WHERE subject_request_id = ?", (subject_request_id,)
        with self.connect() as conn:
            out = []
            for r in conn.execute(sql + " ORDER BY received_at", args):
                d = dict(r)
                d["body"] = json.loads(d["body"])
                d["outcome"] = json.loads(d["outcome"]) if d["outcome"] else None
                out.append(d)
            return out

    def delete_matching(self, column: str, value: Any) -> int:
        """Really delete every held row whose ``column`` equals ``value``; return how many."""
        with self.transaction() as conn:
            cur = conn.execute("DELETE FROM records WHERE json_extract(row, ?) = ?", (_json_path(column), value))
            return cur.rowcount

    # ------------------------------------------------------------------ reads
    def records(self, feed: str | None = None) -> list[dict[str, Any]]:
        """Rows held (column -> value), in arrival order."""
        return [e["row"] for e in self.entries(feed)]

    def entries(self, feed: str | None = None) -> list[dict[str, Any]]:
        """Rows held with where they came from: feed, delivery_id, source, file, row."""
        sql = "SELECT feed, delivery_id, source, file, batch_index, position, row FROM records"
        args: tuple = ()
        if feed is not None:
            sql += " WHERE feed = ?"
            args = (feed,)
        sql += " ORDER BY id"
        with self.connect() as conn:
            return [
                {**{k: r[k] for k in ("feed", "delivery_id", "source", "file", "batch_index", "position")},
                 "row": json.loads(r["row"])}
                for r in conn.execute(sql, args)
            ]

    def find(self, column: str, value: Any) -> list[dict[str, Any]]:
        """Rows held whose ``column`` equals ``value``."""
        with self.connect() as conn:
            cur = conn.execute(
                "SELECT row FROM records WHERE json_extract(row, ?) = ? ORDER BY id", (_json_path(column), value)
            )
            return [json.loads(r["row"]) for r in cur]

    def deliveries(self) -> list[str]:
        """Distinct delivery ids received (not rejected), in arrival order."""
        with self.connect() as conn:
            cur = conn.execute(
                "SELECT delivery_id, MIN(received_at) AS first FROM deliveries "
                "WHERE status != 'rejected' AND delivery_id IS NOT NULL GROUP BY delivery_id ORDER BY first"
            )
            return [r["delivery_id"] for r in cur]

    def delivery_log(self) -> list[dict[str, Any]]:
        """Every file / API delivery seen, including rejected ones and why."""
        with self.connect() as conn:
            return [dict(r) for r in conn.execute("SELECT * FROM deliveries ORDER BY received_at, name")]

    def seen(self, source: str, name: str) -> bool:
        with self.connect() as conn:
            return conn.execute(
                "SELECT 1 FROM deliveries WHERE source = ? AND name = ?", (source, name)
            ).fetchone() is not None

    def held_delivery(self, conn: sqlite3.Connection, delivery_id: str, source: str) -> tuple[int, str]:
        """Row count and canonical sha256 (see vendorprivacy.transports.https) of what is held."""
        h = hashlib.sha256()
        n = 0
        for r in conn.execute(
            "SELECT row FROM records WHERE delivery_id = ? AND source = ? ORDER BY batch_index, position",
            (delivery_id, source),
        ):
            values = list(json.loads(r["row"]).values())
            h.update(canonical_record_bytes(values))
            n += 1
        return n, h.hexdigest()


def canonical_record_bytes(record: Sequence[Any]) -> bytes:
    """The vendor side of the record-hash definition (kept independent of the sender's code)."""
    return (
        json.dumps(list(record), ensure_ascii=False, separators=(",", ":"), sort_keys=True, allow_nan=False)
        + "\n"
    ).encode("utf-8")


# ---------------------------------------------------------------------- file ingestion
@dataclass
class IngestReport:
    loaded: list[str] = field(default_factory=list)
    rejected: dict[str, str] = field(default_factory=dict)
    rows: int = 0

    def merge(self, other: IngestReport) -> None:
        self.loaded += other.loaded
        self.rejected.update(other.rejected)
        self.rows += other.rows


class _Reject(Exception):
    pass


def _sha256_path(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def ingest_file(store: VendorStore, *, source: str, name: str, ciphertext: Path, manifest_bytes: bytes,
                secret_key: Path, workdir: Path) -> tuple[str, str | None, int]:
    """Check, decrypt and load one delivered file. Returns (status, reason, rows)."""
    from vendorprivacy.crypto import CryptoError, decrypt_file

    manifest: dict[str, Any] = {}
    try:
        try:
            manifest = json.loads(manifest_bytes)
            if not isinstance(manifest, dict):
                raise ValueError
        except ValueError:
            manifest = {}
            raise _Reject("manifest is not a JSON object") from None
        for key in ("sha256", "rows", "delivery_id"):
            if key not in manifest:
                raise _Reject(f"manifest lacks {key!r}")
        if manifest.get("file") not in (None, name):
            raise _Reject("manifest names another file")
        if manifest.get("vendor") not in (None, store.vendor):
            raise _Reject("manifest is addressed to another vendor")
        size = ciphertext.stat().st_size
        if "bytes" in manifest and int(manifest["bytes"]) != size:
            raise _Reject(f"size {size} != manifest bytes {manifest['bytes']}")
        if _sha256_path(ciphertext) != str(manifest["sha256"]).lower():
            raise _Reject("ciphertext sha256 does not match the manifest")
        with tempfile.TemporaryDirectory(dir=workdir, prefix="ingest-") as tmp:
            plain = Path(tmp) / "plain.csv"
            try:
                decrypt_file(ciphertext, plain, secret_key)
            except CryptoError as exc:
                raise _Reject(f"decryption failed ({type(exc).__name__})") from None
            if manifest.get("plaintext_sha256") and _sha256_path(plain) != str(manifest["plaintext_sha256"]).lower():
                raise _Reject("plaintext sha256 does not match the manifest")
            with open(plain, newline="", encoding="utf-8-sig") as fh:
                reader = csv.reader(fh)
                header = next(reader, None)
                if header is None:
                    raise _Reject("empty file: no header row")
                if len(set(header)) != len(header):
                    raise _Reject("duplicate column names in header")
                if manifest.get("columns") is not None and list(manifest["columns"]) != header:
                    raise _Reject("header does not match manifest columns")
                rows = []
                for line_no, values in enumerate(reader, start=2):
                    if len(values) != len(header):
                        raise _Reject(f"line {line_no} has {len(values)} fields, header has {len(header)}")
                    rows.append(dict(zip(header, values)))
            if len(rows) != int(manifest["rows"]):
                raise _Reject(f"{len(rows)} rows != manifest rows {manifest['rows']}")
    except (_Reject, ValueError, TypeError, csv.Error) as exc:
        reason = str(exc) if isinstance(exc, _Reject) else f"malformed manifest or data ({type(exc).__name__})"
        with store.transaction() as conn:
            store.upsert_delivery(conn, source=source, name=name, status="rejected", reason=reason,
                                  delivery_id=_str_or_none(manifest.get("delivery_id")),
                                  feed=_str_or_none(manifest.get("feed")))
        return "rejected", reason, 0
    with store.transaction() as conn:
        n = store.insert_rows(conn, feed=str(manifest.get("feed") or ""), delivery_id=str(manifest["delivery_id"]),
                              source=source, rows=rows, file=name)
        store.upsert_delivery(conn, source=source, name=name, status="loaded", delivery_id=str(manifest["delivery_id"]),
                              feed=manifest.get("feed"), row_count=n, sha256=str(manifest["sha256"]).lower())
    return "loaded", None, n


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


def ingest_folder(store: VendorStore, folder: Path, secret_key: Path, workdir: Path,
                  source: str = "sftp") -> IngestReport:
    """Ingest complete deliveries (``*.csv.pgp`` with manifest) from an SFTP drop folder."""
    report = IngestReport()
    if not folder.is_dir():
        return report
    for data in sorted(folder.glob(f"*{DATA_SUFFIX}")):
        name = data.name
        manifest = folder / (name + MANIFEST_SUFFIX)
        if name.startswith(".") or not manifest.exists() or store.seen(source, name):
            continue
        status, reason, n = ingest_file(store, source=source, name=name, ciphertext=data,
                                        manifest_bytes=manifest.read_bytes(), secret_key=secret_key, workdir=workdir)
        _account(report, name, status, reason, n)
    return report


def ingest_bucket(store: VendorStore, client: Any, bucket: str, prefix: str, secret_key: Path,
                  workdir: Path, source: str = "s3") -> IngestReport:
    """Ingest complete deliveries from ``s3://bucket/prefix`` (objects directly under the prefix)."""
    report = IngestReport()
    keys: set[str] = set()
    kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix}
    while True:
        page = client.list_objects_v2(**kwargs)
        keys.update(obj["Key"] for obj in page.get("Contents", []))
        if not page.get("IsTruncated"):
            break
        kwargs["ContinuationToken"] = page["NextContinuationToken"]
    for key in sorted(keys):
        name = key[len(prefix):]
        if "/" in name or name.startswith(".") or not name.endswith(DATA_SUFFIX):
            continue
        if key + MANIFEST_SUFFIX not in keys or store.seen(source, name):
            continue
        manifest_bytes = client.get_object(Bucket=bucket, Key=key + MANIFEST_SUFFIX)["Body"].read()
        with tempfile.TemporaryDirectory(dir=workdir, prefix="s3-") as tmp:
            local = Path(tmp) / name
            client.download_file(bucket, key, str(local))
            status, reason, n = ingest_file(store, source=source, name=name, ciphertext=local,
                                            manifest_bytes=manifest_bytes, secret_key=secret_key, workdir=workdir)
        _account(report, name, status, reason, n)
    return report


def _account(report: IngestReport, name: str, status: str, reason: str | None, n: int) -> None:
    if status == "loaded":
        report.loaded.append(name)
        report.rows += n
    else:
        report.rejected[name] = reason or "rejected"


def csv_bytes(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> bytes:
    """Helper for tests/demos: CSV with a header row, as the pipeline writes it."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(rows)
    return buf.getvalue().encode("utf-8")
