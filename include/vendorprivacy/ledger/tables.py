"""Ledger tables (SQLAlchemy Core; SQLite for the demo, PostgreSQL in production and tests)."""
from __future__ import annotations

from sqlalchemy import (JSON, Column, Date, DateTime, Integer, MetaData, String, Table, Text, UniqueConstraint,
                        Index, ForeignKey)

metadata = MetaData()

deliveries = Table(
    "deliveries", metadata,
    Column("delivery_id", String(36), primary_key=True),  # uuid5(feed, logical date): the same run is the same delivery
    Column("feed_id", String(100), nullable=False),
    Column("vendor", String(100), nullable=False),
    Column("logical_date", Date, nullable=False),
    Column("window_start", DateTime),
    Column("window_end", DateTime),
    Column("transport", String(10), nullable=False),
    Column("file_name", String(300), nullable=False),
    Column("remote_path", String(500)),
    Column("row_count", Integer),
    Column("fields", JSON),              # [{name, category, transform}]
    Column("plaintext_sha256", String(64)),
    Column("sha256", String(64)),        # of the bytes that left (ciphertext for files)
    Column("bytes", Integer),
    Column("gate", JSON),                # PII-free summary of the quality gate
    Column("status", String(20), nullable=False),  # prepared | gate_failed | delivered | failed
    Column("error", Text),
    Column("created_at", DateTime, nullable=False),
    Column("delivered_at", DateTime),
    UniqueConstraint("feed_id", "logical_date", name="uq_delivery_feed_date"),
)

# Which subjects each delivery carried, as pseudonymous keys, so an erasure can find every recipient.
delivery_subjects = Table(
    "delivery_subjects", metadata,
    Column("delivery_id", String(36), ForeignKey("deliveries.delivery_id"), primary_key=True),
    Column("subject_key", String(64), primary_key=True),
    Index("ix_delivery_subjects_subject", "subject_key"),
)

# Subjects no feed may include any more (erased, opted out of everything, under-13 found).
suppression = Table(
    "suppression", metadata,
    Column("subject_key", String(64), primary_key=True),
    Column("reason", String(40), nullable=False),
    Column("request_ref", String(100)),
    Column("added_at", DateTime, nullable=False),
)
