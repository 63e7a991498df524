"""The vectorised normalisers agree with the scalar reference forms, value by value.

The scalar forms (normalise.email, phone_e164, sha256_hex, hmac_hex, Keys.subject_key_of) are the truth;
the vectorised forms are what feeds run. Checked here on hand-picked hard cases, on every phone and e-mail
of a generated shop, and on fuzzed variants of them.
"""
from __future__ import annotations

import random

import pyarrow as pa
import pytest

from vendorprivacy.keys import Keys
from vendorprivacy.minimise import normalise as n
from vendorprivacy.minimise import phones

EMAILS = ["  John.Smith@Example.COM ", "\tjane+promo@example.org\n", "A+b+c@Example.net", "   ", "", None,
          "a+b@c@d", "a@b+c@d", "no-at-sign", "+@x", "x+@y", "Ünïcode@EXAMPLE.com ", "\x1cfoo@bar.com\x1f",
          "İstanbul@x.com", "ß@X.de", "\u00a0nb@x.com\u00a0", "a+b\n+c@d", "\x0bv@t.com\x0c", "MiXeD+TaG@Ex.Org"]

PHONES = [
    ("(650) 253-0000", "US"), ("+1 650 253 0000", "US"), ("020 7946 0958", "GB"), ("+44 20 7946 0958", "DE"),
    ("030 1234567", "DE"), ("0049 30 1234567", "DE"), ("06 12 34 56 78", "FR"), ("not a phone", "US"),
    ("12", "US"), (None, "US"), ("650 253 0000", None), ("+1 650 253 0000", None), ("1 650 253 0000", "US"),
    ("44 20 7946 0958", "GB"), ("+0044 20 7946 0958", "GB"), ("011 44 20 7946 0958", "US"),
    ("(0)20 7946 0958", "GB"), ("+44 (0)20 7946 0958", "GB"), ("0044 0 20 7946 0958", "GB"),
    ("+1 242 555 0100", "US"), ("+1 416 555 0199", "CA"), ("416-555-0199", "ca"), ("+800 1234 5678", "US"),
    ("+39 06 1234 5678", "IT"), ("06 1234 5678", "IT"), ("+54 9 11 1234 5678", "AR"), ("011 15 1234 5678", "AR"),
    ("+81 3-1234-5678", "JP"), ("1-800-FLOWERS", "US"), ("650 253 0000 ext. 12", "US"), ("+", "US"),
    ("  +49 (30) 123 4567 ", "DE"), ("\t0170 1234567\t", "DE"), ("0170/1234567", "DE"), ("+7 495 123-45-67", "RU"),
    ("8 (495) 123-45-67", "RU"), ("+44 7700 900123", "GB"), ("07700 900123", "GB"), ("+353 85 123 4567", "IE"),
    ("", "US"), ("   ", "US"), ("+1 650 253 0000", "XX"), ("650.253.0000", "US"), ("+12", "US"),
    ("999", "US"), ("+999 123 456", "US"), ("00 1 650 253 0000", "FR"), ("0 0 33 1 23 45 67 89", "FR"),
]


def test_email_normalisers_agree_on_hard_cases():
    arr = pa.array(EMAILS, pa.string())
    for name in ("email", "email_strip_plus_tag", "lower_trim"):
        assert n.normalise_array(name, arr).to_pylist() == [n.normalise(name, v) for v in EMAILS], name


def test_phone_normalisers_agree_on_hard_cases():
    values = pa.array([p[0] for p in PHONES], pa.string())
    regions = pa.array([p[1] for p in PHONES], pa.string())
    got = phones.e164_array(values, regions, check=0).to_pylist()
    assert got == [n.phone_e164(v, r) for v, r in PHONES]
    digits = n.normalise_array("phone_digits", values, regions).to_pylist()
    assert digits == [n.phone_digits(v, r) for v, r in PHONES]


def test_sha256_and_hmac_agree_and_keep_nulls():
    arr = pa.array(EMAILS, pa.string())
    assert n.sha256_array(arr).to_pylist() == [n.sha256_hex(v) for v in EMAILS]
    for key in (b"k", b"x" * 64, b"y" * 65, b"", "clé".encode()):
        assert n.hmac_array(key, arr).to_pylist() == [n.hmac_hex(key, v) for v in EMAILS]
    assert n.sha256_array(pa.array([], pa.string())).to_pylist() == []


def test_subject_keys_vectorised_match_scalar():
    keys = Keys(b"t", b"subject-secret")
    ids = pa.array([1, 42, None, 10**12], pa.int64())
    assert keys.subject_keys(ids).to_pylist() == [None if i is None else keys.subject_key_of(i)
                                                  for i in ids.to_pylist()]


def _variants(rng: random.Random, phone: str) -> list[str]:
    digits = "".join(c for c in phone if c.isdigit())
    out = [phone, digits, f" {phone} ", phone.replace(" ", "-"), phone.replace(" ", "."), "+" + digits,
           "00" + digits, "0" + digits, digits[1:], digits + "0", "(" + digits[:3] + ") " + digits[3:]]
    chars = list(phone)
    if chars:
        i = rng.randrange(len(chars))
        chars[i] = rng.choice("0123456789 -./()+")
        out.append("".join(chars))
    return out


@pytest.fixture(scope="module")
def shop_contacts(tmp_path_factory):
    import sqlite3

    from vendorprivacy.shop.generate import generate_shop

    path = tmp_path_factory.mktemp("vec") / "shop.db"
    generate_shop(f"sqlite:///{path}", customers=1500, seed=11)
    con = sqlite3.connect(path)
    rows = con.execute("SELECT phone, phone_country, email FROM customers UNION ALL "
                       "SELECT ship_phone, ship_country, NULL FROM shipments").fetchall()
    con.close()
    return rows


def test_phones_of_a_generated_shop_and_fuzzed_variants_agree(shop_contacts):
    rng = random.Random(3)
    regions_pool = ["US", "GB", "DE", "FR", "CA", "IT", "ES", "NL", "CH", "BR", "JP", "IN", None]
    pairs = []
    for phone, region, _ in shop_contacts:
        pairs.append((phone, region))
        for v in _variants(rng, phone)[:6]:
            pairs.append((v, rng.choice([region, region, rng.choice(regions_pool)])))
    values = pa.array([p[0] for p in pairs], pa.string())
    regions = pa.array([p[1] for p in pairs], pa.string())
    got = phones.e164_array(values, regions, check=0).to_pylist()
    expected = [n.phone_e164(v, r) for v, r in pairs]
    bad = [(v, r, g, e) for (v, r), g, e in zip(pairs, got, expected) if g != e]
    assert not bad, bad[:10]


def test_emails_of_a_generated_shop_agree(shop_contacts):
    emails = [e for _, _, e in shop_contacts if e is not None]
    arr = pa.array(emails, pa.string())
    for name in ("email", "email_strip_plus_tag"):
        assert n.normalise_array(name, arr).to_pylist() == [n.normalise(name, v) for v in emails], name


def test_a_disagreement_falls_back_to_the_reference(monkeypatch):
    """If the vectorised port ever disagrees with phonenumbers on a sampled value, the batch is recomputed
    with the reference: the output is the reference's, whatever the port says."""
    values = pa.array(["(650) 253-0000", "020 7946 0958"] * 10, pa.string())
    regions = pa.array(["US", "GB"] * 10, pa.string())

    def broken(text, regions, rows, digits=None):
        import numpy as np

        return np.ones(len(rows), dtype=bool), np.array(["+10000000000"] * len(rows), dtype=object)

    monkeypatch.setattr(phones, "_fast", broken)
    assert phones.e164_array(values, regions).to_pylist() == [n.phone_e164(v, r) for v, r in
                                                               zip(values.to_pylist(), regions.to_pylist())]
