"""What the two file protocols (sftp_ack, s3_removal_list) share: the request file and signed answers.

Request file ``<batch_id>.csv.pgp`` (OpenPGP, binary, to the vendor's key; ``-z 0``) — plaintext CSV,
UTF-8, ``\\n`` line ends, a header row, then **one row per identifier value**::

    pair_id,regulation,request_type,submitted_at,<identifier columns…>
    7c0e…,gdpr,erasure,2026-11-01T10:00:00Z,1234,
    7c0e…,gdpr,erasure,2026-11-01T10:00:00Z,1240,
    7c0e…,gdpr,erasure,2026-11-01T10:00:00Z,,ann@example.com
    9a1d…,ccpa,opt_out,2026-11-02T08:30:00Z,,            <- a pair with no identifiers: one empty row

- identifier columns: one per identifier the register declares for the vendor, in register order,
  named ``<type>`` (raw), ``<type>_sha256`` (SHA-256 hex) or ``<type>_token`` (our HMAC token), e.g.
  parcelpost ``order_id,email``; callvault ``phone``; adgrid/socialreach ``email_sha256,phone_sha256``;
- exactly one identifier cell is filled per row (none for an identifier-less pair), values already in
  the vendor's form; pairs sorted by pair_id, values sorted, so a re-submit is byte-identical;
- ``request_type`` is ``erasure`` or ``opt_out`` (stop selling/sharing; a removal for these vendors).
  Identifier values are not spreadsheet-neutralised (``+44…`` is an E.164 phone, not a formula).

Manifest ``<batch_id>.csv.pgp.manifest.json`` (plain JSON, no personal data), written after the file
(its presence means "complete"), same keys as a feed manifest plus the request's own::

    {"format": "vendorprivacy.erasure-request/1", "kind": "erasure_request", "batch_id", "delivery_id",
     "vendor", "file", "sha256", "bytes", "plaintext_sha256", "rows", "pairs", "columns",
     "identifiers": [{"column", "type", "format", "normaliser"}], "answer": "<where the answer will be>",
     "created_at"}

Answers are JSON signed by the vendor (detached, ASCII-armoured OpenPGP signature ``<answer>.asc``,
written *before* the answer, so an answer without a signature is unsigned, not "in flight"). Every
answer names ``vendor``, ``batch_id``, ``request_file``, ``request_sha256`` (the ciphertext it
processed), ``request_bytes``, ``status`` (``processed`` | ``rejected`` + ``reason``), ``vendor_reference``,
``received_at``, ``processed_at`` and ``results`` (per pair; protocol-specific, see the protocol modules).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from vendorprivacy.erasure.protocols.base import (
    AnswerRejected,
    ErasureItem,
    Outcome,
    SubmitReceipt,
    check_batch,
    identifier_column,
    parse_time,
    save_evidence,
    sha256_hex,
    utcnow,
)

log = logging.getLogger("vendorprivacy.erasure.protocols")

REQUEST_FORMAT = "vendorprivacy.erasure-request/1"
REQUEST_SUFFIX = ".csv.pgp"
MANIFEST_SUFFIX = ".manifest.json"
SIGNATURE_SUFFIX = ".asc"
FIXED_COLUMNS = ["pair_id", "regulation", "request_type", "submitted_at"]


@dataclass(frozen=True)
class IdentifierColumn:
    column: str
    type: str
    format: str
    normaliser: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"column": self.column, "type": self.type, "format": self.format, "normaliser": self.normaliser}


def identifier_columns(vendor: Any) -> list[IdentifierColumn]:
    """The request file's identifier columns for a register entry, in register order."""
    out: list[IdentifierColumn] = []
    for ident in vendor.erasure.identifiers:
        col = identifier_column(ident.type, ident.format)
        if any(c.type == ident.type for c in out):
            raise ValueError(f"vendor {vendor.vendor}: identifier type {ident.type!r} declared twice for erasure")
        out.append(IdentifierColumn(col, ident.type, ident.format, ident.normaliser))
    return out


def request_csv(items: list[ErasureItem], columns: list[IdentifierColumn], vendor: str) -> tuple[bytes, int]:
    """The plaintext request (see module doc) and its data row count. Items must be sorted already."""
    known = {c.type for c in columns}
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(FIXED_COLUMNS + [c.column for c in columns])
    rows = 0
    for item in items:
        extra = set(item.identifiers) - known
        if extra:
            raise ValueError(
                f"{vendor}: pair {item.pair_id} has identifier type(s) {sorted(extra)} this vendor does not take"
            )
        fixed = [item.pair_id, item.regulation, item.request_type, item.submitted_utc]
        wrote = False
        for i, col in enumerate(columns):
            for value in item.values(col.type):
                if "\n" in value or "\r" in value:
                    raise ValueError(f"{vendor}: pair {item.pair_id}: a {col.type} value contains a line break")
                cells = [""] * len(columns)
                cells[i] = value
                writer.writerow(fixed + cells)
                rows += 1
                wrote = True
        if not wrote:
            writer.writerow(fixed + [""] * len(columns))
            rows += 1
    return buf.getvalue().encode("utf-8"), rows


@contextmanager
def _session(transport: Any) -> Iterator[Any]:
    """One SFTP session around several calls (S3 needs none)."""
    with (transport.session() if hasattr(transport, "session") else nullcontext()):
        yield transport


class FileProtocol:
    """Base for sftp_ack / s3_removal_list. Subclasses provide the two transports and map results."""

    kind = "file"
    answer_format = ""
    answer_suffix = ""

    def __init__(self, vendor_id: str, columns: list[IdentifierColumn], public_key: Path, *,
                 work_dir: Path | str | None = None, evidence_dir: Path | str | None = None) -> None:
        self.vendor_id = vendor_id
        self.columns = columns
        self.public_key = Path(public_key)
        self.work_dir = Path(work_dir) if work_dir else None
        self.evidence_dir = evidence_dir

    # ---- subclass hooks
    def request_transport(self) -> Any:  # folder/prefix where requests go
        raise NotImplementedError

    def answer_transport(self) -> Any:  # folder/prefix where the vendor answers
        raise NotImplementedError

    def answer_location(self, batch_id: str) -> str:
        raise NotImplementedError

    def map_result(self, entry: dict, doc: dict, evidence: str, at: datetime, file: str) -> Outcome:
        raise NotImplementedError

    # ---- names
    def request_name(self, batch_id: str) -> str:
        return f"{batch_id}{REQUEST_SUFFIX}"

    def answer_name(self, batch_id: str) -> str:
        return f"{batch_id}{self.answer_suffix}"

    # ---- submit
    def submit(self, batch_id: str, items: list[ErasureItem]) -> SubmitReceipt:
        from vendorprivacy.transports import DeliveryConflict

        items = check_batch(self.vendor_id, batch_id, items)
        plaintext, rows = request_csv(items, self.columns, self.vendor_id)
        plain_sha = sha256_hex(plaintext)
        name = self.request_name(batch_id)
        requests = self.request_transport()
        with _session(requests):
            if requests.exists(name + MANIFEST_SUFFIX):
                theirs = _json_object(requests.get(name + MANIFEST_SUFFIX))
                if str(theirs.get("plaintext_sha256", "")).lower() != plain_sha:
                    raise DeliveryConflict(
                        f"batch {batch_id} already holds a different request file (plaintext sha256 differs)",
                        conn_id=getattr(requests, "conn_id", None), target=requests.target,
                    )
                log.info("erasure %s batch %s: already submitted (%d pairs)", self.vendor_id, batch_id, len(items))
                return SubmitReceipt(batch_id, None, str(theirs.get("sha256", "")), int(theirs.get("bytes", 0)), True)
        answered = self._answer_if_present(batch_id)
        if answered is not None:  # the vendor processed it and removed the request file: do not re-send
            raw, _sig = answered
            doc = _json_object(raw)
            log.info("erasure %s batch %s: already answered, not re-sent", self.vendor_id, batch_id)
            return SubmitReceipt(batch_id, _str(doc.get("vendor_reference")), str(doc.get("request_sha256", "")),
                                 int(doc.get("request_bytes") or 0), True)

        from vendorprivacy.crypto import encrypt_file, sha256_file

        if self.work_dir:
            self.work_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self.work_dir, prefix=f"erasure-{self.vendor_id}-") as tmp:
            os.chmod(tmp, 0o700)
            plain = Path(tmp) / "request.csv"
            plain.write_bytes(plaintext)
            sealed = Path(tmp) / name
            encrypt_file(plain, sealed, self.public_key)
            plain.unlink()  # plaintext identifiers never linger
            manifest = {
                "format": REQUEST_FORMAT,
                "kind": "erasure_request",
                "batch_id": batch_id,
                "delivery_id": batch_id,
                "vendor": self.vendor_id,
                "file": name,
                "sha256": sha256_file(sealed),
                "bytes": sealed.stat().st_size,
                "plaintext_sha256": plain_sha,
                "rows": rows,
                "pairs": len(items),
                "columns": FIXED_COLUMNS + [c.column for c in self.columns],
                "identifiers": [c.to_dict() for c in self.columns],
                "answer": self.answer_location(batch_id),
                "created_at": utcnow().isoformat(timespec="seconds"),
            }
            receipt = requests.put(sealed, name, json.dumps(manifest, indent=2).encode())
        log.info("erasure %s batch %s: %s %d pairs (%d bytes)", self.vendor_id, batch_id,
                 "already held" if receipt.already_present else "sent", len(items), receipt.bytes)
        return SubmitReceipt(batch_id, None, receipt.sha256, receipt.bytes, receipt.already_present)

    # ---- poll
    def _answer_if_present(self, batch_id: str) -> tuple[bytes, bytes | None] | None:
        answers = self.answer_transport()
        name = self.answer_name(batch_id)
        with _session(answers):
            if not answers.exists(name):
                return None
            raw = answers.get(name)
            sig = answers.get(name + SIGNATURE_SUFFIX) if answers.exists(name + SIGNATURE_SUFFIX) else None
        return raw, sig

    def poll(self, batch_id: str, items: list[ErasureItem]) -> list[Outcome]:
        from vendorprivacy.erasure.protocols.openpgp import SignatureInvalid, verify_detached

        items = check_batch(self.vendor_id, batch_id, items)
        file = self.answer_location(batch_id)
        found = self._answer_if_present(batch_id)
        if found is None:
            return []
        raw, sig = found
        if sig is None:
            raise AnswerRejected("answer has no detached signature (.asc): unsigned answers are not accepted",
                                 vendor=self.vendor_id, file=file)
        try:
            verify_detached(raw, sig, self.public_key)
        except SignatureInvalid as exc:
            raise AnswerRejected(f"signature check failed: {exc}", vendor=self.vendor_id, file=file) from None
        doc = self._validated(raw, batch_id, file)
        self._check_request_sha(batch_id, doc, file)
        evidence = sha256_hex(raw)
        save_evidence(self.evidence_dir, self.vendor_id, {"json": raw, "json.asc": sig})
        at = _answer_time(doc)
        wanted = {i.pair_id for i in items}
        if doc["status"] == "rejected":
            reason = f"vendor rejected the request file: {_str(doc.get('reason')) or 'no reason given'}"
            outcomes = [Outcome(p, "failed", _str(doc.get("vendor_reference")), reason, evidence, at)
                        for p in sorted(wanted)]
        else:
            outcomes = [self.map_result(e, doc, evidence, at, file) for e in doc["results"] if e["pair_id"] in wanted]
        log.info("erasure %s batch %s: answer verified, %d outcome(s)", self.vendor_id, batch_id, len(outcomes))
        return outcomes

    def _validated(self, raw: bytes, batch_id: str, file: str) -> dict:
        def bad(msg: str) -> AnswerRejected:
            return AnswerRejected(msg, vendor=self.vendor_id, file=file)

        try:
            doc = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise bad("answer is not JSON") from None
        if not isinstance(doc, dict):
            raise bad("answer is not a JSON object")
        if doc.get("format") != self.answer_format:
            raise bad(f"unexpected format {str(doc.get('format'))[:60]!r} (want {self.answer_format})")
        if doc.get("vendor") != self.vendor_id:
            raise bad("answer names another vendor")
        if doc.get("batch_id") != batch_id:
            raise bad("answer is for another batch")
        if doc.get("status") not in ("processed", "rejected"):
            raise bad("answer status must be 'processed' or 'rejected'")
        results = doc.get("results", [])
        if not isinstance(results, list) or not all(isinstance(e, dict) for e in results):
            raise bad("results must be a list of objects")
        seen: set[str] = set()
        for e in results:
            pid = e.get("pair_id")
            if not isinstance(pid, str) or pid in seen:
                raise bad("results hold a missing or duplicate pair_id")
            seen.add(pid)
        doc["results"] = results
        return doc

    def _check_request_sha(self, batch_id: str, doc: dict, file: str) -> None:
        """The answer must be about the file we sent (when our manifest is still there to compare)."""
        requests = self.request_transport()
        name = self.request_name(batch_id) + MANIFEST_SUFFIX
        with _session(requests):
            if not requests.exists(name):
                return
            ours = _json_object(requests.get(name))
        if ours.get("sha256") and str(doc.get("request_sha256", "")).lower() != str(ours["sha256"]).lower():
            raise AnswerRejected("answer is about another request file (request_sha256 differs from ours)",
                                 vendor=self.vendor_id, file=file)


def _json_object(raw: bytes) -> dict:
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return {}
    return value if isinstance(value, dict) else {}


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


def _answer_time(doc: dict) -> datetime:
    at = parse_time(doc.get("processed_at"))
    now = utcnow()
    if at is None or (at - now).total_seconds() > 300:  # missing, or implausibly in the future
        return now
    return at


def count(entry: dict, key: str, *, vendor: str, file: str) -> int:
    value = entry.get(key, 0)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise AnswerRejected(f"pair {entry.get('pair_id')}: {key} must be a count", vendor=vendor, file=file)
    return value

