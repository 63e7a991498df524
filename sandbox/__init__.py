"""Local stand-ins for the vendors: real sshd (SFTP), moto (S3) and an HTTPS vendor API.

    with Sandbox(tmp_path / "sandbox") as sb:
        sb.apply_env()                 # AIRFLOW_CONN_VENDOR_* for every vendor conn_id
        ...deliver with the provider hooks / vendorprivacy.transports...
        sb.ingest()                    # file vendors load complete deliveries into their stores
        sb.records("payflow")          # what the vendor now holds

Everything binds 127.0.0.1 on free ports, state lives under ``state_dir``; children are in their
own process groups, get SIGTERM if this process dies, and are stopped by ``stop()``/``__exit__``
(and at interpreter exit).
"""

from __future__ import annotations

import atexit
import json
import os
import time
from pathlib import Path
from typing import Any

from sandbox.vendors import DEFAULT_VENDORS, VendorSpec

__all__ = ["Sandbox", "VendorSpec", "DEFAULT_VENDORS", "SANDBOX_KEYS_DIR", "POLICY_KEYS_DIR"]

_ROOT = Path(__file__).resolve().parent.parent
SANDBOX_KEYS_DIR = Path(__file__).resolve().parent / "keys"  # committed sandbox-only secret keys
POLICY_KEYS_DIR = _ROOT / "include" / "policy" / "keys"  # the matching public keys


def conn_env_var(conn_id: str) -> str:
    return f"AIRFLOW_CONN_{conn_id.upper()}"


class Sandbox:
    """The sandbox vendors. Use as a context manager, or call ``start()``/``stop()``."""

    def __init__(self, state_dir: Path | str, vendors: list[VendorSpec] | None = None, *,
                 keys_dir: Path | None = None, public_keys_dir: Path | None = None) -> None:
        from sandbox.s3 import MotoS3Server
        from sandbox.sshd import SshdServer

        self.state_dir = Path(state_dir).resolve()
        self.vendors = list(DEFAULT_VENDORS if vendors is None else vendors)
        names = [v.vendor for v in self.vendors]
        if len(set(names)) != len(names):
            raise ValueError("duplicate vendor ids")
        self.keys_dir = Path(keys_dir) if keys_dir else SANDBOX_KEYS_DIR
        self.public_keys_dir = Path(public_keys_dir) if public_keys_dir else POLICY_KEYS_DIR
        self._by_name = {v.vendor: v for v in self.vendors}
        self.sshd = SshdServer(self.state_dir)
        self.s3 = MotoS3Server(self.state_dir, buckets=[v.bucket for v in self.of("s3")])
        self.vendor_api: Any = None  # VendorApiServer, built in start() once TLS material exists
        self.startup_seconds: float | None = None
        self._saved_env: dict[str, str | None] | None = None
        self._started = False

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> Sandbox:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> Sandbox:
        from sandbox.tls import make_ca_and_server_cert
        from sandbox.vendor_api import VendorApiServer

        t0 = time.monotonic()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        (self.state_dir / "tmp").mkdir(exist_ok=True)
        atexit.register(self.stop)
        self._started = True
        try:
            https = [v.vendor for v in self.of("https")]
            if https:
                tls = make_ca_and_server_cert(self.state_dir / "tls")
                self.vendor_api = VendorApiServer(self.state_dir, https, tls)
                self.vendor_api.launch()
            if self.of("s3"):
                self.s3.launch()
            if self.of("sftp"):
                self.sshd.launch()
                for spec in self.of("sftp"):
                    self.sshd.drop_folder(spec.base_path).mkdir(parents=True, exist_ok=True)
            self._ensure_keys()
            if self.of("sftp"):
                self.sshd.wait_ready()
            if self.vendor_api is not None:
                self.vendor_api.wait_ready()
            if self.of("s3"):
                self.s3.wait_ready()
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - t0
        return self

    def stop(self) -> None:
        """Stop every server (idempotent) and restore the environment if ``apply_env`` changed it."""
        self.restore_env()
        for server in (self.vendor_api, self.s3, self.sshd):
            if server is not None:
                try:
                    server.stop()
                except Exception:  # noqa: BLE001 - keep stopping the others
                    pass
        if self._started:
            atexit.unregister(self.stop)
            self._started = False

    # ------------------------------------------------------------------ vendors & keys
    def of(self, transport: str) -> list[VendorSpec]:
        return [v for v in self.vendors if v.transport == transport]

    def spec(self, vendor: str) -> VendorSpec:
        try:
            return self._by_name[vendor]
        except KeyError:
            raise KeyError(f"unknown sandbox vendor {vendor!r}") from None

    def _ensure_keys(self) -> None:
        """File vendors need a keypair; vendors without a committed one get a throwaway in the state dir."""
        for spec in self.vendors:
            if spec.transport == "https":
                continue
            if not (self.keys_dir / f"{spec.vendor}.sec.asc").exists():
                from vendorprivacy.crypto import generate_keypair

                keydir = self.state_dir / "keys"
                if not (keydir / f"{spec.vendor}.sec.asc").exists():
                    generate_keypair(f"{spec.vendor} (sandbox only)", f"{spec.vendor}@sandbox.invalid", keydir)

    def secret_key(self, vendor: str) -> Path:
        committed = self.keys_dir / f"{vendor}.sec.asc"
        return committed if committed.exists() else self.state_dir / "keys" / f"{vendor}.sec.asc"

    def public_key(self, vendor: str) -> Path:
        """The public key a pipeline should encrypt to for this vendor."""
        if (self.keys_dir / f"{vendor}.sec.asc").exists():
            return self.public_keys_dir / f"{vendor}.asc"
        return self.state_dir / "keys" / f"{vendor}.asc"

    def drop_folder(self, vendor: str) -> Path:
        """Where an SFTP vendor's files land on disk."""
        return self.sshd.drop_folder(self.spec(vendor).base_path)

    # ------------------------------------------------------------------ Airflow connections
    def connection(self, vendor_or_conn_id: str) -> dict[str, Any]:
        spec = self._by_name.get(vendor_or_conn_id) or next(
            (v for v in self.vendors if v.conn_id == vendor_or_conn_id), None
        )
        if spec is None:
            raise KeyError(f"unknown sandbox vendor or conn_id {vendor_or_conn_id!r}")
        if spec.transport == "sftp":
            return self.sshd.connection()
        if spec.transport == "s3":
            return self.s3.connection()
        return self.vendor_api.connection(spec.vendor)

    def airflow_env(self) -> dict[str, str]:
        """``AIRFLOW_CONN_<CONN_ID>`` -> Airflow JSON connection, for every vendor conn_id."""
        return {conn_env_var(v.conn_id): json.dumps(self.connection(v.vendor)) for v in self.vendors}

    def apply_env(self) -> dict[str, str]:
        """Put ``airflow_env()`` into ``os.environ`` (re-callable, e.g. after a host-key rotation)."""
        env = self.airflow_env()
        if self._saved_env is None:
            self._saved_env = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        return env

    def restore_env(self) -> None:
        saved, self._saved_env = self._saved_env, None
        for key, value in (saved or {}).items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value

    # ------------------------------------------------------------------ what vendors hold
    def store(self, vendor: str):
        from sandbox.stores import VendorStore, store_path

        self.spec(vendor)
        return VendorStore(store_path(self.state_dir, vendor), vendor=vendor)

    def ingest(self, vendor: str | None = None):
        """Load complete file deliveries (sftp/s3) into the vendors' stores; returns an IngestReport."""
        from sandbox.stores import IngestReport, ingest_bucket, ingest_folder

        report = IngestReport()
        targets = [self.spec(vendor)] if vendor else self.vendors
        client = None
        for spec in targets:
            if spec.transport == "sftp":
                report.merge(ingest_folder(self.store(spec.vendor), self.drop_folder(spec.vendor),
                                           self.secret_key(spec.vendor), self.state_dir / "tmp"))
            elif spec.transport == "s3":
                client = client or self.s3.client()
                report.merge(ingest_bucket(self.store(spec.vendor), client, spec.bucket, spec.prefix,
                                           self.secret_key(spec.vendor), self.state_dir / "tmp"))
        return report

    def records(self, vendor: str, feed: str | None = None) -> list[dict[str, Any]]:
        return self.store(vendor).records(feed)

    def entries(self, vendor: str, feed: str | None = None) -> list[dict[str, Any]]:
        return self.store(vendor).entries(feed)

    def find(self, vendor: str, column: str, value: Any) -> list[dict[str, Any]]:
        return self.store(vendor).find(column, value)

    def deliveries(self, vendor: str) -> list[str]:
        return self.store(vendor).deliveries()

    def delivery_log(self, vendor: str) -> list[dict[str, Any]]:
        return self.store(vendor).delivery_log()
