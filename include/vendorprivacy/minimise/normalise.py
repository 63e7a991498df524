"""Identifier normalisers, one per vendor rule, with scalar and vectorised forms that must agree.

Each vendor matches identifiers in its own normal form (DESIGN.md): Google Customer Match trims and
lower-cases e-mails and wants phones in E.164 with '+'; Meta-style platforms want the digits with the
country code and no '+'; some strip '+tag' from e-mails. The scalar forms are the reference; the
vectorised forms run the hot path over Arrow arrays and are tested against them.
"""
from __future__ import annotations

import hashlib
import hmac as _hmac
from functools import lru_cache

import phonenumbers
import pyarrow as pa
import pyarrow.compute as pc

# ------------------------------------------------------------------ scalar reference forms


def email(value: str | None) -> str | None:
    if value is None:
        return None
    out = value.strip().lower()
    return out or None


def email_strip_plus_tag(value: str | None) -> str | None:
    e = email(value)
    if e is None or "@" not in e:
        return e
    local, _, domain = e.rpartition("@")
    return f"{local.split('+', 1)[0]}@{domain}"


@lru_cache(maxsize=200_000)
def phone_e164(value: str | None, region: str | None) -> str | None:
    """E.164 with '+', or None when the number does not parse as a valid number for its region."""
    if not value or not value.strip():
        return None
    try:
        n = phonenumbers.parse(value, (region or "").upper() or None)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(n):
        return None
    return phonenumbers.format_number(n, phonenumbers.PhoneNumberFormat.E164)


def phone_digits(value: str | None, region: str | None) -> str | None:
    e = phone_e164(value, region)
    return e[1:] if e else None


def lower_trim(value: str | None) -> str | None:
    return email(value)


SCALAR = {
    "email": email,
    "email_strip_plus_tag": email_strip_plus_tag,
    "lower_trim": lower_trim,
    "phone_e164": phone_e164,
    "phone_digits": phone_digits,
}
PHONE = {"phone_e164", "phone_digits"}


def normalise(name: str, value: str | None, region: str | None = None) -> str | None:
    fn = SCALAR[name]
    return fn(value, region) if name in PHONE else fn(value)


def sha256_hex(value: str | None) -> str | None:
    return None if value is None else hashlib.sha256(value.encode("utf-8")).hexdigest()


def hmac_hex(key: bytes, value: str | None) -> str | None:
    return None if value is None else _hmac.new(key, value.encode("utf-8"), hashlib.sha256).hexdigest()


# ------------------------------------------------------------------ vectorised forms


def _text(arr: pa.Array) -> pa.Array:
    return arr if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type) else pc.cast(arr, pa.string())


def _email_vec(arr: pa.Array) -> pa.Array:
    out = pc.utf8_lower(pc.utf8_trim_whitespace(_text(arr)))
    return pc.if_else(pc.equal(out, ""), pa.scalar(None, pa.string()), out)


def normalise_array(name: str, arr: pa.Array, regions: pa.Array | None = None) -> pa.Array:
    if name in ("email", "lower_trim"):
        return _email_vec(arr)
    if name == "email_strip_plus_tag":
        # local part up to the first '+', then the domain: the same rule as the scalar form.
        return pc.replace_substring_regex(_email_vec(arr), pattern=r"^([^@+]*)\+[^@]*@", replacement=r"\1@")
    if name in PHONE:
        fn = SCALAR[name]
        regions_list = regions.to_pylist() if regions is not None else [None] * len(arr)
        return pa.array([fn(v, r) for v, r in zip(arr.to_pylist(), regions_list)], pa.string())
    raise KeyError(f"unknown normaliser '{name}'")


def sha256_array(arr: pa.Array) -> pa.Array:
    return pa.array([sha256_hex(v) for v in arr.to_pylist()], pa.string())


def hmac_array(key: bytes, arr: pa.Array) -> pa.Array:
    return pa.array([hmac_hex(key, v) for v in arr.to_pylist()], pa.string())
