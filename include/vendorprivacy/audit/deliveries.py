"""Re-check the night's deliveries against TODAY's register and notice, and read each vendor's copy back.

A delivery that would fail today's rules is a finding, even if it passed the rules in force when it left:
  - a field the register no longer declares for the feed (or declares as `drop`), or one that left with another
    transform than the register now asks for, is critical;
  - a data category the notice does not declare for the vendor's recipient category is critical;
  - raw contact data to an advertising partner is critical;
  - a delivery without a passed quality gate for exactly the file that left (checksum, row count) is critical;
  - a row count far from the previous delivery's (the gate's own window) is a warning.

The vendor's copy: SFTP and S3 deliveries are read back through the transports (the same provider hooks and
connections that delivered them) and hashed; the result must equal the ledger's checksum and size, and the
manifest beside the file must name the same delivery, checksum, row count and columns. An HTTPS vendor is
asked what it holds for the delivery (GET /v1/deliveries/<id>: row count and canonical record checksum).
Nothing read back is kept or logged: only its checksum and size.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from vendorprivacy.ledger import tables as t
from vendorprivacy.policy.models import Vendor
from vendorprivacy.policy.taxonomy import covered_by

from .context import AuditContext
from .findings import CRITICAL, INFO, WARNING, Finding

log = logging.getLogger(__name__)
MANIFEST_SUFFIX = ".manifest.json"
RAW_TRANSFORMS = ("keep", "e164", "email", "text", "truncate")


@dataclass(frozen=True)
class DeliveryRow:
    delivery_id: str
    feed_id: str
    vendor: str
    logical_date: dt.date
    transport: str
    file_name: str
    remote_path: str | None
    row_count: int | None
    fields: list
    plaintext_sha256: str | None
    sha256: str | None
    bytes: int | None
    gate: dict | None
    status: str
    error: str | None
    delivered_at: dt.datetime | None


def _as_date(v) -> dt.date:
    return v if isinstance(v, dt.date) and not isinstance(v, dt.datetime) else dt.date.fromisoformat(str(v)[:10])


def deliveries_between(ledger, first: dt.date, last: dt.date, *, status: str | None = None) -> list[DeliveryRow]:
    d = t.deliveries.c
    q = sa.select(*[d[c] for c in DeliveryRow.__dataclass_fields__]).where(d.logical_date >= first, d.logical_date <= last)
    if status:
        q = q.where(d.status == status)
    with ledger.engine.connect() as conn:
        rows = conn.execute(q.order_by(d.logical_date, d.vendor, d.feed_id)).mappings().all()
    out = []
    for r in rows:
        row = dict(r)
        row["logical_date"] = _as_date(row["logical_date"])
        row["fields"] = row["fields"] or []
        out.append(DeliveryRow(**row))
    return out


def _previous(ledger, feed_id: str, before: dt.date) -> int | None:
    d = t.deliveries.c
    q = (sa.select(d.row_count).where(d.feed_id == feed_id, d.status == "delivered", d.logical_date < before)
         .order_by(d.logical_date.desc()).limit(1))
    with ledger.engine.connect() as conn:
        return conn.execute(q).scalar()


def _error_class(error: str | None) -> str:
    """Only the exception class of a recorded error: messages are not ours to copy into a report."""
    return (error or "").split(":", 1)[0][:80] or "unknown error"


# ----------------------------------------------------------------------------------- the rules of today
def check_delivery(ctx: AuditContext, d: DeliveryRow) -> list[Finding]:
    """Findings for one delivered delivery against the current register and notice (no I/O but the ledger)."""
    out: list[Finding] = []

    def add(severity: str, title: str, advice: str, **facts) -> None:
        out.append(Finding("delivery", severity, title, d.vendor, d.feed_id, advice,
                           {"delivery_id": d.delivery_id, "logical_date": d.logical_date.isoformat(), **facts}))

    try:
        vendor, feed = ctx.register.feed(d.feed_id)
    except KeyError:
        add(CRITICAL, f"delivery of feed '{d.feed_id}', which the register no longer declares",
            "Restore the feed's register entry if it is legitimate, or ask the vendor to delete the delivery "
            "and file the request in the erasure process.")
        return out
    if vendor.vendor != d.vendor:
        add(CRITICAL, f"delivered to '{d.vendor}', but the register now names '{vendor.vendor}' for this feed",
            "Find out which vendor holds the data and correct the register or recover the data.")
    rc_key = vendor.recipient_category
    rc = ctx.notice.recipient_categories.get(rc_key)
    allowed = ctx.notice.allowed_categories(rc_key)
    advertising = vendor.purpose.startswith("marketing.advertising") or (rc is not None and rc.relationship == "third_party")
    declared = {f.name: f for f in feed.fields}
    sent_names = set()
    for f in d.fields:
        name, category, transform = f.get("name"), f.get("category"), f.get("transform")
        sent_names.add(name)
        spec = declared.get(name)
        if spec is None:
            add(CRITICAL, f"extra field delivered: '{name}' ({category}) is not declared for this feed",
                "Stop the feed until the field is removed from its query or declared (and the notice allows it); "
                "ask the vendor to delete the field from this delivery.", field=name, category=category,
                transform=transform, rule="field_not_declared")
            continue
        if spec.transform == "drop":
            add(CRITICAL, f"field '{name}' is declared 'drop' (never sent) but was delivered",
                "Check the feed's minimisation; ask the vendor to delete the field from this delivery.",
                field=name, category=category, transform=transform, rule="dropped_field_sent")
            continue
        if transform != spec.transform:
            add(CRITICAL, f"field '{name}' left as '{transform}', the register now requires '{spec.transform}'",
                "Re-run the feed under the current register and ask the vendor to replace the delivery.",
                field=name, category=category, transform=transform, required=spec.transform, rule="transform_changed")
        if category and not covered_by(category, allowed):
            add(CRITICAL, f"field '{name}' carries '{category}', which the notice does not declare for "
                          f"{rc.title if rc else rc_key}",
                "Either the notice must say so or the field must not be sent: stop the feed and ask the vendor to "
                "delete the field.", field=name, category=category, rule="category_not_in_notice")
        elif category != spec.category:
            add(WARNING, f"field '{name}' left labelled '{category}'; the register now says '{spec.category}'",
                "Check which label is right; the ledger keeps what left.", field=name, category=category,
                register_category=spec.category, rule="category_relabelled")
        if advertising and category and category.startswith("user.contact") and transform in RAW_TRANSFORMS:
            add(CRITICAL, f"contact data '{name}' went to an advertising partner unhashed ({transform})",
                "Advertising partners receive contact data hashed only: stop the feed and ask for deletion.",
                field=name, category=category, transform=transform, rule="raw_contact_to_advertiser")
    missing = [f.name for f in feed.sent_fields if f.name not in sent_names]
    if missing:
        add(INFO, f"declared field(s) not in this delivery: {', '.join(missing)}",
            "Nothing leaked; the register declares more than this delivery carried (a feed run under an older "
            "register?).", fields=missing, rule="declared_field_absent")

    gate = d.gate or {}
    if not gate.get("passed"):
        add(CRITICAL, "left without a passed quality gate",
            "Deliveries must pass the gate: find out how this one left (the deliver step refuses otherwise).",
            rule="gate_not_passed")
    else:
        if gate.get("validated_sha256") and d.plaintext_sha256 and gate["validated_sha256"] != d.plaintext_sha256:
            add(CRITICAL, "the file that left is not the one the quality gate passed (checksums differ)",
                "Treat the delivery as unchecked: ask the vendor to delete it and re-run the feed.",
                rule="gate_checksum_mismatch", gate_sha256=gate["validated_sha256"], plaintext_sha256=d.plaintext_sha256)
        if gate.get("rows") is not None and d.row_count is not None and int(gate["rows"]) != int(d.row_count):
            add(CRITICAL, f"the gate checked {gate['rows']} rows but {d.row_count} left",
                "Treat the delivery as unchecked: ask the vendor to delete it and re-run the feed.",
                rule="gate_rowcount_mismatch", gate_rows=gate["rows"], rows=d.row_count)
    previous = _previous(ctx.ledger, d.feed_id, d.logical_date)
    if previous is not None and d.row_count is not None:
        from vendorprivacy.quality.checks import row_window

        lo, hi = row_window(previous, feed.row_count_tolerance, feed.row_count_slack)
        if not lo <= d.row_count <= hi:
            add(WARNING, f"{d.row_count} rows left, the previous delivery had {previous} (expected {lo:g}..{hi:g})",
                "An unusual volume can mean a filter stopped working: look at the feed's eligibility counts.",
                rule="row_count_implausible", rows=d.row_count, previous_rows=previous, allowed=[lo, hi])
    return out


# ----------------------------------------------------------------------------------- the vendor's copy
@dataclass
class CopyResult:
    status: str                # verified | differs | missing | unreadable | skipped
    finding: Finding | None = None
    held_sha256: str | None = None
    held_bytes: int | None = None


def _file_transport(vendor: Vendor):
    from vendorprivacy.transports import S3Transport, SftpTransport

    tr = vendor.transport
    if tr.kind == "sftp":
        return SftpTransport(tr.conn_id, tr.path)
    return S3Transport(tr.conn_id, tr.bucket, tr.path)


def _is_missing(exc: Exception) -> bool:
    from vendorprivacy.transports import (AuthenticationFailed, HostKeyMismatch, TlsVerificationFailed,
                                          VendorUnavailable, VendorUnreachable)

    if isinstance(exc, (AuthenticationFailed, HostKeyMismatch, TlsVerificationFailed, VendorUnavailable, VendorUnreachable)):
        return False
    text = str(exc)
    return "does not exist" in text or " 404 " in text


class CopyChecker:
    """Reads vendors' copies back; one transport per vendor for the whole night."""

    def __init__(self, ctx: AuditContext):
        self.ctx = ctx
        self._transports: dict[str, Any] = {}

    def close(self) -> None:
        for tr in self._transports.values():
            close = getattr(tr, "close", None)
            if close:
                try:
                    close()
                except Exception:  # noqa: BLE001 - closing is best effort
                    pass
        self._transports.clear()

    def _transport(self, vendor: Vendor):
        if vendor.vendor not in self._transports:
            if vendor.transport.kind == "https":
                from vendorprivacy.transports import HttpsRecordTransport

                self._transports[vendor.vendor] = HttpsRecordTransport(
                    vendor.transport.conn_id, vendor.transport.path, max_attempts=2, max_total_seconds=20, timeout=15)
            else:
                self._transports[vendor.vendor] = _file_transport(vendor)
        return self._transports[vendor.vendor]

    def check(self, d: DeliveryRow) -> CopyResult:
        try:
            vendor = self.ctx.register.vendor(d.vendor)
        except KeyError:
            return CopyResult("skipped")
        if vendor.transport.kind != d.transport:
            return CopyResult("skipped")

        def finding(severity: str, title: str, advice: str, **facts) -> Finding:
            return Finding("vendor_copy", severity, title, d.vendor, d.feed_id, advice,
                           {"delivery_id": d.delivery_id, "logical_date": d.logical_date.isoformat(),
                            "transport": d.transport, "remote_path": d.remote_path, **facts})

        from vendorprivacy.transports import TransportError

        tr = self._transport(vendor)
        try:
            if d.transport == "https":
                return self._check_https(tr, d, finding)
            return self._check_file(tr, d, finding)
        except TransportError as e:
            if _is_missing(e):
                return CopyResult("missing", finding(
                    WARNING, "the vendor no longer holds the delivery where it was delivered",
                    "The vendor may have moved or deleted it after loading; ask the vendor to confirm what it holds.",
                    rule="copy_missing", error=type(e).__name__))
            return CopyResult("unreadable", finding(
                WARNING, f"the vendor's copy could not be read back tonight ({type(e).__name__})",
                "Nothing is known to be wrong, but the copy is unverified: the next audit tries again.",
                rule="copy_unreadable", error=type(e).__name__))

    def _check_file(self, tr, d: DeliveryRow, finding) -> CopyResult:
        from contextlib import nullcontext

        with tr.session() if hasattr(tr, "session") else nullcontext():  # SFTP: one connection for both reads
            data = tr.get(d.file_name)
            held_sha, held_bytes = hashlib.sha256(data).hexdigest(), len(data)
            del data
            manifest_bytes = tr.get(d.file_name + MANIFEST_SUFFIX)
        problems = []
        if held_sha != d.sha256:
            problems.append("checksum")
        if d.bytes is not None and held_bytes != d.bytes:
            problems.append("size")
        manifest_problems = []
        try:
            manifest = json.loads(manifest_bytes)
        except (ValueError, UnicodeDecodeError):
            manifest, manifest_problems = {}, ["manifest unreadable"]
        if manifest:
            if manifest.get("delivery_id") != d.delivery_id:
                manifest_problems.append("delivery id")
            if str(manifest.get("sha256", "")).lower() != (d.sha256 or ""):
                manifest_problems.append("sha256")
            if d.row_count is not None and manifest.get("rows") != d.row_count:
                manifest_problems.append("row count")
            if manifest.get("columns") is not None and list(manifest["columns"]) != [f.get("name") for f in d.fields]:
                manifest_problems.append("columns")
        if problems:
            return CopyResult("differs", finding(
                CRITICAL, f"the vendor's copy differs from what left ({' and '.join(problems)})",
                "The file at the vendor is not the one that passed the gate: find out who changed it, ask the vendor "
                "to delete it, and re-deliver if needed.", rule="copy_differs", recorded_sha256=d.sha256,
                held_sha256=held_sha, recorded_bytes=d.bytes, held_bytes=held_bytes), held_sha, held_bytes)
        if manifest_problems:
            return CopyResult("differs", finding(
                CRITICAL, f"the manifest at the vendor does not match the ledger ({', '.join(manifest_problems)})",
                "The manifest describes the delivery to the vendor: find out who changed it.",
                rule="manifest_differs", mismatched=manifest_problems), held_sha, held_bytes)
        return CopyResult("verified", None, held_sha, held_bytes)

    def _check_https(self, tr, d: DeliveryRow, finding) -> CopyResult:
        held = tr.request("GET", f"/v1/deliveries/{d.delivery_id}").json()
        held_sha, held_rows = str(held.get("sha256") or "").lower(), held.get("row_count")
        problems = []
        if held_sha != (d.sha256 or ""):
            problems.append("checksum")
        if d.row_count is not None and held_rows != d.row_count:
            problems.append("row count")
        if problems:
            return CopyResult("differs", finding(
                CRITICAL, f"the vendor holds something else for this delivery ({' and '.join(problems)})",
                "Ask the vendor what it holds and why; re-deliver or have it deleted.", rule="copy_differs",
                recorded_sha256=d.sha256, held_sha256=held_sha, recorded_rows=d.row_count, held_rows=held_rows),
                held_sha, None)
        return CopyResult("verified", None, held_sha, None)


# ----------------------------------------------------------------------------------- the night
def recheck(ctx: AuditContext) -> tuple[list[Finding], dict]:
    """Every delivery of the audited window: today's rules, then the vendor's copy. Returns findings and counts."""
    first, last = ctx.window
    rows = deliveries_between(ctx.ledger, first, last)
    findings: list[Finding] = []
    stats = {"deliveries": len(rows), "delivered": 0, "gate_failed": 0, "failed": 0, "unfinished": 0,
             "copies": {"verified": 0, "differs": 0, "missing": 0, "unreadable": 0, "skipped": 0}}
    checker = CopyChecker(ctx) if ctx.verify_copies else None
    try:
        for d in rows:
            if d.status == "delivered":
                stats["delivered"] += 1
                findings += check_delivery(ctx, d)
                if checker is not None:
                    result = checker.check(d)
                    stats["copies"][result.status] += 1
                    if result.finding:
                        findings.append(result.finding)
                else:
                    stats["copies"]["skipped"] += 1
            elif d.status == "gate_failed":
                stats["gate_failed"] += 1
                findings.append(Finding("delivery", INFO, "the quality gate stopped this delivery: nothing left",
                                        d.vendor, d.feed_id, "See the feed's quality_gate task log for which check failed.",
                                        {"delivery_id": d.delivery_id, "logical_date": d.logical_date.isoformat(),
                                         "rule": "gate_stopped"}))
            elif d.status == "failed":
                stats["failed"] += 1
                findings.append(Finding("delivery", WARNING, f"delivery failed ({_error_class(d.error)})",
                                        d.vendor, d.feed_id,
                                        "Part of it may have reached the vendor (HTTPS batches): re-run the feed (it is "
                                        "idempotent) and check the vendor's copy.",
                                        {"delivery_id": d.delivery_id, "logical_date": d.logical_date.isoformat(),
                                         "rule": "delivery_failed", "error": _error_class(d.error)}))
            else:
                stats["unfinished"] += 1
                findings.append(Finding("delivery", INFO, "prepared but not delivered (yet)", d.vendor, d.feed_id,
                                        "A run may still be going, or was stopped: staged files hold personal data until "
                                        "a re-run delivers or clears them.",
                                        {"delivery_id": d.delivery_id, "logical_date": d.logical_date.isoformat(),
                                         "rule": "unfinished"}))
    finally:
        if checker is not None:
            checker.close()
    return findings, stats


def history(ctx: AuditContext) -> list[dict]:
    """Delivered deliveries of the last `history_days` days (for the charts): day, vendor, feed, rows. No data."""
    first = ctx.day - dt.timedelta(days=ctx.history_days - 1)
    return [{"day": d.logical_date.isoformat(), "vendor": d.vendor, "feed": d.feed_id, "rows": d.row_count or 0,
             "bytes": d.bytes or 0, "categories": sorted({f.get("category") for f in d.fields if f.get("category")})}
            for d in deliveries_between(ctx.ledger, first, ctx.day, status="delivered")]
