"""The erasure_propagation DAG: the trigger form, its shape, and real runs under dag.test() with TEST-ONLY fake
vendor protocols (a dry run; a run with approval given through Airflow's human-in-the-loop API; a run
without). XCom and rendered fields carry no personal data."""
from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import threading
import time

import pytest
import sqlalchemy as sa

from vendorprivacy.erasure import intake, propagate
from vendorprivacy.erasure import store as st
from vendorprivacy.erasure.identity import IdentityCipher
from vendorprivacy.ledger import Ledger
from vendorprivacy.minimise import normalise as n

from tests.conftest import ROOT
from tests.unit.test_erasure_support import IDENTITY_SECRET, FakeVendors, customer, shop  # noqa: F401


@pytest.fixture(scope="module")
def dag():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags" / "erasure_propagation.py"))
    assert bag.import_errors == {}
    return bag.dags["erasure_propagation"]


def test_trigger_form_is_clear_and_pii_free(dag):
    assert dag.schedule is None or str(dag.timetable.summary).lower() in ("none", "never")
    params = dag.params
    assert list(params.keys()) == ["requests", "dry_run", "require_approval", "approval_threshold",
                                   "wait_for_answers", "alert_margin_days"]
    for name in params:
        p = params.get_param(name)
        assert p.schema.get("title") and len(p.description or "") > 30, name
    assert params["requests"] == "all pending" and params["dry_run"] is True and params["require_approval"] is False
    assert "@" in params.get_param("requests").schema["pattern"]      # an e-mail cannot be typed into the form
    from airflow.sdk import Param

    with pytest.raises(Exception):
        Param("jane@example.com", **params.get_param("requests").schema).resolve()


def test_shape_mapped_vendors_reschedule_sensor_approval_and_deadline(dag):
    tasks = dag.task_dict
    assert [t.task_id for t in dag.topological_sort()][:3] == ["select_requests", "resolve_and_suppress", "route"]
    from airflow.providers.standard.operators.hitl import ApprovalOperator

    assert isinstance(tasks["approve"], ApprovalOperator)
    assert tasks["approve"].response_timeout and tasks["approve"].execution_timeout
    sensor = tasks["wait_for_answers"].partial_kwargs          # a mapped sensor: one per vendor
    assert sensor["mode"] == "reschedule" and sensor["timeout"] > dt.timedelta(0) and sensor["soft_fail"]
    assert sensor["silent_fail"]                                 # a 503 from a vendor is "not yet", not a failure
    assert tasks["submit"].downstream_task_ids == {"wait_for_answers"}
    assert dag.deadline is not None
    for t in dag.tasks:
        assert t.owner == "privacy-team" and t.retries >= 1 and t.execution_timeout is not None, t.task_id


# ------------------------------------------------------------------------------------ dag.test() runs
@pytest.fixture(scope="module")
def airflow_db():
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True, capture_output=True, env=os.environ)
    from airflow import settings as airflow_settings

    airflow_settings.configure_orm()


@pytest.fixture
def env(tmp_path, monkeypatch, shop, airflow_db):
    url, planted = shop
    ledger_path = tmp_path / "ledger.db"
    monkeypatch.setenv("AIRFLOW_CONN_SHOP_DB", json.dumps({"conn_type": "sqlite", "host": url.removeprefix("sqlite:///")}))
    monkeypatch.setenv("AIRFLOW_CONN_LEDGER_DB", json.dumps({"conn_type": "sqlite", "host": str(ledger_path)}))
    monkeypatch.setenv("AIRFLOW_CONN_VENDORPRIVACY_KEYS", json.dumps({"conn_type": "generic", "extra": {
        "token_key": "dag-token", "subject_key": "dag-subject", "identity_key": IDENTITY_SECRET}}))
    monkeypatch.setenv("VENDORPRIVACY_REPORTS_DIR", str(tmp_path / "reports"))
    led = Ledger(f"sqlite:///{ledger_path}")
    led.migrate()
    store = st.ErasureStore(led)
    cid = planted["email_plus_tag"][0]
    c = customer(url, cid)
    intake.file_request(store, IdentityCipher(IDENTITY_SECRET), ticket="T-77", regulation="ccpa",
                        request_type="erasure", email=c["email"])
    fakes = FakeVendors()
    original = propagate.context_from_settings
    monkeypatch.setattr(propagate, "context_from_settings", lambda **kw: original(protocol_factory=fakes, **kw))
    return {"store": store, "ledger": led, "fakes": fakes, "customer": c, "reports": tmp_path / "reports"}


def _build():
    from vendorprivacy.orchestration.erasure_dag import build_erasure_dag

    d = build_erasure_dag(poke_interval=1, wait_timeout=dt.timedelta(seconds=60), deadline_alert=False)
    for t in d.tasks:
        t.retries = 0
    return d


def _states(dr) -> dict:
    return {(ti.task_id, ti.map_index): str(ti.state) for ti in dr.get_task_instances()}


def _airflow_text(run_id: str) -> str:
    """Everything Airflow stored about the run that a user can see: XCom values and rendered fields."""
    from airflow import settings as airflow_settings

    with airflow_settings.engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT value FROM xcom WHERE run_id = :r"), {"r": run_id}).all()
        rendered = conn.execute(sa.text("SELECT rendered_fields FROM rendered_task_instance_fields WHERE run_id = :r"),
                                {"r": run_id}).all()
    return " ".join(str(r[0]) for r in rows + rendered).lower()


def _no_pii(text: str, c: dict) -> None:
    for pii in (n.email(c["email"]), c["last_name"].lower(), n.phone_e164(c["phone"], c["phone_country"])):
        assert pii not in text


def test_dag_dry_run_sends_and_suppresses_nothing(env):
    dr = _build().test(run_conf={"dry_run": True})
    states = _states(dr)
    assert str(dr.state) == "success", states
    assert states[("dry_run_report", -1)] == "success" and states[("plan_batches", -1)] == "skipped"
    assert env["fakes"].sent() == {} and env["ledger"].suppressed() == set()
    assert env["store"].pairs() == [] and env["store"].requests()[0].status == "filed"
    report = json.loads(next((env["reports"] / "erasure" / "dry_runs").glob("*.json")).read_text())
    assert report["requests_detail"][0]["ticket"] == "T-77" and report["vendors"]["adgrid"]["pairs"] == {"not_applicable": 1}
    _no_pii(_airflow_text(dr.run_id) + json.dumps(report).lower(), env["customer"])


def test_dag_run_without_approval(env):
    dr = _build().test(run_conf={"dry_run": False})
    states = _states(dr)
    assert str(dr.state) == "success", states
    assert states[("approve", -1)] == "skipped" and states[("no_approval_needed", -1)] == "success"
    assert sum(1 for (t, _), s in states.items() if t == "submit" and s == "success") == 6   # the service providers
    assert env["fakes"].sent() == {v: 1 for v in ("callvault", "fraudshield", "mailwave", "parcelpost", "payflow",
                                                  "reviewhub")}
    req = env["store"].requests()[0]
    assert req.status == "complete" and req.purged_at is not None
    assert len(env["ledger"].suppressed()) == 1
    assert (env["reports"] / "erasure" / f"{req.request_id}.html").exists()
    _no_pii(_airflow_text(dr.run_id), env["customer"])


def _respond_when_asked(dag_id: str, decision: str, stop: threading.Event) -> None:
    """Answer the approval as a user would in the UI (the same code path as the REST API's PATCH)."""
    from airflow import settings as airflow_settings
    from airflow.api_fastapi.core_api.datamodels.hitl import UpdateHITLDetailPayload
    from airflow.api_fastapi.core_api.routes.public.hitl import update_hitl_detail
    from airflow.models.taskinstance import TaskInstance as TI

    class User:
        def get_id(self):
            return "dpo-1"

        def get_name(self):
            return "Dana Privacy-Officer"

    while not stop.is_set():
        with airflow_settings.Session() as session:
            ti = session.query(TI).filter(TI.dag_id == dag_id, TI.task_id == "approve",
                                          TI.state == "awaiting_input").first()
            if ti is not None:
                update_hitl_detail(dag_id=dag_id, dag_run_id=ti.run_id, task_id="approve", map_index=-1,
                                   update_hitl_detail_payload=UpdateHITLDetailPayload(chosen_options=[decision]),
                                   user=User(), session=session)
                session.commit()
                return
        time.sleep(0.5)


@pytest.mark.parametrize("decision", ["Approve", "Reject"])
def test_dag_run_with_approval(env, decision):
    stop = threading.Event()
    responder = threading.Thread(target=_respond_when_asked, args=("erasure_propagation", decision, stop), daemon=True)
    responder.start()
    try:
        dr = _build().test(run_conf={"dry_run": False, "require_approval": True})
    finally:
        stop.set()
        responder.join(timeout=5)
    states = _states(dr)
    assert str(dr.state) == "success", states
    req = env["store"].requests()[0]
    events = {e.event: e for e in env["store"].timeline(req.request_id) if e.scope == "request"}
    assert len(env["ledger"].suppressed()) == 1          # suppression happens before the approval, either way
    if decision == "Approve":
        assert events["approved"].actor == "Dana Privacy-Officer"
        assert req.status == "complete" and len(env["fakes"].sent()) == 6
        sent = min(e.at for e in env["store"].timeline(req.request_id) if e.event == "sent")
        assert events["approved"].at <= sent
        report = json.loads((env["reports"] / "erasure" / f"{req.request_id}.json").read_text())
        assert report["approval"][0]["by"] == "Dana Privacy-Officer"
    else:
        assert "rejected" in events and env["fakes"].sent() == {}
        assert states[("plan_batches", -1)] == "skipped" and req.status == "in_progress"
