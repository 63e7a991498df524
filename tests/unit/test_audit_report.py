"""The audit's outputs: the personal-data guess, the SVG charts, the HTML report and its JSON twin, the data map,
the disclosure report and the notification; none of them carries a personal value."""
from __future__ import annotations

import csv
import datetime as dt
import io
import json
import threading
import xml.etree.ElementTree as ET
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from vendorprivacy.audit import charts, datamap, disclosure, notify, piiguess
from vendorprivacy.audit import findings as fd
from vendorprivacy.audit.report import build, render_html
from vendorprivacy.audit.run import run_audit

from tests.unit.test_audit_checks import (DAY, KEYS, NOTICE, REGISTER, ledger, make_ctx, record_delivery, shop,  # noqa: F401
                                          shop_template)

SVG = "{http://www.w3.org/2000/svg}"


# ------------------------------------------------------------------------------------------ the guess
@pytest.mark.parametrize("column, values, likelihood, category", [
    ("loyalty_phone", ["+1 555 555 0100", "(555) 555-0199"] * 5, "likely", "user.contact.phone_number"),
    ("contact", ["ann@example.com"] * 10, "likely", "user.contact.email"),
    ("passport_no", [None, None], "likely", "user.government_id"),
    ("last_login_ip", ["192.0.2.7", "2001:db8::1"], "likely", "user.device.ip_address"),
    ("email_verified", ["1", "0"] * 5, "possible", "user.contact.email"),
    ("gift_wrap", ["0", "1"] * 5, "unlikely", None),
    ("shipped_on", ["2026-01-01"] * 5, "unlikely", None),
    ("birth_day", ["2001-01-01"] * 5, "likely", "user.demographic.date_of_birth"),
    ("card", ["4111 1111 1111 1111"] * 3, "likely", "user.financial"),
])
def test_guess(column, values, likelihood, category):
    g = piiguess.guess(column, iter(values))
    assert (g.likelihood, g.category) == (likelihood, category)
    assert not any(str(v) in json.dumps(g.to_dict()) for v in values if v and len(str(v)) > 3)   # counts only


# ------------------------------------------------------------------------------------------ charts
def _svg(text: str) -> ET.Element:
    root = ET.fromstring(text)
    assert root.tag == f"{SVG}svg" and "chart" in root.get("class")
    return root


def test_charts_are_valid_svg_with_drawn_marks():
    hist = [{"day": "2026-10-30", "vendor": "adgrid", "rows": 100}, {"day": "2026-11-01", "vendor": "adgrid", "rows": 50},
            {"day": "2026-11-01", "vendor": "pay<flow>", "rows": 3}]
    root = _svg(charts.deliveries_chart(hist, ["adgrid", "pay<flow>"], dt.date(2026, 10, 3), DAY))
    assert len(root.findall(f".//{SVG}rect[@class='bar']")) == 3
    matrix = _svg(charts.category_matrix([{"vendor": "adgrid", "recipient": "Ads", "shared": ["user.contact.email",
                                                                                              "user.name"],
                                           "allowed_by_notice": ["user.contact.email"], "declared": []}],
                                         ["user.contact.email", "user.name", "user.payment"]))
    classes = [r.get("class") for r in matrix.iter(f"{SVG}rect") if r.get("class")]
    assert classes == ["cell shared-allowed", "cell shared-not-allowed"]
    buckets = ["overdue", "0–7 days", "8–14 days", "15–30 days", "31+ days"]
    dead = _svg(charts.deadline_chart([{"vendor": "adgrid", "bucket": "overdue"}, {"vendor": "payflow", "bucket": "overdue"},
                                       {"vendor": "adgrid", "bucket": "31+ days"}], buckets, ["adgrid", "payflow"]))
    assert len(dead.findall(f".//{SVG}rect[@class='bar']")) == 3
    empty = _svg(charts.deadline_chart([], buckets, ["adgrid"]))
    assert "No open erasure requests" in ET.tostring(empty, encoding="unicode")


# ------------------------------------------------------------------------------------------ report
def test_report_json_twin_and_html(make_ctx, ledger, shop):
    record_delivery(ledger, "adgrid_customer_match", ["k1", "k2"])
    bad = [{"name": "email_sha256", "category": "user.contact.email", "transform": "sha256"},
           {"name": "phone_sha256", "category": "user.contact.phone_number", "transform": "sha256"},
           {"name": "country_code", "category": "user.location.imprecise", "transform": "keep"},
           {"name": "postcode", "category": "user.contact.address.postal_code", "transform": "keep"}]
    record_delivery(ledger, "socialreach_custom_audience", ["k1"], fields=bad)
    ctx = make_ctx()
    summary = run_audit(ctx)
    assert summary["verdict"] == "fail" and summary["counts"]["critical"] >= 2
    assert any("socialreach" in line and "postcode" in line for line in summary["critical"])
    report = json.loads(open(summary["report_json"]).read())
    assert report["format"] == "vendorprivacy.audit-report/1" and set(report["checks"]) == {
        "delivery", "schema_drift", "register_drift", "consent_drift", "deadline"}
    matrix = {r["vendor"]: r for r in report["charts"]["categories"]["rows"]}
    assert "user.contact.address.postal_code" in matrix["socialreach"]["shared"]
    html = open(summary["report_html"]).read()
    assert html.count('<svg class="chart"') == 3 and "shared-not-allowed" in html and 'data-verdict="fail"' in html
    assert "<script src" not in html and "http" not in html.replace("http://www.w3.org/2000/svg", "")  # no network
    latest = ctx.reports_dir / "audit" / "latest.html"
    assert latest.exists() and f'href="{DAY}/minimisation_audit.json"' in latest.read_text()
    assert (ctx.out_dir / "data_map.csv").exists()


def test_a_check_that_did_not_complete_is_a_critical_finding(make_ctx):
    ctx = make_ctx()
    report = build(ctx, [None, {"check": "register_drift", "findings": [], "stats": {}, "seconds": 0.1}])
    missing = [f for f in report["findings"] if f["facts"].get("rule") == "check_incomplete"]
    assert len(missing) == 4 and report["verdict"] == "fail"
    assert "did not complete" in render_html(report)


def test_verdict_and_order():
    f = [fd.Finding("deadline", fd.WARNING, "w"), fd.Finding("delivery", fd.INFO, "i"),
         fd.Finding("schema_drift", fd.CRITICAL, "c")]
    assert [x.severity for x in fd.order(f)] == ["critical", "warning", "info"]
    assert fd.verdict(f) == "fail" and fd.verdict(f[:2]) == "attention" and fd.verdict(f[1:2]) == "pass"
    with pytest.raises(ValueError):
        fd.Finding("nonsense", fd.INFO, "x")


# ------------------------------------------------------------------------------------------ data map
def test_data_map_one_row_per_feed_with_retention_gaps_said_plainly(tmp_path):
    paths = datamap.write_data_map(REGISTER, NOTICE, tmp_path)
    rows = list(csv.DictReader(io.StringIO(paths["data_map_csv"].read_text())))
    assert len(rows) == len(REGISTER.feeds()) and list(rows[0]) == datamap.COLUMNS
    payflow = next(r for r in rows if r["vendor"] == "payflow")
    assert "10 years" in payflow["retention"] and payflow["relationship"] == "service provider"
    adgrid = next(r for r in rows if r["vendor"] == "adgrid")
    assert adgrid["relationship"].startswith("third party") and adgrid["retention"] == "not declared in the register"
    assert "user.contact.email" in adgrid["data_categories"] and "card_last4" not in payflow["fields"]  # dropped
    assert "Data map" in paths["data_map_html"].read_text()


# ------------------------------------------------------------------------------------------ disclosure
def test_disclosure_lists_categories_per_recipient_category_never_data(ledger, shop, tmp_path):
    import sqlalchemy as sa

    with sa.create_engine(f"sqlite:///{shop}").connect() as conn:
        cid, email, phone, region = conn.execute(sa.text(
            "SELECT customer_id, email, phone, phone_country FROM customers ORDER BY customer_id LIMIT 1")).one()
    key = KEYS.subject_key_of(cid)
    record_delivery(ledger, "adgrid_customer_match", [key], day=DAY - dt.timedelta(days=30))
    record_delivery(ledger, "parcelpost_manifest", [key], day=DAY - dt.timedelta(days=3))
    record_delivery(ledger, "payflow_settlement", [key], day=DAY - dt.timedelta(days=500))     # older than 12 months
    record_delivery(ledger, "mailwave_subscribers", ["someone-else"])
    keys = disclosure.subject_keys(f"sqlite:///{shop}", KEYS, email=f"  {email.upper()} ")
    assert keys == [key] and disclosure.subject_keys(f"sqlite:///{shop}", KEYS, phone=phone, country=region) == [key]
    report = disclosure.build(ledger, REGISTER, NOTICE, keys, ticket="T-100", today=DAY)
    got = {r["recipient_category"]: r for r in report["recipient_categories"]}
    assert set(got) == {"interest_based_advertising_partners", "shipping_providers"} and report["sold_or_shared"]
    assert {c["key"] for c in got["interest_based_advertising_partners"]["categories"]} == {
        "user.contact.email", "user.contact.phone_number", "user.location.imprecise"}
    paths = disclosure.write(report, tmp_path)
    for p in paths.values():
        text = p.read_text()
        assert email.strip().lower() not in text.lower() and phone not in text and key not in text
    with pytest.raises(disclosure.DisclosureError):
        disclosure.build(ledger, REGISTER, NOTICE, keys, ticket="ann@example.com", today=DAY)


# ------------------------------------------------------------------------------------------ notify
@pytest.fixture
def receiver():
    got: list[tuple[dict, bytes]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            got.append((dict(self.headers.items()), self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *a):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_port, got
    server.shutdown()
    server.server_close()


def test_notification_is_posted_and_kept_in_the_outbox(receiver, monkeypatch, tmp_path):
    port, got = receiver
    monkeypatch.setenv("AIRFLOW_CONN_TEST_ALERTS", json.dumps({"conn_type": "http", "host": "127.0.0.1", "port": port,
                                                               "schema": "http", "password": "tok",
                                                               "extra": {"endpoint": "/hook"}}))
    summary = {"day": "2026-11-01", "verdict": "fail", "counts": {"critical": 2, "warning": 1},
               "critical": ["adgrid / adgrid_customer_match: extra field delivered"], "report_html": "/r.html"}
    payload = notify.message(summary, dag_id="nightly_minimisation_audit", run_id="manual__1")
    result = notify.send(payload, outbox=tmp_path / "out", conn_id="test_alerts")
    assert result["posted"] and result["outbox"]
    headers, body = got[0]
    assert headers["Authorization"] == "Bearer tok" and "FAIL" in json.loads(body)["text"]
    assert "extra field delivered" in json.loads(body)["text"]
    # unreachable or unconfigured: logged, kept in the outbox, never raised
    assert notify.send(payload, outbox=tmp_path / "out", conn_id="no_such_conn")["posted"] is False
    monkeypatch.setenv("AIRFLOW_CONN_DEAD_ALERTS", json.dumps({"conn_type": "http", "host": "127.0.0.1", "port": 9,
                                                               "schema": "http"}))
    dead = notify.send(payload, outbox=tmp_path / "out", conn_id="dead_alerts", timeout=2)
    assert dead["posted"] is False and dead["error"]
    assert len(list((tmp_path / "out").glob("*.json"))) == 3
