"""s3_removal_list: an encrypted removal list in the partner's bucket, answered by a signed result manifest.

Where (the feed's S3 connection, bucket and prefix unless the register gives the erasure its own s3
transport; ``prefix=`` overrides)::

    s3://<bucket>/<prefix>removals/<batch_id>.csv.pgp                 write-once (If-None-Match: *)
    s3://<bucket>/<prefix>removals/<batch_id>.csv.pgp.manifest.json   written last = complete
    s3://<bucket>/<prefix>results/<batch_id>.json                      the partner's result manifest
    s3://<bucket>/<prefix>results/<batch_id>.json.asc                  its detached OpenPGP signature

The removal list is the request file of files.py with the identifiers hashed exactly as *this* partner
matches them (adgrid: Google-style ``email_sha256``/``phone_sha256`` of E.164 with '+'; socialreach:
Meta-style, e-mail without +tag, phone digits without '+'). Feed ingestion only reads objects directly
under the prefix, so these sub-prefixes never mix with audience deliveries.

Result manifest (``format: vendorprivacy.removal-result/1``; common keys in files.py), ``results`` per
pair: ``{"pair_id", "matched": n, "removed": n, "retained": n, "reason": str | null}`` ->
a reason with rows kept (or nothing removed) retained; else removed > 0 completed; matched == 0
not_found; matched > 0 with nothing removed and no reason failed ("matched but none removed").
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from vendorprivacy.erasure.protocols.base import Outcome
from vendorprivacy.erasure.protocols.files import FileProtocol, count, identifier_columns

RESULT_FORMAT = "vendorprivacy.removal-result/1"
REMOVALS = "removals/"
RESULTS = "results/"


class S3RemovalListProtocol(FileProtocol):
    kind = "s3_removal_list"
    answer_format = RESULT_FORMAT
    answer_suffix = ".json"

    def __init__(self, vendor_id: str, conn_id: str, bucket: str, prefix: str, columns, public_key: Path,
                 **kw: Any) -> None:
        super().__init__(vendor_id, columns, public_key, **kw)
        self.conn_id = conn_id
        self.bucket = bucket
        self.prefix = (prefix.strip("/") + "/") if prefix.strip("/") else ""

    @classmethod
    def from_vendor(cls, vendor: Any, *, keys_dir: Path | None = None, prefix: str | None = None,
                    **kw: Any) -> S3RemovalListProtocol:
        from vendorprivacy.policy import key_path

        t = vendor.erasure.transport or vendor.transport
        if t.kind != "s3":
            raise ValueError(f"vendor {vendor.vendor}: s3_removal_list needs an s3 transport, not {t.kind}")
        if not vendor.encryption.public_key:
            raise ValueError(f"vendor {vendor.vendor}: s3_removal_list needs the vendor's OpenPGP public key")
        key = Path(keys_dir) / vendor.encryption.public_key if keys_dir else key_path(vendor)
        return cls(vendor.vendor, t.conn_id, t.bucket, t.path if prefix is None else prefix,
                   identifier_columns(vendor), key, **kw)

    def request_transport(self):
        from vendorprivacy.transports import S3Transport

        return S3Transport(self.conn_id, self.bucket, self.prefix + REMOVALS)

    def answer_transport(self):
        from vendorprivacy.transports import S3Transport

        return S3Transport(self.conn_id, self.bucket, self.prefix + RESULTS)

    def answer_location(self, batch_id: str) -> str:
        return f"s3://{self.bucket}/{self.prefix}{RESULTS}{self.answer_name(batch_id)}"

    def map_result(self, entry: dict, doc: dict, evidence: str, at: datetime, file: str) -> Outcome:
        pid = entry["pair_id"]
        ref = None if doc.get("vendor_reference") is None else str(doc["vendor_reference"])
        matched = count(entry, "matched", vendor=self.vendor_id, file=file)
        removed = count(entry, "removed", vendor=self.vendor_id, file=file)
        retained = count(entry, "retained", vendor=self.vendor_id, file=file)
        reason = entry.get("reason")
        reason = None if reason in (None, "") else str(reason)[:500]
        if reason and (retained > 0 or removed == 0):  # (some) kept, with the partner's stated reason
            return Outcome(pid, "retained", ref, reason, evidence, at)
        if removed > 0:
            return Outcome(pid, "completed", ref, None, evidence, at)
        if matched == 0:
            return Outcome(pid, "not_found", ref, None, evidence, at)
        return Outcome(pid, "failed", ref, f"{matched} matched but none removed, no reason given", evidence, at)
