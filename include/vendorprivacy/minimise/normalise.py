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
# They agree with the scalar forms value by value (tests/unit/test_normalise_vectorised.py). Text rules are
# applied to ASCII values with ASCII kernels (Python's str.strip() whitespace and str.lower() on ASCII);
# the rare non-ASCII value goes through the scalar form itself, so Unicode case and space rules cannot drift.
# SHA-256 runs inside DuckDB (sha256() over the UTF-8 bytes), HMAC-SHA-256 in a tight hashlib loop over the
# RFC 2104 padded key states (see hmac_array), phones in phones.e164_array.

_PY_ASCII_SPACE = " \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f"  # what str.strip() removes from ASCII text


def _text(arr: pa.Array) -> pa.Array:
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    return arr if pa.types.is_string(arr.type) else pc.cast(arr, pa.string())


def _ascii_or_scalar(arr: pa.Array, vector, scalar) -> pa.Array:
    """vector(arr) for ASCII values, scalar(value) for the others (and nulls stay null)."""
    arr = _text(arr)
    out = vector(arr)
    ascii_ = pc.fill_null(pc.string_is_ascii(arr), True)
    if pc.all(ascii_).as_py() is not False:
        return out
    idx = pc.indices_nonzero(pc.invert(ascii_))
    fixed = pa.array([scalar(v) for v in arr.take(idx).to_pylist()], pa.string())
    import numpy as np

    mask = np.zeros(len(arr), dtype=bool)
    mask[idx.to_numpy()] = True
    replaced = pc.replace_with_mask(out, pa.array(mask), fixed)
    return replaced


def _email_ascii(arr: pa.Array) -> pa.Array:
    out = pc.ascii_lower(pc.ascii_trim(arr, characters=_PY_ASCII_SPACE))
    return pc.if_else(pc.equal(out, ""), pa.scalar(None, pa.string()), out)


def _strip_tag_ascii(arr: pa.Array) -> pa.Array:
    # email_strip_plus_tag: the local part is everything before the LAST '@'; drop it from its first '+'.
    # The regex runs only on the few values that hold a '+' (RE2 on every value costs ~0.8 s per million).
    e = _email_ascii(arr)
    tagged = pc.fill_null(pc.match_substring(e, "+"), False)
    if not pc.any(tagged).as_py():
        return e
    import numpy as np

    idx = pc.indices_nonzero(tagged)
    fixed = pc.replace_substring_regex(e.take(idx), pattern=r"(?s)^([^+]*)\+.*@([^@]*)$", replacement=r"\1@\2")
    mask = np.zeros(len(e), dtype=bool)
    mask[idx.to_numpy()] = True
    return pc.replace_with_mask(e, pa.array(mask), fixed)


def normalise_array(name: str, arr: pa.Array, regions: pa.Array | None = None) -> pa.Array:
    if name in ("email", "lower_trim"):
        return _ascii_or_scalar(arr, _email_ascii, email)
    if name == "email_strip_plus_tag":
        return _ascii_or_scalar(arr, _strip_tag_ascii, email_strip_plus_tag)
    if name in PHONE:
        from .phones import e164_array

        e164 = e164_array(_text(arr), regions)
        return e164 if name == "phone_e164" else pc.utf8_slice_codeunits(e164, 1)
    raise KeyError(f"unknown normaliser '{name}'")


# ------------------------------------------------------------------ hashing in DuckDB
_local = __import__("threading").local()


def duck():
    """This thread's in-memory DuckDB connection (hashing only; no files, no extensions)."""
    con = getattr(_local, "con", None)
    if con is None:
        import duckdb

        con = duckdb.connect(config={"threads": 2, "autoinstall_known_extensions": False,
                                     "autoload_known_extensions": False})
        _local.con = con
    return con


def hmac_pads(key: bytes) -> tuple[bytes, bytes]:
    """(K xor ipad, K xor opad) of RFC 2104 for SHA-256 (64-byte blocks; longer keys are hashed first)."""
    if len(key) > 64:
        key = hashlib.sha256(key).digest()
    key = key.ljust(64, b"\0")
    return bytes(b ^ 0x36 for b in key), bytes(b ^ 0x5C for b in key)


def _hash_in_duckdb(arr: pa.Array, sql_expr: str, params: dict) -> pa.Array:
    arr = _text(arr)
    if len(arr) == 0:
        return pa.array([], pa.string())
    con = duck()
    table = pa.table({"v": arr})  # noqa: F841 - DuckDB reads the local Arrow table by name
    con.register("_vp_hash_input", table)
    try:
        out = con.execute(f"SELECT {sql_expr} AS h FROM _vp_hash_input", params).to_arrow_table().column("h")
    finally:
        con.unregister("_vp_hash_input")
    out = out.combine_chunks() if isinstance(out, pa.ChunkedArray) else out
    return out if out.type == pa.string() else pc.cast(out, pa.string())


def sha256_array(arr: pa.Array) -> pa.Array:
    return _hash_in_duckdb(arr, "sha256(v)", {})


def hmac_array(key: bytes, arr: pa.Array) -> pa.Array:
    """HMAC-SHA-256 hex per value. DuckDB has no HMAC; built from two DuckDB sha256() calls it measured ~2x
    slower than this loop, which pays the key schedule once (the padded inner/outer states) and per value
    only copies a state and hashes ~100 bytes: ~1.3 us a value, the price of one hashlib call."""
    arr = _text(arr)
    inner_pad, outer_pad = hmac_pads(key)
    inner, outer = hashlib.sha256(inner_pad), hashlib.sha256(outer_pad)
    out = []
    append = out.append
    for v in arr.to_pylist():
        if v is None:
            append(None)
            continue
        h = inner.copy()
        h.update(v.encode("utf-8"))
        o = outer.copy()
        o.update(h.digest())
        append(o.hexdigest())
    return pa.array(out, pa.string())
