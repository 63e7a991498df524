"""Filing requests: one subject from the CLI, a CSV batch, or every under-13 the shop holds.

A batch is all or nothing: every row is validated (format, known regulation and type, date, duplicates in
the batch, duplicates of an open request for the same subject and type, a ticket already used), and only
if no row has a problem are the requests sealed and stored, in one transaction. The identity key is
required before anything is stored.
"""
from __future__ import annotations

import csv
import datetime as dt
import io
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

from . import deadlines
from .identity import IdentityCipher
from .requests import (CSV_COLUMNS, REQUIRED_COLUMNS, InvalidRequests, RequestInput, RowError, validate_rows)
from .store import FILED, ErasureStore


@dataclass(frozen=True)
class Filed:
    request_id: str
    ticket: str
    regulation: str
    request_type: str
    received_on: dt.date
    due: dt.date
    ack_due: dt.date | None


def _today() -> dt.date:
    return dt.datetime.now(dt.timezone.utc).date()


def _records(reqs: list[RequestInput], cipher: IdentityCipher, holidays: tuple[dt.date, ...]) -> list[dict]:
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    out = []
    for req in reqs:
        rid = str(uuid.uuid4())
        d = deadlines.deadlines_for(req.regulation, req.request_type, req.received_on, holidays)
        out.append({
            "request_id": rid, "ticket": req.ticket, "regulation": req.regulation, "request_type": req.request_type,
            "received_on": req.received_on, "source": req.source, "status": FILED,
            "ack_due": d.ack_due, "due": d.due, "extended_due": d.extended_due, "extension_noticed_on": None,
            "identity_ct": cipher.seal(req.identity.to_json(), aad=rid), "resolved_ct": None, "key_id": cipher.key_id,
            "email_lookup": req.lookups.get("email"), "phone_lookup": req.lookups.get("phone"),
            "subject_keys": None, "identifier_types": req.identity.types, "filed_at": now,
        })
    return out


def _lookups(req: RequestInput, cipher: IdentityCipher) -> dict:
    return {"email": cipher.lookup("email", req.identity.emails[0] if req.identity.emails else None),
            "phone": cipher.lookup("phone", req.identity.phones[0][0] if req.identity.phones else None)}


def file_requests(store: ErasureStore, cipher: IdentityCipher, rows: Iterable[tuple[int, Mapping]], *,
                  source: str = "cli", today: dt.date | None = None,
                  holidays: tuple[dt.date, ...] = ()) -> list[Filed]:
    """Validate every row, then store all of them or none. Raises InvalidRequests listing every problem."""
    good, errors = validate_rows(rows, today=today or _today(), source=source)
    for req in good:
        req.lookups.update(_lookups(req, cipher))
    taken = store.taken_tickets((r.ticket, r.request_type) for r in good)
    dups = store.open_duplicates([(r.request_type, r.lookups["email"], r.lookups["phone"]) for r in good])
    for i, req in enumerate(good):
        if (req.ticket, req.request_type) in taken:
            errors.append(RowError(req.row, "ticket", f"ticket {req.ticket} already has an {req.request_type} request"))
        elif i in dups:
            errors.append(RowError(req.row, "email" if req.identity.emails else "phone",
                                   f"duplicate of open {req.request_type} request {dups[i]} for the same subject"))
    if errors:
        raise InvalidRequests(sorted(errors, key=lambda e: (e.row, e.field)))
    records = _records(good, cipher, holidays)
    store.insert_requests(records)
    return [Filed(r["request_id"], r["ticket"], r["regulation"], r["request_type"], r["received_on"], r["due"],
                  r["ack_due"]) for r in records]


def file_request(store: ErasureStore, cipher: IdentityCipher, *, ticket: str, regulation: str, request_type: str,
                 email: str | None = None, phone: str | None = None, country: str | None = None,
                 received: str | dt.date | None = None, today: dt.date | None = None) -> Filed:
    row = {"ticket": ticket, "regulation": regulation, "type": request_type, "email": email, "phone": phone,
           "country": country, "received": received.isoformat() if isinstance(received, dt.date) else received}
    return file_requests(store, cipher, [(1, row)], source="cli", today=today)[0]


def read_csv(text: str) -> list[tuple[int, dict]]:
    """Rows of a request CSV with their line numbers (header = row 1). Unknown or missing columns are errors."""
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip().lower() for h in (reader.fieldnames or [])]
    problems = []
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        problems.append(RowError(1, "header", f"missing column(s): {', '.join(missing)} "
                                              f"(columns: {', '.join(CSV_COLUMNS)})"))
    unknown = [h for h in header if h not in CSV_COLUMNS]
    if unknown:
        problems.append(RowError(1, "header", f"unknown column(s): {', '.join(unknown)} "
                                              f"(columns: {', '.join(CSV_COLUMNS)})"))
    if problems:
        raise InvalidRequests(problems)
    reader.fieldnames = header
    rows = []
    for raw in reader:
        line = reader.line_num
        if None in raw:
            problems.append(RowError(line, "row", "more cells than columns"))
            continue
        if not any((v or "").strip() for v in raw.values()):
            continue  # blank line
        rows.append((line, raw))
    if problems:
        raise InvalidRequests(problems)
    if not rows:
        raise InvalidRequests([RowError(1, "file", "no requests in the file")])
    return rows


def import_csv(store: ErasureStore, cipher: IdentityCipher, path: Path | str, *, today: dt.date | None = None) -> list[Filed]:
    text = Path(path).read_text(encoding="utf-8-sig")
    return file_requests(store, cipher, read_csv(text), source="csv", today=today)


# ---------------------------------------------------------------------- under-13s found in the data
def file_under_13(store: ErasureStore, cipher: IdentityCipher, shop_url: str, keys, *,
                  today: dt.date | None = None) -> dict:
    """File an erasure and an opt-out for every under-13 customer in the shop who has no open request of that
    type yet (the nightly audit calls this; so does `vendorprivacy erasure file-under-13`). Tickets are
    'U13-' + the first 12 hex digits of the subject key: pseudonymous, safe in run conf and reports.
    Returns counts only."""
    from vendorprivacy.minimise.normalise import phone_e164

    from .requests import valid_email
    from .resolve import under_13_customers

    today = today or _today()
    found = under_13_customers(shop_url, today)
    rows: list[tuple[int, dict]] = []
    for i, c in enumerate(found, start=1):
        ticket = f"U13-{keys.subject_key_of(c['customer_id'])[:12]}"
        regulation = "gdpr" if c["is_eea"] else "ccpa"
        # Whatever identifiers of the child are usable: a messy phone must not keep the e-mail from being filed.
        email = (c["email"] or "").strip()
        email = email if valid_email(email) else None
        phone = c["phone"] if phone_e164(c["phone"], c["phone_country"]) else None
        for rtype in ("erasure", "opt_out"):
            rows.append((i, {"ticket": ticket, "regulation": regulation, "type": rtype, "email": email,
                             "phone": phone, "country": c["phone_country"], "received": today.isoformat()}))
    good, errors = validate_rows(rows, today=today, source="under_13_audit")
    for req in good:
        req.lookups.update(_lookups(req, cipher))
    taken = store.taken_tickets((r.ticket, r.request_type) for r in good)
    dups = store.open_duplicates([(r.request_type, r.lookups["email"], r.lookups["phone"]) for r in good])
    new = [r for i, r in enumerate(good) if (r.ticket, r.request_type) not in taken and i not in dups]
    records = _records(new, cipher, ())
    store.insert_requests(records)
    return {"under_13_found": len(found), "filed": len(records), "already_filed": len(good) - len(new),
            "invalid_rows": len({e.row for e in errors})}
