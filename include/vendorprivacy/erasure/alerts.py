"""Deadline alerts: which requests and (request, vendor) pairs are open near or past their legal due date.

`deadline_check` is the one function the erasure DAG (its last task), the nightly audit and the CLI call.
Each alert is appended to the request's timeline once per level (at_risk, overdue, vendor_late), so a
daily check raises each alert once and the evidence shows when it was raised. Alerts are PII-free
(ticket, request id, vendor, dates) and go to the log (WARNING) and to <reports>/alerts/<date>.json; a
notifier (e-mail, chat) can be attached to the DAG task or built on the returned list.

Airflow's own DeadlineAlert (airflow.sdk) watches a DAG *run* (e.g. "queued + 26 h"), not a legal due date
weeks away: the erasure DAG uses it to flag a run that overruns its answer-waiting window, and its
callback (`run_deadline_missed`) runs `deadline_check`, so open pairs are reported even then.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from . import deadlines
from . import store as st

log = logging.getLogger(__name__)
LEVELS = ("overdue", "at_risk", "vendor_late")


@dataclass(frozen=True)
class Alert:
    level: str                 # overdue | at_risk | vendor_late
    request_id: str
    ticket: str
    regulation: str
    request_type: str
    vendor: str | None         # None: the request itself (not yet propagated to any vendor)
    status: str
    due: dt.date
    days_left: int
    new: bool = True           # first time this alert is raised

    def line(self) -> str:
        who = f"vendor {self.vendor}" if self.vendor else "request (not yet sent to vendors)"
        when = f"{-self.days_left} day(s) overdue" if self.days_left < 0 else f"{self.days_left} day(s) left"
        return (f"[{self.level.upper()}] {self.regulation} {self.request_type} {self.ticket}: {who} is "
                f"'{self.status}', due {self.due} ({when})")


def _day(now: dt.datetime | dt.date | None) -> dt.date:
    if now is None:
        return dt.datetime.now(dt.timezone.utc).date()
    return now.date() if isinstance(now, dt.datetime) else now


def deadline_check(store: st.ErasureStore, now: dt.datetime | dt.date | None = None, *,
                   margin_days: int = deadlines.DEFAULT_MARGIN_DAYS, register=None, record: bool = True) -> list[Alert]:
    """Every open pair at risk (due within margin_days) or overdue, every filed-but-not-propagated request in the
    same situation, and (with a register) every pair a vendor has left unanswered longer than its
    `expected_response_days`. With `record`, each alert is added to the timeline once."""
    today = _day(now)
    alerts: list[Alert] = []
    open_reqs = store.requests(statuses=[st.FILED, st.IN_PROGRESS])
    ids = [r.request_id for r in open_reqs]
    pairs = store.pairs(ids, statuses=st.OPEN) if ids else []
    for r in open_reqs:
        if r.status == st.FILED and deadlines.days_left(r.effective_due, today) <= margin_days:
            level = "overdue" if deadlines.is_overdue(r.effective_due, today) else "at_risk"
            alerts.append(Alert(level, r.request_id, r.ticket, r.regulation, r.request_type, None, r.status,
                                r.effective_due, deadlines.days_left(r.effective_due, today)))
    sent_at: dict[str, dt.datetime] = {}
    if register is not None and pairs:
        for rid in {p.request_id for p in pairs}:
            for e in store.timeline(rid):
                if e.event == st.SENT:
                    sent_at[f"{rid}/{e.scope}"] = e.at
    for p in pairs:
        if deadlines.overdue(p, today):
            level = "overdue"
        elif deadlines.at_risk(p, today, margin_days):
            level = "at_risk"
        else:
            level = None
            if register is not None and p.status in (st.SENT, st.ACKNOWLEDGED) and p.vendor in register.vendors:
                started = sent_at.get(f"{p.request_id}/{p.vendor}")
                expected = register.vendors[p.vendor].erasure.expected_response_days
                if started and (today - started.date()).days > expected:
                    level = "vendor_late"
        if level:
            alerts.append(Alert(level, p.request_id, p.ticket, p.regulation, p.request_type, p.vendor, p.status,
                                p.due, deadlines.days_left(p.due, today)))
    if record and alerts:
        rows = [store._event_row(a.request_id, a.vendor or st.REQUEST_SCOPE, f"alert_{a.level}", actor="deadline_check",
                                 detail=a.line()) for a in alerts]
        with store.engine.begin() as conn:
            present = store.events_present(conn, rows)
            store.add_events_once(conn, rows)
        alerts = [Alert(**{**asdict(a), "new": (r["request_id"], r["scope"], r["event"]) not in present})
                  for a, r in zip(alerts, rows)]
    return sorted(alerts, key=lambda a: (LEVELS.index(a.level), a.due, a.ticket, a.vendor or ""))


def publish(alerts: list[Alert], reports_dir: Path | None = None, now: dt.datetime | None = None) -> Path | None:
    """Log every alert (new ones at WARNING) and write them to <reports>/alerts/<date>.json."""
    for a in alerts:
        log.log(logging.WARNING if a.new else logging.INFO, a.line())
    if reports_dir is None:
        return None
    stamp = (now or dt.datetime.now(dt.timezone.utc)).strftime("%Y-%m-%d")
    path = Path(reports_dir) / "alerts" / f"{stamp}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps([{**asdict(a), "due": a.due.isoformat()} for a in alerts], indent=2))
    os.replace(tmp, path)
    return path


def summary(alerts: list[Alert]) -> dict:
    return {"alerts": len(alerts), "new": sum(a.new for a in alerts),
            **{lvl: sum(a.level == lvl for a in alerts) for lvl in LEVELS},
            "tickets": sorted({a.ticket for a in alerts})[:50]}


def run_deadline_missed(context: dict | None = None, margin_days: int = deadlines.DEFAULT_MARGIN_DAYS, **_) -> dict:
    """Callback of the erasure DAG's DeadlineAlert: the run overran its window; report every open pair now."""
    from vendorprivacy.orchestration import settings

    from .evidence import reports_dir

    run = (context or {}).get("dag_run") or {}
    run_id = run.get("run_id") if isinstance(run, dict) else getattr(run, "run_id", None)
    log.warning("erasure run %s is still running past its deadline; checking every open request", run_id)
    found = deadline_check(st.ErasureStore(settings.ledger()), margin_days=margin_days)
    publish(found, reports_dir())
    return summary(found)
