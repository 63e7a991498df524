"""The sandbox's vendor table (ids fixed by the register) and a small spec type."""

from __future__ import annotations

from dataclasses import dataclass


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

    def __post_init__(self) -> None:
        if self.transport not in ("sftp", "s3", "https"):
            raise ValueError(f"{self.vendor}: unknown transport {self.transport!r}")
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
    VendorSpec("parcelpost", "sftp", "vendor_parcelpost_sftp", "parcelpost/inbound"),
    VendorSpec("callvault", "sftp", "vendor_callvault_sftp", "callvault/inbound"),
    VendorSpec("adgrid", "s3", "vendor_adgrid_s3", "adgrid-audiences/namdar/"),
    VendorSpec("socialreach", "s3", "vendor_socialreach_s3", "socialreach-audiences/namdar/"),
    VendorSpec("fraudshield", "https", "vendor_fraudshield_api", "/fraudshield"),
    VendorSpec("reviewhub", "https", "vendor_reviewhub_api", "/reviewhub"),
    VendorSpec("mailwave", "https", "vendor_mailwave_api", "/mailwave"),
]
