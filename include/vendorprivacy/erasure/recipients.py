"""Who must be told about a request, and who is recorded as not concerned (and why).

Erasure: every vendor the delivery ledger says received any of the subject's keys, plus every vendor the
register marks `always_notify` (service providers: CCPA §7022, GDPR Art. 19): they may hold the subject
from their own dealings with us (checkout, calls) whatever the feed ledger shows.
Opt-out of sale/sharing: only third parties (the notice's `relationship: third_party`, i.e. advertising
partners) receive a removal list; service providers do not sell or share, so the opt-out does not apply.
Every vendor in the register gets a pair: one that is not concerned is recorded as `not_applicable` with
the reason, never silently skipped.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from vendorprivacy.policy.models import Notice, Register

from .store import FAILED, NOT_APPLICABLE, QUEUED

REASON_NEVER_RECEIVED = "never received the subject (delivery ledger) and is not an always-notify service provider"
REASON_OPT_OUT_SERVICE_PROVIDER = ("service provider: an opt-out of sale/sharing does not apply to processing on "
                                   "our behalf (no removal list sent)")
REASON_OPT_OUT_NEVER_RECEIVED = "never received the subject (delivery ledger): nothing to remove"
REASON_NO_IDENTIFIERS = ("no identifier this vendor matches on could be built for the subject ({types}); "
                         "manual follow-up with the vendor is required")


@dataclass(frozen=True)
class PlannedPair:
    vendor: str
    status: str                     # queued | not_applicable | failed (we cannot tell the vendor who it is)
    reason: str
    received_subject: bool
    identifier_types: dict = field(default_factory=dict)   # {type: count}

    def to_row(self) -> dict:
        return {"vendor": self.vendor, "status": self.status, "reason": self.reason,
                "received_subject": self.received_subject, "identifier_types": self.identifier_types}


def relationship(vendor_id: str, register: Register, notice: Notice) -> str:
    return notice.recipient_categories[register.vendor(vendor_id).recipient_category].relationship


def plan_recipients(request_type: str, received_by: set[str], register: Register, notice: Notice,
                    identifier_counts: dict[str, dict[str, int]]) -> list[PlannedPair]:
    """One PlannedPair per register vendor. `identifier_counts[vendor]` is {type: count} of what could be built."""
    out = []
    for vid in sorted(register.vendors):
        v = register.vendors[vid]
        received = vid in received_by
        counts = identifier_counts.get(vid, {})
        if request_type == "opt_out":
            if relationship(vid, register, notice) != "third_party":
                out.append(PlannedPair(vid, NOT_APPLICABLE, REASON_OPT_OUT_SERVICE_PROVIDER, received))
                continue
            if not received:
                out.append(PlannedPair(vid, NOT_APPLICABLE, REASON_OPT_OUT_NEVER_RECEIVED, received))
                continue
            why = "received the subject (delivery ledger): remove from audiences, opt-out of sale/sharing"
        else:
            if not (received or v.erasure.always_notify):
                out.append(PlannedPair(vid, NOT_APPLICABLE, REASON_NEVER_RECEIVED, received))
                continue
            why = ("received the subject (delivery ledger)" if received else
                   "always notified: service provider (CCPA §7022, GDPR Art. 19)")
        if not counts:
            if not received:
                # nothing to send and nothing the feeds sent: the vendor cannot hold the subject by our identifiers
                out.append(PlannedPair(vid, NOT_APPLICABLE, f"always-notify vendor, but the subject has none of the "
                                       f"identifiers it matches on ({', '.join(i.type for i in v.erasure.identifiers)})",
                                       received))
                continue
            out.append(PlannedPair(vid, FAILED, REASON_NO_IDENTIFIERS.format(
                types=", ".join(i.type for i in v.erasure.identifiers)), received))
            continue
        out.append(PlannedPair(vid, QUEUED, why, received, counts))
    return out
