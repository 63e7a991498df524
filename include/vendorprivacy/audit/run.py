"""One audited night: every check, then the report. The DAG runs the checks as separate tasks (run_check) and
the report as its own (write_report); the CLI, the demo and the bench call run_audit, which does the same in
one process. Everything returned is PII-free (it goes to XCom)."""
from __future__ import annotations

import datetime as dt
import logging
import time

from . import findings as fd
from .context import AuditContext

log = logging.getLogger(__name__)

CHECKS = ("delivery", "schema_drift", "register_drift", "consent_drift", "deadline")


def run_check(ctx: AuditContext, name: str) -> dict:
    """Run one check; {"check", "findings": [dict], "stats": {...}, "seconds"}."""
    from . import tables

    tables.migrate(ctx.ledger.engine)
    started = time.perf_counter()
    if name == "delivery":
        from .deliveries import recheck as fn
    elif name == "schema_drift":
        from .schema import drift as fn
    elif name == "register_drift":
        from .register import drift as fn
    elif name == "consent_drift":
        from .consent import drift as fn
    elif name == "deadline":
        from .deadlines import check as fn
    else:
        raise ValueError(f"unknown check {name!r} (known: {', '.join(CHECKS)})")
    found, stats = fn(ctx)
    seconds = round(time.perf_counter() - started, 3)
    for f in found:
        log.log(logging.WARNING if f.severity != fd.INFO else logging.INFO, f.line())
    log.info("audit %s for %s: %d finding(s) in %.2fs", name, ctx.day, len(found), seconds)
    return {"check": name, "findings": [f.to_dict() for f in found], "stats": stats, "seconds": seconds}


def write_report(ctx: AuditContext, results: list[dict], *, started_at: dt.datetime | None = None) -> dict:
    """Build and write the HTML report, its JSON twin and the data map; record the night. Returns the summary."""
    from .report import build, write

    report = build(ctx, results, started_at=started_at)
    paths = write(ctx, report)
    summary = {"day": ctx.day.isoformat(), "run_id": ctx.run_id, "verdict": report["verdict"],
               "counts": report["counts"], **{k: str(v) for k, v in paths.items()},
               "critical": [f"{f['vendor'] or '-'} / {f['feed'] or '-'}: {f['title']}"
                            for f in report["findings"] if f["severity"] == fd.CRITICAL][:20]}
    log.info("audit report for %s: %s (%s); %s", ctx.day, report["verdict"].upper(),
             ", ".join(f"{n} {s}" for s, n in report["counts"].items()), paths["report_html"])
    return summary


def run_audit(ctx: AuditContext, checks=CHECKS) -> dict:
    """Every check, then the report; returns the summary plus per-check timings."""
    started_at = dt.datetime.now(dt.timezone.utc)
    t0 = time.perf_counter()
    results = [run_check(ctx, name) for name in checks]
    summary = write_report(ctx, results, started_at=started_at)
    summary["seconds"] = round(time.perf_counter() - t0, 3)
    summary["check_seconds"] = {r["check"]: r["seconds"] for r in results}
    return summary
