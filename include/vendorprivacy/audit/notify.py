"""Telling people: the message sent when a night has a critical finding, and the Airflow notifier that sends it.

Where it goes is the Airflow connection `privacy_alerts` (airflow_settings.yaml): conn_type http, host (and
schema/port), the webhook path in extra `endpoint`, and a bearer token as password. The message is JSON
``{"text": ..., "audit": {...}}`` (the "text" key is what chat webhooks display). Every message is also written
to <reports>/audit/notifications/<day>_<run>.json, so there is a record even when the webhook is unreachable.
A notifier never raises: a failed post is logged (the run has failed already; the log and the outbox tell).

Messages carry the verdict, counts, finding titles (vendor, feed, field and column names, counts) and the
report's path: never personal data.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import re
from pathlib import Path

from airflow.sdk import BaseNotifier

log = logging.getLogger(__name__)
CONN_ID = "privacy_alerts"


def message(summary: dict, *, dag_id: str | None = None, run_id: str | None = None) -> dict:
    counts = summary.get("counts", {})
    lines = [f"Nightly minimisation audit {summary.get('day')}: {str(summary.get('verdict', 'unknown')).upper()} "
             f"({counts.get('critical', 0)} critical, {counts.get('warning', 0)} warning)."]
    lines += [f"• {c}" for c in summary.get("critical", [])[:10]]
    if len(summary.get("critical", [])) > 10:
        lines.append(f"… and {len(summary['critical']) - 10} more")
    if summary.get("report_html"):
        lines.append(f"Report: {summary['report_html']}")
    return {"text": "\n".join(lines),
            "audit": {"day": summary.get("day"), "verdict": summary.get("verdict"), "counts": counts,
                      "report_html": summary.get("report_html"), "report_json": summary.get("report_json"),
                      "dag_id": dag_id, "run_id": run_id}}


def _connection(conn_id: str):
    try:
        from airflow.sdk import BaseHook

        return BaseHook.get_connection(conn_id)
    except Exception:  # noqa: BLE001 - not configured: the outbox still records the message
        return None


def _url(conn) -> str | None:
    if conn is None or not conn.host:
        return None
    extra = conn.extra_dejson or {}
    host = conn.host if "://" in conn.host else f"{conn.schema or 'https'}://{conn.host}"
    if conn.port and not re.search(r":[0-9]+$", host.split("://", 1)[1]):
        host = f"{host}:{conn.port}"
    return host.rstrip("/") + "/" + str(extra.get("endpoint", "")).lstrip("/")


def send(payload: dict, *, outbox: Path | None, conn_id: str = CONN_ID, timeout: float = 10.0) -> dict:
    """Post the payload to the webhook (if configured) and write it to the outbox. Never raises."""
    result: dict = {"posted": False, "outbox": None}
    if outbox is not None:
        try:
            outbox.mkdir(parents=True, exist_ok=True)
            stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S.%f")
            name = re.sub(r"[^A-Za-z0-9._-]", "_", f"{payload['audit'].get('day')}_{stamp}_{payload['audit'].get('run_id') or ''}")
            path = outbox / f"{name}.json"
            path.write_text(json.dumps(payload, indent=2))
            result["outbox"] = str(path)
        except OSError as e:
            log.warning("could not write the notification outbox: %s", type(e).__name__)
    conn = _connection(conn_id)
    url = _url(conn)
    if url is None:
        log.warning("connection '%s' is not configured: the notification is only in the outbox", conn_id)
        return result
    try:
        import requests

        extra = conn.extra_dejson or {}
        headers = {"Content-Type": "application/json"}
        if conn.password:
            headers["Authorization"] = f"Bearer {conn.password}"
        resp = requests.post(url, data=json.dumps(payload), headers=headers, timeout=timeout,
                             verify=extra.get("verify", True))
        result["posted"] = 200 <= resp.status_code < 300
        result["status"] = resp.status_code
        if not result["posted"]:
            log.warning("notification to '%s' answered HTTP %s", conn_id, resp.status_code)
    except Exception as e:  # noqa: BLE001 - a notifier must never mask the failure it reports
        log.warning("notification to '%s' failed: %s", conn_id, type(e).__name__)
        result["error"] = type(e).__name__
    return result


class AuditNotifier(BaseNotifier):
    """on_failure_callback of the audit's verdict task: tells the privacy team (webhook + outbox)."""

    template_fields = ("conn_id",)

    def __init__(self, conn_id: str = CONN_ID, report_task_id: str = "write_report"):
        super().__init__()
        self.conn_id = conn_id
        self.report_task_id = report_task_id

    def notify(self, context) -> None:
        from .context import reports_root

        ti = context.get("ti")
        summary = (ti.xcom_pull(task_ids=self.report_task_id) if ti else None) or {}
        if not summary:
            summary = {"day": str(context.get("ds")), "verdict": "fail", "counts": {},
                       "critical": ["the audit could not write its report: see the task logs"]}
        run = context.get("dag_run")
        payload = message(summary, dag_id=getattr(run, "dag_id", None), run_id=getattr(run, "run_id", None))
        result = send(payload, outbox=reports_root() / "audit" / "notifications", conn_id=self.conn_id)
        log.info("audit notification: posted=%s outbox=%s", result.get("posted"), result.get("outbox"))

