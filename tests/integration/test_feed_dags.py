"""The generated feed DAGs run as Airflow runs them (dag.test(): real task runner, XCom, task logs) and
leave no personal data in Airflow's own storage: XCom, rendered fields, the logs table, console logs."""
from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from vendorprivacy.shop.generate import generate_shop

# Another day than test_feeds.py: the session shares one sandbox, and a delivery id is (feed, date).
LOGICAL = dt.datetime(2026, 10, 15, 6, 0, tzinfo=dt.timezone.utc)
FEEDS = ["share_adgrid_customer_match", "share_mailwave_subscribers", "share_parcelpost_manifest",
         "share_reviewhub_reviews"]


@pytest.fixture(scope="module")
def sandbox(module_sandbox):
    """This module's own vendors (a delivery id is (feed, day); other modules deliver too)."""
    return module_sandbox


@pytest.fixture(scope="module")
def airflow_env(tmp_path_factory, sandbox):
    state = tmp_path_factory.mktemp("state")
    shop = state / "shop.db"
    generate_shop(f"sqlite:///{shop}", customers=1000, seed=11)
    env = {
        "AIRFLOW_CONN_SHOP_DB": json.dumps({"conn_type": "sqlite", "host": str(shop)}),
        "AIRFLOW_CONN_LEDGER_DB": json.dumps({"conn_type": "sqlite", "host": str(state / "ledger.db")}),
        "AIRFLOW_CONN_VENDORPRIVACY_KEYS": json.dumps({"conn_type": "generic", "extra": {
            "token_key": "dag-test-token", "subject_key": "dag-test-subject"}}),
        "VENDORPRIVACY_STAGING_DIR": str(state / "staging"),
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    # The session's fresh Airflow home (tests/conftest.py) gets its metadata tables.
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True, capture_output=True, env=os.environ)
    home = Path(os.environ["AIRFLOW_HOME"])
    yield home, shop, state
    for k, v in saved.items():
        os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)


@contextlib.contextmanager
def console_to(path):
    """Send this process's stdout and stderr (file descriptors, so task runners are caught too) to a file."""
    sys.stdout.flush(), sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(path, "wb") as sink:
        os.dup2(sink.fileno(), 1), os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush(), sys.stderr.flush()
            os.dup2(saved[0], 1), os.dup2(saved[1], 2)
            os.close(saved[0]), os.close(saved[1])


@pytest.fixture(scope="module")
def ran(airflow_env, sandbox):
    from vendorprivacy.orchestration.feed_dags import build_feed_dags

    dags = build_feed_dags()
    states = {}
    with console_to(airflow_env[0] / "console.log"):
        for dag_id in FEEDS:
            for t in dags[dag_id].tasks:
                t.retries = 0
            states[dag_id] = str(dags[dag_id].test(logical_date=LOGICAL).state)
    sandbox.ingest()
    return states


def test_feed_dags_succeed_and_deliver(ran, airflow_env, sandbox):
    assert set(ran.values()) == {"success"}, ran
    ledger = sqlite3.connect(airflow_env[2] / "ledger.db")
    statuses = dict(ledger.execute("SELECT feed_id, status FROM deliveries"))
    assert statuses == {d.removeprefix("share_"): "delivered" for d in FEEDS}


def _decode(value):
    while isinstance(value, (str, bytes)):  # XCom values are stored JSON-encoded (sometimes twice)
        value = json.loads(value)
    return value


def test_xcom_carries_ids_counts_and_statuses(ran, airflow_env):
    from airflow.settings import engine

    with engine.connect() as conn:
        values = [_decode(v) for (v,) in conn.execute(sa.text(
            "SELECT value FROM xcom WHERE dag_id = 'share_adgrid_customer_match' AND task_id = 'deliver' AND key = 'return_value'"))]
    assert values and values[0]["status"] == "delivered" and values[0]["rows"] > 0
    summary = values[0]
    # ids, counts, checksums, paths, timings and statuses: flat scalars, nothing named after a data field
    assert all(isinstance(v, (str, int, float, bool)) or v is None for v in summary.values())
    assert not set(summary) & {"email", "email_sha256", "phone", "phone_sha256", "records", "rows_sample"}
    assert {"delivery_id", "status", "rows", "sha256"} <= set(summary)


def test_no_personal_data_in_airflow_storage_or_logs(ran, airflow_env):
    from airflow.settings import engine

    home, shop, _ = airflow_env
    con = sqlite3.connect(shop)
    needles = set()
    for email, phone, first, last in con.execute("SELECT email, phone, first_name, last_name FROM customers"):
        needles |= {email.strip().lower(), email.strip(), phone, f"{first} {last}"}
    with engine.connect() as conn:
        stored = []
        for table in ("xcom", "rendered_task_instance_fields", "log", "dag_run", "task_instance"):
            stored += [json.dumps([str(c) for c in row]) for row in conn.execute(sa.text(f"SELECT * FROM {table}"))]
    logs = [p.read_text(errors="replace") for p in home.rglob("*.log")] + [p.read_text(errors="replace")
                                                                          for p in home.rglob("*.json")]
    haystacks = stored + logs
    leaks = sorted({n for n in needles for h in haystacks if n and n in h})
    assert len(needles) > 2000 and len(haystacks) > 10
    assert leaks == []
