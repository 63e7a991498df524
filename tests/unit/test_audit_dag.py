"""The nightly_minimisation_audit DAG: its shape and form, and a real run under dag.test() on a night with critical
findings: the run fails at `verdict`, the report is written and linked from XCom, the notifier configured by the
`privacy_alerts` connection is called, and nothing Airflow stores carries personal data."""
from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
import subprocess
import sys
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import sqlalchemy as sa

from vendorprivacy.ledger import Ledger
from vendorprivacy.ledger import tables as t

from tests.conftest import ROOT
from tests.unit.test_audit_checks import _eligible, record_delivery, shop_template  # noqa: F401

DAY = dt.date(2026, 11, 1)


@pytest.fixture(scope="module")
def dag():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags" / "nightly_minimisation_audit.py"))
    assert bag.import_errors == {}
    return bag.dags["nightly_minimisation_audit"]


def test_shape_schedule_and_form(dag):
    assert dag.timetable.expression == "30 23 * * *" and not dag.catchup and dag.max_active_runs == 1
    order = [t.task_id for t in dag.topological_sort()]
    assert order[-2:] == ["write_report", "verdict"] and len(order) == 7
    assert dag.task_dict["write_report"].trigger_rule == "all_done"
    assert dag.task_dict["write_report"].upstream_task_ids == {"recheck_deliveries", "source_schema_drift",
                                                               "register_drift", "consent_drift", "erasure_deadlines"}
    for name in dag.params:
        assert dag.params.get_param(name).schema.get("title"), name
    for task in dag.tasks:
        assert task.owner == "privacy-team" and task.retries >= 1 and task.execution_timeout, task.task_id
    callbacks = dag.task_dict["verdict"].on_failure_callback
    assert any(type(c).__name__ == "AuditNotifier" for c in (callbacks if isinstance(callbacks, list) else [callbacks]))


@pytest.fixture(scope="module")
def airflow_db():
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True, capture_output=True, env=os.environ)
    from airflow import settings as airflow_settings

    airflow_settings.configure_orm()


@pytest.fixture
def receiver():
    got: list[bytes] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            got.append(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *a):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_port, got
    server.shutdown()
    server.server_close()


@pytest.fixture
def night(tmp_path, monkeypatch, shop_template, airflow_db, receiver):
    import shutil

    shop = tmp_path / "shop.db"
    shutil.copy(shop_template, shop)
    ledger_path = tmp_path / "ledger.db"
    port, got = receiver
    monkeypatch.setenv("AIRFLOW_CONN_SHOP_DB", json.dumps({"conn_type": "sqlite", "host": str(shop)}))
    monkeypatch.setenv("AIRFLOW_CONN_LEDGER_DB", json.dumps({"conn_type": "sqlite", "host": str(ledger_path)}))
    monkeypatch.setenv("AIRFLOW_CONN_VENDORPRIVACY_KEYS", json.dumps({"conn_type": "generic", "extra": {
        "token_key": "unit-audit-token", "subject_key": "unit-audit-subject"}}))
    monkeypatch.setenv("AIRFLOW_CONN_PRIVACY_ALERTS", json.dumps({"conn_type": "http", "host": "127.0.0.1", "port": port,
                                                                  "schema": "http", "extra": {"endpoint": "/alerts"}}))
    monkeypatch.setenv("VENDORPRIVACY_REPORTS_DIR", str(tmp_path / "reports"))
    led = Ledger(f"sqlite:///{ledger_path}")
    led.migrate()
    from vendorprivacy.keys import Keys

    keys = Keys(b"unit-audit-token", b"unit-audit-subject")
    ids = _eligible(shop, "adgrid_customer_match")
    record_delivery(led, "adgrid_customer_match", [keys.subject_key_of(i) for i in ids],
                    delivered_at=dt.datetime(2026, 11, 1, 6, 5))
    con = sqlite3.connect(shop)
    con.execute("UPDATE consents SET gpc_signal = 1, updated_at = '2026-11-01 20:00:00' WHERE customer_id = ?", (ids[0],))
    con.commit()
    rid = str(uuid.uuid4())
    with led.engine.begin() as conn:
        conn.execute(t.erasure_requests.insert().values(
            request_id=rid, ticket="T-DAG-1", regulation="gdpr", request_type="erasure", received_on=dt.date(2026, 9, 1),
            source="cli", status="in_progress", due=dt.date(2026, 10, 1), filed_at=dt.datetime(2026, 9, 1)))
        conn.execute(t.erasure_pairs.insert().values(
            pair_id=str(uuid.uuid4()), request_id=rid, vendor="mailwave", status="sent",
            created_at=dt.datetime(2026, 9, 1), updated_at=dt.datetime(2026, 9, 2)))
    return {"shop": shop, "reports": tmp_path / "reports", "posted": got}


def test_a_night_with_critical_findings_fails_writes_the_report_and_notifies(dag, night):
    for task in dag.tasks:
        task.retries = 0
    dr = dag.test(logical_date=dt.datetime(2026, 11, 1, 23, 30, tzinfo=dt.timezone.utc),
                  run_conf={"verify_copies": False, "send_removals": False})
    states = {ti.task_id: str(ti.state) for ti in dr.get_task_instances()}
    assert str(dr.state) == "failed" and states["verdict"] == "failed", states
    assert all(states[t] == "success" for t in states if t != "verdict"), states
    from airflow import settings as airflow_settings

    with airflow_settings.engine.connect() as conn:
        stored = [str(r[0]) for r in conn.execute(sa.text("SELECT value FROM xcom WHERE run_id = :r"), {"r": dr.run_id})]
        stored += [str(r[0]) for r in conn.execute(sa.text(
            "SELECT rendered_fields FROM rendered_task_instance_fields WHERE run_id = :r"), {"r": dr.run_id})]
        summary = next(json.loads(r[0]) if isinstance(r[0], str) else r[0] for r in conn.execute(sa.text(
            "SELECT value FROM xcom WHERE run_id = :r AND task_id = 'write_report'"), {"r": dr.run_id}))
    while isinstance(summary, str):
        summary = json.loads(summary)
    assert summary["day"] == "2026-11-01" and summary["verdict"] == "fail"
    html = summary["report_html"]
    assert html.startswith(str(night["reports"])) and open(html).read().count('<svg class="chart"') == 3
    assert any("T-DAG-1" in c for c in summary["critical"])                         # the overdue erasure
    assert any("adgrid_customer_match" in c and "NOT SENT" in c for c in summary["critical"])  # sending was off
    # the notifier: posted to the privacy_alerts connection, and kept in the outbox
    assert night["posted"], "no notification was posted"
    text = json.loads(night["posted"][0])["text"]
    assert "FAIL" in text and html in text
    assert list((night["reports"] / "audit" / "notifications").glob("*.json"))
    # nothing Airflow keeps (XCom, rendered fields) or the report holds is personal data
    con = sqlite3.connect(night["shop"])
    needles = {v for row in con.execute("SELECT email, phone, first_name || ' ' || last_name, street FROM customers")
               for v in row}
    haystack = " ".join(stored) + open(html).read() + open(summary["report_json"]).read()
    assert [n for n in needles if n and len(n) > 4 and n in haystack] == []
