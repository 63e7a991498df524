"""Normalisers (known-good vectors), free-text scrubbing and field transforms."""
import datetime as dt

import pyarrow as pa
import pytest

from vendorprivacy.minimise import normalise as n
from vendorprivacy.minimise.eligibility import born_by, eligible_ids_query
from vendorprivacy.minimise.text import neutralise
from vendorprivacy.minimise.transform import minimise_batch
from vendorprivacy.policy import load_register

EMAILS = [
    # raw, email (Google/Meta: trim + lower-case), email_strip_plus_tag
    ("  John.Smith@Example.COM ", "john.smith@example.com", "john.smith@example.com"),
    ("\tjane+promo@example.org\n", "jane+promo@example.org", "jane@example.org"),
    ("A+b+c@Example.net", "a+b+c@example.net", "a@example.net"),
    ("plain@example.com", "plain@example.com", "plain@example.com"),
    ("   ", None, None),
    (None, None, None),
]
PHONES = [
    # raw, region, E.164 with '+' (Google), digits without '+' (Meta)
    ("(650) 253-0000", "US", "+16502530000", "16502530000"),
    ("+1 650 253 0000", "US", "+16502530000", "16502530000"),
    ("020 7946 0958", "GB", "+442079460958", "442079460958"),
    ("+44 20 7946 0958", "DE", "+442079460958", "442079460958"),
    ("030 1234567", "DE", "+49301234567", "49301234567"),
    ("0049 30 1234567", "DE", "+49301234567", "49301234567"),
    ("06 12 34 56 78", "FR", "+33612345678", "33612345678"),
    ("not a phone", "US", None, None),
    ("12", "US", None, None),
]


@pytest.mark.parametrize("raw,google,tagless", EMAILS)
def test_email_normalisers_scalar_and_vector_agree(raw, google, tagless):
    assert n.normalise("email", raw) == google
    assert n.normalise("email_strip_plus_tag", raw) == tagless
    arr = pa.array([raw], pa.string())
    assert n.normalise_array("email", arr).to_pylist() == [google]
    assert n.normalise_array("email_strip_plus_tag", arr).to_pylist() == [tagless]


@pytest.mark.parametrize("raw,region,plus,digits", PHONES)
def test_phone_normalisers(raw, region, plus, digits):
    assert n.normalise("phone_e164", raw, region) == plus
    assert n.normalise("phone_digits", raw, region) == digits


def test_sha256_and_hmac_vectors():
    # FIPS 180-2 test vector and RFC 4231 test case 2.
    assert n.sha256_hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert n.hmac_hex(b"Jefe", "what do ya want for nothing?") == \
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    assert n.sha256_hex(None) is None


@pytest.mark.parametrize("raw,expected", [
    ("=HYPERLINK(\"http://x\",\"click\")", "'=HYPERLINK(\"http://x\",\"click\")"),
    ("+1 star from me", "'+1 star from me"),
    ("-great ring", "'-great ring"),
    ("@everyone look", "'@everyone look"),
    ("\tstarts with tab", "'\tstarts with tab"),
    ("Lovely ring, mail me at Jo.Doe+x@example.com", "Lovely ring, mail me at [email removed]"),
    ("call me on +1 (650) 253-0000 please", "call me on [phone removed] please"),
    ("call 020 7946 0958", "call [phone removed]"),
    ("Rated 5 of 5, size 7", "Rated 5 of 5, size 7"),
    (None, None),
])
def test_free_text_is_scrubbed_and_neutralised(raw, expected):
    assert neutralise(raw) == expected


def test_minimise_batch_sends_only_declared_fields():
    _, feed = load_register().feed("adgrid_customer_match")
    batch = pa.RecordBatch.from_pydict({
        "customer_id": [1, 2], "email": [" A@Example.com", "b@example.com"],
        "phone": ["(650) 253-0000", "020 7946 0958"], "phone_country": ["US", "GB"], "country": ["US", "GB"],
        "first_name": ["Ann", "Bob"],  # in the extract, not declared: must not leave
    })
    out = minimise_batch(feed, batch, hmac_key=None)
    assert out.schema.names == ["email_sha256", "phone_sha256", "country_code"]
    assert out.column("email_sha256")[0].as_py() == n.sha256_hex("a@example.com")
    assert out.column("phone_sha256")[1].as_py() == n.sha256_hex("+442079460958")


def test_meta_style_vendor_hashes_digits_and_tagless_email():
    _, feed = load_register().feed("socialreach_custom_audience")
    batch = pa.RecordBatch.from_pydict({
        "customer_id": [1], "email": ["Jane+Promo@Example.org "], "phone": ["(650) 253-0000"],
        "phone_country": ["US"], "country": ["US"]})
    out = minimise_batch(feed, batch, hmac_key=None).to_pylist()[0]
    assert out["email_sha256"] == n.sha256_hex("jane@example.org")
    assert out["phone_sha256"] == n.sha256_hex("16502530000")


def test_hmac_tokens_differ_per_key_and_fail_closed_without_key():
    _, feed = load_register().feed("mailwave_subscribers")
    batch = pa.RecordBatch.from_pydict({"customer_id": [1], "email": ["a@example.com"], "first_name": ["Ann"]})
    one = minimise_batch(feed, batch, b"key-one").column("subscriber_token")[0].as_py()
    two = minimise_batch(feed, batch, b"key-two").column("subscriber_token")[0].as_py()
    assert one != two and len(one) == 64
    with pytest.raises(ValueError, match="token key"):
        minimise_batch(feed, batch, None)


def test_truncate_and_drop():
    _, feed = load_register().feed("payflow_settlement")
    batch = pa.RecordBatch.from_pydict({
        "customer_id": [1], "order_id": [10], "processor_token": ["tok_x"], "card_last4": ["4242"],
        "amount": [12.5], "currency": ["USD"], "paid_at": ["2026-10-31 10:00:00"]})
    out = minimise_batch(feed, batch, None)
    assert "card_last4" not in out.schema.names and out.num_rows == 1
    _, fraud = load_register().feed("fraudshield_orders")
    assert [f.length for f in fraud.fields if f.name == "postcode_prefix"] == [3]


def test_free_text_is_cut_to_the_register_length_after_scrubbing():
    _, reviews = load_register().feed("reviewhub_reviews")
    cap = next(f.length for f in reviews.fields if f.name == "body")
    body = "=1+1 write to ana.k@shop.example " + "é" * (cap * 3)
    batch = pa.RecordBatch.from_pydict({
        "customer_id": [1], "review_id": [7], "sku": ["S1"], "rating": [5], "title": [None], "body": [body],
        "has_photo": [False], "created_at": ["2026-10-31 10:00:00"], "first_name": ["Ann"], "last_name": ["Kowalska"],
        "email": ["ana.k@shop.example"]})
    out = minimise_batch(reviews, batch, b"key").column("body")[0].as_py()
    assert len(out) == cap and out.startswith("'=1+1 write to [email removed] éé")


def test_staged_csv_rows_longer_than_a_default_block_are_read_back(tmp_path):
    """pyarrow reads CSV in 1 MiB blocks and cannot split a row across two; deliver sizes the block from the
    register's caps, so a free-text cell of 3 MB (allowed by a 1,500,000-character cap) is read whole."""
    import pyarrow.csv as pacsv

    from vendorprivacy.share import _csv_records

    _, reviews = load_register().feed("reviewhub_reviews")
    fields = [f.model_copy(update={"length": 1_500_000}) if f.name == "body" else f for f in reviews.fields]
    feed = reviews.model_copy(update={"fields": fields})
    names = [f.name for f in feed.sent_fields]
    big = "é" * 1_500_000
    table = pa.table({n: [big if n == "body" else f"{n}-{i}" for i in range(3)] for n in names})
    pacsv.write_csv(table, tmp_path / "data.csv")
    rows = list(_csv_records(tmp_path / "data.csv", feed))
    assert len(rows) == 3 and all(r[names.index("body")] == big for r in rows)


def test_born_by_handles_leap_day():
    assert born_by(dt.date(2028, 2, 29), 13) == dt.date(2015, 2, 28)
    assert born_by(dt.date(2026, 11, 1), 16) == dt.date(2010, 11, 1)


def test_eligibility_query_contains_each_rule():
    _, feed = load_register().feed("adgrid_customer_match")
    sql, params = eligible_ids_query(feed, dt.date(2026, 11, 1))
    for fragment in ("sale_share_opt_out", "gpc_signal", "eea_ad_consent", ":born_by_16"):
        assert fragment in sql
    assert params["born_by_13"] == dt.date(2013, 11, 1)
