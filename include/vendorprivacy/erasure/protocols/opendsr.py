"""opendsr: the OpenDSR (OpenGDPR / OpenCompliance) processor API, over the vendor's HTTPS connection.

Endpoints, under the erasure transport's base (``erasure.transport`` or the feed transport, e.g.
``/payflow`` on ``vendor_payflow_api``)::

    GET  /opendsr/discovery            {"api_version", "supported_identities", "supported_subject_request_types",
                                        "processor_certificate": "<https URL of the PEM on the same API>"}
    POST /opendsr/requests             one request per pair (below) -> 201 {"controller_id",
                                        "expected_completion_time", "received_time", "encoded_request",
                                        "subject_request_id"}; 200 with the request's status when the
                                        subject_request_id is already held (nothing new is created)
    GET  /opendsr/requests/{id}        {"subject_request_id", "request_status", "expected_completion_time",
                                        "controller_id", "api_version", "extensions": {<domain>: {...}}}

Every response and every status callback carries ``X-OpenDSR-Processor-Domain`` and
``X-OpenDSR-Signature`` (base64 signature of the raw body with the key of the processor certificate;
ECDSA P-256/SHA-256, RSA PKCS#1 v1.5/SHA-256 or Ed25519). We verify it on every response we map and
refuse answers whose signature or domain does not match (``AnswerRejected``). The certificate comes
from ``/discovery`` over the TLS-verified connection (trust on first use per protocol instance) or is
pinned with ``processor_cert_pem=``.

Request body (``api_version`` 1.0)::

    {"regulation": "gdpr"|"ccpa", "subject_request_id": <pair_id>, "subject_request_type": "erasure",
     "submitted_time": "2026-11-01T10:00:00Z", "api_version": "1.0", "status_callback_urls": [...],
     "subject_identities": [{"identity_type", "identity_value", "identity_format": "raw"|"sha256"}]}

Identity mapping (OpenDSR has no phone/order types; the names below are the custom types the
processors agree to): email -> ``email``; phone -> ``phone_number``; customer_id ->
``controller_customer_id``; order_id -> ``controller_order_id``; device_id -> ``device_id``;
cookie_id -> ``cookie_id``; any identifier we send as an HMAC token -> ``controller_token`` with
format ``raw`` (the token *is* the value the processor holds; it cannot be re-hashed or reversed).

OpenDSR knows no opt-out: an ``opt_out`` item is sent as ``erasure`` (``opt_out_as="erasure"``, the
default: these processors are service providers, and deleting what they hold is the strictest way to
stop any further use) or refused with ``opt_out_as=None``.

Outcome extension (``extensions[<processor domain>]``): ``{"reference": str, "erasure_outcome":
{"outcome": "deleted"|"not_found"|"retained"|"failed", "deleted": n, "retained": n, "reason": str|null,
"processed_at": RFC 3339}}``. Mapping: pending / in_progress -> acknowledged; completed -> by the
outcome (deleted completed, not_found, retained with its reason, failed), completed without the
extension -> completed; cancelled -> failed.

429/503 (and other 5xx) are retried by ``HttpsRecordTransport`` honouring ``Retry-After``.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Any

from vendorprivacy.erasure.protocols.base import (
    AnswerRejected,
    ErasureItem,
    Outcome,
    SubmitReceipt,
    canonical_json,
    check_batch,
    parse_time,
    save_evidence,
    sha256_hex,
    utcnow,
)

log = logging.getLogger("vendorprivacy.erasure.protocols")

API_VERSION = "1.0"
DOMAIN_HEADER = "X-OpenDSR-Processor-Domain"
SIGNATURE_HEADER = "X-OpenDSR-Signature"
OUTCOME_KEY = "erasure_outcome"
REQUEST_STATUSES = ("pending", "in_progress", "completed", "cancelled")
IDENTITY_TYPES = {
    "email": "email",
    "phone": "phone_number",
    "customer_id": "controller_customer_id",
    "order_id": "controller_order_id",
    "device_id": "device_id",
    "cookie_id": "cookie_id",
}
TOKEN_IDENTITY = "controller_token"
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_HTTP_STATUS = re.compile(r"^(?:\[[^\]]*\] )?[A-Z]+ \S+: (\d{3})\b")

__all__ = [
    "OpenDsrProtocol",
    "verify_callback",
    "verify_signature",
    "outcome_from_callback",
    "fetch_processor_cert",
    "status_to_outcome",
    "identity",
    "API_VERSION",
    "DOMAIN_HEADER",
    "SIGNATURE_HEADER",
]


def identity(kind: str, fmt: str, value: str) -> dict[str, str]:
    """One OpenDSR identity object for an identifier of ``kind`` in register format ``fmt``."""
    if fmt == "hmac":
        return {"identity_type": TOKEN_IDENTITY, "identity_value": value, "identity_format": "raw"}
    if fmt not in ("raw", "sha256"):
        raise ValueError(f"identifier format {fmt!r} has no OpenDSR form")
    return {"identity_type": IDENTITY_TYPES[kind], "identity_value": value, "identity_format": fmt}


# ---------------------------------------------------------------------------- signatures
def _header(headers: Mapping[str, Any], name: str) -> str | None:
    want = name.lower()
    for key, value in headers.items():
        if str(key).lower() == want:
            return None if value is None else str(value)
    return None


def _load_cert(pem: bytes, vendor: str, file: str):
    from cryptography import x509

    try:
        return x509.load_pem_x509_certificate(pem)
    except (ValueError, TypeError):
        raise AnswerRejected("processor certificate is not a PEM X.509 certificate", vendor=vendor, file=file) from None


def _cert_domains(cert) -> set[str]:
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    names: set[str] = set()
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names |= {n.lower() for n in san.get_values_for_type(x509.DNSName)}
    except x509.ExtensionNotFound:
        pass
    names |= {str(a.value).lower() for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)}
    return names


def verify_signature(headers: Mapping[str, Any], body: bytes, processor_cert_pem: bytes, *,
                     vendor: str = "unknown", file: str = "response") -> str:
    """Check the OpenDSR signature headers over the raw ``body``; return the processor domain.

    Raises ``AnswerRejected`` if a header is missing, the domain is not the certificate's, the
    certificate is outside its validity period, or the signature does not verify.
    """
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

    domain = (_header(headers, DOMAIN_HEADER) or "").strip().lower()
    signature = _header(headers, SIGNATURE_HEADER)
    if not domain:
        raise AnswerRejected(f"no {DOMAIN_HEADER} header", vendor=vendor, file=file)
    if not signature:
        raise AnswerRejected(f"no {SIGNATURE_HEADER} header: unsigned answers are not accepted", vendor=vendor, file=file)
    try:
        sig = base64.b64decode("".join(signature.split()), validate=True)
    except (binascii.Error, ValueError):
        raise AnswerRejected(f"{SIGNATURE_HEADER} is not base64", vendor=vendor, file=file) from None
    cert = _load_cert(processor_cert_pem, vendor, file)
    if domain not in _cert_domains(cert):
        raise AnswerRejected(f"processor domain {domain!r} is not the certificate's", vendor=vendor, file=file)
    now = datetime.now(timezone.utc)
    if not (cert.not_valid_before_utc <= now <= cert.not_valid_after_utc):
        raise AnswerRejected("processor certificate is expired or not yet valid", vendor=vendor, file=file)
    key = cert.public_key()
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(sig, body, ec.ECDSA(hashes.SHA256()))
        elif isinstance(key, rsa.RSAPublicKey):
            key.verify(sig, body, padding.PKCS1v15(), hashes.SHA256())
        elif isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(sig, body)
        else:
            raise AnswerRejected(f"unsupported certificate key type {type(key).__name__}", vendor=vendor, file=file)
    except InvalidSignature:
        raise AnswerRejected(f"{SIGNATURE_HEADER} does not verify against the processor certificate",
                             vendor=vendor, file=file) from None
    return domain


def _json_doc(body: bytes, vendor: str, file: str) -> dict:
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise AnswerRejected("body is not JSON", vendor=vendor, file=file) from None
    if not isinstance(doc, dict):
        raise AnswerRejected("body is not a JSON object", vendor=vendor, file=file)
    return doc


def verify_callback(headers: Mapping[str, Any], body: bytes, processor_cert_pem: bytes, *,
                    vendor: str = "unknown", expected_callback_url: str | None = None) -> dict:
    """Verify a status callback (signature over the raw body first, then parse); return its JSON body.

    A callback receiver answers 403 when this raises ``AnswerRejected``. Map the result with
    ``status_to_outcome`` (or use ``outcome_from_callback``).
    """
    verify_signature(headers, body, processor_cert_pem, vendor=vendor, file="status callback")
    doc = _json_doc(body, vendor, "status callback")
    if not isinstance(doc.get("subject_request_id"), str) or not _UUID.match(doc["subject_request_id"]):
        raise AnswerRejected("callback has no valid subject_request_id", vendor=vendor, file="status callback")
    if doc.get("request_status") not in REQUEST_STATUSES:
        raise AnswerRejected("callback has no valid request_status", vendor=vendor, file="status callback")
    if expected_callback_url is not None and doc.get("status_callback_url") != expected_callback_url:
        raise AnswerRejected("callback is addressed to another status_callback_url", vendor=vendor,
                             file="status callback")
    return doc


def outcome_from_callback(headers: Mapping[str, Any], body: bytes, processor_cert_pem: bytes, *,
                          vendor: str = "unknown", expected_callback_url: str | None = None) -> Outcome:
    """``verify_callback`` + ``status_to_outcome``."""
    doc = verify_callback(headers, body, processor_cert_pem, vendor=vendor,
                          expected_callback_url=expected_callback_url)
    domain = (_header(headers, DOMAIN_HEADER) or "").strip().lower()
    return status_to_outcome(doc, body, domain, vendor=vendor, file="status callback")


def status_to_outcome(doc: dict, raw: bytes, domain: str, *, vendor: str, file: str) -> Outcome:
    """Map one verified OpenDSR status document (GET answer or callback) to an Outcome."""
    pid = doc.get("subject_request_id")
    status = doc.get("request_status")
    if not isinstance(pid, str) or not _UUID.match(pid):
        raise AnswerRejected("status has no valid subject_request_id", vendor=vendor, file=file)
    if status not in REQUEST_STATUSES:
        raise AnswerRejected(f"unknown request_status {str(status)[:40]!r}", vendor=vendor, file=file)
    extensions = doc.get("extensions") if isinstance(doc.get("extensions"), dict) else {}
    ext = extensions.get(domain) if isinstance(extensions.get(domain), dict) else {}
    result = ext.get(OUTCOME_KEY) if isinstance(ext.get(OUTCOME_KEY), dict) else None
    ref = ext.get("reference")
    ref = None if ref is None else str(ref)[:200]
    evidence = sha256_hex(raw)
    reason = None
    if result is not None and result.get("reason") not in (None, ""):
        reason = str(result["reason"])[:500]
    if status in ("pending", "in_progress"):
        at = parse_time(doc.get("received_time")) or utcnow()
        return Outcome(pid, "acknowledged", ref, None, evidence, min(at, utcnow()))
    at = (parse_time(result.get("processed_at")) if result else None) or utcnow()
    at = min(at, utcnow())
    if status == "cancelled":
        return Outcome(pid, "failed", ref, "cancelled by the processor" + (f": {reason}" if reason else ""),
                       evidence, at)
    if result is None:
        return Outcome(pid, "completed", ref, None, evidence, at)
    outcome = result.get("outcome")
    if outcome == "deleted":
        return Outcome(pid, "completed", ref, None, evidence, at)
    if outcome == "not_found":
        return Outcome(pid, "not_found", ref, None, evidence, at)
    if outcome == "retained":
        if not reason:
            raise AnswerRejected(f"pair {pid}: 'retained' without a legal reason", vendor=vendor, file=file)
        return Outcome(pid, "retained", ref, reason, evidence, at)
    if outcome == "failed":
        return Outcome(pid, "failed", ref, reason or "processor reported a failure", evidence, at)
    raise AnswerRejected(f"pair {pid}: unknown outcome {str(outcome)[:40]!r}", vendor=vendor, file=file)


def _http_status(exc: Exception) -> int | None:
    """The HTTP status in a TransportError message (``[conn -> target] GET /path: 404 Not Found``)."""
    m = _HTTP_STATUS.match(str(exc))
    return int(m.group(1)) if m else None


# ---------------------------------------------------------------------------- the client
class OpenDsrProtocol:
    kind = "opendsr"

    def __init__(self, vendor_id: str, conn_id: str, endpoint: str, formats: Sequence[tuple[str, str]], *,
                 callback_urls: Sequence[str] = (), processor_cert_pem: bytes | None = None,
                 opt_out_as: str | None = "erasure", evidence_dir: Any = None, in_flight: int = 8,
                 **transport_options: Any) -> None:
        if opt_out_as not in (None, "erasure"):
            raise ValueError("opt_out_as must be 'erasure' or None")
        for url in callback_urls:
            if not re.match(r"^https?://", url):
                raise ValueError("status callback URLs must be http(s) URLs")
        self.vendor_id = vendor_id
        self.conn_id = conn_id
        self.endpoint = endpoint
        self.formats = list(formats)  # (identifier type, register format), register order
        self.callback_urls = list(callback_urls)
        self.opt_out_as = opt_out_as
        self.evidence_dir = evidence_dir
        self.transport_options = transport_options
        self.in_flight = max(1, in_flight)  # OpenDSR is one call per pair: overlap the round trips
        self._cert_pem = processor_cert_pem
        self._discovery: dict | None = None
        if processor_cert_pem is not None:
            _load_cert(processor_cert_pem, vendor_id, "pinned processor certificate")

    @classmethod
    def from_vendor(cls, vendor: Any, **options: Any) -> OpenDsrProtocol:
        options.pop("keys_dir", None)
        options.pop("work_dir", None)
        t = vendor.erasure.transport or vendor.transport
        if t.kind != "https":
            raise ValueError(f"vendor {vendor.vendor}: opendsr needs an https transport, not {t.kind}")
        formats = [(i.type, i.format) for i in vendor.erasure.identifiers]
        return cls(vendor.vendor, t.conn_id, t.path, formats, **options)

    def transport(self):
        from vendorprivacy.transports import HttpsRecordTransport

        return HttpsRecordTransport(self.conn_id, self.endpoint, **self.transport_options)

    # ---- certificate
    def processor_cert(self, transport: Any = None) -> bytes:
        """The processor certificate (PEM): pinned, or fetched from /discovery once per instance."""
        if self._cert_pem is not None:
            return self._cert_pem
        own = transport is None
        t = transport or self.transport()
        try:
            resp = t.request("GET", "/opendsr/discovery")
            doc = _json_doc(resp.content, self.vendor_id, "GET /opendsr/discovery")
            url = doc.get("processor_certificate")
            base = t.target.rstrip("/")
            if not isinstance(url, str) or not url.startswith(base + "/"):
                raise AnswerRejected("processor_certificate is not a URL on the processor's own API",
                                     vendor=self.vendor_id, file="GET /opendsr/discovery")
            pem = t.request("GET", url[len(base):]).content
        finally:
            if own:
                t.close()
        _load_cert(pem, self.vendor_id, "processor certificate")
        self._discovery = doc
        self._cert_pem = pem
        return pem

    def _check_supported(self) -> None:
        if not self._discovery:
            return
        types = self._discovery.get("supported_subject_request_types") or []
        if "erasure" not in types:
            raise ValueError(f"vendor {self.vendor_id}: processor does not support erasure requests")
        supported = {(s.get("identity_type"), s.get("identity_format"))
                     for s in self._discovery.get("supported_identities") or [] if isinstance(s, dict)}
        for kind, fmt in self.formats:
            ident = identity(kind, fmt, "x")
            if (ident["identity_type"], ident["identity_format"]) not in supported:
                raise ValueError(f"vendor {self.vendor_id}: processor does not list identity "
                                 f"{ident['identity_type']}/{ident['identity_format']} in /discovery")

    # ---- requests
    def request_body(self, item: ErasureItem) -> dict:
        declared = {kind for kind, _ in self.formats}
        extra = set(item.identifiers) - declared
        if extra:
            raise ValueError(f"{self.vendor_id}: pair {item.pair_id} has identifier type(s) {sorted(extra)} "
                             f"this vendor does not take")
        if item.request_type == "opt_out" and self.opt_out_as is None:
            raise ValueError(f"{self.vendor_id}: pair {item.pair_id}: OpenDSR has no opt-out and opt_out_as is None")
        identities = [identity(kind, fmt, value) for kind, fmt in self.formats for value in item.values(kind)]
        return {
            "api_version": API_VERSION,
            "regulation": item.regulation,
            "subject_request_id": item.pair_id,
            "subject_request_type": "erasure",
            "submitted_time": item.submitted_utc,
            "subject_identities": identities,
            "status_callback_urls": list(self.callback_urls),
        }

    def _each(self, items: list, call: Callable[[Any, Any], Any]) -> list:
        """``call(transport, item)`` for every item, ``in_flight`` at a time, each thread on its own keep-alive
        session; results in item order. The first error is raised once the calls under way have ended (what
        was sent is safe to send again: the processor keeps one request per subject_request_id)."""
        if self.in_flight == 1 or len(items) <= 1:
            with self.transport() as t:
                return [call(t, item) for item in items]
        local, opened, lock = threading.local(), [], threading.Lock()

        def run(item):
            t = getattr(local, "transport", None)
            if t is None:
                t = local.transport = self.transport()
                with lock:
                    opened.append(t)
            return call(t, item)

        try:
            with ThreadPoolExecutor(max_workers=self.in_flight, thread_name_prefix=f"opendsr-{self.vendor_id}") as pool:
                return list(pool.map(run, items))
        finally:
            for t in opened:
                t.close()

    def _verified(self, resp: Any, cert: bytes, file: str, pair_id: str) -> tuple[dict, str]:
        domain = verify_signature(resp.headers, resp.content, cert, vendor=self.vendor_id, file=file)
        doc = _json_doc(resp.content, self.vendor_id, file)
        if doc.get("subject_request_id") != pair_id:
            raise AnswerRejected("answer is about another subject_request_id", vendor=self.vendor_id, file=file)
        return doc, domain

    def submit(self, batch_id: str, items: list[ErasureItem]) -> SubmitReceipt:
        """POST one OpenDSR request per pair; a pair the processor already holds is not created again."""
        items = check_batch(self.vendor_id, batch_id, items)
        bodies = [self.request_body(i) for i in items]
        sent = canonical_json(bodies)
        cert = self.processor_cert()
        self._check_supported()

        def post(t, body) -> bool:
            resp = t.request("POST", "/opendsr/requests", body)
            self._verified(resp, cert, "POST /opendsr/requests", body["subject_request_id"])
            return resp.status_code != 200  # 201 Created (200 = already held)

        created = sum(self._each(bodies, post))
        log.info("erasure %s batch %s: %d request(s) created, %d already held", self.vendor_id, batch_id,
                 created, len(bodies) - created)
        return SubmitReceipt(batch_id, None, sha256_hex(sent), len(sent), created == 0)

    def poll(self, batch_id: str, items: list[ErasureItem]) -> list[Outcome]:
        """GET each pair's request; verified answers only. A request the processor does not know yields nothing."""
        from vendorprivacy.transports import TransportError

        items = check_batch(self.vendor_id, batch_id, items)
        cert = self.processor_cert()

        def get(t, item) -> Outcome | None:
            path = f"/opendsr/requests/{item.pair_id}"
            try:
                resp = t.request("GET", path)
            except TransportError as exc:
                if _http_status(exc) == 404:
                    return None
                raise
            doc, domain = self._verified(resp, cert, f"GET {path}", item.pair_id)
            outcome = status_to_outcome(doc, resp.content, domain, vendor=self.vendor_id, file=f"GET {path}")
            save_evidence(self.evidence_dir, self.vendor_id,
                          {"json": resp.content, "sig": (resp.headers.get(SIGNATURE_HEADER) or "").encode()})
            return outcome

        answers = self._each(items, get)
        outcomes = [o for o in answers if o is not None]
        missing = len(answers) - len(outcomes)
        if missing:
            log.warning("erasure %s batch %s: processor does not know %d request(s) (not yet submitted?)",
                        self.vendor_id, batch_id, missing)
        log.info("erasure %s batch %s: %d answer(s) verified", self.vendor_id, batch_id, len(outcomes))
        return outcomes


def fetch_processor_cert(vendor: Any, **options: Any) -> bytes:
    """The processor certificate of a register entry's OpenDSR API (PEM bytes), via its /discovery."""
    return OpenDsrProtocol.from_vendor(vendor, **options).processor_cert()
