"""The vendors' side of erasure: what a sandbox vendor does with an erasure request it receives.

Every vendor matches request identifiers against its own store with ``ErasureRules`` derived from the
register (``rules_from_vendor``): for each erasure identifier (type, format) the store columns that
hold it in that form (adgrid ``email``/sha256 -> ``email_sha256``; reviewhub ``email``/hmac ->
``reviewer_token``; parcelpost ``order_id``/raw -> ``order_id``...), and the retention rules from the
register's ``retention_exemptions`` (payflow keeps every row holding ``user.payment`` columns, with
the register's legal reason). Matching rows are really deleted (``VendorStore.erase``) unless a
retention rule keeps them.

File vendors (this module; run in the sandbox's own process):

- sftp: requests in ``<sftp root>/<vendor>/erasure/`` (``erasure`` beside the feed folder; an sftp
  erasure transport's own folder), answers in ``…/erasure/acks/<batch>.ack.json`` + ``.asc``;
- s3: requests under ``s3://<bucket>/<prefix>removals/``, answers ``…/results/<batch>.json`` + ``.asc``.

A request is taken once its manifest exists; the vendor checks size and sha256 against the manifest,
decrypts with its secret key, checks the plaintext sha256, parses the CSV, erases, records the answer
in its store (same transaction as the deletions, so a crash between deleting and publishing re-publishes
the same answer rather than answering "not found"), then publishes the detached signature and the
answer (signature first). A request it cannot read is answered ``status: rejected`` with a reason.

Behaviours (fault modes, per vendor, ``Sandbox.set_erasure_behaviour``): ``normal``; ``slow`` (answer
``delay`` seconds after first seeing the request); ``retain`` (delete nothing, answer retained with
``reason``); ``never`` (accept, never answer).

``ErasurePoller`` runs ``process`` every ``interval`` seconds in a daemon thread so a real run sees
answers without anyone calling ``Sandbox.process_erasures()``.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import posixpath
import re
import tempfile
import threading
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from sandbox.stores import VendorStore, now_iso

log = logging.getLogger("sandbox.erasure")

REQUEST_SUFFIX = ".csv.pgp"
MANIFEST_SUFFIX = ".manifest.json"
FIXED = ["pair_id", "regulation", "request_type", "submitted_at"]
ACK_FORMAT = "vendorprivacy.erasure-ack/1"
RESULT_FORMAT = "vendorprivacy.removal-result/1"
MODES = ("normal", "slow", "retain", "never")
DEFAULT_RETAIN_REASON = "Retained under a legal obligation to keep these records (sandbox fault mode 'retain')"
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


# ---------------------------------------------------------------------------- rules
@dataclass(frozen=True)
class MatchRule:
    type: str
    format: str  # raw | sha256 | hmac
    columns: tuple[str, ...]


@dataclass(frozen=True)
class ErasureRules:
    """How one vendor finds and keeps rows for an erasure request."""

    match: tuple[MatchRule, ...] = ()
    retain: tuple[tuple[str, str], ...] = ()  # (store column, legal reason)

    def columns(self, kind: str, fmt: str) -> tuple[str, ...]:
        cols: list[str] = []
        for rule in self.match:
            if rule.type == kind and rule.format == fmt:
                cols += [c for c in rule.columns if c not in cols]
        return tuple(cols)

    def token_columns(self) -> tuple[str, ...]:
        cols: list[str] = []
        for rule in self.match:
            if rule.format == "hmac":
                cols += [c for c in rule.columns if c not in cols]
        return tuple(cols)

    def to_json(self) -> dict:
        return {"match": [asdict(r) for r in self.match], "retain": [list(r) for r in self.retain]}

    @classmethod
    def from_json(cls, data: dict | None) -> ErasureRules:
        if not data:
            return cls()
        return cls(
            match=tuple(MatchRule(r["type"], r["format"], tuple(r["columns"])) for r in data.get("match", [])),
            retain=tuple((c, why) for c, why in data.get("retain", [])),
        )


def _holds(f: Any, kind: str) -> bool:
    if kind == "email":
        return f.category == "user.contact.email" or f.category.startswith("user.contact.email.")
    if kind == "phone":
        return f.category == "user.contact.phone_number" or f.category.startswith("user.contact.phone_number.")
    return f.source_column == kind or f.name == kind


def _form(f: Any) -> str | None:
    return {"keep": "raw", "email": "raw", "e164": "raw", "sha256": "sha256", "hmac": "hmac"}.get(f.transform)


def _normaliser_fits(f: Any, normaliser: str | None) -> bool:
    return normaliser is None or f.normaliser in (None, normaliser)


def rules_from_vendor(vendor: Any) -> ErasureRules:
    """Derive a vendor's matching and retention rules from its register entry (see module doc)."""
    fields = [f for feed in vendor.feeds for f in feed.sent_fields]
    match = []
    for ident in vendor.erasure.identifiers:
        cols = []
        for f in fields:
            if _holds(f, ident.type) and _form(f) == ident.format and _normaliser_fits(f, ident.normaliser):
                if f.name not in cols:
                    cols.append(f.name)
        match.append(MatchRule(ident.type, ident.format, tuple(cols)))
    retain = []
    for ex in vendor.erasure.retention_exemptions:
        for f in fields:
            if (f.category == ex.category or f.category.startswith(ex.category + ".")) and \
                    (f.name, ex.reason) not in retain:
                retain.append((f.name, ex.reason))
    return ErasureRules(tuple(match), tuple(retain))


def rules_from_register(register: Any) -> dict[str, ErasureRules]:
    return {v.vendor: rules_from_vendor(v) for v in register.vendors.values()}


@dataclass(frozen=True)
class Behaviour:
    mode: str = "normal"
    delay: float = 0.0
    reason: str | None = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"erasure behaviour must be one of {MODES}")
        if self.delay < 0:
            raise ValueError("delay must be >= 0")

    @property
    def retain_reason(self) -> str:
        return self.reason or DEFAULT_RETAIN_REASON


def erase_pair(conn, store: VendorStore, rules: ErasureRules, behaviour: Behaviour,
               criteria: list[tuple[str, str]]) -> dict[str, Any]:
    """Erase one pair's rows; returns ``{"outcome", "matched", "deleted", "retained", "reason"}``."""
    if behaviour.mode == "retain":
        r = store.erase(conn, criteria, retain_all=behaviour.retain_reason)
        return {**r, "outcome": "retained", "reason": behaviour.retain_reason}
    r = store.erase(conn, criteria, retain=rules.retain)
    outcome = "retained" if r["retained"] else "deleted" if r["deleted"] else "not_found"
    return {**r, "outcome": outcome}


# ---------------------------------------------------------------------------- where requests are
class FolderBox:
    """An SFTP vendor's erasure folder, read and written directly on the server's disk."""

    channel = "sftp_ack"
    answer_suffix = ".ack.json"
    answer_format = ACK_FORMAT

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.answers = self.folder / "acks"

    def requests(self) -> list[str]:
        if not self.folder.is_dir():
            return []
        return sorted(p.name for p in self.folder.glob(f"*{REQUEST_SUFFIX}")
                      if not p.name.startswith(".") and (self.folder / (p.name + MANIFEST_SUFFIX)).exists())

    def read(self, name: str) -> bytes:
        return (self.folder / name).read_bytes()

    def fetch(self, name: str, dest: Path) -> None:
        dest.write_bytes((self.folder / name).read_bytes())

    def answer_exists(self, name: str) -> bool:
        return (self.answers / name).exists()

    def write_answer(self, name: str, data: bytes) -> None:
        self.answers.mkdir(parents=True, exist_ok=True)
        tmp = self.answers / f".{name}.{uuid.uuid4().hex[:6]}.part"
        tmp.write_bytes(data)
        os.replace(tmp, self.answers / name)

    def __repr__(self) -> str:
        return f"FolderBox({self.folder})"


class BucketBox:
    """An S3 partner's ``removals/`` and ``results/`` prefixes."""

    channel = "s3_removal_list"
    answer_suffix = ".json"
    answer_format = RESULT_FORMAT

    def __init__(self, client: Any, bucket: str, prefix: str) -> None:
        self.client = client
        self.bucket = bucket
        self.requests_prefix = f"{prefix}removals/"
        self.answers_prefix = f"{prefix}results/"

    def _keys(self, prefix: str) -> set[str]:
        keys: set[str] = set()
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
        while True:
            page = self.client.list_objects_v2(**kwargs)
            keys.update(o["Key"] for o in page.get("Contents", []))
            if not page.get("IsTruncated"):
                return keys
            kwargs["ContinuationToken"] = page["NextContinuationToken"]

    def requests(self) -> list[str]:
        keys = self._keys(self.requests_prefix)
        names = []
        for key in keys:
            name = key[len(self.requests_prefix):]
            if "/" in name or name.startswith(".") or not name.endswith(REQUEST_SUFFIX):
                continue
            if key + MANIFEST_SUFFIX in keys:
                names.append(name)
        return sorted(names)

    def read(self, name: str) -> bytes:
        return self.client.get_object(Bucket=self.bucket, Key=self.requests_prefix + name)["Body"].read()

    def fetch(self, name: str, dest: Path) -> None:
        self.client.download_file(self.bucket, self.requests_prefix + name, str(dest))

    def answer_exists(self, name: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self.answers_prefix + name)
            return True
        except ClientError as exc:
            if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
                return False
            raise

    def write_answer(self, name: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self.answers_prefix + name, Body=data,
                               ContentType="application/json" if name.endswith(".json") else "text/plain")

    def __repr__(self) -> str:
        return f"BucketBox(s3://{self.bucket}/{self.requests_prefix})"


def sftp_erasure_folder(base_path: str, role: str) -> str:
    """``parcelpost/inbound`` -> ``parcelpost/erasure``; an erasure-role sftp spec uses its own folder."""
    base = base_path.strip("/")
    if role == "erasure":
        return base
    parent = posixpath.dirname(base)
    return posixpath.join(parent, "erasure") if parent else "erasure"


# ---------------------------------------------------------------------------- processing a request file
class _Reject(Exception):
    pass


@dataclass
class FileVendor:
    vendor: str
    box: Any
    store: VendorStore
    secret_key: Path
    rules: ErasureRules
    workdir: Path


@dataclass
class ProcessReport:
    answered: dict[str, list[str]] = field(default_factory=dict)  # vendor -> batch ids / request ids
    errors: list[str] = field(default_factory=list)

    def add(self, vendor: str, ref: str) -> None:
        self.answered.setdefault(vendor, []).append(ref)

    def merge(self, other: ProcessReport) -> None:
        for vendor, refs in other.answered.items():
            self.answered.setdefault(vendor, []).extend(refs)
        self.errors += other.errors

    @property
    def count(self) -> int:
        return sum(len(v) for v in self.answered.values())


def _parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def process_file_vendor(fv: FileVendor, behaviour: Behaviour, now: Callable[[], datetime] | None = None) -> list[str]:
    """Answer every complete, unanswered request of one file vendor that is due. Returns batch ids answered."""
    now = now or (lambda: datetime.now(timezone.utc))
    answered = []
    for name in fv.box.requests():
        batch_id = name[: -len(REQUEST_SUFFIX)]
        if _process_one(fv, behaviour, name, batch_id, now):
            answered.append(batch_id)
    return answered


def _batch_row(store: VendorStore, channel: str, batch_id: str, name: str) -> dict:
    with store.transaction() as conn:
        conn.execute(
            "INSERT OR IGNORE INTO erasure_batches (channel, batch_id, name, status, first_seen_at) "
            "VALUES (?, ?, ?, 'received', ?)", (channel, batch_id, name, now_iso()))
        return dict(conn.execute("SELECT * FROM erasure_batches WHERE channel = ? AND batch_id = ?",
                                 (channel, batch_id)).fetchone())


def _publish(fv: FileVendor, batch_id: str, answer: bytes) -> None:
    from vendorprivacy.erasure.protocols.openpgp import sign_detached

    name = batch_id + fv.box.answer_suffix
    fv.box.write_answer(name + ".asc", sign_detached(answer, fv.secret_key))  # signature first
    fv.box.write_answer(name, answer)


def _process_one(fv: FileVendor, behaviour: Behaviour, name: str, batch_id: str,
                 now: Callable[[], datetime]) -> bool:
    box, store = fv.box, fv.store
    answer_name = batch_id + box.answer_suffix
    if box.answer_exists(answer_name):
        return False
    row = _batch_row(store, box.channel, batch_id, name)
    if row["answer"]:  # decided earlier, publishing was interrupted: publish the same answer again
        _publish(fv, batch_id, row["answer"].encode())
        return True
    if behaviour.mode == "never":
        return False
    if behaviour.mode == "slow" and now() < _parse_time(row["first_seen_at"]) + timedelta(seconds=behaviour.delay):
        return False

    reference = f"{fv.vendor}-{'ack' if box.channel == 'sftp_ack' else 'rm'}-{uuid.uuid4().hex[:10]}"
    doc: dict[str, Any] = {
        "format": box.answer_format, "vendor": fv.vendor, "batch_id": batch_id, "request_file": name,
        "request_sha256": None, "request_bytes": None, "status": "processed", "reason": None,
        "vendor_reference": reference, "received_at": row["first_seen_at"], "processed_at": None, "results": [],
    }
    try:
        pairs = _read_request(fv, name, batch_id, doc)
    except _Reject as exc:
        doc.update(status="rejected", reason=str(exc))
        pairs = {}
    except Exception as exc:  # noqa: BLE001 - any unreadable request is answered, never crashes the vendor
        doc.update(status="rejected", reason=f"unreadable request ({type(exc).__name__})")
        pairs = {}

    with store.transaction() as conn:
        for pair_id, p in pairs.items():
            criteria = [(col, value) for kind, fmt, value in p["values"] for col in fv.rules.columns(kind, fmt)]
            r = erase_pair(conn, store, fv.rules, behaviour, criteria)
            store.log_outcome(conn, channel=box.channel, request_ref=batch_id, pair_id=pair_id,
                              outcome=r["outcome"], matched=r["matched"], deleted=r["deleted"],
                              retained=r["retained"], reason=r["reason"])
            if box.channel == "sftp_ack":
                doc["results"].append({"pair_id": pair_id, "outcome": r["outcome"], "deleted": r["deleted"],
                                       "retained": r["retained"], "reason": r["reason"]})
            else:
                doc["results"].append({"pair_id": pair_id, "matched": r["matched"], "removed": r["deleted"],
                                       "retained": r["retained"], "reason": r["reason"]})
        doc["processed_at"] = now_iso()
        answer = json.dumps(doc, indent=2, sort_keys=True).encode()
        conn.execute(
            "UPDATE erasure_batches SET status = ?, reason = ?, reference = ?, request_sha256 = ?, pairs = ?, "
            "answered_at = ?, answer = ? WHERE channel = ? AND batch_id = ?",
            ("answered" if doc["status"] == "processed" else "rejected", doc["reason"], reference,
             doc["request_sha256"], len(pairs), doc["processed_at"], answer.decode(), box.channel, batch_id))
    _publish(fv, batch_id, answer)
    log.info("%s answered %s batch %s: %s, %d pair(s)", fv.vendor, box.channel, batch_id, doc["status"], len(pairs))
    return True


def _sha256(path: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def _column_kind(column: str, declared: dict[str, tuple[str, str]]) -> tuple[str, str]:
    if column in declared:
        return declared[column]
    if column.endswith("_sha256"):
        return column[: -len("_sha256")], "sha256"
    if column.endswith("_token"):
        return column[: -len("_token")], "hmac"
    return column, "raw"


def _read_request(fv: FileVendor, name: str, batch_id: str, doc: dict) -> dict[str, dict]:
    """Check, decrypt and parse a request file -> {pair_id: {"regulation", "request_type", "values"}}."""
    from vendorprivacy.crypto import CryptoError, decrypt_file

    try:
        manifest = json.loads(fv.box.read(name + MANIFEST_SUFFIX))
    except ValueError:
        raise _Reject("manifest is not JSON") from None
    if not isinstance(manifest, dict):
        raise _Reject("manifest is not a JSON object")
    if manifest.get("vendor") not in (None, fv.vendor):
        raise _Reject("manifest is addressed to another vendor")
    if manifest.get("batch_id") not in (None, batch_id) or manifest.get("file") not in (None, name):
        raise _Reject("manifest names another batch or file")
    fv.workdir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=fv.workdir, prefix="erasure-") as tmp:
        sealed = Path(tmp) / name
        fv.box.fetch(name, sealed)
        doc["request_sha256"] = _sha256(sealed)
        doc["request_bytes"] = sealed.stat().st_size
        if "sha256" not in manifest or str(manifest["sha256"]).lower() != doc["request_sha256"]:
            raise _Reject("ciphertext sha256 does not match the manifest")
        if "bytes" in manifest and int(manifest["bytes"]) != doc["request_bytes"]:
            raise _Reject("size does not match the manifest")
        plain = Path(tmp) / "request.csv"
        try:
            decrypt_file(sealed, plain, fv.secret_key)
        except CryptoError as exc:
            raise _Reject(f"decryption failed ({type(exc).__name__})") from None
        if manifest.get("plaintext_sha256") and _sha256(plain) != str(manifest["plaintext_sha256"]).lower():
            raise _Reject("plaintext sha256 does not match the manifest")
        text = plain.read_text(encoding="utf-8-sig")
    declared = {i["column"]: (i["type"], i["format"]) for i in manifest.get("identifiers") or []
                if isinstance(i, dict) and {"column", "type", "format"} <= set(i)}
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if not header or header[: len(FIXED)] != FIXED or len(set(header)) != len(header):
        raise _Reject(f"header must start with {','.join(FIXED)} and name each column once")
    ident_cols = [(i, *_column_kind(c, declared)) for i, c in enumerate(header) if i >= len(FIXED)]
    pairs: dict[str, dict] = {}
    rows = 0
    for line_no, values in enumerate(reader, start=2):
        rows += 1
        if len(values) != len(header):
            raise _Reject(f"line {line_no} has {len(values)} fields, header has {len(header)}")
        pair_id = values[0]
        if not _UUID.match(pair_id):
            raise _Reject(f"line {line_no}: pair_id is not a uuid")
        p = pairs.setdefault(pair_id, {"regulation": values[1], "request_type": values[2], "values": []})
        filled = [(kind, fmt, values[i]) for i, kind, fmt in ident_cols if values[i] != ""]
        if len(filled) > 1:
            raise _Reject(f"line {line_no}: more than one identifier on one row")
        p["values"] += filled
    if "rows" in manifest and int(manifest["rows"]) != rows:
        raise _Reject(f"{rows} rows != manifest rows {manifest['rows']}")
    return pairs


# ---------------------------------------------------------------------------- background poller
class ErasurePoller:
    """Calls ``tick()`` every ``interval`` seconds in a daemon thread until ``stop()``."""

    def __init__(self, tick: Callable[[], Any], interval: float, name: str = "sandbox-erasure-poller") -> None:
        self.tick = tick
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.errors: list[str] = []

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.tick()
            except Exception as exc:  # noqa: BLE001 - keep polling; record what went wrong
                msg = f"{type(exc).__name__}: {exc}"
                log.warning("erasure poller: %s", msg)
                self.errors = (self.errors + [msg])[-20:]
