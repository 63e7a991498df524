"""Transport errors.

Every message names the vendor's Airflow conn_id and where we tried to go (host:port, bucket or
endpoint) and never carries file contents or record values. ``retryable`` tells a caller (or an
Airflow task's retry policy) whether trying again later can help.
"""

from __future__ import annotations


class TransportError(Exception):
    """Base class: delivery to / fetch from a vendor failed."""

    retryable: bool = False

    def __init__(self, message: str, *, conn_id: str | None = None, target: str | None = None) -> None:
        prefix = ""
        if conn_id or target:
            prefix = f"[{conn_id or '?'} -> {target or '?'}] "
        super().__init__(prefix + message)
        self.conn_id = conn_id
        self.target = target


class HostKeyMismatch(TransportError):
    """The SFTP server presented a host key other than the one pinned in the connection."""


class VendorUnreachable(TransportError):
    """Could not reach the vendor (refused, reset, timed out, DNS) within the retry budget."""

    retryable = True


class VendorUnavailable(TransportError):
    """The vendor answered but kept failing (429/5xx) until the retry budget ran out."""

    retryable = True


class TlsVerificationFailed(TransportError):
    """The HTTPS endpoint's certificate did not verify against the CA configured for the vendor."""


class AuthenticationFailed(TransportError):
    """The vendor rejected our credentials (SSH key, bearer token, S3 keys)."""


class DeliveryConflict(TransportError):
    """The vendor already holds a different file/batch under the same name/key."""


__all__ = [
    "TransportError",
    "HostKeyMismatch",
    "VendorUnreachable",
    "VendorUnavailable",
    "AuthenticationFailed",
    "TlsVerificationFailed",
    "DeliveryConflict",
]
