"""Local stand-ins for the vendors: real sshd (SFTP), moto (S3) and an HTTPS vendor API.

    with Sandbox(tmp_path / "sandbox") as sb:
        sb.apply_env()                 # AIRFLOW_CONN_VENDOR_* for every vendor conn_id
        ...deliver with the provider hooks / vendorprivacy.transports...
        sb.ingest()                    # file vendors load complete deliveries into their stores
        sb.records("payflow")          # what the vendor now holds

Erasure (the vendors' side of ``vendorprivacy.erasure.protocols``): sftp vendors answer request files in
``<vendor>/erasure/`` with signed acks, s3 partners answer ``removals/`` with signed result manifests,
every https vendor (and payflow's ``vendor_payflow_api``) serves the OpenDSR processor API. Each really
deletes what matches in its store (rules derived from the register: ``sandbox.erasure``)::

        sb.process_erasures()          # answer what is due now (a background poller does it anyway)
        sb.set_erasure_behaviour("payflow", "never")   # fault modes: normal | slow | retain | never
        sb.erasure_outcomes("parcelpost")               # what the vendor did, per pair

``Sandbox.from_register(register, state_dir)`` builds the vendors from a register (feed *and* erasure
transports); ``Sandbox(state_dir)`` uses ``DEFAULT_VENDORS``, which mirror the register.

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

import threading

from sandbox.vendors import DEFAULT_VENDORS, VendorSpec, specs_from_register

__all__ = ["Sandbox", "VendorSpec", "DEFAULT_VENDORS", "SANDBOX_KEYS_DIR", "POLICY_KEYS_DIR", "specs_from_register"]

_ROOT = Path(__file__).resolve().parent.parent
SANDBOX_KEYS_DIR = Path(__file__).resolve().parent / "keys"  # committed sandbox-only secret keys
POLICY_KEYS_DIR = _ROOT / "include" / "policy" / "keys"  # the matching public keys
STAGING_BUCKET, STAGING_CONN_ID = "vendorprivacy-staging", "vendorprivacy_staging"


def conn_env_var(conn_id: str) -> str:
    return f"AIRFLOW_CONN_{conn_id.upper()}"


class Sandbox:
    """The sandbox vendors. Use as a context manager, or call ``start()``/``stop()``."""

    def __init__(self, state_dir: Path | str, vendors: list[VendorSpec] | None = None, *,
                 keys_dir: Path | None = None, public_keys_dir: Path | None = None, register: Any = None,
                 erasure_poll_interval: float | None = 1.0, opendsr_delay: float = 0.0,
                 opendsr_tick: float = 0.1) -> None:
        """
        :param register: a ``vendorprivacy.policy.Register`` the vendors' erasure rules come from
            (default: the repository's register, loaded at ``start()``; vendors not in it match nothing).
        :param erasure_poll_interval: seconds between background passes over the file vendors' erasure
            requests (``None``/0: only ``process_erasures()`` answers them).
        :param opendsr_delay: seconds an OpenDSR request waits before the vendor processes it.
        :param opendsr_tick: seconds between the OpenDSR worker's passes (0: only ``process_erasures()``).
        """
        from sandbox.s3 import MotoS3Server
        from sandbox.sshd import SshdServer

        self.state_dir = Path(state_dir).resolve()
        self.vendors = list(DEFAULT_VENDORS if vendors is None else vendors)
        keys = [(v.vendor, v.role) for v in self.vendors]
        if len(set(keys)) != len(keys):
            raise ValueError("duplicate vendor ids")
        self.keys_dir = Path(keys_dir) if keys_dir else SANDBOX_KEYS_DIR
        self.public_keys_dir = Path(public_keys_dir) if public_keys_dir else POLICY_KEYS_DIR
        self._by_name = {v.vendor: v for v in self.vendors if v.role == "feed"}
        for v in self.vendors:
            self._by_name.setdefault(v.vendor, v)
        self.register = register
        self.erasure_poll_interval = erasure_poll_interval
        self.opendsr_settings = {"delay": opendsr_delay, "tick": opendsr_tick}
        self.sshd = SshdServer(self.state_dir)
        # Besides the S3 vendors' buckets, one the pipeline stages through when its tasks run on different
        # workers (not a vendor: the company's own bucket, here on the same S3 API).
        self.s3 = MotoS3Server(self.state_dir, buckets=[v.bucket for v in self.of("s3")] + [STAGING_BUCKET])
        self.vendor_api: Any = None  # VendorApiServer, built in start() once TLS material exists
        self.startup_seconds: float | None = None
        self._saved_env: dict[str, str | None] | None = None
        self._started = False
        self._erasure_rules: dict[str, Any] = {}
        self._behaviours: dict[str, Any] = {}
        self._erasure_lock = threading.Lock()
        self._s3_client: Any = None
        self.erasure_poller: Any = None

    @classmethod
    def from_register(cls, register: Any, state_dir: Path | str, **kwargs: Any) -> Sandbox:
        """A sandbox with a vendor for every feed transport and erasure transport of ``register``."""
        return cls(state_dir, specs_from_register(register), register=register, **kwargs)

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
            self._load_erasure_rules()
            https = list(dict.fromkeys(v.vendor for v in self.of("https")))
            if https:
                tls = make_ca_and_server_cert(self.state_dir / "tls")
                self.vendor_api = VendorApiServer(
                    self.state_dir, https, tls,
                    erasure_rules={v: r.to_json() for v, r in self._erasure_rules.items()},
                    opendsr=self.opendsr_settings,
                )
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
            if self.erasure_poll_interval and any(v.transport != "https" for v in self.vendors):
                from sandbox.erasure import ErasurePoller

                self.erasure_poller = ErasurePoller(self._process_file_erasures, self.erasure_poll_interval)
                self.erasure_poller.start()
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - t0
        return self

    def stop(self) -> None:
        """Stop every server (idempotent) and restore the environment if ``apply_env`` changed it."""
        self.restore_env()
        poller, self.erasure_poller = self.erasure_poller, None
        if poller is not None:
            poller.stop()
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
        """Every endpoint (feed or erasure) with this transport."""
        return [v for v in self.vendors if v.transport == transport]

    def spec(self, vendor: str, role: str = "feed") -> VendorSpec:
        """The vendor's feed endpoint (``role="erasure"``: its separate erasure endpoint)."""
        found = self._by_name.get(vendor) if role == "feed" else next(
            (v for v in self.vendors if v.vendor == vendor and v.role == role), None)
        if found is None:
            raise KeyError(f"unknown sandbox vendor {vendor!r}" + ("" if role == "feed" else f" (role {role})"))
        return found

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
        spec = next((v for v in self.vendors if v.conn_id == vendor_or_conn_id), None) or self._by_name.get(
            vendor_or_conn_id
        )
        if spec is None:
            raise KeyError(f"unknown sandbox vendor or conn_id {vendor_or_conn_id!r}")
        if spec.transport == "sftp":
            return self.sshd.connection()
        if spec.transport == "s3":
            return self.s3.connection()
        return self.vendor_api.connection(spec.vendor)

    def airflow_env(self) -> dict[str, str]:
        """``AIRFLOW_CONN_<CONN_ID>`` -> Airflow JSON connection, for every vendor conn_id, plus the shared
        staging bucket's connection when the S3 server runs."""
        env = {conn_env_var(v.conn_id): json.dumps(self.connection(v.conn_id)) for v in self.vendors}
        if self.of("s3"):
            env[conn_env_var(STAGING_CONN_ID)] = json.dumps(self.s3.connection())
        return env

    def staging_url(self) -> str:
        """``VENDORPRIVACY_STAGING_URL`` for the shared staging bucket (see vendorprivacy.staging)."""
        return f"s3://{STAGING_CONN_ID}@{STAGING_BUCKET}/feeds"

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
        """Load complete file deliveries (sftp/s3) into the vendors' stores; returns an IngestReport.
        Never while the vendors are answering erasure requests (they would miss what is being loaded)."""
        with self._erasure_lock:
            return self._ingest(vendor)

    def _ingest(self, vendor: str | None):
        from sandbox.stores import IngestReport, ingest_bucket, ingest_folder

        report = IngestReport()
        targets = [self.spec(vendor)] if vendor else [v for v in self.vendors if v.role == "feed"]
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

    def add_records(self, vendor: str, feed: str, rows: list[dict[str, Any]], *, delivery_id: str | None = None) -> str:
        """Put rows straight into a vendor's store (as if delivered); returns the delivery id."""
        return self.store(vendor).add_records(feed, rows, delivery_id=delivery_id)

    # ------------------------------------------------------------------ erasure (vendor side)
    def _load_erasure_rules(self) -> None:
        from sandbox.erasure import rules_from_register

        register = self.register
        if register is None:
            try:
                from vendorprivacy.policy import load_register

                register = load_register()
            except Exception as exc:  # noqa: BLE001 - a sandbox without a readable register still starts
                import logging

                logging.getLogger("sandbox").warning("no erasure rules (register not loaded: %s)", exc)
                return
        self._erasure_rules = {v: r for v, r in rules_from_register(register).items() if v in self._by_name}

    def erasure_rules(self, vendor: str) -> Any:
        """The vendor's ``sandbox.erasure.ErasureRules`` (empty: matches nothing)."""
        from sandbox.erasure import ErasureRules

        self.spec(vendor)
        return self._erasure_rules.get(vendor, ErasureRules())

    def erasure_folder(self, vendor: str) -> Path:
        """Where an SFTP vendor's erasure requests land on disk (acks in ``acks/`` below it)."""
        from sandbox.erasure import sftp_erasure_folder

        spec = next((v for v in self.vendors if v.vendor == vendor and v.transport == "sftp"), None)
        if spec is None:
            raise KeyError(f"{vendor!r} has no sftp endpoint")
        return self.sshd.sftp_root / sftp_erasure_folder(spec.base_path, spec.role)

    def _file_vendors(self) -> list[Any]:
        from sandbox.erasure import BucketBox, FileVendor, FolderBox

        out = []
        for spec in self.vendors:
            if spec.transport == "https":
                continue
            if spec.transport == "sftp":
                box: Any = FolderBox(self.erasure_folder(spec.vendor) if spec.role == "feed" else
                                     self.sshd.sftp_root / spec.base_path)
            else:
                if self._s3_client is None:
                    self._s3_client = self.s3.client()
                box = BucketBox(self._s3_client, spec.bucket, spec.prefix)
            out.append(FileVendor(spec.vendor, box, self.store(spec.vendor), self.secret_key(spec.vendor),
                                  self.erasure_rules(spec.vendor), self.state_dir / "tmp"))
        return out

    def _process_file_erasures(self, vendor: str | None = None):
        from sandbox.erasure import Behaviour, ProcessReport, process_file_vendor

        report = ProcessReport()
        with self._erasure_lock:
            for fv in self._file_vendors():
                if vendor is not None and fv.vendor != vendor:
                    continue
                for batch_id in process_file_vendor(fv, self._behaviours.get(fv.vendor, Behaviour())):
                    report.add(fv.vendor, batch_id)
        return report

    def process_erasures(self, vendor: str | None = None):
        """Answer every erasure request that is due now (file vendors here, OpenDSR in the vendor API).

        Respects each vendor's behaviour (``never`` answers nothing, ``slow`` only once due). Returns a
        ``sandbox.erasure.ProcessReport`` (``answered``: vendor -> batch ids / OpenDSR request ids).
        """
        report = self._process_file_erasures(vendor)
        https = {v.vendor for v in self.of("https")}
        if self.vendor_api is not None and (vendor is None or vendor in https):
            for name, ids in self.vendor_api.process_opendsr(vendor)["processed"].items():
                for pid in ids:
                    report.add(name, pid)
        return report

    def set_erasure_behaviour(self, vendor: str, mode: str = "normal", *, delay: float = 0.0,
                              reason: str | None = None) -> None:
        """Fault modes for a vendor's erasure handling: ``normal``, ``slow`` (answer ``delay`` s after
        receiving), ``retain`` (delete nothing, answer retained with ``reason``), ``never`` (accept, never
        answer). Applies to every endpoint of the vendor (payflow: its OpenDSR API). For 429/503 use
        ``sandbox.vendor_api.set_fault``."""
        from sandbox.erasure import Behaviour

        self.spec(vendor)
        behaviour = Behaviour(mode=mode, delay=delay, reason=reason)
        self._behaviours[vendor] = behaviour
        if self.vendor_api is not None and any(v.vendor == vendor for v in self.of("https")):
            self.vendor_api.set_erasure_behaviour(vendor, mode, delay, reason)

    def erasure_outcomes(self, vendor: str, pair_id: str | None = None) -> list[dict[str, Any]]:
        """What the vendor did per pair: outcome, matched / deleted / retained counts, reason."""
        return self.store(vendor).erasure_outcomes(pair_id)

    def opendsr_requests(self, vendor: str, subject_request_id: str | None = None) -> list[dict[str, Any]]:
        """OpenDSR requests the vendor holds."""
        return self.store(vendor).opendsr_requests(subject_request_id)

    def processor_cert(self, vendor: str) -> bytes:
        """The vendor's OpenDSR processor certificate (PEM)."""
        return self.vendor_api.processor_cert(vendor)
