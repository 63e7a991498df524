"""End-to-end fixtures: one running Airflow per test session (scripts/airflow_up.py's Stack) on PostgreSQL,
with the sandbox vendors in this process (so tests can ask them what they hold and set their faults).

Runs only with VENDORPRIVACY_E2E=1 (`make e2e`; `make celery-e2e` adds VENDORPRIVACY_E2E_EXECUTOR=CeleryExecutor);
otherwise every test here is skipped, so `make test` stays as fast as it was. Every wait is bounded.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).parent
E2E = os.environ.get("VENDORPRIVACY_E2E") == "1"
EXECUTOR = os.environ.get("VENDORPRIVACY_E2E_EXECUTOR", "LocalExecutor")
FEED_TIMEOUT = float(os.environ.get("VENDORPRIVACY_E2E_FEED_TIMEOUT", "600"))
TIMINGS: dict[str, float] = {}
COUNTS: dict[str, int] = {}


def pytest_configure(config):
    config.addinivalue_line("markers", "e2e: needs a running Airflow (VENDORPRIVACY_E2E=1, make e2e)")


def pytest_collection_modifyitems(config, items):
    skip = pytest.mark.skip(reason="end-to-end: run with `make e2e` (VENDORPRIVACY_E2E=1)")
    for item in items:
        if HERE in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.e2e)
            if not E2E:
                item.add_marker(skip)


def pytest_terminal_summary(terminalreporter):
    if not TIMINGS:
        return
    terminalreporter.write_sep("-", f"e2e timings ({EXECUTOR})")
    for name, seconds in TIMINGS.items():
        terminalreporter.write_line(f"{name:45} {seconds:8.1f} s")
    for name, n in COUNTS.items():
        terminalreporter.write_line(f"{name:45} {n:8d}")
    out = ROOT / ".state" / f"e2e-{EXECUTOR}" / "timings.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"seconds": TIMINGS, "counts": COUNTS}, indent=2))


class timed:
    """with timed("stack up"): ... -> TIMINGS["stack up"]"""

    def __init__(self, name: str) -> None:
        self.name = name

    def __enter__(self):
        self.t0 = time.monotonic()
        return self

    def __exit__(self, *exc):
        TIMINGS[self.name] = round(time.monotonic() - self.t0, 1)


@pytest.fixture(scope="session")
def e2e_state() -> Path:
    state = ROOT / ".state" / f"e2e-{EXECUTOR}"
    state.mkdir(parents=True, exist_ok=True)
    return state


@pytest.fixture(scope="session")
def vendors(e2e_state):
    from sandbox import Sandbox

    sb = Sandbox(e2e_state / "sandbox", erasure_poll_interval=0.5)
    import shutil

    shutil.rmtree(sb.state_dir, ignore_errors=True)
    with timed("sandbox vendors up"):
        sb.start()
    try:
        yield sb
    finally:
        sb.stop()


@pytest.fixture(scope="session")
def stack(e2e_state, vendors):
    from scripts.airflow_up import Stack, marked_processes

    tag = "celery" if EXECUTOR == "CeleryExecutor" else "local"
    st = Stack(e2e_state / "stack", db=f"vp_e2e_{tag}", ledger_db=f"vp_e2e_{tag}_ledger", port=None,
               executor=EXECUTOR, celery_workers=2, die_with_parent=True,
               # staged files go through the shared staging bucket, as they must when workers are separate machines
               sandbox_env={**vendors.airflow_env(), "VENDORPRIVACY_STAGING_URL": vendors.staging_url()})
    with timed(f"stack up ({EXECUTOR})"):
        st.start(timeout=480)
    try:
        yield st
    finally:
        with timed("stack down"):
            left = st.stop()
        COUNTS["processes left after down"] = len(marked_processes(st.state_dir))
        assert not left or not marked_processes(st.state_dir)


@pytest.fixture(scope="session")
def api(stack):
    return stack.api()


@pytest.fixture(scope="session")
def stack_env(stack) -> dict[str, str]:
    return stack.env()


@pytest.fixture(scope="session")
def keys(stack_env):
    from vendorprivacy.keys import Keys

    extra = json.loads(stack_env["AIRFLOW_CONN_VENDORPRIVACY_KEYS"])["extra"]
    return Keys(extra["token_key"].encode(), extra["subject_key"].encode())


@pytest.fixture(scope="session")
def ledger(stack):
    from vendorprivacy.ledger import Ledger

    return Ledger(stack.ledger_url)


@pytest.fixture(scope="session")
def feed_dags() -> list[str]:
    from vendorprivacy.policy import load_register

    return sorted(f"share_{f.id}" for _, f in load_register().feeds())


@pytest.fixture(scope="session")
def scheduled_feeds(stack, api, vendors, feed_dags) -> dict[str, dict]:
    """Unpause every feed DAG as an operator would; the scheduler (not dag.test()) creates each DAG's latest
    scheduled run; wait for all of them, pause again (no second interval), let the vendors load what arrived."""
    with timed("scheduled feeds (8 DAGs, 24 tasks)"):
        for dag_id in feed_dags:
            api.unpause(dag_id)
        deadline = time.monotonic() + FEED_TIMEOUT
        runs: dict[str, dict] = {}
        while time.monotonic() < deadline:
            runs = {d: (api.runs(d) or [None])[0] for d in feed_dags}
            if all(r and r["state"] in ("success", "failed") for r in runs.values()):
                break
            time.sleep(3)
        for dag_id in feed_dags:
            api.pause(dag_id)
    unfinished = {d: (r or {}).get("state") for d, r in runs.items() if not r or r["state"] not in ("success", "failed")}
    assert not unfinished, f"feed runs not finished after {FEED_TIMEOUT:.0f}s: {unfinished}"
    vendors.ingest()
    return runs
