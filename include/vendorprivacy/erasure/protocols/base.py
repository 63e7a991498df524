"""The contract between the erasure core and the vendor protocol clients.

The core hands a protocol a *batch*: a caller-chosen ``batch_id`` (deterministic, e.g. uuid5 of run and
vendor, so a re-run of a killed task re-submits the same batch) and ``ErasureItem``s, one per
(request, vendor) pair, whose identifiers are already in the vendor's own form (hashed, tokenised,
normalised). ``submit`` sends them once (idempotent per batch id); ``poll`` reports what the vendor has
*answered* so far and never invents an answer ("sent is not confirmed", DESIGN.md).

Status mapping, every protocol::

    vendor says                              Outcome.status
    -------------------------------------    --------------
    accepted, not done yet (OpenDSR pending    acknowledged
      / in_progress)
    deleted (count > 0)                        completed
    nothing held about these identifiers       not_found
    kept, with a legal reason                  retained    (reason = the vendor's stated reason)
    refused / cancelled / could not process    failed      (reason = the vendor's error summary)

An answer that is unsigned, signed by another key, tampered with, or malformed is never mapped:
``poll`` raises ``AnswerRejected`` naming the vendor and the file/endpoint.

Nothing here or in the protocol modules logs or raises with personal data: messages carry vendor ids,
batch ids, pair ids (uuid4), file names and counts only.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import uuid
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from vendorprivacy.policy.models import Vendor

__all__ = [
    "ErasureItem",
    "Outcome",
    "SubmitReceipt",
    "ErasureProtocol",
    "AnswerRejected",
    "protocol_for",
    "STATUSES",
    "TERMINAL_STATUSES",
    "REGULATIONS",
    "REQUEST_TYPES",
    "IDENTIFIER_TYPES",
]

STATUSES = ("acknowledged", "completed", "not_found", "retained", "failed")
TERMINAL_STATUSES = frozenset({"completed", "not_found", "retained", "failed"})
REGULATIONS = ("gdpr", "ccpa")
REQUEST_TYPES = ("erasure", "opt_out")
IDENTIFIER_TYPES = ("email", "phone", "customer_id", "order_id", "device_id", "cookie_id")
_UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
_BATCH_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


# ---------------------------------------------------------------------------- the contract
@dataclass(frozen=True)
class ErasureItem:
    """One (request, vendor) pair as the vendor will see it.

    ``pair_id``: lowercase uuid4, the only reference the vendor sees besides the identifiers.
    ``identifiers``: identifier type -> values already in this vendor's form.
    ``submitted_at``: timezone-aware (converted to UTC when sent).
    """

    pair_id: str
    regulation: str
    request_type: str
    identifiers: dict[str, list[str]]
    submitted_at: datetime

    def __post_init__(self) -> None:
        if not isinstance(self.pair_id, str) or not _UUID4.match(self.pair_id):
            raise ValueError("pair_id must be a lowercase uuid4 string")
        if self.regulation not in REGULATIONS:
            raise ValueError(f"pair {self.pair_id}: regulation must be one of {REGULATIONS}")
        if self.request_type not in REQUEST_TYPES:
            raise ValueError(f"pair {self.pair_id}: request_type must be one of {REQUEST_TYPES}")
        if not isinstance(self.identifiers, dict):
            raise ValueError(f"pair {self.pair_id}: identifiers must be a dict of type -> list of values")
        for kind, values in self.identifiers.items():
            if kind not in IDENTIFIER_TYPES:
                raise ValueError(f"pair {self.pair_id}: unknown identifier type {kind!r}")
            if isinstance(values, str) or not all(isinstance(v, str) and v for v in values):
                raise ValueError(f"pair {self.pair_id}: identifier type {kind!r} needs a list of non-empty strings")
        if not isinstance(self.submitted_at, datetime) or self.submitted_at.tzinfo is None:
            raise ValueError(f"pair {self.pair_id}: submitted_at must be a timezone-aware datetime")

    @property
    def submitted_utc(self) -> str:
        """RFC 3339, UTC, second precision (``2026-11-01T10:00:00Z``): what goes on the wire."""
        return self.submitted_at.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")

    def values(self, kind: str) -> list[str]:
        """Distinct values of one identifier type, sorted (the wire order, so re-submits are identical)."""
        return sorted(set(self.identifiers.get(kind, ())))


@dataclass(frozen=True)
class Outcome:
    pair_id: str
    status: str                   # acknowledged | completed | not_found | retained | failed
    vendor_reference: str | None  # the vendor's id for the request / batch
    reason: str | None            # legal reason when retained, error summary when failed
    evidence_sha256: str | None   # sha256 of the raw vendor answer this outcome came from
    at: datetime                  # when the vendor says it happened (UTC); else when we saw it

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"unknown outcome status {self.status!r}")

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (XCom-safe: no personal data)."""
        d = asdict(self)
        d["at"] = self.at.isoformat()
        return d


@dataclass(frozen=True)
class SubmitReceipt:
    batch_id: str
    vendor_reference: str | None
    sha256: str               # of what was sent (ciphertext for files, canonical JSON for APIs)
    bytes: int
    already_submitted: bool   # idempotent re-submit: nothing was sent again

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@runtime_checkable
class ErasureProtocol(Protocol):
    def submit(self, batch_id: str, items: list[ErasureItem]) -> SubmitReceipt: ...

    def poll(self, batch_id: str, items: list[ErasureItem]) -> list[Outcome]: ...


class AnswerRejected(Exception):
    """A vendor answer we refuse to believe: unsigned, signed by the wrong key, tampered, malformed.

    ``vendor`` and ``file`` (the answer file or endpoint) are attributes and in the message; the
    message never contains personal data.
    """

    def __init__(self, message: str, *, vendor: str, file: str | None = None) -> None:
        where = f"{vendor}" + (f" {file}" if file else "")
        super().__init__(f"[{where}] vendor answer rejected: {message}")
        self.vendor = vendor
        self.file = file
        self.detail = message


# ---------------------------------------------------------------------------- factory
def protocol_for(vendor: Vendor, *, keys_dir: Path | None = None, **options: Any) -> ErasureProtocol:
    """The protocol client for a register entry (``vendor.erasure.protocol``).

    ``keys_dir``: where the vendors' OpenPGP public keys live (default: the register's
    ``include/policy/keys``, or ``VENDORPRIVACY_KEYS_DIR``). File protocols encrypt requests to, and
    verify answers against, ``<keys_dir>/<vendor.encryption.public_key>``.

    Options (all optional):

    - every protocol: ``evidence_dir`` (raw vendor answers and their signatures are kept there as
      ``<vendor>/<sha256>.<ext>``; they carry pair ids and counts, no identifiers).
    - file protocols: ``work_dir`` (temporary plaintext/ciphertext; default the system temp dir),
      ``folder`` (sftp_ack: erasure folder override) / ``prefix`` (s3_removal_list: key prefix override).
    - opendsr: ``callback_urls`` (status_callback_urls sent with every request),
      ``processor_cert_pem`` (pin the processor certificate instead of fetching it from /discovery),
      ``opt_out_as`` (default ``"erasure"``; ``None`` refuses opt_out items), ``in_flight`` (calls at a
      time, one per pair; default 8), and HttpsRecordTransport
      retry settings (``max_attempts``, ``max_total_seconds``, ``max_retry_after``, ``sleep``, ``clock``...).
    """
    protocol = vendor.erasure.protocol
    if protocol == "sftp_ack":
        from vendorprivacy.erasure.protocols.sftp_ack import SftpAckProtocol

        return SftpAckProtocol.from_vendor(vendor, keys_dir=keys_dir, **options)
    if protocol == "s3_removal_list":
        from vendorprivacy.erasure.protocols.s3_removal import S3RemovalListProtocol

        return S3RemovalListProtocol.from_vendor(vendor, keys_dir=keys_dir, **options)
    if protocol == "opendsr":
        from vendorprivacy.erasure.protocols.opendsr import OpenDsrProtocol

        return OpenDsrProtocol.from_vendor(vendor, **options)
    raise ValueError(f"vendor {vendor.vendor}: unknown erasure protocol {protocol!r}")


# ---------------------------------------------------------------------------- helpers
def canonical_json(value: Any) -> bytes:
    """Sorted keys, no whitespace, UTF-8: the bytes we hash."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True, allow_nan=False).encode()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def parse_time(value: Any) -> datetime | None:
    """An RFC 3339 / ISO 8601 timestamp as aware UTC datetime, or None."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc)


def check_batch(vendor: str, batch_id: str, items: Iterable[ErasureItem]) -> list[ErasureItem]:
    """Validate a batch; return its items sorted by pair id (the wire order)."""
    if not isinstance(batch_id, str) or not _BATCH_ID.match(batch_id):
        raise ValueError(f"{vendor}: batch_id must be 1-128 of [A-Za-z0-9_.-] (e.g. a uuid)")
    items = list(items)
    if not items:
        raise ValueError(f"{vendor}: batch {batch_id} has no items")
    seen: set[str] = set()
    for item in items:
        if not isinstance(item, ErasureItem):
            raise TypeError(f"{vendor}: batch {batch_id}: items must be ErasureItem")
        if item.pair_id in seen:
            raise ValueError(f"{vendor}: batch {batch_id}: pair {item.pair_id} appears twice")
        seen.add(item.pair_id)
    return sorted(items, key=lambda i: i.pair_id)


def save_evidence(evidence_dir: Path | str | None, vendor: str, files: dict[str, bytes]) -> None:
    """Keep raw vendor answers: ``{suffix: bytes}`` -> ``<dir>/<vendor>/<sha256 of the first>.<suffix>``.

    The first entry is the answer (its sha256 names the set, and is ``Outcome.evidence_sha256``); the
    others (signatures) are stored beside it under the same stem. Written atomically; existing files
    are left as they are (same name = same content).
    """
    if evidence_dir is None or not files:
        return
    folder = Path(evidence_dir) / vendor
    folder.mkdir(parents=True, exist_ok=True)
    stem = sha256_hex(next(iter(files.values())))
    for suffix, data in files.items():
        final = folder / f"{stem}.{suffix}"
        if final.exists():
            continue
        tmp = folder / f".{stem}.{suffix}.{uuid.uuid4().hex[:8]}.tmp"
        tmp.write_bytes(data)
        os.replace(tmp, final)


def identifier_column(kind: str, fmt: str) -> str:
    """Column / key naming shared by the file protocols: ``email``, ``email_sha256``, ``email_token``."""
    return {"raw": kind, "sha256": f"{kind}_sha256", "hmac": f"{kind}_token"}[fmt]
