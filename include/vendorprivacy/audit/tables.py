"""The audit's own tables, in the ledger database (same engine and schema as the Ledger; never personal data).

audit_removals        every removal list the audit sent for consent drift: which subject (pseudonymous key),
                      which vendor and delivery, why, in which batch, and the partner's answer; so a person is
                      sent once, not nightly, and a partner that does not remove them is noticed
audit_source_columns  every column seen in a shop table that feeds read, when it was first seen, whether it
                      belongs to the reviewed schema, and the personal-data guess (labels and counts only)
audit_runs            one row per audited night: verdict, counts, where the report is
"""
from __future__ import annotations

from sqlalchemy import JSON, Boolean, Column, Date, DateTime, Index, Integer, MetaData, String, Table

metadata = MetaData()

audit_removals = Table(
    "audit_removals", metadata,
    Column("vendor", String(100), primary_key=True),
    Column("subject_key", String(64), primary_key=True),
    Column("delivery_id", String(36), primary_key=True),  # the delivery that carried the subject
    Column("feed_id", String(100), nullable=False),
    Column("reason", String(40), nullable=False),           # sale_share_opt_out | gpc | eea_ad_consent | ...
    Column("batch_id", String(64), nullable=False),
    Column("pair_id", String(36), nullable=False),
    Column("audit_day", Date, nullable=False),
    Column("sent_at", DateTime, nullable=False),
    Column("sha256", String(64)),                           # of what was sent (the removal list)
    Column("vendor_reference", String(200)),
    Column("outcome", String(20)),                          # the partner's answer: acknowledged | completed | ...
    Column("answered_at", DateTime),
    Index("ix_audit_removals_batch", "batch_id"),
)

audit_source_columns = Table(
    "audit_source_columns", metadata,
    Column("table_name", String(200), primary_key=True),
    Column("column_name", String(200), primary_key=True),
    Column("data_type", String(100)),
    Column("first_seen", Date, nullable=False),
    Column("baseline", Boolean, nullable=False),            # reviewed schema, or present when the table was first seen
    Column("accepted_by", String(200)),                     # a person reviewed it: no longer reported
    Column("accepted_reason", String(500)),
    Column("guess", JSON),                                  # {likelihood, category, signals}: labels and counts
)

audit_runs = Table(
    "audit_runs", metadata,
    Column("run_id", String(250), primary_key=True),
    Column("audit_day", Date, nullable=False),
    Column("started_at", DateTime, nullable=False),
    Column("finished_at", DateTime),
    Column("verdict", String(20)),
    Column("critical", Integer),
    Column("warning", Integer),
    Column("info", Integer),
    Column("report_html", String(1000)),
    Column("report_json", String(1000)),
    Index("ix_audit_runs_day", "audit_day"),
)


def migrate(engine) -> None:
    """Create the audit tables (idempotent), in the ledger's schema (the engine carries its translate map)."""
    with engine.begin() as conn:
        metadata.create_all(conn)
