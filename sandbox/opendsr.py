"""The sandbox's OpenDSR processor API, served by the vendor API process for every https vendor.

Vendor endpoints (under ``/<vendor>``, e.g. ``/payflow`` for PayFlow's ``vendor_payflow_api``)::

    GET    /opendsr/discovery            api_version, supported identities / request types,
                                          processor_certificate (URL of the PEM below); no auth
    GET    /opendsr/cert.pem             the processor certificate (self-signed ECDSA P-256, CN/SAN =
                                          the processor domain ``opendsr.<vendor>.sandbox.invalid``); no auth
    POST   /opendsr/requests             create (201, request_status pending) or, for a known
                                          subject_request_id with the same body, the request as held (200);
                                          the same id with another body is a 409
    GET    /opendsr/requests/{id}        status + ``extensions[<domain>] = {"reference", "erasure_outcome"}``
    DELETE /opendsr/requests/{id}        cancel while pending (202), else 409

Every JSON answer from these endpoints, and every status callback, is signed: ``X-OpenDSR-Processor-Domain``
and ``X-OpenDSR-Signature`` = base64 ECDSA-P256/SHA-256 signature (DER) of the exact body bytes.
Callbacks are POSTed to each ``status_callback_urls`` entry when a request is created (pending) and
when it ends (completed / cancelled), with ``status_callback_url`` in the body; up to 3 attempts.

Processing happens in a background thread (``tick`` seconds) once a request is due (``delay`` after it
arrived; the vendor's ``slow`` behaviour sets its own delay): the identities are matched against the
vendor's store with its ``ErasureRules`` (``controller_token`` matches the vendor's token columns),
matching rows are really deleted unless retained (payflow keeps payment rows, with the register's
reason), the outcome is stored, identity values are scrubbed from the stored request, and callbacks
go out. Behaviour ``never`` leaves requests pending; ``retain`` deletes nothing.

Admin (sandbox only): ``POST /_admin/<vendor>/erasure_behaviour`` ``{"mode", "delay", "reason"}``,
``POST /_admin/opendsr/process`` ``{"vendor": optional}`` (process what is due now, send callbacks),
``GET /_admin/<vendor>/opendsr/callbacks`` (what was sent, statuses only).
"""


import base64
import datetime as dt
import hashlib
import json
import logging
import os
import queue
import re
import threading
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sandbox.erasure import Behaviour, ErasureRules, erase_pair
from sandbox.stores import now_iso

log = logging.getLogger("sandbox.opendsr")

API_VERSION = "1.0"
DOMAIN_HEADER = "X-OpenDSR-Processor-Domain"
SIGNATURE_HEADER = "X-OpenDSR-Signature"
IDENTITY_TYPES = {  # our identifier type -> OpenDSR identity_type (see vendorprivacy.erasure.protocols.opendsr)
    "email": "email",
    "phone": "phone_number",
    "customer_id": "controller_customer_id",
    "order_id": "controller_order_id",
    "device_id": "device_id",
    "cookie_id": "cookie_id",
}
TOKEN_IDENTITY = "controller_token"
_UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def processor_domain(vendor: str) -> str:
    return f"opendsr.{vendor}.sandbox.invalid"


def make_processor_cert(vendor: str, directory: Path) -> dict[str, str]:
    """Self-signed ECDSA P-256 processor certificate + key for ``vendor`` (reused if already there)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / f"{vendor}.cert.pem", directory / f"{vendor}.key.pem"
    domain = processor_domain(vendor)
    if not (cert_path.exists() and key_path.exists()):
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, f"{vendor} (sandbox OpenDSR processor)"),
                          x509.NameAttribute(NameOID.COMMON_NAME, domain)])
        now = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5)
        cert = (
            x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + dt.timedelta(days=90))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(domain)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=True, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256())
        )
        key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        os.chmod(key_path, 0o600)
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return {"cert": str(cert_path), "key": str(key_path), "domain": domain}


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode("utf-8")


def _rfc3339(value: dt.datetime) -> str:
    return value.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse(value: str) -> dt.datetime:
    parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        raise ValueError("timestamp without timezone")
    return parsed


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


@dataclass
class Processor:
    vendor: str
    ctx: Any  # vendor_api.VendorContext
    rules: ErasureRules
    domain: str
    key: Any
    cert_pem: bytes
    behaviour: Behaviour = field(default_factory=Behaviour)

    def supported(self) -> list[dict[str, str]]:
        out: list[dict[str, str]] = []
        for rule in self.rules.match:
            item = ({"identity_type": TOKEN_IDENTITY, "identity_format": "raw"} if rule.format == "hmac"
                    else {"identity_type": IDENTITY_TYPES.get(rule.type, rule.type), "identity_format": rule.format})
            if item not in out:
                out.append(item)
        return out

    def columns_for(self, identity: dict) -> tuple[str, ...]:
        itype, fmt = identity.get("identity_type"), identity.get("identity_format")
        if itype == TOKEN_IDENTITY and fmt == "raw":
            return self.rules.token_columns()
        kind = next((k for k, v in IDENTITY_TYPES.items() if v == itype), None)
        return self.rules.columns(kind, fmt) if kind else ()


class OpenDsrService:
    def __init__(self, state: Any, config: dict[str, Any], api_error: type[Exception]) -> None:
        """``api_error``: the app's ``ApiError`` class (passed in: run as ``python -m sandbox.vendor_api``,
        that module is ``__main__`` and a fresh import would define a second, unhandled class)."""
        from cryptography.hazmat.primitives import serialization

        self.ApiError = api_error
        settings = config.get("opendsr") or {}
        self.delay = float(settings.get("delay", 0.0))
        self.tick = float(settings.get("tick", 0.1))
        self.controller_id = str(settings.get("controller_id", "namdar"))
        self.expected_days = int(settings.get("expected_days", 30))
        self.processors: dict[str, Processor] = {}
        for name, vconf in config["vendors"].items():
            erasure = vconf.get("erasure") or {}
            proc = erasure.get("processor")
            if not proc:
                continue
            key = serialization.load_pem_private_key(Path(proc["key"]).read_bytes(), password=None)
            self.processors[name] = Processor(
                vendor=name, ctx=state.vendors[name], rules=ErasureRules.from_json(erasure.get("rules")),
                domain=proc["domain"], key=key, cert_pem=Path(proc["cert"]).read_bytes(),
            )
        self.lock = threading.RLock()
        self.callbacks: queue.Queue = queue.Queue()
        self._send_lock = threading.Lock()  # one sender at a time: callbacks go out in the order queued
        self.callback_log: dict[str, list[dict]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ signing
    def sign(self, proc: Processor, body: bytes) -> str:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec

        return base64.b64encode(proc.key.sign(body, ec.ECDSA(hashes.SHA256()))).decode()

    def signed_headers(self, proc: Processor, body: bytes) -> dict[str, str]:
        return {DOMAIN_HEADER: proc.domain, SIGNATURE_HEADER: self.sign(proc, body)}

    def respond(self, proc: Processor, status: int, doc: dict):
        from fastapi.responses import Response

        body = _canonical(doc)
        return Response(content=body, status_code=status, media_type="application/json",
                        headers=self.signed_headers(proc, body))

    # ------------------------------------------------------------------ documents
    def status_doc(self, proc: Processor, row: dict) -> dict:
        ext: dict[str, Any] = {"reference": row["reference"]}
        doc: dict[str, Any] = {
            "api_version": API_VERSION,
            "controller_id": self.controller_id,
            "subject_request_id": row["subject_request_id"],
            "request_status": row["status"],
            "received_time": row["received_at"],
            "expected_completion_time": row["expected_completion_time"],
            "extensions": {proc.domain: ext},
        }
        if row.get("outcome"):
            outcome = json.loads(row["outcome"]) if isinstance(row["outcome"], str) else row["outcome"]
            ext["erasure_outcome"] = outcome
            doc["results_count"] = outcome.get("matched", 0)
        return doc

    def validate(self, proc: Processor, body: Any) -> dict:
        ApiError = self.ApiError

        if not isinstance(body, dict):
            raise ApiError(400, "body must be a JSON object")
        if body.get("regulation") not in ("gdpr", "ccpa"):
            raise ApiError(400, "regulation must be 'gdpr' or 'ccpa'")
        if not isinstance(body.get("subject_request_id"), str) or not _UUID4.match(body["subject_request_id"]):
            raise ApiError(400, "subject_request_id must be a lowercase UUID v4")
        if body.get("subject_request_type") not in ("erasure", "access", "portability"):
            raise ApiError(400, "subject_request_type must be erasure, access or portability")
        if body["subject_request_type"] != "erasure":
            raise ApiError(400, f"subject_request_type {body['subject_request_type']} is not supported here")
        try:
            _parse(str(body.get("submitted_time")))
        except ValueError:
            raise ApiError(400, "submitted_time must be an RFC 3339 timestamp with a timezone") from None
        identities = body.get("subject_identities", [])
        if not isinstance(identities, list):
            raise ApiError(400, "subject_identities must be a list")
        supported = proc.supported()
        for i, ident in enumerate(identities):
            if not isinstance(ident, dict) or not isinstance(ident.get("identity_value"), str) \
                    or not ident["identity_value"]:
                raise ApiError(400, f"subject_identities[{i}] needs identity_type, identity_value, identity_format")
            if {"identity_type": ident.get("identity_type"), "identity_format": ident.get("identity_format")} \
                    not in supported:
                raise ApiError(400, f"subject_identities[{i}]: identity {ident.get('identity_type')}/"
                                    f"{ident.get('identity_format')} is not supported (see /discovery)")
        urls = body.get("status_callback_urls", [])
        if not isinstance(urls, list) or len(urls) > 10 or not all(
                isinstance(u, str) and re.match(r"^https?://[^\s]+$", u) for u in urls):
            raise ApiError(400, "status_callback_urls must be a list of at most 10 http(s) URLs")
        return body

    # ------------------------------------------------------------------ handlers (run in a thread pool)
    def create(self, proc: Processor, raw: bytes, body: dict) -> tuple[int, dict]:
        ApiError = self.ApiError

        sha = hashlib.sha256(_canonical(body)).hexdigest()
        pid = body["subject_request_id"]
        store = proc.ctx.store
        with store.transaction() as conn:
            row = conn.execute("SELECT * FROM opendsr_requests WHERE subject_request_id = ?", (pid,)).fetchone()
            if row is not None:
                if row["body_sha256"] != sha:
                    raise ApiError(409, "subject_request_id already used for a different request")
                return 200, self.status_doc(proc, dict(row))
            now = _now()
            delay = proc.behaviour.delay if proc.behaviour.mode == "slow" else self.delay
            due = now + dt.timedelta(seconds=delay)
            expected = max(due, now + dt.timedelta(days=self.expected_days))
            reference = f"{proc.vendor}-dsr-{uuid.uuid4().hex[:10]}"
            conn.execute(
                "INSERT INTO opendsr_requests (subject_request_id, body_sha256, body, regulation, status, reference, "
                "received_at, due_at, expected_completion_time) VALUES (?, ?, ?, ?, 'pending', ?, ?, ?, ?)",
                (pid, sha, json.dumps(body), body["regulation"], reference, _rfc3339(now), due.isoformat(),
                 _rfc3339(expected)),
            )
            row = dict(conn.execute("SELECT * FROM opendsr_requests WHERE subject_request_id = ?", (pid,)).fetchone())
        self._queue_callbacks(proc, row, body.get("status_callback_urls") or [])
        return 201, {
            "controller_id": self.controller_id,
            "expected_completion_time": row["expected_completion_time"],
            "received_time": row["received_at"],
            "encoded_request": base64.b64encode(raw).decode(),
            "subject_request_id": pid,
            "request_status": "pending",
            "api_version": API_VERSION,
        }

    def get(self, proc: Processor, pid: str) -> dict | None:
        with proc.ctx.store.connect() as conn:
            row = conn.execute("SELECT * FROM opendsr_requests WHERE subject_request_id = ?", (pid,)).fetchone()
        return None if row is None else self.status_doc(proc, dict(row))

    def cancel(self, proc: Processor, pid: str) -> dict | None:
        ApiError = self.ApiError

        with self.lock, proc.ctx.store.transaction() as conn:
            row = conn.execute("SELECT * FROM opendsr_requests WHERE subject_request_id = ?", (pid,)).fetchone()
            if row is None:
                return None
            if row["status"] != "pending":
                raise ApiError(409, f"request is {row['status']}; only pending requests can be cancelled")
            outcome = {"outcome": "failed", "matched": 0, "deleted": 0, "retained": 0,
                       "reason": "cancelled by the controller", "processed_at": now_iso()}
            conn.execute("UPDATE opendsr_requests SET status = 'cancelled', processed_at = ?, outcome = ? "
                         "WHERE subject_request_id = ?", (outcome["processed_at"], json.dumps(outcome), pid))
            row = dict(conn.execute("SELECT * FROM opendsr_requests WHERE subject_request_id = ?", (pid,)).fetchone())
        self._queue_callbacks(proc, row, json.loads(row["body"]).get("status_callback_urls") or [])
        return {"controller_id": self.controller_id, "subject_request_id": pid, "received_time": _rfc3339(_now()),
                "api_version": API_VERSION}

    # ------------------------------------------------------------------ processing
    def process_due(self, vendor: str | None = None) -> dict[str, list[str]]:
        done: dict[str, list[str]] = {}
        with self.lock:
            for name, proc in self.processors.items():
                if vendor is not None and name != vendor:
                    continue
                if proc.behaviour.mode == "never":
                    continue
                store = proc.ctx.store
                now = _now().isoformat()
                with store.connect() as conn:
                    due = [r["subject_request_id"] for r in conn.execute(
                        "SELECT subject_request_id FROM opendsr_requests WHERE status IN ('pending', 'in_progress') "
                        "AND due_at <= ? ORDER BY received_at", (now,))]
                for pid in due:
                    if self._process_one(proc, pid):
                        done.setdefault(name, []).append(pid)
        return done

    def _process_one(self, proc: Processor, pid: str) -> bool:
        store = proc.ctx.store
        with store.transaction() as conn:
            row = conn.execute("SELECT * FROM opendsr_requests WHERE subject_request_id = ?", (pid,)).fetchone()
            if row is None or row["status"] not in ("pending", "in_progress"):
                return False
            body = json.loads(row["body"])
            criteria = [(col, ident["identity_value"]) for ident in body.get("subject_identities", [])
                        for col in proc.columns_for(ident)]
            r = erase_pair(conn, store, proc.rules, proc.behaviour, criteria)
            processed_at = now_iso()
            outcome = {"outcome": r["outcome"], "matched": r["matched"], "deleted": r["deleted"],
                       "retained": r["retained"], "reason": r["reason"], "processed_at": processed_at}
            for ident in body.get("subject_identities", []):  # done with them: keep no copy of the identities
                ident["identity_value"] = None
            body["identities_scrubbed_at"] = processed_at
            conn.execute("UPDATE opendsr_requests SET status = 'completed', processed_at = ?, outcome = ?, body = ? "
                         "WHERE subject_request_id = ?", (processed_at, json.dumps(outcome), json.dumps(body), pid))
            store.log_outcome(conn, channel="opendsr", request_ref=pid, pair_id=pid, outcome=r["outcome"],
                              matched=r["matched"], deleted=r["deleted"], retained=r["retained"], reason=r["reason"])
            row = dict(conn.execute("SELECT * FROM opendsr_requests WHERE subject_request_id = ?", (pid,)).fetchone())
        log.info("%s processed OpenDSR request %s: %s", proc.vendor, pid, r["outcome"])
        self._queue_callbacks(proc, row, body.get("status_callback_urls") or [])
        return True

    # ------------------------------------------------------------------ callbacks
    def _queue_callbacks(self, proc: Processor, row: dict, urls: list[str]) -> None:
        for url in urls:
            doc = {**self.status_doc(proc, row), "status_callback_url": url}
            self.callbacks.put((proc, url, doc))

    def send_callbacks(self, attempts: int = 3) -> int:
        with self._send_lock:
            return self._send_callbacks(attempts)

    def _send_callbacks(self, attempts: int) -> int:
        sent = 0
        while True:
            try:
                proc, url, doc = self.callbacks.get_nowait()
            except queue.Empty:
                return sent
            body = _canonical(doc)
            headers = {"Content-Type": "application/json", **self.signed_headers(proc, body)}
            status: int | str = "not sent"
            for attempt in range(attempts):
                try:
                    req = urllib.request.Request(url, data=body, headers=headers, method="POST")
                    with urllib.request.urlopen(req, timeout=5) as resp:
                        status = resp.status
                    break
                except urllib.error.HTTPError as exc:
                    status = exc.code
                    if exc.code < 500:
                        break
                except OSError as exc:
                    status = type(exc).__name__
                if attempt + 1 < attempts:
                    self._stop.wait(0.2 * (attempt + 1))
            sent += 1
            self.callback_log.setdefault(proc.vendor, []).append(
                {"subject_request_id": doc["subject_request_id"], "request_status": doc["request_status"],
                 "url": url, "http_status": status, "at": now_iso()})

    # ------------------------------------------------------------------ worker
    def start(self) -> None:
        if self.tick <= 0 or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="opendsr-worker", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self.tick):
            try:
                self.process_due()
                self.send_callbacks()
            except Exception:  # noqa: BLE001 - the worker must survive one bad request
                log.exception("OpenDSR worker error")

    # ------------------------------------------------------------------ routers
    def router(self, vendor_context, authenticated_vendor):
        from fastapi import APIRouter, Depends, Request
        from starlette.concurrency import run_in_threadpool

        ApiError = self.ApiError

        r = APIRouter(prefix="/{vendor}/opendsr")

        def processor(ctx) -> Processor:
            proc = self.processors.get(ctx.name)
            if proc is None:
                raise ApiError(404, "this vendor offers no OpenDSR API")
            return proc

        @r.get("/discovery")
        async def discovery(request: Request, ctx=Depends(vendor_context)):
            proc = processor(ctx)
            base = str(request.base_url).rstrip("/")
            return self.respond(proc, 200, {
                "api_version": API_VERSION,
                "supported_identities": proc.supported(),
                "supported_subject_request_types": ["erasure"],
                "processor_certificate": f"{base}/{proc.vendor}/opendsr/cert.pem",
            })

        @r.get("/cert.pem")
        async def cert(ctx=Depends(vendor_context)):
            from fastapi.responses import Response

            return Response(content=processor(ctx).cert_pem, media_type="application/x-pem-file")

        @r.post("/requests")
        async def create(request: Request, ctx=Depends(authenticated_vendor)):
            proc = processor(ctx)
            raw = await request.body()
            try:
                body = json.loads(raw)
            except ValueError:
                raise ApiError(400, "body is not JSON") from None
            self.validate(proc, body)
            status, doc = await run_in_threadpool(self.create, proc, raw, body)
            return self.respond(proc, status, doc)

        @r.get("/requests/{subject_request_id}")
        async def status(subject_request_id: str, ctx=Depends(authenticated_vendor)):
            proc = processor(ctx)
            doc = await run_in_threadpool(self.get, proc, subject_request_id)
            if doc is None:
                raise ApiError(404, "unknown subject_request_id")
            return self.respond(proc, 200, doc)

        @r.delete("/requests/{subject_request_id}")
        async def cancel(subject_request_id: str, ctx=Depends(authenticated_vendor)):
            proc = processor(ctx)
            doc = await run_in_threadpool(self.cancel, proc, subject_request_id)
            if doc is None:
                raise ApiError(404, "unknown subject_request_id")
            return self.respond(proc, 202, doc)

        return r

    def admin_router(self, vendor_context):
        from fastapi import APIRouter, Depends, Request
        from starlette.concurrency import run_in_threadpool

        ApiError = self.ApiError

        r = APIRouter(prefix="/_admin")

        @r.post("/opendsr/process")
        async def process(request: Request):
            raw = await request.body()
            body = json.loads(raw) if raw else {}
            vendor = body.get("vendor") if isinstance(body, dict) else None

            def run() -> dict:
                done = self.process_due(vendor)
                return {"processed": done, "callbacks_sent": self.send_callbacks()}

            return await run_in_threadpool(run)

        @r.post("/{vendor}/erasure_behaviour")
        async def behaviour(request: Request, ctx=Depends(vendor_context)):
            proc = self.processors.get(ctx.name)
            if proc is None:
                raise ApiError(404, "this vendor offers no OpenDSR API")
            body = json.loads(await request.body() or b"{}")
            try:
                proc.behaviour = Behaviour(mode=body.get("mode", "normal"), delay=float(body.get("delay") or 0),
                                           reason=body.get("reason"))
            except (ValueError, TypeError) as exc:
                raise ApiError(400, str(exc)) from None
            return {"vendor": ctx.name, "mode": proc.behaviour.mode, "delay": proc.behaviour.delay}

        @r.get("/{vendor}/opendsr/callbacks")
        async def callbacks(ctx=Depends(vendor_context)):
            return {"vendor": ctx.name, "callbacks": list(self.callback_log.get(ctx.name, []))}

        return r
