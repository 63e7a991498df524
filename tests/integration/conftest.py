"""Integration fixtures: one running sandbox (real sshd, moto, HTTPS vendor API) per test session.

``sandbox``: a started ``sandbox.Sandbox`` whose ``AIRFLOW_CONN_VENDOR_*`` connections are in
``os.environ`` (so provider hooks find them); torn down at the end of the session, even on failures.
Its vendors also answer erasure requests (background poller every 0.2 s; ``process_erasures()``).
Tests sharing it should use fresh delivery ids/file names (``unique``) rather than expect empty stores.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from vendorprivacy.crypto import encrypt_file, sha256_file

from sandbox import Sandbox
from tests.conftest import pg_ledger
from sandbox.stores import csv_bytes


def pytest_collection_modifyitems(config, items):
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory) -> Iterator[Sandbox]:
    # erasure_poll_interval: the file vendors' background erasure poller runs often, so tests that
    # wait for answers without calling sandbox.process_erasures() do not wait long.
    sb = Sandbox(tmp_path_factory.mktemp("sandbox"), erasure_poll_interval=0.2)
    try:
        sb.start()
        sb.apply_env()
        yield sb
    finally:
        sb.stop()  # also restores os.environ


@pytest.fixture(scope="module")
def module_sandbox(tmp_path_factory) -> Iterator[Sandbox]:
    """A sandbox of the module's own, for modules whose (feed, day) deliveries must not meet others'."""
    sb = Sandbox(tmp_path_factory.mktemp("module_sandbox"))
    try:
        sb.start()
        sb.apply_env()
        yield sb
    finally:
        sb.stop()  # restores os.environ (the session sandbox's connections come back)


@pytest.fixture(scope="module")
def module_ledger():
    """A PostgreSQL ledger of the module's own."""
    with pg_ledger("it") as ledger:
        yield ledger


@pytest.fixture
def unique() -> Callable[[str], str]:
    """``unique("feed")`` -> ``feed_3f2a9c1d``: names that cannot collide across tests."""
    return lambda stem: f"{stem}_{uuid.uuid4().hex[:8]}"


@dataclass
class SleepRecorder:
    """Injectable ``sleep`` that records instead of waiting, and a clock that it advances."""

    calls: list[float]
    now: float = 0.0

    def sleep(self, seconds: float) -> None:
        self.calls.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now


@pytest.fixture
def sleeps() -> SleepRecorder:
    return SleepRecorder(calls=[])


@dataclass
class EncryptedDelivery:
    path: Path  # the ciphertext
    name: str  # remote file name, <delivery_id>.csv.pgp
    manifest: dict[str, Any]
    columns: list[str]
    rows: list[list[str]]

    @property
    def manifest_bytes(self) -> bytes:
        return json.dumps(self.manifest, indent=2).encode()

    def expected_records(self) -> list[dict[str, str]]:
        return [dict(zip(self.columns, r)) for r in self.rows]


@pytest.fixture
def make_delivery(tmp_path, sandbox) -> Callable[..., EncryptedDelivery]:
    """Build an encrypted CSV delivery + manifest for a sandbox file vendor, as the pipeline does."""

    def make(vendor: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], *, feed: str | None = None,
             delivery_id: str | None = None, name: str | None = None) -> EncryptedDelivery:
        delivery_id = delivery_id or f"{vendor}-{uuid.uuid4().hex[:12]}"
        feed = feed or f"{vendor}_feed"
        name = name or f"{delivery_id}.csv.pgp"
        work = tmp_path / uuid.uuid4().hex[:8]
        work.mkdir()
        plain = work / "plain.csv"
        str_rows = [[str(v) for v in r] for r in rows]
        plain.write_bytes(csv_bytes(columns, str_rows))
        sealed = work / name
        encrypt_file(plain, sealed, sandbox.public_key(vendor))
        manifest = {
            "delivery_id": delivery_id,
            "feed": feed,
            "vendor": vendor,
            "file": name,
            "sha256": sha256_file(sealed),
            "bytes": sealed.stat().st_size,
            "plaintext_sha256": sha256_file(plain),
            "rows": len(str_rows),
            "columns": list(columns),
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        plain.unlink()  # plaintext personal data does not linger
        return EncryptedDelivery(sealed, name, manifest, list(columns), str_rows)

    return make


@pytest.fixture
def conn_override(monkeypatch, sandbox) -> Callable[..., str]:
    """Register a modified copy of a vendor connection under a new conn_id (restored after the test)."""

    def override(vendor: str, changes: dict[str, Any], *, extra: dict[str, Any] | None = None) -> str:
        conn = sandbox.connection(vendor)
        conn.update(changes)
        if extra:
            conn["extra"] = {**conn.get("extra", {}), **extra}
        conn_id = f"test_{vendor}_{uuid.uuid4().hex[:6]}"
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))
        return conn_id

    return override


@pytest.fixture
def closed_port() -> int:
    """A loopback port with nothing listening on it."""
    from sandbox.procs import free_port

    return free_port()


# ---------------------------------------------------------------------------- erasure helpers
@pytest.fixture
def erasure_item() -> Callable[..., Any]:
    """``erasure_item({"email": [...]})`` -> an ``ErasureItem`` with a fresh pair id (uuid4)."""
    from vendorprivacy.erasure.protocols import ErasureItem

    def make(identifiers: dict[str, list[str]], *, regulation: str = "gdpr", request_type: str = "erasure",
             submitted_at: datetime | None = None) -> ErasureItem:
        return ErasureItem(pair_id=str(uuid.uuid4()), regulation=regulation, request_type=request_type,
                           identifiers=identifiers,
                           submitted_at=submitted_at or datetime(2026, 11, 2, 9, 30, tzinfo=timezone.utc))

    return make


@pytest.fixture
def erasure_behaviour(sandbox) -> Iterator[Callable[..., None]]:
    """Set a vendor's erasure fault mode for one test (reset to normal afterwards)."""
    changed: list[str] = []

    def set_behaviour(vendor: str, mode: str, **kwargs: Any) -> None:
        changed.append(vendor)
        sandbox.set_erasure_behaviour(vendor, mode, **kwargs)

    yield set_behaviour
    for vendor in dict.fromkeys(changed):
        sandbox.set_erasure_behaviour(vendor, "normal")


@dataclass
class CallbackReceiver:
    """A loopback HTTP server recording OpenDSR status callbacks (headers, raw body)."""

    url: str
    received: list[tuple[dict[str, str], bytes]]

    def wait(self, count: int, timeout: float = 10.0) -> list[tuple[dict[str, str], bytes]]:
        import time

        deadline = time.monotonic() + timeout
        while len(self.received) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return list(self.received)


@pytest.fixture
def callback_receiver() -> Iterator[CallbackReceiver]:
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    received: list[tuple[dict[str, str], bytes]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server API
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            received.append((dict(self.headers.items()), body))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield CallbackReceiver(f"http://127.0.0.1:{server.server_port}/opendsr/callbacks", received)
    finally:
        server.shutdown()
        server.server_close()
