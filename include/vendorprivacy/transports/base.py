"""Types shared by all transports."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Receipt:
    """What a vendor now holds for one delivery, as observed by us after the transfer.

    ``remote_path``: where it lives at the vendor (sftp path, ``s3://bucket/key`` or API URL path).
    ``bytes``/``sha256``: size and hex SHA-256 of what was delivered (for files: the ciphertext; for
    HTTPS: the canonical record stream, see ``https.canonical_records_sha256``).
    ``already_present``: the vendor already held this exact delivery; nothing was (re)stored.
    """

    remote_path: str
    bytes: int
    sha256: str
    already_present: bool

    def to_dict(self) -> dict:
        return asdict(self)


def manifest_fields(manifest_bytes: bytes) -> dict:
    """Best-effort parse of a pipeline manifest (JSON object); {} if it is not one."""
    try:
        value = json.loads(manifest_bytes)
    except (ValueError, UnicodeDecodeError):
        return {}
    return value if isinstance(value, dict) else {}


def check_manifest_matches(manifest: dict, size: int, sha256: str) -> None:
    """A manifest that states ``sha256``/``bytes`` must describe the file it accompanies."""
    if "sha256" in manifest and str(manifest["sha256"]).lower() != sha256:
        raise ValueError("manifest sha256 does not match the file being delivered")
    if "bytes" in manifest and int(manifest["bytes"]) != size:
        raise ValueError("manifest bytes does not match the file being delivered")
