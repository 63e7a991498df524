"""Make docs/audit_report.png: the audit report of a demo night with planted findings, in headless Chromium.

    python -m sandbox.demo --state-dir /tmp/demo_state       # the demo: feeds delivered on 2026-11-01
    python docs/audit_screenshot.py /tmp/demo_state           # copies its shop and ledger, plants, audits, shoots

What is planted on the copies (never on the demo's own files): two weeks of earlier deliveries (the ledger rows
of the demo night, re-dated, with other row counts) so the history chart has a history; three people in
AdGrid's audience opting out after the delivery; a new column `customers.loyalty_phone`; erasure requests
with vendors at several distances from their due date, one overdue. Vendor copies are not read back and no
removal list is sent (the sandbox is not running), which the report says.
"""
from __future__ import annotations

import datetime as dt
import random
import shutil
import sqlite3
import sys
import tempfile
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "include"), str(ROOT)]
DAY = dt.date(2026, 11, 1)


def main(demo_state: Path, out: Path = ROOT / "docs" / "audit_report.png") -> None:
    import sqlalchemy as sa

    from vendorprivacy.audit import browser
    from vendorprivacy.audit.context import AuditContext
    from vendorprivacy.audit.run import run_audit
    from vendorprivacy.keys import Keys
    from vendorprivacy.ledger import Ledger
    from vendorprivacy.ledger import tables as t
    from vendorprivacy.minimise.eligibility import eligible_ids_query
    from vendorprivacy.policy import load_notice, load_register

    register, notice = load_register(), load_notice()
    keys = Keys(b"demo-token-key-not-for-production", b"demo-subject-key-not-for-production")  # the demo's
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for name in ("shop.db", "ledger.db"):
            shutil.copy(demo_state / name, tmp / name)
        ledger = Ledger(f"sqlite:///{tmp / 'ledger.db'}")
        rng = random.Random(7)
        with ledger.engine.begin() as conn:
            rows = [dict(r._mapping) for r in conn.execute(sa.select(t.deliveries))]
            for back in range(1, 15):
                day = DAY - dt.timedelta(days=back)
                for r in rows:
                    weekly = r["feed_id"] in ("adgrid_customer_match", "socialreach_custom_audience")
                    if weekly and back % 7:
                        continue
                    scale = 1 + rng.uniform(-0.25, 0.25) if (r["row_count"] or 0) > 100 else rng.uniform(0.4, 1.6)
                    conn.execute(t.deliveries.insert().values({**r, "delivery_id": str(uuid.uuid4()), "logical_date": day,
                                                               "row_count": max(1, round((r["row_count"] or 1) * scale))}))
            for i, (vendor, days_left, status) in enumerate([("reviewhub", -3, "sent"), ("mailwave", 2, "acknowledged"),
                                                             ("parcelpost", 5, "sent"), ("adgrid", 12, "sent"),
                                                             ("payflow", 20, "acknowledged"), ("fraudshield", 33, "sent")]):
                rid = str(uuid.uuid4())
                conn.execute(t.erasure_requests.insert().values(
                    request_id=rid, ticket=f"T-{1040 + i}", regulation="ccpa", request_type="erasure",
                    received_on=DAY - dt.timedelta(days=45 - days_left), source="cli", status="in_progress",
                    due=DAY + dt.timedelta(days=days_left), filed_at=dt.datetime(2026, 10, 1)))
                conn.execute(t.erasure_pairs.insert().values(
                    pair_id=str(uuid.uuid4()), request_id=rid, vendor=vendor, status=status,
                    created_at=dt.datetime(2026, 10, 1), updated_at=dt.datetime(2026, 10, 2)))
        _, adgrid = register.feed("adgrid_customer_match")
        sql, params = eligible_ids_query(adgrid, DAY)
        with sa.create_engine(f"sqlite:///{tmp / 'shop.db'}").connect() as c:
            ids = [r[0] for r in c.execute(sa.text(sql + " ORDER BY c.customer_id"), params)][:3]
        con = sqlite3.connect(tmp / "shop.db")
        later = (dt.datetime.now(dt.timezone.utc).replace(tzinfo=None) + dt.timedelta(minutes=1)).isoformat(" ")
        con.executemany("UPDATE consents SET sale_share_opt_out = 1, updated_at = ? WHERE customer_id = ?",
                        [(later, i) for i in ids])
        con.execute("ALTER TABLE customers ADD COLUMN loyalty_phone TEXT")
        con.execute("UPDATE customers SET loyalty_phone = phone WHERE customer_id % 3 = 0")
        con.commit()
        con.close()
        ctx = AuditContext(register=register, notice=notice, ledger=ledger, shop_url=f"sqlite:///{tmp / 'shop.db'}",
                           keys=keys, day=DAY, reports_dir=tmp / "reports", verify_copies=False, send_removals=False,
                           run_id="docs-screenshot")
        summary = run_audit(ctx)
        print(f"{summary['verdict']}: {summary['counts']}")
        drawn = browser.charts_drawn(browser.dump_dom(Path(summary["report_html"])))
        browser.screenshot(Path(summary["report_html"]), out, width=1100, height=2560)
        print(f"{drawn} charts drawn; {out} ({out.stat().st_size // 1024} kB)")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / ".state")
