"""Each vendor's identifiers for a subject, in the form that vendor holds them.

Per the register's `erasure.identifiers`: the value of each type (e-mail, phone, order id, ...) from the
resolved subject, normalised by the named normaliser, then kept raw, SHA-256-hashed, or HMAC-tokenised
with that vendor's token key: the same functions the feeds use (vendorprivacy.minimise.normalise), so an
erasure list matches what the feed sent. A raw e-mail or phone with no normaliser named takes the feeds'
own normal form (e-mail: trimmed and lower-cased, as the `email` transform; phone: E.164 with '+', as the
`e164` transform).
"""
from __future__ import annotations

from vendorprivacy.minimise import normalise as n
from vendorprivacy.policy.models import ErasureIdentifier, Vendor

from .resolve import ResolvedSubject

_DEFAULT_NORMALISER = {"email": "email", "phone": "phone_e164"}


def _values(spec: ErasureIdentifier, subject: ResolvedSubject) -> list[str | None]:
    name = spec.normaliser or _DEFAULT_NORMALISER.get(spec.type)
    if spec.type == "email":
        return [n.normalise(name, v) for v in subject.emails]
    if spec.type == "phone":
        if name not in n.PHONE:
            raise ValueError(f"phone identifiers need a phone normaliser, not '{name}'")
        return [n.normalise(name, v, r) for v, r in subject.phones]
    raw = {"customer_id": subject.customer_ids, "order_id": subject.order_ids, "device_id": subject.device_ids,
           "cookie_id": subject.cookie_ids}[spec.type]
    return [n.normalise(name, str(v)) if name else str(v) for v in raw]


def vendor_identifiers(vendor: Vendor, subject: ResolvedSubject, keys) -> dict[str, list[str]]:
    """{identifier type: [values in the vendor's form]}; types with no value are left out."""
    out: dict[str, list[str]] = {}
    token_key = None
    for spec in vendor.erasure.identifiers:
        values = _values(spec, subject)
        if spec.format == "sha256":
            values = [n.sha256_hex(v) for v in values]
        elif spec.format == "hmac":
            token_key = token_key or keys.vendor_token_key(vendor.vendor)
            values = [n.hmac_hex(token_key, v) for v in values]
        kept = list(dict.fromkeys(v for v in values if v))
        if kept:
            out.setdefault(spec.type, [])
            out[spec.type].extend(v for v in kept if v not in out[spec.type])
    return out


def identifier_counts(identifiers: dict[str, list[str]]) -> dict[str, int]:
    """What may be shown (XCom, reports, dry runs): the types and how many, never the values."""
    return {k: len(v) for k, v in sorted(identifiers.items())}
