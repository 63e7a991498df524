"""The erasure_propagation DAG: the privacy team's trigger form, and the run that reaches every vendor.

    select_requests -> resolve_and_suppress -> route
        route (dry run)           -> dry_run_report
        route (needs approval)    -> approve (human in the loop) -> plan_batches
        route (no approval)       -> no_approval_needed          -> plan_batches
    plan_batches -> submit[vendor] (mapped) -> wait_for_answers[vendor] (mapped sensor, reschedule mode)
    -> record_outcomes (evidence, completion, purge) -> deadline_check

Only ids, counts and statuses travel in XCom and conf; the domain code (vendorprivacy.erasure) is
imported inside the tasks, so parsing this DAG stays fast.

Deadline alerting: the legal due dates (weeks) are watched by `deadline_check` (last task here, and the
nightly audit), which raises each at-risk/overdue alert once. Airflow's DeadlineAlert watches this run
itself: when a run is still going `wait_timeout + 2 h` after it was queued, its callback
(vendorprivacy.erasure.alerts.run_deadline_missed) runs the same check.
"""
from __future__ import annotations

import datetime as dt

from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk import (DAG, DeadlineAlert, DeadlineReference, Param, PokeReturnValue, SyncCallback,
                         get_current_context, task)

from vendorprivacy.orchestration.defaults import default_args as shared_default_args

START = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
OWNER = "privacy-team"
DEFAULT_APPROVAL_THRESHOLD = 50

DOC = """
### Erasure and opt-out propagation

Sends every pending (or chosen) privacy request to every vendor that must hear of it, tracks each vendor's
answer, and writes evidence per request (`reports/erasure/<request id>.html`).

**How to use it.** File requests first (`vendorprivacy erasure file ...` or `... import requests.csv`).
Then trigger this DAG: keep **Dry run** on to see what would be sent (nothing is sent or changed), then
trigger again with Dry run off. Large batches, or any batch when you tick *Ask for approval*, wait for a
second person to approve under **Required actions** before any vendor is contacted.

What happens, in order: the people are found in the shop database and **excluded from every later feed at
once** (opt-outs: from advertising feeds), before any vendor is contacted; each vendor that received them
(and every service provider) gets one list in its own format; the run waits for the vendors' answers
(*completed*, *not found*, *retained* with the vendor's legal reason, or *failed*); a request is complete
when every vendor has answered. Re-running is safe: nothing is sent to a vendor twice.

Never type e-mail addresses or names into this form: ticket references only.
"""


def _params() -> dict:
    return {
        "requests": Param(
            "all pending", type="string", minLength=1, maxLength=2000, pattern=r"^[^@]*$",
            title="Which requests",
            description=("Type 'all pending' to process every request that is not complete yet, or give ticket "
                         "references separated by commas (e.g. T-123, T-124). Ticket references only: never an "
                         "e-mail address or a name."),
            examples=["all pending"]),
        "dry_run": Param(
            True, type="boolean", title="Dry run (send nothing)",
            description=("On: show what would be sent to each vendor (how many people, which kinds of identifier) "
                         "and change nothing. Turn it off to exclude the people from feeds and notify vendors.")),
        "require_approval": Param(
            False, type="boolean", title="Ask for approval before sending",
            description=("On: a second person must approve under 'Required actions' before any vendor is "
                         "contacted. Batches larger than the number below always ask.")),
        "approval_threshold": Param(
            DEFAULT_APPROVAL_THRESHOLD, type="integer", minimum=1, title="Always ask for approval above this many requests",
            description="A batch with more requests than this waits for approval even when the box above is off."),
        "wait_for_answers": Param(
            True, type="boolean", title="Wait for the vendors' answers",
            description=("On: the run keeps checking for answers (without occupying a worker) until every vendor has "
                         "answered or the waiting time ends. Off: send, check once, and finish; a later run picks "
                         "up the answers.")),
        "alert_margin_days": Param(
            7, type="integer", minimum=0, maximum=60, title="Warn this many days before a due date",
            description="Open requests this close to their legal due date are reported as at risk."),
    }


class RecordedApproval(ApprovalOperator):
    """The standard ApprovalOperator, whose decision (approved or rejected, by whom, when) is also written to each
    request's timeline in the ledger the moment it is made, so the evidence shows who approved."""

    def execute_complete(self, context, event):
        from vendorprivacy.erasure import propagate

        chosen = (event or {}).get("chosen_options") or []
        if "error" not in (event or {}) and chosen:
            user = event.get("responded_by_user") or {}
            selection = context["ti"].xcom_pull(task_ids="select_requests") or {}
            propagate.record_approval(_ctx(), selection.get("request_ids", []), approved=chosen == [self.APPROVE],
                                      by=user.get("name") or user.get("id"), at=_as_dt(event.get("responded_at")))
        return super().execute_complete(context, event)


def _ctx():
    from vendorprivacy.erasure import propagate
    from vendorprivacy.erasure.evidence import reports_dir

    return propagate.context_from_settings(evidence_dir=reports_dir() / "vendor_answers")


def _dry_run(params) -> bool:
    return bool(params.get("dry_run", True))


def build_erasure_dag(*, dag_id: str = "erasure_propagation", poke_interval: float = 300,
                      wait_timeout: dt.timedelta = dt.timedelta(hours=24),
                      approval_timeout: dt.timedelta = dt.timedelta(days=3), deadline_alert: bool = True) -> DAG:
    """`deadline_alert=False` leaves out the run-level DeadlineAlert: Airflow 3.3.2's dag.test() fails when a
    run with a deadline succeeds (it looks the alerts up by their serialized form instead of their ids)."""
    default_args = shared_default_args(OWNER, retries=3, retry_delay=dt.timedelta(minutes=2),
                                       max_retry_delay=dt.timedelta(hours=1),
                                       execution_timeout=dt.timedelta(minutes=60))
    with DAG(
        dag_id=dag_id,
        description="Erasure and opt-out requests: suppress, notify every vendor, track answers, write evidence",
        schedule=None,
        start_date=START,
        catchup=False,
        max_active_runs=1,
        default_args=default_args,
        params=_params(),
        doc_md=DOC,
        tags=["privacy", "erasure", "ccpa", "gdpr"],
        render_template_as_native_obj=False,
        deadline=DeadlineAlert(
            reference=DeadlineReference.DAGRUN_QUEUED_AT,
            interval=wait_timeout + dt.timedelta(hours=2),
            callback=SyncCallback("vendorprivacy.erasure.alerts.run_deadline_missed", kwargs={"margin_days": 7}),
            name="erasure run overran its answer window",
        ) if deadline_alert else None,
    ) as dag:

        @task(task_id="select_requests", multiple_outputs=False)
        def select_requests() -> dict:
            """Which requests this run handles (ids only)."""
            from vendorprivacy.erasure import propagate

            params = get_current_context()["params"]
            return propagate.select_requests(_ctx(), params.get("requests"))

        @task(task_id="resolve_and_suppress", multiple_outputs=False)
        def resolve_and_suppress(selection: dict) -> dict:
            """Find the people in the shop; exclude them from feeds in one transaction (not in a dry run)."""
            import json

            from vendorprivacy.erasure import propagate

            context = get_current_context()
            ctx = _ctx()
            dry = _dry_run(context["params"])
            summary = propagate.resolve_and_suppress(ctx, selection["request_ids"], dry_run=dry)
            detail = summary.pop("requests_detail")
            if dry:
                path = ctx.reports_dir / "dry_runs" / f"{context['run_id'].replace(':', '_').replace('/', '_')}.json"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps({**summary, "requests_detail": detail}, indent=2, default=str))
                summary["dry_run_report"] = str(path)
            return summary

        @task.branch(task_id="route")
        def route(selection: dict, resolved: dict) -> str:
            """Dry run, approval, or straight on."""
            context = get_current_context()
            params = context["params"]
            if _dry_run(params):
                return "dry_run_report"
            large = selection["requests"] > int(params.get("approval_threshold") or DEFAULT_APPROVAL_THRESHOLD)
            if params.get("require_approval") or large:
                lines = [f"**{selection['requests']} request(s)**; people found in the shop: "
                         f"{resolved.get('subjects_found_in_shop', 0)} (newly), excluded from feeds: "
                         f"{resolved.get('suppressed_keys', 0)} subject key(s).", "",
                         "| vendor | to notify | not concerned | identifier kinds |", "|---|---|---|---|"]
                for vendor, v in resolved.get("vendors", {}).items():
                    kinds = ", ".join(f"{k} ×{n}" for k, n in v["identifier_types"].items()) or "—"
                    lines.append(f"| {vendor} | {v['pairs'].get('queued', 0)} | {v['pairs'].get('not_applicable', 0)} | {kinds} |")
                lines += ["", "Approve to send each vendor its erasure list. Reject to send nothing (the people stay "
                              "excluded from feeds)."]
                context["ti"].xcom_push(key="approval_body", value="\n".join(lines))
                return "approve"
            return "no_approval_needed"

        @task(task_id="dry_run_report", multiple_outputs=False)
        def dry_run_report(resolved: dict) -> dict:
            """What would be sent, per vendor: counts and identifier kinds, never values."""
            import logging

            log = logging.getLogger("airflow.task")
            log.info("DRY RUN: nothing was sent, nothing was suppressed. %s request(s).", resolved["requests"])
            for vendor, v in resolved["vendors"].items():
                log.info("  %-12s would notify %3d, not concerned %3d, identifiers %s", vendor,
                         v["pairs"].get("queued", 0), v["pairs"].get("not_applicable", 0), v["identifier_types"] or "-")
            return {"dry_run": True, "vendors": {k: v["pairs"].get("queued", 0) for k, v in resolved["vendors"].items()},
                    "report": resolved.get("dry_run_report")}

        approve = RecordedApproval(
            task_id="approve",
            subject="Send erasure lists to vendors?",
            body="{{ ti.xcom_pull(task_ids='route', key='approval_body') }}",
            response_timeout=approval_timeout,
            execution_timeout=dt.timedelta(minutes=10),
            retries=1,
        )

        @task(task_id="no_approval_needed")
        def no_approval_needed() -> str:
            return "not required"

        @task(task_id="plan_batches", trigger_rule="none_failed_min_one_success")
        def plan_batches(selection: dict) -> list[dict]:
            """One batch per vendor, its id fixed in the ledger before anything is sent."""
            from vendorprivacy.erasure import propagate

            from airflow.sdk.exceptions import AirflowSkipException

            context = get_current_context()
            if _dry_run(context["params"]):  # it also follows select_requests, so the branch alone cannot skip it
                raise AirflowSkipException("dry run: nothing is planned or sent")
            return propagate.plan_batches(_ctx(), context["run_id"], selection["request_ids"])

        @task(task_id="submit", map_index_template="{{ vendor_label }}", multiple_outputs=False)
        def submit(batch: dict) -> dict:
            """Send this vendor its batch by its protocol (idempotent: a retry never sends twice)."""
            from vendorprivacy.erasure import propagate

            get_current_context()["vendor_label"] = batch["vendor"]
            result = propagate.submit_vendor(_ctx(), batch["vendor"], batch["batches"])
            return {**batch, "submitted": result["submitted"], "pairs_sent": result["pairs_sent"]}

        @task.sensor(task_id="wait_for_answers", mode="reschedule", poke_interval=poke_interval,
                     timeout=wait_timeout, soft_fail=True, silent_fail=True, exponential_backoff=False,
                     map_index_template="{{ vendor_label }}")
        def wait_for_answers(batch: dict) -> PokeReturnValue:
            """Poll the vendor; done when every pair has its final answer (or one poll when not waiting)."""
            from vendorprivacy.erasure import propagate

            context = get_current_context()
            context["vendor_label"] = batch["vendor"]
            result = propagate.poll_vendor(_ctx(), batch["vendor"], batch["batches"])
            done = result["open"] == 0 or not context["params"].get("wait_for_answers", True)
            return PokeReturnValue(is_done=done, xcom_value=result)

        @task(task_id="record_outcomes", trigger_rule="all_done", multiple_outputs=False)
        def record_outcomes(selection: dict) -> dict:
            """Complete what is complete; write each request's evidence; purge identifiers of complete requests."""
            from vendorprivacy.erasure import propagate

            context = get_current_context()
            if _dry_run(context["params"]):
                return {"dry_run": True}
            return propagate.finish(_ctx(), selection["request_ids"])

        @task(task_id="deadline_check", trigger_rule="all_done", multiple_outputs=False)
        def deadline_check(selection: dict, outcomes: dict) -> dict:
            """Raise at-risk / overdue alerts (once each); fail the run if a vendor could not be sent its list."""
            from vendorprivacy.erasure import alerts, store
            from vendorprivacy.erasure.evidence import reports_dir

            context = get_current_context()
            ctx = _ctx()
            found = alerts.deadline_check(ctx.store, margin_days=int(context["params"].get("alert_margin_days", 7)),
                                          register=ctx.register, record=not _dry_run(context["params"]))
            alerts.publish(found, reports_dir())
            result = alerts.summary(found)
            rejected = bool((context["ti"].xcom_pull(task_ids="approve", key="skipmixin_key") or {}).get("skipped"))
            if not _dry_run(context["params"]) and not rejected:
                unsent = [p for p in ctx.store.pairs(selection["request_ids"], statuses=[store.QUEUED])]
                if unsent:
                    vendors = sorted({p.vendor for p in unsent})
                    raise RuntimeError(f"{len(unsent)} (request, vendor) pair(s) could not be sent "
                                       f"(vendors: {', '.join(vendors)}); see the submit task logs. They stay "
                                       f"excluded from feeds; re-run to retry: nothing is sent twice.")
            return result

        selection = select_requests()
        resolved = resolve_and_suppress(selection)
        routed = route(selection, resolved)
        report = dry_run_report(resolved)
        skip_approval = no_approval_needed()
        routed >> [report, approve, skip_approval]
        plan = plan_batches(selection)
        [approve, skip_approval] >> plan
        submitted = submit.expand(batch=plan)
        waited = wait_for_answers.expand(batch=submitted)
        outcomes = record_outcomes(selection)
        waited >> outcomes
        report >> outcomes
        deadline_check(selection, outcomes)
    return dag


def _as_dt(value):
    if value is None or isinstance(value, dt.datetime):
        return value
    try:
        return dt.datetime.fromisoformat(str(value))
    except ValueError:
        return None
