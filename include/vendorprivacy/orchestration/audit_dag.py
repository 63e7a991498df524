"""The nightly_minimisation_audit DAG: every night, prove that what left matches what the notice allows.

    recheck_deliveries ─┐
    source_schema_drift ┤
    register_drift      ├─> write_report ─> verdict   (fails on a critical finding; the notifier tells people)
    consent_drift       ┤
    erasure_deadlines  ─┘

Each check is its own task (a failure in one still lets the others report; write_report runs whatever happened
and names a check that did not complete as a critical finding). XCom carries findings (vendor and feed ids,
field and column names, counts, checksums, batch ids) and the report's paths: never personal data. The domain
code (vendorprivacy.audit) is imported inside the tasks, so parsing this file stays fast.
"""
from __future__ import annotations

import datetime as dt

from airflow.sdk import DAG, Param, get_current_context, task
from vendorprivacy.orchestration.defaults import default_args as shared_default_args

START = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
OWNER = "privacy-team"
SCHEDULE = "30 23 * * *"  # after every feed of the day (feeds run 01:15-06:00 UTC)
CHECK_TASKS = {"recheck_deliveries": "delivery", "source_schema_drift": "schema_drift",
               "register_drift": "register_drift", "consent_drift": "consent_drift", "erasure_deadlines": "deadline"}

DOC = """
### Nightly minimisation audit

Every night at 23:30 UTC (and whenever you trigger it), this DAG re-checks the day's vendor deliveries against
**today's** register and privacy notice and looks for what changed since:

- **Deliveries**: every field, data category and transform that left, the quality gate, the row counts; and each
  vendor's copy, read back and compared with the checksum recorded when it left.
- **Source-schema drift**: new columns in the shop tables that feeds read, with a guess whether they hold personal
  data (from the column name and a sample of values; no value is ever stored or shown).
- **Register drift**: feeds, fields, vendors or purposes the notice no longer declares.
- **Consent drift**: people a vendor last received who opted out, sent GPC, withdrew consent or are too young;
  advertising partners are sent a removal list the same night.
- **Erasure deadlines**: requests and vendors at risk of missing, or past, their legal due date.

The report (HTML with charts, and a JSON twin) is written to `reports/audit/<day>/`; its path is in the
`write_report` task's return value and log. A **critical** finding fails the run and notifies the privacy team
(connection `privacy_alerts`).
"""


def _params() -> dict:
    return {
        "audit_day": Param(
            "", type="string", pattern=r"^([0-9]{4}-[0-9]{2}-[0-9]{2})?$", title="Night to audit (optional)",
            description="A date (YYYY-MM-DD) to audit that night again; leave empty for the run's own date."),
        "lookback_days": Param(
            1, type="integer", minimum=1, maximum=31, title="Days of deliveries to re-check",
            description="1 re-checks the night's own deliveries; more re-checks the days before it too."),
        "verify_copies": Param(
            True, type="boolean", title="Read the vendors' copies back",
            description="On: each delivered file or record set is read back from the vendor and compared with the "
                        "checksum recorded when it left."),
        "send_removals": Param(
            True, type="boolean", title="Send removal lists to advertising partners",
            description="On: people an advertising partner still holds but who opted out (or are otherwise no "
                        "longer eligible) are sent to that partner's removal list tonight. Off: only reported."),
        "alert_margin_days": Param(
            7, type="integer", minimum=0, maximum=60, title="Warn this many days before an erasure due date",
            description="Open erasure requests this close to their legal due date are reported as at risk."),
    }


def _ctx(context=None):
    """The audit context for this task's night, from the run's params and the Airflow connections."""
    from vendorprivacy.audit.context import context_from_settings

    context = context or get_current_context()
    params = context["params"]
    if params.get("audit_day"):
        day = dt.date.fromisoformat(params["audit_day"])
    else:
        logical = context.get("logical_date") or context["dag_run"].run_after
        day = dt.date(logical.year, logical.month, logical.day)  # a plain date: drivers reject pendulum's subclass
    return context_from_settings(day, lookback_days=int(params.get("lookback_days") or 1),
                                 verify_copies=bool(params.get("verify_copies", True)),
                                 send_removals=bool(params.get("send_removals", True)),
                                 margin_days=int(params.get("alert_margin_days", 7)), run_id=context["run_id"])


def build_audit_dag(*, dag_id: str = "nightly_minimisation_audit", schedule: str | None = SCHEDULE) -> DAG:
    from vendorprivacy.audit.notify import AuditNotifier

    default_args = shared_default_args(OWNER, retries=2, retry_delay=dt.timedelta(minutes=5),
                                       max_retry_delay=dt.timedelta(minutes=30),
                                       execution_timeout=dt.timedelta(minutes=30))
    with DAG(
        dag_id=dag_id,
        description="Nightly minimisation audit: deliveries vs register and notice, schema/register/consent drift, "
                    "erasure deadlines; HTML + JSON report",
        schedule=schedule,
        start_date=START,
        catchup=False,
        max_active_runs=1,
        default_args=default_args,
        params=_params(),
        doc_md=DOC,
        tags=["privacy", "audit", "minimisation", "ccpa", "gdpr"],
    ) as dag:

        def check_task(task_id: str, check: str, doc: str):
            @task(task_id=task_id, multiple_outputs=False, doc=doc)
            def run_check() -> dict:
                from vendorprivacy.audit.run import run_check as run

                return run(_ctx(), check)

            return run_check()

        checks = [check_task("recheck_deliveries", "delivery",
                             "The night's deliveries against today's register and notice; vendors' copies read back."),
                  check_task("source_schema_drift", "schema_drift",
                             "New columns in the shop tables feeds read, with a personal-data guess."),
                  check_task("register_drift", "register_drift", "What the register declares that the notice does not."),
                  check_task("consent_drift", "consent_drift",
                             "People vendors hold who may no longer be shared; removal lists to advertising partners."),
                  check_task("erasure_deadlines", "deadline", "Erasure requests at risk or overdue.")]

        @task(task_id="write_report", trigger_rule="all_done", multiple_outputs=False,
              on_failure_callback=AuditNotifier())
        def write_report() -> dict:
            """HTML report with charts, its JSON twin and the data map; returns their paths (the run's link)."""
            import logging

            from vendorprivacy.audit.run import write_report as write

            context = get_current_context()
            ti = context["ti"]
            results = [ti.xcom_pull(task_ids=task_id) for task_id in CHECK_TASKS]
            summary = write(_ctx(context), results)
            logging.getLogger("airflow.task").info("minimisation audit report: %s (JSON: %s)",
                                                   summary["report_html"], summary["report_json"])
            return summary

        @task(task_id="verdict", multiple_outputs=False, on_failure_callback=AuditNotifier())
        def verdict(summary: dict) -> dict:
            """Fail the run (no retry) on a critical finding; the notifier tells the privacy team."""
            from airflow.sdk.exceptions import AirflowFailException

            critical = summary["counts"].get("critical", 0)
            if critical:
                raise AirflowFailException(f"{critical} critical finding(s) in the minimisation audit of "
                                           f"{summary['day']}: see {summary['report_html']}")
            return {"day": summary["day"], "verdict": summary["verdict"], "counts": summary["counts"],
                    "report_html": summary["report_html"]}

        report = write_report()
        checks >> report
        verdict(report)
    return dag
