"""The data-quality gate, on real staged files (pyarrow CSV + Arrow IPC) and a small SQLite shop."""
from __future__ import annotations

import hashlib
import json
import logging
import re
import sqlite3
import subprocess
import sys
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from vendorprivacy.policy import load_register
from vendorprivacy.quality import GateFailed, build_suite, feed_checks, run_gate
from vendorprivacy.quality.checks import (E164_DIGITS, E164_PLUS, EMAIL_IN_TEXT, EMAIL_NORMALISED,
                                          FORMULA_LEAD, HEX64)
from vendorprivacy.quality.subjects import age_cutoff

RUN_DATE = date(2025, 6, 1)
ADULT = "1980-03-04"
AGE_14 = "2011-01-01"
AGE_10 = "2015-01-01"
PLANTED = "Planted.Person+vip@Example.COM"

# person: birth date, is_eea, consents (marketing_opt_in, sale_share_opt_out, gpc_signal, eea_ad_consent) or None
OK = dict(birth=ADULT, eea=0, consents=(1, 0, 0, 0))


@pytest.fixture(scope="module")
def register():
    return load_register()


@pytest.fixture(scope="module")
def adgrid(register):
    return register.feed("adgrid_customer_match")[1]


@pytest.fixture(scope="module")
def reviewhub(register):
    return register.feed("reviewhub_reviews")[1]


def key(cid: int) -> str:
    return hashlib.sha256(f"subject-{cid}".encode()).hexdigest()


def make_shop(path: Path, people: dict[int, dict]) -> str:
    con = sqlite3.connect(path)
    con.executescript("""
        CREATE TABLE customers (customer_id INTEGER PRIMARY KEY, email TEXT, birth_date DATE, is_eea BOOLEAN);
        CREATE TABLE consents (customer_id INTEGER PRIMARY KEY REFERENCES customers, marketing_opt_in BOOLEAN,
            sale_share_opt_out BOOLEAN, gpc_signal BOOLEAN, eea_ad_consent BOOLEAN);
    """)
    for cid, p in people.items():
        con.execute("INSERT INTO customers VALUES (?, ?, ?, ?)", (cid, f"c{cid}@shop.example", p["birth"], p["eea"]))
        if p["consents"] is not None:
            con.execute("INSERT INTO consents VALUES (?, ?, ?, ?, ?)", (cid, *p["consents"]))
    con.commit()
    con.close()
    return f"sqlite:///{path}"


def adgrid_rows(ids) -> list[dict]:
    return [{"email_sha256": hashlib.sha256(f"c{i}@shop.example".encode()).hexdigest(),
             "phone_sha256": hashlib.sha256(f"+1555000{i:04d}".encode()).hexdigest(),
             "country_code": "US"} for i in ids]


def review_rows(ids) -> list[dict]:
    return [{"review_id": str(1000 + i), "sku": f"SKU{i:05d}", "rating": "5", "title": None if i % 2 else "Great",
             "body": "Works well, would buy again.", "has_photo": "false", "created_at": "2025-05-01 10:00:00",
             "reviewer_first_name": "Ana", "reviewer_last_initial": "K",
             "reviewer_token": hashlib.sha256(f"t{i}".encode()).hexdigest()} for i in ids]


def stage(tmp: Path, rows: list[dict], subject_ids, *, keys=None, columns=None) -> tuple[Path, Path]:
    tmp.mkdir(exist_ok=True)
    columns = columns or list(rows[0])
    data = pa.table({c: pa.array([r.get(c) for r in rows], pa.string()) for c in columns})
    data_csv, subjects = tmp / "data.csv", tmp / "subjects.arrow"
    pacsv.write_csv(data, data_csv)
    ids = list(subject_ids)
    table = pa.table({"customer_id": pa.array(ids, pa.int64()),
                      "subject_key": pa.array(keys if keys is not None else [key(i) for i in ids], pa.string())})
    with pa.ipc.new_file(subjects, table.schema) as w:
        w.write_table(table, max_chunksize=16)  # several record batches: chunks must line up across them
    return data_csv, subjects


@pytest.fixture
def shop(tmp_path):
    people = {i: OK for i in range(1, 41)}
    people.update({
        41: dict(OK, consents=(1, 0, 1, 0)),   # GPC signal
        42: dict(OK, consents=(1, 1, 0, 0)),   # opted out of sale/share
        43: dict(OK, birth=AGE_14),            # under 16
        44: dict(OK, eea=1),                   # EEA without ad consent
        45: dict(OK, eea=1, consents=(0, 0, 0, 1)),  # EEA with ad consent: eligible
        46: dict(OK, consents=None),           # no consents row
        47: dict(OK, birth=None),              # unknown age
        48: dict(OK, birth=AGE_10),            # under 13
    })
    return make_shop(tmp_path / "shop.db", people)


def gate(feed, data_csv, subjects, shop, *, suppressed=(), previous=None, chunk_rows=100_000):
    return run_gate(feed, data_csv, subjects, shop_url=shop, run_date=RUN_DATE, suppressed=set(suppressed),
                    previous_row_count=previous, chunk_rows=chunk_rows)


def failed_checks(result) -> set[tuple[str | None, str | None]]:
    return {(f.check, f.column) for f in result.failed}


CLEAN = list(range(1, 41)) + [45]


# ------------------------------------------------------------------ import cost
def test_import_does_not_load_great_expectations():
    code = ("import sys, vendorprivacy.quality; "
            "print(','.join(m for m in ('great_expectations', 'pandas') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[2],
                         env={"PYTHONPATH": "include", "PATH": "/usr/bin:/bin"})
    assert out.stdout.strip() == ""


# ------------------------------------------------------------------ plan and suite
def test_suite_is_built_from_the_register(adgrid, reviewhub):
    suite = build_suite(adgrid)
    types = [(e.expectation_type, getattr(e, "column", None)) for e in suite.expectations]
    assert types[0] == ("expect_table_columns_to_match_ordered_list", None)
    assert suite.expectations[0].column_list == ["email_sha256", "phone_sha256", "country_code",
                                                 "_subject_key", "_subject_suppressed", "_subject_ok"]
    assert ("expect_column_values_to_not_be_null", "country_code") in types
    assert ("expect_column_values_to_match_regex", "phone_sha256") in types
    assert ("expect_column_values_to_be_in_set", "_subject_ok") in types
    assert ("expect_column_values_to_be_in_set", "_subject_suppressed") in types
    assert ("expect_column_values_to_match_regex", "_subject_key") in types
    review = {(c.check, c.column) for c in feed_checks(reviewhub)}
    assert {("formula_lead", "body"), ("email_in_text", "title"), ("truncate", "reviewer_last_initial"),
            ("hmac", "reviewer_token")} <= review
    assert ("not_null", "title") not in review and ("not_null", "body") in review


@pytest.mark.parametrize("pattern, good, bad", [
    (HEX64, ["a" * 64, "0123456789abcdef" * 4], ["A" * 64, "a" * 63, "a" * 64 + "\n", "x@y.com", " " + "a" * 64]),
    (E164_PLUS, ["+14155550100", "+4915112345678"], ["14155550100", "+04155550100", "+1 415 555", "+1415555010٣"]),
    (E164_DIGITS, ["14155550100"], ["+14155550100", "0415555010"]),
    (EMAIL_NORMALISED, ["ana.k+news@shop.example", "o'neil@mail.co.uk"],
     ["Ana@shop.example", " ana@shop.example", "ana@shop", "ana @shop.example", "ana@shop.example\n"]),
])
def test_format_patterns_mean_the_same_in_python_and_arrow_regex(pattern, good, bad):
    import pandas as pd

    for dtype in (object, "str"):
        s = pd.Series(good + bad, dtype=dtype)
        assert s.str.contains(pattern).tolist() == [True] * len(good) + [False] * len(bad), dtype


def test_text_patterns():
    import pandas as pd

    s = pd.Series(["=HYPERLINK(\"x\")", "+1 call me", "-5", "@SUM(A1)", "\tx", "\rx", "'=SUM(A1)", "fine - ok"],
                  dtype="str")
    assert s.str.contains(FORMULA_LEAD).tolist() == [True] * 6 + [False] * 2
    s = pd.Series(["mail me at Ana.K@shop.example!", "[email removed]", "at home"], dtype="str")
    assert s.str.contains(EMAIL_IN_TEXT).tolist() == [True, False, False]


def test_age_cutoff_leap_day():
    assert age_cutoff(date(2028, 2, 29), 13) == date(2015, 2, 28)
    assert age_cutoff(RUN_DATE, 16) == date(2009, 6, 1)


# ------------------------------------------------------------------ gate outcomes
def test_clean_feed_passes(tmp_path, shop, adgrid):
    data_csv, subjects = stage(tmp_path, adgrid_rows(CLEAN), CLEAN)
    result = gate(adgrid, data_csv, subjects, shop, previous=40)
    assert result.passed, result.message()
    assert result.rows == len(CLEAN) and result.failed == []
    assert json.loads(json.dumps(result.to_dict()))["passed"] is True
    assert result.message().startswith("gate passed for feed adgrid_customer_match")
    assert result.raise_for_failure() is result


def test_extra_column_fails(tmp_path, shop, adgrid):
    rows = [dict(r, first_name="Ana") for r in adgrid_rows(CLEAN)]
    data_csv, subjects = stage(tmp_path, rows, CLEAN)
    result = gate(adgrid, data_csv, subjects, shop)
    assert not result.passed
    assert ("column_set", None) in failed_checks(result)


def test_reordered_columns_fail(tmp_path, shop, adgrid):
    data_csv, subjects = stage(tmp_path, adgrid_rows(CLEAN), CLEAN,
                               columns=["phone_sha256", "email_sha256", "country_code"])
    assert ("column_set", None) in failed_checks(gate(adgrid, data_csv, subjects, shop))


def test_raw_email_fails_and_never_leaks(tmp_path, shop, adgrid, caplog, capsys):
    caplog.set_level(logging.DEBUG)
    rows = adgrid_rows(CLEAN)
    rows[7]["email_sha256"] = PLANTED
    data_csv, subjects = stage(tmp_path, rows, CLEAN)
    result = gate(adgrid, data_csv, subjects, shop)
    assert not result.passed
    [f] = result.failed
    assert (f.expectation_type, f.column, f.check) == ("expect_column_values_to_match_regex", "email_sha256", "sha256")
    assert (f.unexpected_count, f.element_count) == (1, len(CLEAN))
    message = result.message()
    assert "expect_column_values_to_match_regex on email_sha256 (1 of 41 rows)" in message
    with pytest.raises(GateFailed) as err:
        result.raise_for_failure()
    captured = capsys.readouterr()
    everything = "\n".join([json.dumps(result.to_dict()), message, str(err.value), caplog.text,
                            captured.out, captured.err])
    for needle in (PLANTED, PLANTED.lower(), "Planted.Person", "Example.COM"):
        assert needle not in everything
    assert "gate failed" in caplog.text  # the gate itself did log, without the value


@pytest.mark.parametrize("cid, why", [(41, "gpc"), (42, "opted_out"), (43, "under_16"), (44, "eea_no_consent"),
                                      (46, "no_consents_row"), (47, "unknown_age"), (48, "under_13"),
                                      (999, "not_a_customer")])
def test_ineligible_subject_fails_advertising_feed(tmp_path, shop, adgrid, cid, why):
    ids = CLEAN + [cid]
    data_csv, subjects = stage(tmp_path, adgrid_rows(ids), ids)
    result = gate(adgrid, data_csv, subjects, shop)
    assert not result.passed, why
    [f] = result.failed
    assert (f.check, f.column, f.unexpected_count) == ("eligible", "_subject_ok", 1)


def test_suppressed_subject_fails(tmp_path, shop, adgrid):
    data_csv, subjects = stage(tmp_path, adgrid_rows(CLEAN), CLEAN)
    result = gate(adgrid, data_csv, subjects, shop, suppressed={key(5), key(777)})
    assert not result.passed
    assert failed_checks(result) == {("not_suppressed", "_subject_suppressed"), ("eligible", "_subject_ok")}
    assert all(f.unexpected_count == 1 for f in result.failed)


def test_under_16_passes_a_feed_that_only_requires_13(tmp_path, shop, adgrid):
    feed = adgrid.model_copy(update={"eligibility": ["min_age_13"]})
    ids = CLEAN + [41, 42, 43, 44, 46]  # GPC, opted out, 14 years old, EEA w/o consent, no consents row
    data_csv, subjects = stage(tmp_path, adgrid_rows(ids), ids)
    assert gate(feed, data_csv, subjects, shop).passed
    ids = CLEAN + [48]  # a 10-year-old: never shared
    data_csv, subjects = stage(tmp_path, adgrid_rows(ids), ids)
    assert not gate(feed, data_csv, subjects, shop).passed


def test_marketing_opt_in_rule(tmp_path, shop, adgrid):
    feed = adgrid.model_copy(update={"eligibility": ["min_age_13", "marketing_opt_in"]})
    data_csv, subjects = stage(tmp_path, adgrid_rows([1, 45]), [1, 45])  # 45 has marketing_opt_in false
    result = gate(feed, data_csv, subjects, shop)
    assert [(f.check, f.unexpected_count) for f in result.failed] == [("eligible", 1)]


@pytest.mark.parametrize("empty", ["", None])
def test_empty_key_fails_not_null(tmp_path, shop, adgrid, empty):
    rows = adgrid_rows(CLEAN)
    rows[3]["email_sha256"] = empty
    data_csv, subjects = stage(tmp_path, rows, CLEAN)
    result = gate(adgrid, data_csv, subjects, shop)
    assert [(f.check, f.column, f.unexpected_count) for f in result.failed] == [("not_null", "email_sha256", 1)]


def test_row_count_against_previous_delivery(tmp_path, shop, adgrid):
    adgrid = adgrid.model_copy(update={"row_count_slack": 0})  # the relative window alone
    data_csv, subjects = stage(tmp_path, adgrid_rows(CLEAN), CLEAN)
    result = gate(adgrid, data_csv, subjects, shop, previous=10)  # 41 rows, allowed 5..15
    assert not result.passed
    assert failed_checks(result) == {("row_count_vs_previous", "_delivery_rows")}
    assert "41 rows, allowed 5..15 (previous delivery 10)" in result.message()
    assert gate(adgrid, data_csv, subjects, shop, previous=60).passed  # allowed 30..90


def test_row_count_slack_lets_small_feeds_vary(tmp_path, shop, adgrid):
    data_csv, subjects = stage(tmp_path, adgrid_rows(CLEAN), CLEAN)  # 41 rows
    assert gate(adgrid.model_copy(update={"row_count_slack": 41}), data_csv, subjects, shop, previous=0).passed
    assert not gate(adgrid.model_copy(update={"row_count_slack": 40}), data_csv, subjects, shop, previous=0).passed


@pytest.mark.parametrize("subject_ids", [CLEAN[:-3], CLEAN + [1, 2]])
def test_subjects_row_count_must_match(tmp_path, shop, adgrid, subject_ids):
    data_csv, _ = stage(tmp_path, adgrid_rows(CLEAN), CLEAN)
    _, subjects = stage(tmp_path / "other", adgrid_rows(subject_ids), subject_ids)
    result = gate(adgrid, data_csv, subjects, shop)
    assert not result.passed
    assert ("subjects_row_count", "_delivery_rows") in failed_checks(result)
    assert f"subjects file {len(subject_ids)}" in result.message()


def test_bad_subject_key_format_fails(tmp_path, shop, adgrid):
    keys = [key(i) for i in CLEAN]
    keys[0] = keys[0].upper()  # would slip past an exact-match suppression lookup
    data_csv, subjects = stage(tmp_path, adgrid_rows(CLEAN), CLEAN, keys=keys)
    assert failed_checks(gate(adgrid, data_csv, subjects, shop)) == {("subject_key_format", "_subject_key")}


def test_counts_add_up_across_chunks(tmp_path, shop, adgrid):
    rows = adgrid_rows(CLEAN)
    for i in (2, 19, 33):
        rows[i]["phone_sha256"] = "+14155550100"
    data_csv, subjects = stage(tmp_path, rows, CLEAN)
    result = gate(adgrid, data_csv, subjects, shop, chunk_rows=7)
    assert result.chunks == 6 and result.rows == 41
    [f] = result.failed
    assert (f.column, f.unexpected_count, f.element_count) == ("phone_sha256", 3, 41)


def test_formula_leading_review_body_fails_text_check(tmp_path, shop, reviewhub):
    rows = review_rows(CLEAN)
    assert gate(reviewhub, *stage(tmp_path, rows, CLEAN), shop).passed
    rows[4]["body"] = '=HYPERLINK("http://evil.example","click")'
    rows[5]["body"] = "'=SUM(A1:A9) is how I rate it"  # neutralised: fine
    rows[6]["title"] = "write to me: ana.k@shop.example"
    rows[7]["reviewer_last_initial"] = "Kowalska"
    rows[8]["body"] = "long " * 5_000  # over the register's 10,000 characters: not minimised, must not pass
    result = gate(reviewhub, *stage(tmp_path, rows, CLEAN), shop)
    assert failed_checks(result) == {("formula_lead", "body"), ("email_in_text", "title"),
                                     ("truncate", "reviewer_last_initial"), ("text_length", "body")}
    assert "ana.k@shop.example" not in json.dumps(result.to_dict()) + result.message()


def test_header_only_delivery(tmp_path, shop, adgrid):
    data_csv, subjects = stage(tmp_path, adgrid_rows([1]), [1])
    data_csv.write_text(data_csv.read_text().splitlines()[0] + "\n")
    _, subjects = stage(tmp_path / "other", adgrid_rows([1]), [])
    result = gate(adgrid, data_csv, subjects, shop)
    assert result.passed and result.rows == 0
    assert not gate(adgrid.model_copy(update={"row_count_slack": 0}), data_csv, subjects, shop, previous=100).passed


@pytest.mark.parametrize("breakage", ["ragged_csv", "not_arrow", "bad_shop"])
def test_errors_fail_closed_without_detail(tmp_path, shop, adgrid, breakage):
    data_csv, subjects = stage(tmp_path, adgrid_rows(CLEAN), CLEAN)
    if breakage == "ragged_csv":
        with data_csv.open("a") as fh:
            fh.write(f'"a","b","c","{PLANTED}"\n')
    elif breakage == "not_arrow":
        subjects.write_text(PLANTED)
    else:
        shop = f"sqlite:///{tmp_path / 'missing' / 'shop.db'}"
    result = gate(adgrid, data_csv, subjects, shop)
    assert not result.passed
    assert any(f.error for f in result.failed)
    assert PLANTED not in json.dumps(result.to_dict()) + result.message()
    assert re.search(r"raised \w+", result.message())


def test_missing_column_fails_with_exception_names_only(tmp_path, shop, adgrid):
    rows = [{"email_sha256": r["email_sha256"], "country_code": "US"} for r in adgrid_rows(CLEAN)]
    data_csv, subjects = stage(tmp_path, rows, CLEAN)
    result = gate(adgrid, data_csv, subjects, shop)
    assert not result.passed
    assert ("column_set", None) in failed_checks(result)
    raised = {f.column: f.error for f in result.failed if f.error}
    assert set(raised) == {"phone_sha256"} and raised["phone_sha256"].isidentifier()


def test_exception_inside_gx_fails_closed(tmp_path, shop, adgrid, monkeypatch):
    from great_expectations.validator.v1_validator import Validator

    def boom(self, *args, **kwargs):
        raise ValueError(f"could not parse {PLANTED}")

    monkeypatch.setattr(Validator, "validate_expectation_suite", boom)
    data_csv, subjects = stage(tmp_path, adgrid_rows(CLEAN), CLEAN)
    result = gate(adgrid, data_csv, subjects, shop)
    assert not result.passed
    assert [(f.expectation_type, f.error) for f in result.failed] == [("gate_error", "ValueError")]
    assert PLANTED not in json.dumps(result.to_dict()) + result.message()


def test_gx_log_records_are_withheld(tmp_path, shop, adgrid, monkeypatch, caplog, capsys):
    """GX logs e.g. "Caught exception <message>" at ERROR; such text never reaches handlers or stdout."""
    import vendorprivacy.quality.gate as gate_module

    real = gate_module._gate_frame

    def chatty(*args, **kwargs):
        logging.getLogger("great_expectations.validator.validation_graph").error("Caught exception %s", PLANTED)
        logging.getLogger("great_expectations.core").info("value %s", PLANTED)
        return real(*args, **kwargs)

    monkeypatch.setattr(gate_module, "_gate_frame", chatty)
    caplog.set_level(logging.DEBUG)
    data_csv, subjects = stage(tmp_path, adgrid_rows(CLEAN), CLEAN)
    assert gate(adgrid, data_csv, subjects, shop).passed
    captured = capsys.readouterr()
    assert PLANTED not in caplog.text + captured.out + captured.err
    assert "great_expectations logged a ERROR in great_expectations.validator.validation_graph" in caplog.text
    assert logging.getLogger("great_expectations").propagate  # restored after the gate


PG_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"


def test_postgres_shop(tmp_path, adgrid):
    import uuid

    import sqlalchemy as sa

    engine = sa.create_engine(PG_URL)
    try:
        with engine.connect():
            pass
    except sa.exc.OperationalError as exc:  # pragma: no cover - environment dependent
        engine.dispose()
        pytest.skip(f"PostgreSQL not reachable: {type(exc).__name__}")
    schema = f"gate_test_{uuid.uuid4().hex[:12]}"
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
            conn.execute(sa.text(f'CREATE TABLE "{schema}".customers (customer_id INTEGER PRIMARY KEY, '
                                 'birth_date DATE, is_eea BOOLEAN NOT NULL)'))
            conn.execute(sa.text(f'CREATE TABLE "{schema}".consents (customer_id INTEGER PRIMARY KEY, '
                                 'marketing_opt_in BOOLEAN, sale_share_opt_out BOOLEAN, gpc_signal BOOLEAN, '
                                 'eea_ad_consent BOOLEAN)'))
            # consents: marketing_opt_in, sale_share_opt_out, gpc_signal, eea_ad_consent
            people = [(1, date(1980, 1, 1), False, (True, False, False, False)),
                      (2, date(1990, 1, 1), True, (False, False, False, True)),
                      (3, date(2011, 1, 1), False, (True, False, False, False)),   # under 16
                      (4, date(1980, 1, 1), True, (True, False, False, False)),    # EEA, no ad consent
                      (5, date(1980, 1, 1), False, None)]                          # no consents row
            for cid, birth, eea, consents in people:
                conn.execute(sa.text(f'INSERT INTO "{schema}".customers VALUES (:c, :b, :e)'),
                             {"c": cid, "b": birth, "e": eea})
                if consents:
                    conn.execute(sa.text(f'INSERT INTO "{schema}".consents VALUES (:c, :m, :s, :g, :a)'),
                                 {"c": cid, "m": consents[0], "s": consents[1], "g": consents[2],
                                  "a": consents[3]})
        data_csv, subjects = stage(tmp_path, adgrid_rows([1, 2, 1]), [1, 2, 1])
        ok = run_gate(adgrid, data_csv, subjects, shop_url=PG_URL, shop_schema=schema, run_date=RUN_DATE,
                      suppressed=set(), previous_row_count=None)
        assert ok.passed, ok.message()
        data_csv, subjects = stage(tmp_path, adgrid_rows([1, 3, 4, 5]), [1, 3, 4, 5])
        bad = run_gate(adgrid, data_csv, subjects, shop_url=PG_URL, shop_schema=schema, run_date=RUN_DATE,
                       suppressed=set(), previous_row_count=None)
        assert [(f.check, f.unexpected_count) for f in bad.failed] == [("eligible", 3)]
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        engine.dispose()


def test_gx_results_carry_counts_not_values(adgrid):
    """Defence in depth: even the raw GX results (before the gate strips them) hold no failing value."""
    import pandas as pd
    from great_expectations.validator.v1_validator import Validator

    from vendorprivacy.quality.gate import RESULT_FORMAT, _gx_withheld, gx_context

    frame = pd.DataFrame({"email_sha256": pd.Series([PLANTED, "a" * 64], dtype="str"),
                          "phone_sha256": pd.Series(["b" * 64, PLANTED], dtype="str"),
                          "country_code": pd.Series(["US", "US"], dtype="str"),
                          "_subject_key": pd.Series([key(1), key(2)], dtype="str"),
                          "_subject_suppressed": [False, False], "_subject_ok": [True, True]})
    with _gx_withheld():
        context = gx_context()
        batches = context.data_sources.add_pandas("t").add_dataframe_asset("a").add_batch_definition_whole_dataframe("w")
        result = Validator(batch_definition=batches, batch_parameters={"dataframe": frame},
                           result_format=dict(RESULT_FORMAT)).validate_expectation_suite(build_suite(adgrid))
    assert not result.success
    raw = json.dumps([r.result for r in result.results], default=str)
    assert '"unexpected_count": 1' in raw and PLANTED not in raw
