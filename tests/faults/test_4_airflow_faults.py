"""Faults of the platform itself, on a running Airflow (scripts/airflow_up.py's Stack: LocalExecutor, PostgreSQL
metadata DB, the suite's sandbox vendors): a task process killed mid-delivery and retried by Airflow; the
scheduler killed mid-run and restarted; a forged status callback posted to the API server's plugin."""
from __future__ import annotations

import base64
import json
import os
import signal
import time

import httpx
import pytest

from tests.faults.conftest import STATE


@pytest.fixture(scope="module")
def stack(sandbox):
    from scripts.airflow_up import Stack

    st = Stack(STATE / "stack", db="vp_faults_airflow", ledger_db="vp_faults_airflow_ledger",
               sandbox_env=sandbox.airflow_env(), die_with_parent=True)
    st.start(timeout=480)
    try:
        yield st
    finally:
        st.stop()


@pytest.fixture(scope="module")
def api(stack):
    return stack.api()


def _ti(api, dag_id, run_id, task_id) -> dict:
    return next(t for t in api.task_instances(dag_id, run_id) if t["task_id"] == task_id)


def _wait(cond, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(1)
    raise TimeoutError(f"{what} not within {timeout}s")


def _ledger(stack):
    from vendorprivacy.ledger import Ledger

    return Ledger(stack.ledger_url)


def test_task_process_killed_mid_delivery_is_retried(row, stack, api, sandbox):
    dag = "share_mailwave_subscribers"
    r = row("task process SIGKILLed mid-delivery (waiting on a 429 Retry-After)",
            "Airflow marks the try failed and retries it; delivered once, every row held once")
    sandbox.vendor_api.set_fault("mailwave", 429, retry_after=25, count=1)
    served0 = sandbox.vendor_api.stats("mailwave")["faults_served"]
    api.unpause(dag)
    run = _wait(lambda: (api.runs(dag) or [None])[0], 120, "the scheduled run")
    rid = run["dag_run_id"]
    _wait(lambda: sandbox.vendor_api.stats("mailwave")["faults_served"] > served0, 240, "the deliver task's first POST")
    ti = _ti(api, dag, rid, "deliver")
    assert ti["state"] == "running" and ti["pid"], ti
    os.kill(int(ti["pid"]), signal.SIGKILL)
    import datetime as dt

    killed_at = dt.datetime.now(dt.timezone.utc)
    done = api.wait_run(dag, rid, timeout=480)
    tries = api.get(f"/api/v2/dags/{dag}/dagRuns/{rid}/taskInstances/deliver/-1/tries").json()["task_instances"]
    first = next(t for t in tries if t["try_number"] == 1)
    noticed = (dt.datetime.fromisoformat(first["end_date"].replace("Z", "+00:00")) - killed_at).total_seconds()
    after_kill = {"state": first["state"]}
    api.pause(dag)
    final = _ti(api, dag, rid, "deliver")
    ledger = _ledger(stack)
    ds = [d for d in ledger.deliveries() if d.feed_id == "mailwave_subscribers"]
    entries = [e for e in sandbox.entries("mailwave", "mailwave_subscribers") if ds and e["delivery_id"] == ds[0].delivery_id]
    keys = [json.dumps(e["row"], sort_keys=True) if "row" in e else str(e) for e in entries]
    r["observed"] = (f"killed pid {ti['pid']} (try {ti['try_number']}); try 1 ended '{after_kill['state']}' "
                     f"{noticed:.0f}s after the kill; run {done['state']} on try {final['try_number']}; "
                     f"ledger {[d.status for d in ds]}; held {len(entries)}/{ds[0].row_count if ds else 0} rows")
    assert after_kill["state"] in ("up_for_retry", "failed") and noticed < 60
    assert done["state"] == "success" and final["try_number"] >= 2
    assert [d.status for d in ds] == ["delivered"] and len(entries) == ds[0].row_count > 0


def test_scheduler_killed_mid_run_and_restarted(row, stack, api, sandbox):
    dag = "share_adgrid_customer_match"
    r = row("scheduler SIGKILLed mid-run, then restarted", "the run finishes after the restart; delivered once")
    api.unpause(dag)
    run = _wait(lambda: (api.runs(dag) or [None])[0], 120, "the scheduled run")
    rid = run["dag_run_id"]
    _wait(lambda: _ti(api, dag, rid, "prepare")["state"] == "running", 180, "prepare running")
    pid = int((stack.pid_dir / "scheduler.pid").read_text())
    os.kill(pid, signal.SIGKILL)                       # a crash: no graceful shutdown
    states_at_kill = {t["task_id"]: t["state"] for t in api.task_instances(dag, rid)}
    time.sleep(5)
    stack.start_component("scheduler")
    restarted = time.monotonic()
    done = api.wait_run(dag, rid, timeout=480)
    api.pause(dag)
    tis = {t["task_id"]: (t["state"], t["try_number"]) for t in api.task_instances(dag, rid)}
    ledger = _ledger(stack)
    ds = [d for d in ledger.deliveries() if d.feed_id == "adgrid_customer_match"]
    sandbox.ingest("adgrid")
    entries = [e for e in sandbox.entries("adgrid", "adgrid_customer_match") if ds and e["delivery_id"] == ds[0].delivery_id]
    r["observed"] = (f"killed while {states_at_kill}; run {done['state']} {time.monotonic() - restarted:.0f}s after "
                     f"restart, tries {({k: v[1] for k, v in tis.items()})}; ledger {[d.status for d in ds]}, "
                     f"held {len(entries)}/{ds[0].row_count if ds else 0}")
    assert done["state"] == "success"
    assert [d.status for d in ds] == ["delivered"] and len(entries) == ds[0].row_count > 0


def test_forged_callback_to_the_api_server(row, stack, sandbox):
    r = row("forged OpenDSR callback POSTed to the API server (plugin)", "403, nothing believed")
    body = json.dumps({"subject_request_id": "6f1c2d7e-3b4a-4c5d-8e9f-0a1b2c3d4e5f", "request_status": "completed"}).encode()
    resp = httpx.post(f"{stack.url}/erasure-callbacks/opendsr/fraudshield", content=body, timeout=30,
                      headers={"X-OpenDSR-Processor-Domain": "fraudshield.sandbox.invalid",
                               "X-OpenDSR-Signature": base64.b64encode(b"\x02" * 256).decode(),
                               "Content-Type": "application/json"})
    r["observed"] = f"HTTP {resp.status_code} {resp.text[:70]}"
    assert resp.status_code == 403
