"""Ledger tables (SQLAlchemy Core; SQLite for the demo, PostgreSQL in production and tests)."""
from __future__ import annotations

from sqlalchemy import (JSON, Boolean, Column, Date, DateTime, Integer, MetaData, String, Table, Text, UniqueConstraint,
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

# ---------------------------------------------------------------------------------------------- erasure
# Requests to erase or to opt out of sale/sharing, each (request, vendor) pair and its timeline.
# Personal identifiers exist here only as AES-GCM ciphertext (identity key from a secret, never the repo),
# and are purged once the request is complete; lookups are keyed hashes, so duplicates are found without
# decrypting anything. Kept 24 months (CCPA §7101), then purged.
erasure_requests = Table(
    "erasure_requests", metadata,
    Column("request_id", String(36), primary_key=True),    # uuid4
    Column("ticket", String(64), nullable=False),           # the privacy team's reference: no personal data
    Column("regulation", String(8), nullable=False),        # ccpa | gdpr
    Column("request_type", String(16), nullable=False),     # erasure | opt_out
    Column("received_on", Date, nullable=False),
    Column("source", String(20), nullable=False),           # cli | csv | under_13_audit
    Column("status", String(20), nullable=False),           # filed | in_progress | complete
    Column("ack_due", Date),                                # CCPA: acknowledge to the consumer
    Column("due", Date, nullable=False),                    # respond by (legal deadline)
    Column("extended_due", Date),                           # set once, with notice to the consumer
    Column("extension_noticed_on", Date),
    Column("identity_ct", Text),                            # the identifiers as filed (base64 AES-GCM)
    Column("resolved_ct", Text),                            # what the shop database knows of them (ditto)
    Column("key_id", String(16)),                           # which identity key sealed the two above
    Column("email_lookup", String(64)),                     # keyed hash of the normalised e-mail
    Column("phone_lookup", String(64)),                     # keyed hash of the E.164 phone
    Column("subject_keys", JSON),                           # pseudonymous ledger keys of the matched customers
    Column("identifier_types", JSON),                       # e.g. ["email", "phone"]: which kinds were filed
    Column("filed_at", DateTime, nullable=False),
    Column("resolved_at", DateTime),
    Column("suppressed_at", DateTime),
    Column("completed_at", DateTime),
    Column("purged_at", DateTime),                          # identifiers purged
    Index("ix_erasure_requests_status", "status"),
    Index("ix_erasure_requests_ticket", "ticket"),
    Index("ix_erasure_requests_email_lookup", "email_lookup"),
    Index("ix_erasure_requests_phone_lookup", "phone_lookup"),
    UniqueConstraint("ticket", "request_type", name="uq_erasure_request_ticket_type"),
)

# One erasure list sent to one vendor: what left (checksum, size), when, and the vendor's reference.
erasure_batches = Table(
    "erasure_batches", metadata,
    Column("batch_id", String(36), primary_key=True),       # uuid5(run, vendor, request ids): fixed before sending
    Column("vendor", String(100), nullable=False),
    Column("run_id", String(250), nullable=False),
    Column("pair_count", Integer, nullable=False),
    Column("status", String(20), nullable=False),           # planned | submitted
    Column("created_at", DateTime, nullable=False),
    Column("submitted_at", DateTime),
    Column("sha256", String(64)),
    Column("bytes", Integer),
    Column("vendor_reference", String(200)),
    Index("ix_erasure_batches_vendor", "vendor", "status"),
)

erasure_pairs = Table(
    "erasure_pairs", metadata,
    Column("pair_id", String(36), primary_key=True),        # uuid4: the only reference the vendor sees
    Column("request_id", String(36), ForeignKey("erasure_requests.request_id"), nullable=False),
    Column("vendor", String(100), nullable=False),
    Column("status", String(20), nullable=False),           # queued sent acknowledged completed not_found retained failed not_applicable
    Column("reason", Text),                                 # vendor's legal reason (retained), failure, or why not applicable
    Column("received_subject", Boolean),                    # the delivery ledger shows this vendor received the subject
    Column("batch_id", String(36), ForeignKey("erasure_batches.batch_id")),
    Column("identifier_types", JSON),                       # e.g. {"email": 1, "order_id": 3}: counts, never values
    Column("vendor_reference", String(200)),
    Column("evidence_sha256", String(64)),                  # of the vendor's latest answer
    Column("created_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
    UniqueConstraint("request_id", "vendor", name="uq_erasure_pair"),
    Index("ix_erasure_pairs_batch", "batch_id"),
    Index("ix_erasure_pairs_status", "vendor", "status"),
)

# The timeline: every transition once. scope is the vendor of a pair, or 'request' for request events.
erasure_events = Table(
    "erasure_events", metadata,
    Column("event_id", Integer, primary_key=True, autoincrement=True),
    Column("request_id", String(36), ForeignKey("erasure_requests.request_id"), nullable=False),
    Column("scope", String(100), nullable=False),
    Column("event", String(30), nullable=False),            # filed resolved suppressed approved ... | a pair status
    Column("from_status", String(20)),
    Column("at", DateTime, nullable=False),
    Column("evidence_sha256", String(64)),
    Column("actor", String(200)),                           # who (approver, the system, the vendor)
    Column("detail", Text),                                 # PII-free
    UniqueConstraint("request_id", "scope", "event", name="uq_erasure_event_once"),
    Index("ix_erasure_events_request", "request_id"),
)

# Subjects who opted out of sale/sharing: excluded from third-party (advertising) feeds only, unlike
# `suppression`, which excludes from every feed (an opted-out customer's orders still ship and get paid).
sale_share_optouts = Table(
    "sale_share_optouts", metadata,
    Column("subject_key", String(64), primary_key=True),
    Column("request_ref", String(100)),
    Column("added_at", DateTime, nullable=False),
)
