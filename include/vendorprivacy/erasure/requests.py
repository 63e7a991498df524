"""Privacy requests as filed: kinds, the subject's identifiers, and row-by-row validation.

Validation never puts an identifier in its messages: errors name the row and the problem
("row 3: email: not a valid e-mail address"), so they can be logged and shown in Airflow safely.
"""
from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Iterable, Mapping

from .deadlines import REGULATIONS, REQUEST_TYPES

SOURCES = ("cli", "csv", "under_13_audit")
CSV_COLUMNS = ("ticket", "regulation", "type", "email", "phone", "country", "received")
REQUIRED_COLUMNS = ("ticket", "regulation", "type")
# A ticket reference travels in run conf, XCom and reports: letters, digits and . _ / - only (never an e-mail).
TICKET_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,63}$")
_EMAIL_RE = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$")
_COUNTRY_RE = re.compile(r"^[A-Za-z]{2}$")


@dataclass(frozen=True)
class RowError:
    row: int          # the line in the CSV (header = 1), or 1 for a single request
    field: str
    problem: str

    def __str__(self) -> str:
        return f"row {self.row}: {self.field}: {self.problem}"


class InvalidRequests(ValueError):
    """One or more rows are invalid; nothing was stored. `errors` has one entry per problem."""

    def __init__(self, errors: list[RowError]):
        self.errors = errors
        super().__init__(f"{len(errors)} problem(s), nothing stored:\n" + "\n".join(f"  {e}" for e in errors))


@dataclass(frozen=True)
class SubjectIdentity:
    """The identifiers the subject gave (normal forms: e-mail trimmed and lower-cased, phone E.164)."""
    emails: tuple[str, ...] = ()
    phones: tuple[tuple[str, str | None], ...] = ()   # (E.164, region)

    def to_json(self) -> dict:
        return {"emails": list(self.emails), "phones": [list(p) for p in self.phones]}

    @classmethod
    def from_json(cls, data: Mapping) -> "SubjectIdentity":
        return cls(tuple(data.get("emails", ())), tuple((p[0], p[1]) for p in data.get("phones", ())))

    @property
    def types(self) -> list[str]:
        return [t for t, v in (("email", self.emails), ("phone", self.phones)) if v]


@dataclass(frozen=True)
class RequestInput:
    """A validated request, ready to store."""
    row: int
    ticket: str
    regulation: str
    request_type: str
    received_on: dt.date
    identity: SubjectIdentity
    source: str = "cli"
    lookups: dict = field(default_factory=dict, compare=False)  # filled by intake: {"email": h, "phone": h}


def valid_email(value: str) -> bool:
    return len(value) <= 320 and bool(_EMAIL_RE.match(value))


def _text(raw: Mapping, key: str) -> str:
    v = raw.get(key)
    return "" if v is None else str(v).strip()


def validate_row(raw: Mapping, row: int, *, today: dt.date, source: str = "cli") -> tuple[RequestInput | None, list[RowError]]:
    """Check one row; return the validated request or the row's errors (never both)."""
    from vendorprivacy.minimise.normalise import email as norm_email, phone_e164

    errors: list[RowError] = []
    ticket = _text(raw, "ticket")
    if not ticket:
        errors.append(RowError(row, "ticket", "missing (the privacy team's reference, e.g. T-123)"))
    elif not TICKET_RE.match(ticket):
        errors.append(RowError(row, "ticket", "use letters, digits and . _ / - only, at most 64 characters "
                                              "(a reference, never personal data)"))
    regulation = _text(raw, "regulation").lower()
    if regulation not in REGULATIONS:
        errors.append(RowError(row, "regulation", f"unknown regulation (use {' or '.join(REGULATIONS)})"
                               if regulation else f"missing (use {' or '.join(REGULATIONS)})"))
    request_type = _text(raw, "type").lower().replace("-", "_")
    if request_type not in REQUEST_TYPES:
        errors.append(RowError(row, "type", f"unknown request type (use {' or '.join(REQUEST_TYPES)})"
                               if request_type else f"missing (use {' or '.join(REQUEST_TYPES)})"))
    received_text = _text(raw, "received")
    received = today
    if received_text:
        try:
            received = dt.date.fromisoformat(received_text)
        except ValueError:
            errors.append(RowError(row, "received", "not a date (use YYYY-MM-DD)"))
        else:
            if received > today:
                errors.append(RowError(row, "received", "lies in the future"))

    emails: list[str] = []
    email_text = _text(raw, "email")
    if email_text:
        if not valid_email(email_text):
            errors.append(RowError(row, "email", "not a valid e-mail address"))
        else:
            emails.append(norm_email(email_text))
    phones: list[tuple[str, str | None]] = []
    phone_text, country = _text(raw, "phone"), _text(raw, "country").upper()
    if country and not _COUNTRY_RE.match(country):
        errors.append(RowError(row, "country", "use a two-letter ISO country code (e.g. US, DE)"))
        country = ""
    if phone_text:
        if not country and not phone_text.startswith("+"):
            errors.append(RowError(row, "phone", "needs --country (two-letter code) unless written with +country code"))
        else:
            e164 = phone_e164(phone_text, country or None)
            if e164 is None:
                errors.append(RowError(row, "phone", "not a valid phone number for its country"))
            else:
                import phonenumbers

                region = country or phonenumbers.region_code_for_number(phonenumbers.parse(e164)) or None
                phones.append((e164, region))
    if not email_text and not phone_text:
        errors.append(RowError(row, "email", "no identifier: give an e-mail address and/or a phone number"))
    if errors:
        return None, errors
    return RequestInput(row=row, ticket=ticket, regulation=regulation, request_type=request_type,
                        received_on=received, identity=SubjectIdentity(tuple(emails), tuple(phones)),
                        source=source), []


def validate_rows(rows: Iterable[tuple[int, Mapping]], *, today: dt.date,
                  source: str = "cli") -> tuple[list[RequestInput], list[RowError]]:
    """Validate every row (all errors, not just the first); duplicates within the batch are errors too."""
    good: list[RequestInput] = []
    errors: list[RowError] = []
    seen_ticket: dict[tuple[str, str], int] = {}
    seen_subject: dict[tuple[str, str], int] = {}
    for row, raw in rows:
        req, errs = validate_row(raw, row, today=today, source=source)
        if errs:
            errors.extend(errs)
            continue
        assert req is not None
        key = (req.ticket, req.request_type)
        if key in seen_ticket:
            errors.append(RowError(row, "ticket", f"duplicate: row {seen_ticket[key]} files the same ticket and type"))
            continue
        dup = next((seen_subject[(i, req.request_type)] for i in (*req.identity.emails, *(p[0] for p in req.identity.phones))
                    if (i, req.request_type) in seen_subject), None)
        if dup is not None:
            errors.append(RowError(row, "email" if req.identity.emails else "phone",
                                   f"duplicate: row {dup} files a {req.request_type} request for the same subject"))
            continue
        seen_ticket[key] = row
        for i in (*req.identity.emails, *(p[0] for p in req.identity.phones)):
            seen_subject[(i, req.request_type)] = row
        good.append(req)
    return good, errors
