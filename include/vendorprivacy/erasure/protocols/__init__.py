"""Vendor erasure protocol clients: ``protocol_for(vendor).submit(batch_id, items)`` / ``.poll(...)``.

- ``sftp_ack``        encrypted request file over SFTP, signed ack file back   (parcelpost, callvault)
- ``opendsr``         OpenDSR processor API, signed responses and callbacks   (payflow, fraudshield, reviewhub, mailwave)
- ``s3_removal_list`` encrypted removal list in the partner's bucket, signed result manifest (adgrid, socialreach)

The contract (``ErasureItem``, ``Outcome``, ``SubmitReceipt``, ``ErasureProtocol``, ``AnswerRejected``)
is in ``base``; file formats are documented in ``files``, ``sftp_ack``, ``s3_removal`` and ``opendsr``.
Only ``base`` is imported here: transports, gpg and cryptography load when a protocol is used.
"""

from vendorprivacy.erasure.protocols import base as _base
from vendorprivacy.erasure.protocols.base import (
    IDENTIFIER_TYPES,
    REGULATIONS,
    REQUEST_TYPES,
    STATUSES,
    TERMINAL_STATUSES,
    AnswerRejected,
    ErasureItem,
    ErasureProtocol,
    Outcome,
    SubmitReceipt,
    protocol_for,
)

_LAZY = {
    "SftpAckProtocol": "vendorprivacy.erasure.protocols.sftp_ack",
    "S3RemovalListProtocol": "vendorprivacy.erasure.protocols.s3_removal",
    "OpenDsrProtocol": "vendorprivacy.erasure.protocols.opendsr",
    "verify_callback": "vendorprivacy.erasure.protocols.opendsr",
    "outcome_from_callback": "vendorprivacy.erasure.protocols.opendsr",
    "fetch_processor_cert": "vendorprivacy.erasure.protocols.opendsr",
    "status_to_outcome": "vendorprivacy.erasure.protocols.opendsr",
}

__all__ = [*_base.__all__, *_LAZY]  # the interface itself, then what loads on first use


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
