"""Vendor transports: SFTP and S3 file delivery, HTTPS record delivery.

Each uses the matching Airflow provider hook (so connections come from Airflow: the metadata DB, a
secrets backend, or ``AIRFLOW_CONN_<ID>`` env vars) and adds idempotent, atomic delivery on top::

    SftpTransport(conn_id, base_path).put(local_path, remote_name, manifest_bytes) -> Receipt
    S3Transport(conn_id, bucket, prefix).put(local_path, remote_name, manifest_bytes) -> Receipt
    HttpsRecordTransport(conn_id, base_endpoint).send(delivery_id, feed_id, columns, rows) -> Receipt

The transport classes are imported lazily (paramiko/boto stay out of DAG parsing).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vendorprivacy.transports.base import Receipt
from vendorprivacy.transports.errors import (
    AuthenticationFailed,
    DeliveryConflict,
    HostKeyMismatch,
    TlsVerificationFailed,
    TransportError,
    VendorUnavailable,
    VendorUnreachable,
)

if TYPE_CHECKING:
    from vendorprivacy.transports.https import HttpsRecordTransport
    from vendorprivacy.transports.s3 import S3Transport
    from vendorprivacy.transports.sftp import SftpTransport

_LAZY = {
    "SftpTransport": "vendorprivacy.transports.sftp",
    "S3Transport": "vendorprivacy.transports.s3",
    "HttpsRecordTransport": "vendorprivacy.transports.https",
    "canonical_records_sha256": "vendorprivacy.transports.https",
}

__all__ = [
    "Receipt",
    "TransportError",
    "HostKeyMismatch",
    "VendorUnreachable",
    "VendorUnavailable",
    "AuthenticationFailed",
    "TlsVerificationFailed",
    "DeliveryConflict",
    *_LAZY,
]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
