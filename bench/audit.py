"""Benchmark the nightly minimisation audit for one night.

    python bench/audit.py --customers 10000 [--customers 100000]

For each size: a copy of the synthetic shop (.state/bench/shop_<n>.db, built if missing), the sandbox vendors,
every feed delivered for the night (not timed), then 20 people in the advertising audiences opt out (so the
consent-drift check really sends removal lists) and the audit runs: every check, vendor copies read back
through the transports, the report written. Prints a table and writes bench/results/audit_<size>.json.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "include"), str(ROOT)]
os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
RESULTS = ROOT / "bench" / "results"
DAY = dt.date(2026, 11, 1)
OPT_OUTS = 20


def bench_size(customers: int) -> dict:
    from sandbox import Sandbox
    from vendorprivacy.audit.context import AuditContext
    from vendorprivacy.audit.run import run_audit
    from vendorprivacy.keys import Keys
    from vendorprivacy.ledger import Ledger
    from vendorprivacy.minimise.eligibility import eligible_ids_query
    from vendorprivacy.policy import load_notice, load_register
    from vendorprivacy.share import FeedRun, deliver, gate, prepare
    from vendorprivacy.shop.generate import generate_shop

    register, notice = load_register(), load_notice()
    keys = Keys(b"bench-audit-token", b"bench-audit-subject")
    cache = ROOT / ".state" / "bench" / f"shop_{customers}.db"
    cache.parent.mkdir(parents=True, exist_ok=True)
    if not cache.exists():
        t = time.perf_counter()
        generate_shop(f"sqlite:///{cache}", customers=customers, seed=42)
        print(f"shop of {customers} customers built in {time.perf_counter() - t:.1f}s", flush=True)
    with tempfile.TemporaryDirectory(dir=cache.parent) as tmp:
        tmp = Path(tmp)
        shop = tmp / "shop.db"
        shutil.copy(cache, shop)  # the audit night changes consents: never the cached shop
        shop_url = f"sqlite:///{shop}"
        with Sandbox(tmp / "sandbox") as sb:
            sb.apply_env()
            ledger = Ledger(f"sqlite:///{tmp / 'ledger.db'}")
            ledger.migrate()
            t = time.perf_counter()
            for vendor, feed in register.feeds():
                run = FeedRun(vendor, feed, DAY, shop_url, ledger, tmp / "staging", keys)
                prepare(run)
                gate(run)
                deliver(run)
            sb.ingest()
            feeds_s = time.perf_counter() - t
            print(f"  feeds delivered in {feeds_s:.1f}s (not part of the audit)", flush=True)
            _, adgrid = register.feed("adgrid_customer_match")
            sql, params = eligible_ids_query(adgrid, DAY)
            import sqlalchemy as sa

            with sa.create_engine(shop_url).connect() as c:
                ids = [r[0] for r in c.execute(sa.text(sql + " ORDER BY c.customer_id"), params)]
            con = sqlite3.connect(shop)
            later = (dt.datetime.now(dt.timezone.utc).replace(tzinfo=None) + dt.timedelta(seconds=1)).isoformat(" ")
            con.executemany("UPDATE consents SET sale_share_opt_out = 1, updated_at = ? WHERE customer_id = ?",
                            [(later, i) for i in ids[:: max(1, len(ids) // OPT_OUTS)][:OPT_OUTS]])
            con.commit()
            con.close()
            ctx = AuditContext(register=register, notice=notice, ledger=ledger, shop_url=shop_url, keys=keys, day=DAY,
                               reports_dir=tmp / "reports", protocol_options={"evidence_dir": tmp / "answers"})
            rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            t = time.perf_counter()
            summary = run_audit(ctx)
            total = time.perf_counter() - t
            report = json.loads(Path(summary["report_json"]).read_text())
            html_kb = round(Path(summary["report_html"]).stat().st_size / 1024, 1)
    checks = report["checks"]
    result = {
        "customers": customers, "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cores": os.cpu_count(), "loadavg": [round(x, 2) for x in os.getloadavg()]},
        "night": {"deliveries": checks["delivery"]["delivered"], "rows": sum(h["rows"] for h in
                                                                         report["charts"]["deliveries"]["history"]),
                  "planted_opt_outs": OPT_OUTS},
        "audit_s": round(total, 2), "check_s": summary["check_seconds"],
        "report_s": round(total - sum(summary["check_seconds"].values()), 2),
        "copies": checks["delivery"]["copies"], "people_checked": checks["consent_drift"]["people_checked"],
        "removal_lists_sent": checks["consent_drift"]["removal_lists_sent"],
        "people_in_removal_lists": checks["consent_drift"]["people_in_removal_lists"],
        "findings": report["counts"], "verdict": report["verdict"], "report_html_kb": html_kb,
        "peak_rss_mb_incl_feed_deliveries": round(max(rss0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024), 1),
        "feeds_s_not_counted": round(feeds_s, 1),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"audit_{customers}.json").write_text(json.dumps(result, indent=2))
    return result


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--customers", type=int, action="append")
    args = p.parse_args()
    print(f"{'customers':>9} {'deliv.':>6} {'rows':>8} {'people':>7} {'audit s':>8}  per check (s)")
    for size in args.customers or [10_000]:
        r = bench_size(size)
        per = ", ".join(f"{k} {v:.2f}" for k, v in r["check_s"].items())
        print(f"{size:>9} {r['night']['deliveries']:>6} {r['night']['rows']:>8} {r['people_checked']:>7} "
              f"{r['audit_s']:>8.2f}  {per}, report {r['report_s']:.2f}; copies {r['copies']['verified']} verified, "
              f"{r['people_in_removal_lists']} people in {r['removal_lists_sent']} removal lists", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
