"""The sandbox's vendor table (ids fixed by the register) and a small spec type.

One ``VendorSpec`` per endpoint a vendor offers us: its feed transport (``role="feed"``) and, when the
register sends erasure requests somewhere else (payflow: feed over SFTP, OpenDSR over HTTPS on
``vendor_payflow_api``), its erasure transport (``role="erasure"``). ``DEFAULT_VENDORS`` mirrors the
register in ``include/policy/vendors`` (``specs_from_register`` derives the same list; a test keeps them
in step).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class VendorSpec:
    """One sandbox vendor.

    ``location`` depends on the transport: sftp -> folder relative to the SFTP root
    (``payflow/inbound``); s3 -> ``<bucket>/<prefix>`` (``adgrid-audiences/namdar/``);
    https -> endpoint base (``/fraudshield``).
    """

    vendor: str
    transport: str  # "sftp" | "s3" | "https"
    conn_id: str
    location: str
    role: str = "feed"  # "feed" | "erasure" (an endpoint only erasure requests go to)

    def __post_init__(self) -> None:
        if self.transport not in ("sftp", "s3", "https"):
            raise ValueError(f"{self.vendor}: unknown transport {self.transport!r}")
        if self.role not in ("feed", "erasure"):
            raise ValueError(f"{self.vendor}: unknown role {self.role!r}")
        if not self.vendor.isidentifier() or self.vendor.startswith("_"):
            raise ValueError(f"invalid vendor id {self.vendor!r}")

    @property
    def bucket(self) -> str:
        """s3 only: the bucket part of ``location``."""
        return self.location.strip("/").split("/", 1)[0]

    @property
    def prefix(self) -> str:
        """s3 only: the key prefix (``namdar/``), '' if none."""
        parts = self.location.strip("/").split("/", 1)
        return parts[1].strip("/") + "/" if len(parts) > 1 and parts[1].strip("/") else ""

    @property
    def base_path(self) -> str:
        """sftp only: the folder relative to the SFTP start directory."""
        return self.location.strip("/")

    @property
    def base_endpoint(self) -> str:
        """https only: ``/<vendor>`` style endpoint base."""
        return "/" + self.location.strip("/")


DEFAULT_VENDORS: list[VendorSpec] = [
    VendorSpec("payflow", "sftp", "vendor_payflow_sftp", "payflow/inbound"),
    VendorSpec("payflow", "https", "vendor_payflow_api", "/payflow", role="erasure"),
    VendorSpec("parcelpost", "sftp", "vendor_parcelpost_sftp", "parcelpost/inbound"),
    VendorSpec("callvault", "sftp", "vendor_callvault_sftp", "callvault/inbound"),
    VendorSpec("adgrid", "s3", "vendor_adgrid_s3", "adgrid-audiences/namdar/"),
    VendorSpec("socialreach", "s3", "vendor_socialreach_s3", "socialreach-audiences/namdar/"),
    VendorSpec("fraudshield", "https", "vendor_fraudshield_api", "/fraudshield"),
    VendorSpec("reviewhub", "https", "vendor_reviewhub_api", "/reviewhub"),
    VendorSpec("mailwave", "https", "vendor_mailwave_api", "/mailwave"),
]


def _spec(vendor_id: str, transport: Any, role: str) -> VendorSpec:
    if transport.kind == "sftp":
        location = transport.path
    elif transport.kind == "s3":
        location = f"{transport.bucket}/{transport.path.strip('/')}/" if transport.path.strip("/") else transport.bucket
    else:
        location = transport.path or f"/{vendor_id}"
    return VendorSpec(vendor_id, transport.kind, transport.conn_id, location, role=role)


def specs_from_register(register: Any) -> list[VendorSpec]:
    """Sandbox specs for every feed transport and every separate erasure transport in a register."""
    specs: list[VendorSpec] = []
    for vendor in register.vendors.values():
        specs.append(_spec(vendor.vendor, vendor.transport, "feed"))
        if vendor.erasure.transport is not None:
            specs.append(_spec(vendor.vendor, vendor.erasure.transport, "erasure"))
    return specs
