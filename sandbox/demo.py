"""The demo: build the shop, check the register, run every vendor feed DAG against the sandbox vendors.

    python -m sandbox.demo --state-dir .state

Feeds run through Airflow's `dag.test()` (in-process, SQLite metadata database), exactly as the
scheduler would run their tasks; the sandbox vendors then load what they received, and the table
printed at the end comes from the ledger and from the vendors' own stores.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEMO_DATE = dt.datetime(2026, 11, 1, 6, 0, tzinfo=dt.timezone.utc)  # the shop's as-of date: yesterday has orders


def _step(msg: str) -> None:
    print(f"\n==> {msg}", flush=True)


def _prepare_env(state: Path) -> None:
    from vendorprivacy.orchestration.airflow_settings import connection_env

    os.environ.update(connection_env(ROOT / "airflow_settings.yaml", base_dir=ROOT))
    os.environ["AIRFLOW_CONN_SHOP_DB"] = f'{{"conn_type": "sqlite", "host": "{state / "shop.db"}"}}'
    os.environ["AIRFLOW_CONN_LEDGER_DB"] = f'{{"conn_type": "sqlite", "host": "{state / "ledger.db"}"}}'
    os.environ["VENDORPRIVACY_STAGING_DIR"] = str(state / "staging")
    os.environ.setdefault("AIRFLOW_HOME", str(state / "airflow"))
    os.environ.setdefault("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", f"sqlite:///{state / 'airflow' / 'airflow.db'}")
    os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(ROOT / "dags"))
    os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")


def run(state: Path, customers: int, seed: int) -> int:
    started = time.perf_counter()
    state.mkdir(parents=True, exist_ok=True)
    _prepare_env(state)

    _step("Checking the notice and the vendor register")
    from vendorprivacy.cli import main as cli
    if cli(["policy", "check"]) != 0:
        return 1

    _step(f"Building the synthetic shop ({customers} customers, seed {seed})")
    if cli(["shop", "generate", "--url", f"sqlite:///{state / 'shop.db'}", "--customers", str(customers),
            "--seed", str(seed)]) != 0:
        return 1

    _step("Preparing the Airflow metadata database and a fresh ledger")
    for leftover in (state / "ledger.db", state / "staging", state / "sandbox"):
        shutil.rmtree(leftover, ignore_errors=True) if leftover.is_dir() else leftover.unlink(missing_ok=True)
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True, stdout=subprocess.DEVNULL)

    from sandbox import Sandbox
    from vendorprivacy.orchestration.feed_dags import build_feed_dags

    _step("Starting the sandbox vendors (OpenSSH sftp, moto S3, HTTPS vendor API)")
    with Sandbox(state / "sandbox") as sb:
        sb.apply_env()
        print(f"sandbox up in {sb.startup_seconds:.1f}s")
        results = {}
        for dag_id, dag in sorted(build_feed_dags().items()):
            _step(f"Running {dag_id} for {DEMO_DATE:%Y-%m-%d}")
            for t in dag.tasks:  # dag.test() waits out real retry delays; in the demo a failure should show at once
                t.retries = 0
            dr = dag.test(logical_date=DEMO_DATE)
            results[dag_id] = str(dr.state)
        sb.ingest()
        _report(state, sb, results)
        audited = _audit(state)  # while the vendors are up: the audit reads their copies back
    print(f"\ndemo finished in {time.perf_counter() - started:.0f}s; ledger: {state / 'ledger.db'}")
    return 0 if all(s == "success" for s in results.values()) and audited else 1


def _report(state: Path, sb, results: dict) -> None:
    from vendorprivacy.ledger import Ledger
    from vendorprivacy.policy import load_register

    register = load_register()
    ledger = Ledger(f"sqlite:///{state / 'ledger.db'}")
    by_feed = {d.feed_id: d for d in ledger.deliveries()}
    print(f"\n{'vendor':12} {'feed':28} {'via':5} {'rows':>6} {'held':>6} {'bytes':>9}  {'sha256':16}  status / fields")
    for vendor, feed in register.feeds():
        d = by_feed.get(feed.id)
        held = len(sb.records(vendor.vendor))
        fields = ", ".join(f.name for f in feed.sent_fields)
        status = d.status if d else results.get(f"share_{feed.id}", "not run")
        print(f"{vendor.vendor:12} {feed.id:28} {vendor.transport.kind:5} {(d.row_count if d else 0) or 0:>6} "
              f"{held:>6} {(d.bytes if d else 0) or 0:>9}  {((d.sha256 if d else '') or '')[:16]:16}  {status}: {fields}")


def _audit(state: Path) -> bool:
    """The last step: the nightly_minimisation_audit DAG for the demo night; prints where its report is."""
    import json

    os.environ.setdefault("VENDORPRIVACY_REPORTS_DIR", str(state / "reports"))
    from vendorprivacy.orchestration.audit_dag import build_audit_dag

    _step(f"Running nightly_minimisation_audit for {DEMO_DATE:%Y-%m-%d}")
    dag = build_audit_dag()
    for t in dag.tasks:
        t.retries = 0
    dr = dag.test(logical_date=DEMO_DATE.replace(hour=23, minute=30))
    summary = json.loads(next(Path(os.environ["VENDORPRIVACY_REPORTS_DIR"], "audit").glob(
        f"{DEMO_DATE:%Y-%m-%d}/minimisation_audit.json")).read_text())
    counts = summary["counts"]
    print(f"\naudit {summary['audit']['day']}: {summary['verdict'].upper()} ({counts['critical']} critical, "
          f"{counts['warning']} warning, {counts['info']} info; run {dr.state})")
    for f in summary["findings"]:
        print(f"  [{f['severity']}] {f['vendor'] or '-'} / {f['feed'] or '-'}: {f['title']}")
    folder = Path(os.environ["VENDORPRIVACY_REPORTS_DIR"]) / "audit" / summary["audit"]["day"]
    print(f"audit report: {folder / 'minimisation_audit.html'}\n  JSON twin:  {folder / 'minimisation_audit.json'}"
          f"\n  data map:   {folder / 'data_map.html'} (and .csv)")
    return str(dr.state) == "success"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--state-dir", type=Path, default=ROOT / ".state")
    p.add_argument("--customers", type=int, default=10_000)
    p.add_argument("--seed", type=int, default=42)
    args = p.parse_args(argv)
    return run(args.state_dir.resolve(), args.customers, args.seed)


if __name__ == "__main__":
    sys.exit(main())
