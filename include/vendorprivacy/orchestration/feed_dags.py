"""One DAG per vendor feed, generated from the register: no per-vendor Python (cf. dag-factory)."""
from __future__ import annotations

import datetime as dt

from airflow.sdk import DAG, get_current_context, task

from vendorprivacy.policy import FeedSpec, Vendor, load_register
from vendorprivacy.orchestration.defaults import default_args as shared_default_args

START = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


def _doc(vendor: Vendor, feed: FeedSpec) -> str:
    rows = "\n".join(f"| `{f.name}` | `{f.category}` | {f.transform}"
                     f"{' (' + f.normaliser + ')' if f.normaliser else ''} |" for f in feed.fields)
    return (f"### {vendor.name}: `{feed.id}`\n\n{feed.description}\n\n"
            f"- recipient category: **{vendor.recipient_category}**; purpose: `{vendor.purpose}`\n"
            f"- transport: {vendor.transport.kind} (`{vendor.transport.conn_id}`), encryption: {vendor.encryption.method}\n"
            f"- eligibility: {', '.join(feed.eligibility)} (erased and suppressed people: never)\n"
            f"- window: {feed.window}\n\n| field | data category | transform |\n|---|---|---|\n{rows}\n\n"
            f"Generated from `include/policy/vendors/{vendor.vendor}.yaml`.")


def _run(feed_id: str):
    """The domain's FeedRun for this task's feed and logical date (settings from Airflow connections)."""
    from vendorprivacy.orchestration import settings
    from vendorprivacy.share import FeedRun

    vendor, feed = load_register().feed(feed_id)
    logical = get_current_context()["logical_date"]
    day = dt.date(logical.year, logical.month, logical.day)  # a plain date: DB drivers reject pendulum's subclass
    return FeedRun(vendor=vendor, feed=feed, logical_date=day, shop_url=settings.shop_url(),
                   ledger=settings.ledger(), staging_root=settings.staging_root(), keys=settings.keys(),
                   shared=settings.shared_staging())


def build_feed_dag(vendor: Vendor, feed: FeedSpec) -> DAG:
    default_args = shared_default_args(vendor.owner, retries=feed.retries,
                                       retry_delay=dt.timedelta(minutes=feed.retry_delay_minutes),
                                       max_retry_delay=dt.timedelta(hours=1),
                                       execution_timeout=dt.timedelta(minutes=feed.execution_timeout_minutes),
                                       pool=f"vendor_{vendor.vendor}")
    with DAG(
        dag_id=f"share_{feed.id}",
        description=f"{vendor.name}: {feed.id}",
        schedule=feed.schedule,
        start_date=START,
        catchup=False,
        max_active_runs=1,
        default_args=default_args,
        doc_md=_doc(vendor, feed),
        tags=["vendor-share", vendor.vendor, vendor.recipient_category, vendor.transport.kind],
    ) as dag:

        @task(task_id="prepare", multiple_outputs=False)
        def prepare(feed_id: str) -> dict:
            """Extract, filter to eligible people, minimise to the declared fields; stage the file."""
            from vendorprivacy import share
            return share.prepare(_run(feed_id))

        @task(task_id="quality_gate", multiple_outputs=False)
        def quality_gate(feed_id: str, prepared: dict) -> dict:
            """Great Expectations suite from the register; fails closed."""
            from vendorprivacy import share
            return share.gate(_run(feed_id))

        @task(task_id="deliver", multiple_outputs=False)
        def deliver(feed_id: str, gated: dict) -> dict:
            """Encrypt, deliver atomically and idempotently, record in the ledger."""
            from vendorprivacy import share
            return share.deliver(_run(feed_id))

        deliver(feed.id, quality_gate(feed.id, prepare(feed.id)))
    return dag


def build_feed_dags() -> dict[str, DAG]:
    return {f"share_{feed.id}": build_feed_dag(vendor, feed) for vendor, feed in load_register().feeds()}
