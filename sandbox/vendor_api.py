"""A small HTTPS vendor service hosting every https sandbox vendor under ``/<vendor>/...``.

It really stores what it receives (``sandbox.stores``, one SQLite file per vendor) and is run in a
subprocess (uvicorn, TLS from a throwaway CA) by ``VendorApiServer``.

Vendor endpoints (``Authorization: Bearer <vendor token>``, else 401):

- ``POST /<vendor>/v1/records`` with ``Idempotency-Key`` and
  ``{"feed", "delivery_id", "batch_index", "columns", "records": [[...], ...]}`` -> ``{"accepted": n, ...}``
- ``POST /<vendor>/v1/deliveries/<delivery_id>/complete`` with ``{"row_count", "sha256"}`` ->
  what the vendor holds for that delivery: ``{"delivery_id", "row_count", "sha256", "status",
  "previously_complete"}`` (status ``complete`` or ``mismatch``; always recomputed, so repeatable)
- ``GET /<vendor>/v1/deliveries/<delivery_id>``

A replayed ``Idempotency-Key`` with the same body returns the original answer (header
``Idempotent-Replayed: true``) and stores nothing; the same key with a different body is a 409.

Test/admin endpoints (no auth; loopback only): ``GET /_admin/health``,
``POST|DELETE /_admin/<vendor>/faults`` (``{"status": 429|500|503, "retry_after": s, "count": n}``:
the next n vendor requests get that status), ``GET /_admin/<vendor>/records``,
``GET /_admin/<vendor>/stats``.

The OpenDSR processor API (``/<vendor>/opendsr/...``, signed answers and callbacks, a background
worker that really erases) is ``sandbox.opendsr``; it is enabled when the config has an ``opendsr``
section (``VendorApiServer`` always writes one) and each vendor an ``erasure.processor``.

Adding an API = a module with an ``APIRouter(prefix="/{vendor}")`` using the
``vendor_context``/``authenticated_vendor`` dependencies and ``idempotent`` helper below, listed in
``FEATURE_ROUTERS``.
"""


import argparse
import hashlib
import json
import os
import secrets
import socket
import ssl
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sandbox.procs import spawn, stop_process, wait_until
from sandbox.stores import VendorStore, now_iso, store_path

REPLAY_HEADER = "Idempotent-Replayed"


# ---------------------------------------------------------------------------- app (child process)
@dataclass
class VendorContext:
    name: str
    token: str
    store: VendorStore


@dataclass
class Fault:
    status: int
    retry_after: float | None
    count: int


@dataclass
class AppState:
    vendors: dict[str, VendorContext]
    faults: dict[str, Fault] = field(default_factory=dict)
    stats: dict[str, dict[str, int]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode("utf-8")


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def idempotent(ctx: VendorContext, key: str | None, request_body: Any,
               handler: Callable[[Any], tuple[int, dict, bool]]) -> tuple[int, dict, bool]:
    """Run ``handler(conn)`` at most once per Idempotency-Key, atomically with what it stores.

    ``handler`` returns ``(status, response, cacheable)``; only cacheable answers are remembered.
    Returns ``(status, response, replayed)``.
    """
    if not key:
        raise ApiError(400, "Idempotency-Key header required")
    request_sha = hashlib.sha256(_canonical(request_body)).hexdigest()
    with ctx.store.transaction() as conn:
        row = conn.execute(
            "SELECT request_sha256, status, response FROM idempotency WHERE key = ?", (key,)
        ).fetchone()
        if row is not None:
            if row["request_sha256"] != request_sha:
                raise ApiError(409, "Idempotency-Key already used with a different request body")
            return row["status"], json.loads(row["response"]), True
        status, response, cacheable = handler(conn)
        if cacheable:
            conn.execute(
                "INSERT INTO idempotency (key, request_sha256, status, response, created_at) VALUES (?, ?, ?, ?, ?)",
                (key, request_sha, status, json.dumps(response), now_iso()),
            )
        return status, response, False


def create_app(config: dict[str, Any]):
    """Build the FastAPI app from ``{"vendors": {name: {"token", "db"}}}``."""
    from fastapi import APIRouter, Depends, FastAPI, Header, Request
    from fastapi.responses import JSONResponse
    from starlette.concurrency import run_in_threadpool

    state = AppState(
        vendors={
            name: VendorContext(name=name, token=v["token"], store=VendorStore(Path(v["db"]), vendor=name))
            for name, v in config["vendors"].items()
        }
    )
    app = FastAPI(title="vendorprivacy sandbox vendor API", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.sandbox = state

    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError):
        return JSONResponse({"error": exc.message}, status_code=exc.status)

    @app.middleware("http")
    async def faults_and_stats(request: Request, call_next):
        parts = request.url.path.strip("/").split("/", 1)
        vendor = parts[0] if parts else ""
        if vendor in state.vendors:
            with state.lock:
                stats = state.stats.setdefault(vendor, {"requests": 0, "faults_served": 0})
                stats["requests"] += 1
                fault = state.faults.get(vendor)
                if fault is not None and fault.count > 0:
                    fault.count -= 1
                    stats["faults_served"] += 1
                    headers = {}
                    if fault.retry_after is not None:
                        ra = fault.retry_after
                        headers["Retry-After"] = str(int(ra)) if float(ra).is_integer() else str(ra)
                    return JSONResponse({"error": "injected fault"}, status_code=fault.status, headers=headers)
        return await call_next(request)

    # -- dependencies reusable by feature routers
    def vendor_context(vendor: str) -> VendorContext:
        ctx = state.vendors.get(vendor)
        if ctx is None:
            raise ApiError(404, "unknown vendor")
        return ctx

    def authenticated_vendor(
        ctx: VendorContext = Depends(vendor_context), authorization: str | None = Header(default=None)
    ) -> VendorContext:
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(token.strip().encode(), ctx.token.encode()):
            raise ApiError(401, "invalid or missing bearer token")
        return ctx

    app.state.vendor_context = vendor_context
    app.state.authenticated_vendor = authenticated_vendor

    async def json_body(request: Request) -> Any:
        try:
            return json.loads(await request.body())
        except ValueError:
            raise ApiError(400, "body is not JSON") from None

    def respond(status: int, body: dict, replayed: bool):
        return JSONResponse(body, status_code=status, headers={REPLAY_HEADER: "true" if replayed else "false"})

    # -- records API
    records = APIRouter(prefix="/{vendor}/v1")

    @records.post("/records")
    async def post_records(request: Request, ctx: VendorContext = Depends(authenticated_vendor),
                           idempotency_key: str | None = Header(default=None)):
        body = await json_body(request)
        batch = _validate_batch(body)

        def handler(conn) -> tuple[int, dict, bool]:
            rows = (dict(zip(batch["columns"], rec)) for rec in batch["records"])
            n = ctx.store.insert_rows(conn, feed=batch["feed"], delivery_id=batch["delivery_id"], source="https",
                                      rows=rows, batch_index=batch["batch_index"])
            ctx.store.upsert_delivery(conn, source="https", name=batch["delivery_id"], status="receiving",
                                      delivery_id=batch["delivery_id"], feed=batch["feed"])
            return 200, {"delivery_id": batch["delivery_id"], "batch_index": batch["batch_index"],
                         "accepted": n}, True

        status, response, replayed = await run_in_threadpool(idempotent, ctx, idempotency_key, body, handler)
        return respond(status, response, replayed)

    @records.post("/deliveries/{delivery_id}/complete")
    async def complete_delivery(delivery_id: str, request: Request,
                                ctx: VendorContext = Depends(authenticated_vendor)):
        body = await json_body(request)
        if not isinstance(body, dict) or not isinstance(body.get("row_count"), int) or not isinstance(
            body.get("sha256"), str
        ):
            raise ApiError(400, "expected {row_count: int, sha256: str}")

        def handler() -> dict:
            # Naturally idempotent: always answers from what is held now, so no Idempotency-Key needed.
            with ctx.store.transaction() as conn:
                before = conn.execute(
                    "SELECT status, sha256 FROM deliveries WHERE source = 'https' AND name = ?", (delivery_id,)
                ).fetchone()
                held_rows, held_sha = ctx.store.held_delivery(conn, delivery_id, "https")
                ok = held_rows == body["row_count"] and held_sha == body["sha256"].lower()
                status = "complete" if ok else "mismatch"
                ctx.store.upsert_delivery(conn, source="https", name=delivery_id, status=status,
                                          delivery_id=delivery_id, feed=body.get("feed"), row_count=held_rows,
                                          sha256=held_sha,
                                          reason=None if ok else "claimed row_count/sha256 differ from what is held")
            previously = before is not None and before["status"] == "complete" and before["sha256"] == held_sha
            return {"delivery_id": delivery_id, "row_count": held_rows, "sha256": held_sha, "status": status,
                    "previously_complete": previously}

        return await run_in_threadpool(handler)

    @records.get("/deliveries/{delivery_id}")
    async def get_delivery(delivery_id: str, ctx: VendorContext = Depends(authenticated_vendor)):
        def read() -> dict | None:
            with ctx.store.connect() as conn:
                row = conn.execute(
                    "SELECT delivery_id, feed, status, row_count, sha256 FROM deliveries WHERE source = 'https' "
                    "AND name = ?", (delivery_id,)
                ).fetchone()
                return dict(row) if row else None

        found = await run_in_threadpool(read)
        if found is None:
            raise ApiError(404, "unknown delivery")
        return found

    # -- admin API (sandbox only)
    admin = APIRouter(prefix="/_admin")

    @admin.get("/health")
    async def health():
        return {"ok": True, "vendors": sorted(state.vendors)}

    @admin.post("/{vendor}/faults")
    async def set_fault(request: Request, ctx: VendorContext = Depends(vendor_context)):
        body = await json_body(request)
        status = int(body.get("status", 503))
        count = int(body.get("count", 1))
        retry_after = body.get("retry_after")
        with state.lock:
            state.faults[ctx.name] = Fault(status=status, count=count,
                                           retry_after=None if retry_after is None else float(retry_after))
        return {"vendor": ctx.name, "status": status, "count": count, "retry_after": retry_after}

    @admin.delete("/{vendor}/faults")
    async def clear_fault(ctx: VendorContext = Depends(vendor_context)):
        with state.lock:
            state.faults.pop(ctx.name, None)
        return {"vendor": ctx.name, "cleared": True}

    @admin.get("/{vendor}/records")
    async def admin_records(ctx: VendorContext = Depends(vendor_context), feed: str | None = None):
        return {"vendor": ctx.name, "records": await run_in_threadpool(ctx.store.entries, feed)}

    @admin.get("/{vendor}/stats")
    async def admin_stats(ctx: VendorContext = Depends(vendor_context)):
        with state.lock:
            stats = dict(state.stats.get(ctx.name, {"requests": 0, "faults_served": 0}))
            fault = state.faults.get(ctx.name)
            stats["faults_pending"] = fault.count if fault else 0
        return stats

    app.include_router(admin)
    if config.get("opendsr") is not None:  # OpenDSR processor API (sandbox.opendsr)
        from sandbox.opendsr import OpenDsrService

        service = OpenDsrService(state, config, ApiError)
        app.state.opendsr = service
        app.include_router(service.admin_router(vendor_context))
        app.include_router(service.router(vendor_context, authenticated_vendor))
        service.start()
    for router in [records, *FEATURE_ROUTERS]:
        app.include_router(router)
    return app


# Routers added by other features (e.g. OpenDSR); each is an APIRouter with prefix "/{vendor}/...".
FEATURE_ROUTERS: list[Any] = []


def _validate_batch(body: Any) -> dict:
    if not isinstance(body, dict):
        raise ApiError(400, "body must be a JSON object")
    for key, kind in (("feed", str), ("delivery_id", str), ("batch_index", int), ("columns", list), ("records", list)):
        if not isinstance(body.get(key), kind) or (kind is int and isinstance(body.get(key), bool)):
            raise ApiError(400, f"{key} missing or not a {kind.__name__}")
    columns = body["columns"]
    if not columns or not all(isinstance(c, str) and c for c in columns) or len(set(columns)) != len(columns):
        raise ApiError(400, "columns must be distinct non-empty strings")
    if body["batch_index"] < 0:
        raise ApiError(400, "batch_index must be >= 0")
    for i, rec in enumerate(body["records"]):
        if not isinstance(rec, list) or len(rec) != len(columns):
            raise ApiError(400, f"record {i} is not a list of {len(columns)} values")
    return body


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="sandbox vendor API (child process)")
    parser.add_argument("--config", required=True)
    parser.add_argument("--fd", type=int, required=True, help="listening socket inherited from the parent")
    parser.add_argument("--certfile", required=True)
    parser.add_argument("--keyfile", required=True)
    args = parser.parse_args(argv)

    import uvicorn

    config = json.loads(Path(args.config).read_text())
    app = create_app(config)
    sock = socket.socket(fileno=args.fd)
    server = uvicorn.Server(
        uvicorn.Config(app, ssl_certfile=args.certfile, ssl_keyfile=args.keyfile, log_level="warning",
                       access_log=False, timeout_graceful_shutdown=0.5)
    )
    server.run(sockets=[sock])


# ---------------------------------------------------------------------------- parent-side control
class VendorApiServer:
    """Runs the vendor API in a subprocess on a socket bound here (so the port is never raced)."""

    def __init__(self, state_dir: Path, vendors: list[str], tls: dict[str, Path], host: str = "127.0.0.1",
                 port: int = 0, *, erasure_rules: dict[str, dict] | None = None,
                 opendsr: dict[str, Any] | None = None) -> None:
        """``erasure_rules``: vendor -> ``ErasureRules.to_json()``; ``opendsr``: ``{"delay", "tick"}`` seconds."""
        self.erasure_rules = dict(erasure_rules or {})
        self.opendsr = {"delay": 0.0, "tick": 0.1, **(opendsr or {})}
        self.processors: dict[str, dict[str, str]] = {}
        self.state_dir = Path(state_dir)
        self.dir = self.state_dir / "vendor_api"
        self.host = host
        self.port = port
        self.tls = tls
        self.log_path = self.dir / "vendor_api.log"
        self.config_path = self.dir / "config.json"
        self.tokens = {v: secrets.token_urlsafe(24) for v in vendors}
        self.proc: subprocess.Popen | None = None
        self._ssl = ssl.create_default_context(cafile=str(tls["ca"]))

    @property
    def base_url(self) -> str:
        return f"https://{self.host}:{self.port}"

    def launch(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        for vendor in self.tokens:
            VendorStore(store_path(self.state_dir, vendor), vendor=vendor)  # create schema up front
        from sandbox.opendsr import make_processor_cert

        for vendor in self.tokens:
            self.processors[vendor] = make_processor_cert(vendor, self.dir / "opendsr")
        config = {
            "vendors": {
                v: {"token": t, "db": str(store_path(self.state_dir, v)),
                    "erasure": {"rules": self.erasure_rules.get(v), "processor": self.processors[v]}}
                for v, t in self.tokens.items()
            },
            "opendsr": self.opendsr,
        }
        self.config_path.write_text(json.dumps(config, indent=2))
        os.chmod(self.config_path, 0o600)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        sock.listen(128)
        self.port = sock.getsockname()[1]
        try:
            self.proc = spawn(
                [sys.executable, "-m", "sandbox.vendor_api", "--config", str(self.config_path),
                 "--fd", str(sock.fileno()), "--certfile", str(self.tls["cert"]), "--keyfile", str(self.tls["key"])],
                self.log_path,
                pass_fds=[sock.fileno()],
                env={**os.environ, "PYTHONPATH": _pythonpath()},
            )
        finally:
            sock.close()

    def wait_ready(self, timeout: float = 20.0) -> None:
        wait_until(lambda: self.admin("GET", "/_admin/health", timeout=1.0).get("ok") is True,
                   timeout=timeout, what="vendor API", proc=self.proc, log_path=self.log_path)

    def start(self) -> None:
        self.launch()
        self.wait_ready()

    def stop(self) -> None:
        stop_process(self.proc)
        self.proc = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def admin(self, method: str, path: str, body: Any = None, timeout: float = 10.0) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"{self.base_url}{path}", data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=timeout, context=self._ssl) as resp:
            return json.loads(resp.read() or b"null")

    def set_fault(self, vendor: str, status: int = 503, retry_after: float | None = None, count: int = 1) -> None:
        self.admin("POST", f"/_admin/{vendor}/faults", {"status": status, "retry_after": retry_after, "count": count})

    def clear_fault(self, vendor: str) -> None:
        self.admin("DELETE", f"/_admin/{vendor}/faults")

    def stats(self, vendor: str) -> dict:
        return self.admin("GET", f"/_admin/{vendor}/stats")

    # -- OpenDSR (sandbox.opendsr)
    def processor_cert(self, vendor: str) -> bytes:
        """The vendor's OpenDSR processor certificate (PEM), as /discovery publishes it."""
        return Path(self.processors[vendor]["cert"]).read_bytes()

    def processor_domain(self, vendor: str) -> str:
        return self.processors[vendor]["domain"]

    def set_erasure_behaviour(self, vendor: str, mode: str = "normal", delay: float = 0.0,
                              reason: str | None = None) -> dict:
        return self.admin("POST", f"/_admin/{vendor}/erasure_behaviour",
                          {"mode": mode, "delay": delay, "reason": reason})

    def process_opendsr(self, vendor: str | None = None) -> dict:
        """Process every due OpenDSR request now (and send its callbacks); ``{"processed": {vendor: [ids]}}``."""
        return self.admin("POST", "/_admin/opendsr/process", {"vendor": vendor}, timeout=60)

    def callbacks(self, vendor: str) -> list[dict]:
        return self.admin("GET", f"/_admin/{vendor}/opendsr/callbacks")["callbacks"]

    def connection(self, vendor: str) -> dict:
        """Airflow connection (conn_type http) for one https vendor on this server."""
        return {
            "conn_type": "http",
            "host": self.host,
            "port": self.port,
            "schema": "https",
            "password": self.tokens[vendor],
            "extra": {"verify": str(self.tls["ca"]), "timeout": 30},
        }


def _pythonpath() -> str:
    """The child must import ``sandbox`` (and ``vendorprivacy`` for stores) like the parent does."""
    root = Path(__file__).resolve().parent.parent
    parts = [str(root), str(root / "include")]
    if os.environ.get("PYTHONPATH"):
        parts.append(os.environ["PYTHONPATH"])
    return os.pathsep.join(parts)


if __name__ == "__main__":
    main()
