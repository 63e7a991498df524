"""sftp_ack: an encrypted request file over the vendor's SFTP, answered by a signed ack file.

Where (the feed's SFTP connection unless the register gives the erasure its own sftp transport)::

    <erasure folder>/<batch_id>.csv.pgp                  request (see files.py for the format)
    <erasure folder>/<batch_id>.csv.pgp.manifest.json    its manifest (written last = complete)
    <erasure folder>/acks/<batch_id>.ack.json            the vendor's answer
    <erasure folder>/acks/<batch_id>.ack.json.asc        its detached OpenPGP signature (vendor's key)

``<erasure folder>`` is ``erasure`` beside the feed folder: feed ``parcelpost/inbound`` ->
``parcelpost/erasure``; with an explicit ``erasure.transport`` (sftp) its ``path``; ``folder=`` overrides.

Ack (``format: vendorprivacy.erasure-ack/1``; common keys in files.py), ``results`` per pair::

    {"pair_id", "outcome": "deleted" | "not_found" | "retained" | "failed",
     "deleted": n, "retained": n, "reason": str | null}

-> ``deleted`` completed, ``not_found`` not_found, ``retained`` retained (a reason is required),
``failed`` failed; a whole-file ``status: rejected`` fails every pair with the vendor's reason.
"""

from __future__ import annotations

import posixpath
from datetime import datetime
from pathlib import Path
from typing import Any

from vendorprivacy.erasure.protocols.base import AnswerRejected, Outcome
from vendorprivacy.erasure.protocols.files import FileProtocol, count, identifier_columns

ACK_FORMAT = "vendorprivacy.erasure-ack/1"
ACKS = "acks"


def erasure_folder(feed_path: str) -> str:
    """``parcelpost/inbound`` -> ``parcelpost/erasure`` (``inbound`` -> ``erasure``)."""
    parent = posixpath.dirname(feed_path.rstrip("/"))
    return posixpath.join(parent, "erasure") if parent else "erasure"


class SftpAckProtocol(FileProtocol):
    kind = "sftp_ack"
    answer_format = ACK_FORMAT
    answer_suffix = ".ack.json"

    def __init__(self, vendor_id: str, conn_id: str, folder: str, columns, public_key: Path, **kw: Any) -> None:
        super().__init__(vendor_id, columns, public_key, **kw)
        self.conn_id = conn_id
        self.folder = folder.rstrip("/") or "."

    @classmethod
    def from_vendor(cls, vendor: Any, *, keys_dir: Path | None = None, folder: str | None = None,
                    **kw: Any) -> SftpAckProtocol:
        from vendorprivacy.policy import key_path

        t = vendor.erasure.transport or vendor.transport
        if t.kind != "sftp":
            raise ValueError(f"vendor {vendor.vendor}: sftp_ack needs an sftp transport, not {t.kind}")
        if folder is None:
            folder = t.path if vendor.erasure.transport is not None else erasure_folder(t.path)
        if not vendor.encryption.public_key:
            raise ValueError(f"vendor {vendor.vendor}: sftp_ack needs the vendor's OpenPGP public key")
        key = Path(keys_dir) / vendor.encryption.public_key if keys_dir else key_path(vendor)
        return cls(vendor.vendor, t.conn_id, folder, identifier_columns(vendor), key, **kw)

    def request_transport(self):
        from vendorprivacy.transports import SftpTransport

        return SftpTransport(self.conn_id, self.folder)

    def answer_transport(self):
        from vendorprivacy.transports import SftpTransport

        return SftpTransport(self.conn_id, posixpath.join(self.folder, ACKS))

    def answer_location(self, batch_id: str) -> str:
        return posixpath.join(self.folder, ACKS, self.answer_name(batch_id))

    def map_result(self, entry: dict, doc: dict, evidence: str, at: datetime, file: str) -> Outcome:
        pid = entry["pair_id"]
        ref = None if doc.get("vendor_reference") is None else str(doc["vendor_reference"])
        outcome = entry.get("outcome")
        count(entry, "deleted", vendor=self.vendor_id, file=file)
        count(entry, "retained", vendor=self.vendor_id, file=file)
        reason = entry.get("reason")
        reason = None if reason in (None, "") else str(reason)[:500]
        if outcome == "deleted":
            return Outcome(pid, "completed", ref, None, evidence, at)
        if outcome == "not_found":
            return Outcome(pid, "not_found", ref, None, evidence, at)
        if outcome == "retained":
            if not reason:
                raise AnswerRejected(f"pair {pid}: 'retained' without a legal reason", vendor=self.vendor_id, file=file)
            return Outcome(pid, "retained", ref, reason, evidence, at)
        if outcome == "failed":
            return Outcome(pid, "failed", ref, reason or "vendor reported a failure", evidence, at)
        raise AnswerRejected(f"pair {pid}: unknown outcome {str(outcome)[:40]!r}", vendor=self.vendor_id, file=file)
