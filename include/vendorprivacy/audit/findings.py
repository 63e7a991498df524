"""What the audit finds: one Finding per problem, named with its vendor and feed, in plain words.

A finding never carries personal data: its title, advice and facts hold vendor and feed ids, field and
column names, data categories, counts, dates, checksums and batch ids. Subjects appear only as counts.

Severities:
  critical  a promise of the notice is (or may be) broken tonight: the run fails and the privacy team is told
  warning   needs a person to look (e.g. a new column that looks personal, a copy that could not be read back)
  info      worth knowing, nothing to do (e.g. the gate stopped a delivery: nothing left)
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Iterable

CRITICAL, WARNING, INFO = "critical", "warning", "info"
SEVERITIES = (CRITICAL, WARNING, INFO)

# kind -> (short label for people, what the check does)
KINDS: dict[str, tuple[str, str]] = {
    "delivery": ("Delivery re-check",
                 "Each delivery of the night, from the ledger, against today's register and notice: fields, data "
                 "categories, transforms, the quality gate, row counts."),
    "vendor_copy": ("Vendor's copy",
                    "The file or records the vendor holds, read back and compared with the checksum, size and "
                    "manifest recorded when it left."),
    "schema_drift": ("Source-schema drift",
                     "Columns added to the shop tables that feeds read, with a guess whether they hold personal data."),
    "register_drift": ("Register drift",
                       "Feeds, fields, vendors or purposes the notice no longer declares."),
    "consent_drift": ("Consent drift",
                      "People a vendor last received who may no longer be shared (opted out, GPC, withdrew consent, "
                      "too young); advertising partners get a removal list the same night."),
    "deadline": ("Erasure deadlines",
                 "Erasure and opt-out requests, and each vendor's part of them, at risk of missing or past their "
                 "legal due date."),
}


@dataclass(frozen=True)
class Finding:
    kind: str                       # one of KINDS
    severity: str                   # critical | warning | info
    title: str                      # one line a person understands
    vendor: str | None = None
    feed: str | None = None
    advice: str = ""                # what to do about it
    facts: dict[str, Any] = field(default_factory=dict)  # machine-readable, PII-free
    key: str = ""                   # stable identity across nights (kind/vendor/feed/what)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown finding kind {self.kind!r}")
        if self.severity not in SEVERITIES:
            raise ValueError(f"unknown severity {self.severity!r}")
        if not self.key:
            object.__setattr__(self, "key", "/".join(str(p) for p in (self.kind, self.vendor or "-", self.feed or "-",
                                                                         self.title)))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Finding":
        return cls(**{k: d[k] for k in ("kind", "severity", "title", "vendor", "feed", "advice", "facts", "key") if k in d})

    def line(self) -> str:
        where = " › ".join(p for p in (self.vendor, self.feed) if p)
        return f"[{self.severity.upper()}] {KINDS[self.kind][0]}{': ' + where if where else ''}: {self.title}"


def order(findings: Iterable[Finding]) -> list[Finding]:
    """Most severe first, then by kind (in KINDS order), vendor, feed, title."""
    kinds = list(KINDS)
    return sorted(findings, key=lambda f: (SEVERITIES.index(f.severity), kinds.index(f.kind), f.vendor or "",
                                           f.feed or "", f.title))


def counts(findings: Iterable[Finding]) -> dict[str, int]:
    found = list(findings)
    return {s: sum(f.severity == s for f in found) for s in SEVERITIES}


def verdict(findings: Iterable[Finding]) -> str:
    """'fail' with any critical finding, 'attention' with warnings only, else 'pass'."""
    c = counts(findings)
    return "fail" if c[CRITICAL] else "attention" if c[WARNING] else "pass"
