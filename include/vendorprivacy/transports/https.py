"""Record delivery to a vendor's JSON API through the Airflow HTTP provider's ``HttpHook``.

Connection (conn_type ``http``): ``schema`` https, ``host``, ``port``, ``password`` = the bearer
token (``login`` is ignored: HttpHook would otherwise turn login/password into Basic auth), extra
``{"verify": "<path to the vendor's CA bundle>", "timeout": 30}``. HttpHook 6.3.0 sends every
*other* extra key as an HTTP header, so keep the extra to keys it knows (``verify``, ``timeout``,
``cert``, ``proxies``, ``allow_redirects``, ``max_redirects``, ``trust_env``, ``stream``).

Protocol::

    POST <base>/v1/records                       (one per batch)
        Authorization: Bearer <token>
        Idempotency-Key: <delivery_id>:<batch_index>
        {"feed", "delivery_id", "batch_index", "columns": [...], "records": [[...], ...]}
    POST <base>/v1/deliveries/<delivery_id>/complete  (no Idempotency-Key: the answer is recomputed
        {"feed", "row_count", "sha256"}                  from what is held, so it is safe to repeat)
        -> {"delivery_id", "row_count", "sha256", "status", "previously_complete"}
           what the vendor *holds* for the delivery; must equal what we sent, else TransportError

``Receipt.already_present`` is True when every batch was an idempotent replay (the vendor already
held all of it), or, for an empty delivery, when the vendor had already confirmed it.

Canonical record hash (``canonical_records_sha256``): SHA-256 over, for every record in delivery
order (batch_index ascending, then position in the batch), the UTF-8 bytes of
``json.dumps(record, ensure_ascii=False, separators=(",", ":"), sort_keys=True, allow_nan=False)``
followed by one ``\\n``; a record is the JSON list of its values in ``columns`` order. The empty
delivery hashes to SHA-256 of the empty string.

Retries: 429 and 5xx honour ``Retry-After`` (seconds or HTTP date), otherwise exponential backoff
with jitter; attempts and total time are bounded. Refused/timed-out connections are retried the
same way, then raise ``VendorUnreachable``; a server that keeps failing raises ``VendorUnavailable``.
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import random
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import timezone
from itertools import islice
from typing import Any

from vendorprivacy.transports.base import Receipt
from vendorprivacy.transports.errors import (
    AuthenticationFailed,
    DeliveryConflict,
    TlsVerificationFailed,
    TransportError,
    VendorUnavailable,
    VendorUnreachable,
)

REPLAY_HEADER = "Idempotent-Replayed"


def canonical_record_bytes(record: Sequence[Any]) -> bytes:
    """One record's contribution to the delivery hash (see module docstring)."""
    return (
        json.dumps(list(record), ensure_ascii=False, separators=(",", ":"), sort_keys=True, allow_nan=False)
        + "\n"
    ).encode("utf-8")


def canonical_records_sha256(records: Iterable[Sequence[Any]]) -> tuple[str, int, int]:
    """``(sha256 hex, row count, byte count)`` of records in delivery order."""
    h = hashlib.sha256()
    rows = size = 0
    for record in records:
        data = canonical_record_bytes(record)
        h.update(data)
        rows += 1
        size += len(data)
    return h.hexdigest(), rows, size


def _batches(rows: Iterable[Sequence[Any]], size: int) -> Iterator[list[list[Any]]]:
    it = iter(rows)
    while batch := [list(r) for r in islice(it, size)]:
        yield batch


def _parse_retry_after(value: str | None, now: Callable[[], float] = time.time) -> float | None:
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, when.timestamp() - now())


class HttpsRecordTransport:
    """Send records to one vendor API.

    :param conn_id: Airflow connection id (conn_type ``http``, schema ``https``).
    :param base_endpoint: the vendor's path prefix on that host, e.g. ``/fraudshield``.
    :param max_attempts: attempts per request (first try included).
    :param max_total_seconds: give up on a request once this much time (incl. waits) has passed.
    :param backoff_base / backoff_max: exponential backoff (with jitter) when no Retry-After is given.
    :param max_retry_after: a Retry-After longer than this is not waited for (fail instead).
    :param timeout: per-request timeout when the connection's extra does not set one.
    :param sleep / clock / rng: injectable for tests.
    """

    def __init__(
        self,
        conn_id: str,
        base_endpoint: str,
        *,
        max_attempts: int = 6,
        max_total_seconds: float = 300.0,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        max_retry_after: float = 120.0,
        timeout: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.conn_id = conn_id
        self.base_endpoint = "/" + base_endpoint.strip("/") if base_endpoint.strip("/") else ""
        self.max_attempts = max(1, max_attempts)
        self.max_total_seconds = max_total_seconds
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.max_retry_after = max_retry_after
        self.timeout = timeout
        self.sleep = sleep
        self.clock = clock
        self.rng = rng or random.Random()
        self._hook: Any = None
        self._session: Any = None
        self._extra: dict[str, Any] = {}

    # ------------------------------------------------------------------ plumbing
    @property
    def target(self) -> str:
        base = self._hook.base_url if self._hook is not None and self._hook.base_url else "https:"
        return f"{base}{self.base_endpoint}"

    def _error(self, cls: type[TransportError], message: str) -> TransportError:
        return cls(message, conn_id=self.conn_id, target=self.target)

    def _connect(self) -> None:
        if self._session is not None:
            return
        from airflow.providers.http.hooks.http import HttpHook

        try:
            hook = HttpHook(method="POST", http_conn_id=self.conn_id)
            conn = hook.get_connection(self.conn_id)
            self._hook = hook
            session = hook.get_conn(headers={"Content-Type": "application/json", "Accept": "application/json"})
        except TransportError:
            raise
        except Exception as exc:
            raise TransportError(
                f"cannot build HTTP hook: {type(exc).__name__}: {exc}", conn_id=self.conn_id,
                target=self.base_endpoint,
            ) from None
        if not hook.base_url.startswith("https://"):
            raise self._error(TransportError, "refusing to send personal data over plain HTTP (schema must be https)")
        if session.verify is False or str(session.verify).lower() == "false":
            raise self._error(TransportError, "refusing to send personal data with TLS verification disabled")
        token = conn.password
        if not token:
            raise self._error(AuthenticationFailed, "the connection has no bearer token (password)")
        session.auth = None  # HttpHook would use Basic auth from login/password
        session.headers["Authorization"] = f"Bearer {token}"
        extra = dict(hook.merged_extra)
        extra.setdefault("timeout", self.timeout)
        extra["check_response"] = False
        self._extra = extra
        self._session = session

    def close(self) -> None:
        """Close the HTTP session (``send`` does this itself; ``request`` callers use ``with``)."""
        session, self._session = self._session, None
        if session is not None:
            session.close()

    def __enter__(self) -> HttpsRecordTransport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _backoff(self, attempt: int) -> float:
        cap = min(self.backoff_max, self.backoff_base * (2 ** (attempt - 1)))
        return cap / 2 + self.rng.uniform(0, cap / 2)

    def request(self, method: str, path: str, body: Any = None, *, idempotency_key: str | None = None) -> Any:
        """One API call with the retry policy; returns the ``requests.Response`` (2xx only)."""
        import requests

        self._connect()
        hook, session = self._hook, self._session
        url = hook.url_from_endpoint(f"{self.base_endpoint}{path}")
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        data = None if body is None else json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        started = self.clock()
        last = ""
        for attempt in range(1, self.max_attempts + 1):
            prepped = session.prepare_request(
                requests.Request(method, url, data=None if data is None else data.encode("utf-8"), headers=headers)
            )
            delay: float | None = None
            try:
                resp = hook.run_and_check(session, prepped, self._extra)
            except requests.exceptions.SSLError as exc:
                raise self._error(
                    TlsVerificationFailed, f"TLS verification failed for {method} {path}: {type(exc).__name__}"
                ) from None
            except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
                last = f"{type(exc).__name__}"
                kind = VendorUnreachable
            else:
                status = resp.status_code
                if 200 <= status < 300:
                    return resp
                reason = resp.reason or ""
                if status in (401, 403):
                    raise self._error(AuthenticationFailed, f"{method} {path}: {status} {reason} (check the token)")
                if status == 409:
                    raise self._error(
                        DeliveryConflict,
                        f"{method} {path}: 409 {reason}: the vendor holds a different request under "
                        f"Idempotency-Key {idempotency_key}",
                    )
                if status != 429 and status < 500:
                    raise self._error(TransportError, f"{method} {path}: {status} {reason}")
                last = f"HTTP {status}"
                kind = VendorUnavailable
                delay = _parse_retry_after(resp.headers.get("Retry-After"))
                if delay is not None and delay > self.max_retry_after:
                    raise self._error(
                        VendorUnavailable,
                        f"{method} {path}: {status} with Retry-After {delay:.0f}s, longer than the "
                        f"{self.max_retry_after:.0f}s we wait; try later",
                    )
            if delay is None:
                delay = self._backoff(attempt)
            elapsed = self.clock() - started
            if attempt >= self.max_attempts or elapsed + delay > self.max_total_seconds:
                verb = "unreachable" if kind is VendorUnreachable else "kept failing"
                raise self._error(
                    kind,
                    f"{method} {path}: vendor {verb}; gave up after {attempt} attempt(s) in {elapsed:.1f}s "
                    f"(last: {last})",
                )
            self.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    # ------------------------------------------------------------------ API
    def send(
        self,
        delivery_id: str,
        feed_id: str,
        columns: Sequence[str],
        rows_iter: Iterable[Sequence[Any]],
        batch_size: int = 500,
    ) -> Receipt:
        """POST the rows in batches, then ask the vendor to confirm what it holds for the delivery."""
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        columns = list(columns)
        h = hashlib.sha256()
        rows = size = 0
        all_replayed = True
        try:
            for batch_index, batch in enumerate(_batches(rows_iter, batch_size)):
                for offset, record in enumerate(batch):
                    if len(record) != len(columns):
                        raise ValueError(
                            f"row {rows + offset} has {len(record)} values for {len(columns)} columns"
                        )
                    data = canonical_record_bytes(record)
                    h.update(data)
                    size += len(data)
                rows += len(batch)
                body = {
                    "feed": feed_id,
                    "delivery_id": delivery_id,
                    "batch_index": batch_index,
                    "columns": columns,
                    "records": batch,
                }
                resp = self.request("POST", "/v1/records", body, idempotency_key=f"{delivery_id}:{batch_index}")
                all_replayed &= resp.headers.get(REPLAY_HEADER, "").lower() == "true"
            sha = h.hexdigest()
            resp = self.request(
                "POST", f"/v1/deliveries/{delivery_id}/complete", {"feed": feed_id, "row_count": rows, "sha256": sha}
            )
            try:
                held = resp.json()
            except ValueError:
                raise self._error(TransportError, "completion answer is not JSON") from None
            if rows == 0:
                all_replayed = bool(held.get("previously_complete"))
            if held.get("row_count") != rows or str(held.get("sha256", "")).lower() != sha:
                raise self._error(
                    TransportError,
                    f"delivery {delivery_id}: vendor holds {held.get('row_count')} rows / sha256 "
                    f"{held.get('sha256')}, we sent {rows} rows / sha256 {sha}",
                )
        finally:
            self.close()
        return Receipt(
            remote_path=f"{self.base_endpoint}/v1/deliveries/{delivery_id}",
            bytes=size,
            sha256=sha,
            already_present=all_replayed,
        )
