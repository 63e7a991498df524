"""S3 delivery through the Airflow Amazon provider's ``S3Hook``.

The connection (conn_type ``aws``) carries the keys (login/password) and, in its extra,
``endpoint_url``, ``region_name`` and ``config_kwargs`` (``{"retries": {"mode": "standard", ...}}``).

Delivery protocol for ``put(local, "x.csv.pgp", manifest)`` under ``s3://<bucket>/<prefix>``:

1. ``PutObject <prefix>x.csv.pgp`` with ``If-None-Match: *`` (write-once), ``ServerSideEncryption=AES256``,
   ``ChecksumAlgorithm=SHA256`` with our precomputed ``ChecksumSHA256`` (the server can verify the
   body) and our hex sha256 in the object metadata (``x-amz-meta-sha256``).
2. ``PutObject <prefix>x.csv.pgp.manifest.json`` the same way, after the data object: its presence
   marks the delivery complete.

A 412 on the data object means "already there": if the vendor's manifest describes the same delivery
(same ``plaintext_sha256``, else same ciphertext ``sha256``, else same size) the result is
``already_present=True``; a different one is a ``DeliveryConflict``. Data without a manifest is an
incomplete earlier attempt: kept if identical, else replaced with ``If-Match: <its ETag>`` so a
concurrent writer is still detected.
"""

from __future__ import annotations

import base64
import hashlib
import io
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vendorprivacy.crypto import sha256_file
from vendorprivacy.transports.base import Receipt, check_manifest_matches, manifest_fields
from vendorprivacy.transports.errors import (
    AuthenticationFailed,
    DeliveryConflict,
    TransportError,
    VendorUnavailable,
    VendorUnreachable,
)

MANIFEST_SUFFIX = ".manifest.json"
_BLOCK = 1024 * 1024
_AUTH_CODES = {
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "InvalidToken",
    "ExpiredToken",
    "AuthorizationHeaderMalformed",
}


def _validate_name(name: str) -> str:
    if not name or "/" in name or "\\" in name or name.startswith(".") or "\x00" in name:
        raise ValueError(f"invalid remote file name {name!r}: plain, non-hidden file names only")
    return name


class S3Transport:
    """Deliver files to one vendor bucket/prefix.

    :param conn_id: Airflow connection id (conn_type ``aws``).
    :param bucket: the vendor's bucket.
    :param prefix: key prefix inside the bucket (``"namdar/"``); a trailing ``/`` is added if missing.
    """

    def __init__(self, conn_id: str, bucket: str, prefix: str = "", *, sleep: Callable[[float], None] = time.sleep):
        self.conn_id = conn_id
        self.bucket = bucket
        self.prefix = (prefix.strip("/") + "/") if prefix.strip("/") else ""
        self.sleep = sleep
        self._client: Any = None

    @property
    def target(self) -> str:
        endpoint = ""
        if self._client is not None:
            endpoint = f" at {self._client.meta.endpoint_url}"
        return f"s3://{self.bucket}/{self.prefix}{endpoint}"

    def _error(self, cls: type[TransportError], message: str) -> TransportError:
        return cls(message, conn_id=self.conn_id, target=self.target)

    @property
    def client(self) -> Any:
        if self._client is None:
            from airflow.providers.amazon.aws.hooks.s3 import S3Hook

            try:
                self._client = S3Hook(aws_conn_id=self.conn_id).get_conn()
            except Exception as exc:  # missing/malformed connection
                raise TransportError(
                    f"cannot build S3 client: {type(exc).__name__}: {exc}",
                    conn_id=self.conn_id,
                    target=f"s3://{self.bucket}/{self.prefix}",
                ) from None
        return self._client

    def _key(self, name: str) -> str:
        return self.prefix + _validate_name(name)

    # ------------------------------------------------------------------ error mapping
    def _call(self, what: str, fn: Callable[..., Any], **kwargs: Any) -> Any:
        from botocore.exceptions import (
            ClientError,
            ConnectionClosedError,
            ConnectTimeoutError,
            EndpointConnectionError,
            NoCredentialsError,
            ReadTimeoutError,
        )

        try:
            return fn(**kwargs)
        except (EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError, ConnectionClosedError) as exc:
            raise self._error(VendorUnreachable, f"{what}: {type(exc).__name__}") from None
        except NoCredentialsError:
            raise self._error(AuthenticationFailed, f"{what}: no credentials in the connection") from None
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            if code in ("PreconditionFailed",) or status == 412:
                raise self._error(_PreconditionFailed, f"{what}: precondition failed (object exists)") from None
            if code in ("NoSuchKey", "NotFound") or (status == 404 and code != "NoSuchBucket"):
                raise self._error(_NotFound, f"{what}: not found") from None
            if code in _AUTH_CODES or status in (401, 403):
                raise self._error(AuthenticationFailed, f"{what}: {code or status}") from None
            if code == "NoSuchBucket":
                raise self._error(TransportError, f"{what}: bucket {self.bucket} does not exist") from None
            if status == 429 or status >= 500 or code in ("SlowDown", "ConditionalRequestConflict"):
                raise self._error(VendorUnavailable, f"{what}: {code or status} after retries") from None
            raise self._error(TransportError, f"{what}: {code or status}") from None

    def _head(self, key: str) -> dict | None:
        try:
            return self._call(f"HEAD {key}", self.client.head_object, Bucket=self.bucket, Key=key)
        except _NotFound:
            return None

    def _read(self, key: str) -> bytes:
        obj = self._call(f"GET {key}", self.client.get_object, Bucket=self.bucket, Key=key)
        return obj["Body"].read()

    def _remote_sha256(self, key: str, head: dict) -> str:
        meta = (head.get("Metadata") or {}).get("sha256")
        if meta:
            return str(meta).lower()
        obj = self._call(f"GET {key}", self.client.get_object, Bucket=self.bucket, Key=key)
        h = hashlib.sha256()
        for block in iter(lambda: obj["Body"].read(_BLOCK), b""):
            h.update(block)
        return h.hexdigest()

    def _put(self, key: str, body: Any, sha_hex: str, *, if_match: str | None = None) -> dict:
        kwargs: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": key,
            "Body": body,
            "ServerSideEncryption": "AES256",
            "ChecksumAlgorithm": "SHA256",
            "ChecksumSHA256": base64.b64encode(bytes.fromhex(sha_hex)).decode(),
            "Metadata": {"sha256": sha_hex},
        }
        if if_match:
            kwargs["IfMatch"] = if_match
        else:
            kwargs["IfNoneMatch"] = "*"
        return self._call(f"PUT {key}", self.client.put_object, **kwargs)

    # ------------------------------------------------------------------ API
    def put(self, local_path: Path | str, remote_name: str, manifest_bytes: bytes) -> Receipt:
        """Write-once delivery of ``local_path`` and its manifest; idempotent."""
        local = Path(local_path)
        key = self._key(remote_name)
        manifest_key = key + MANIFEST_SUFFIX
        size = local.stat().st_size
        sha = sha256_file(local)
        ours = manifest_fields(manifest_bytes)
        check_manifest_matches(ours, size, sha)
        manifest_sha = hashlib.sha256(manifest_bytes).hexdigest()
        remote_path = f"s3://{self.bucket}/{key}"

        try:
            with open(local, "rb") as fh:
                self._put(key, fh, sha)
        except _PreconditionFailed:
            head = self._head(key)
            if head is None:  # deleted between our PUT and HEAD: try once more, write-once still
                with open(local, "rb") as fh:
                    self._put(key, fh, sha)
            else:
                remote_manifest = self._head(manifest_key)
                if remote_manifest is not None:
                    theirs = manifest_fields(self._read(manifest_key))
                    remote_size = int(head.get("ContentLength", -1))
                    self._check_same_delivery(key, ours, theirs, size, sha, remote_size, head)
                    return Receipt(
                        remote_path=remote_path,
                        bytes=remote_size,
                        sha256=str(theirs.get("sha256") or self._remote_sha256(key, head)),
                        already_present=True,
                    )
                # Incomplete earlier attempt (no manifest): keep if identical, else replace it.
                if not (int(head.get("ContentLength", -1)) == size and self._remote_sha256(key, head) == sha):
                    try:
                        with open(local, "rb") as fh:
                            self._put(key, fh, sha, if_match=head["ETag"])
                    except _PreconditionFailed:
                        raise self._error(
                            DeliveryConflict, f"{key} changed while we were replacing an incomplete delivery"
                        ) from None
        try:
            self._put(manifest_key, io.BytesIO(manifest_bytes), manifest_sha)
        except _PreconditionFailed:
            theirs = manifest_fields(self._read(manifest_key))
            head = self._head(key) or {}
            self._check_same_delivery(key, ours, theirs, size, sha, int(head.get("ContentLength", -1)), head)
            return Receipt(remote_path=remote_path, bytes=size, sha256=sha, already_present=True)
        return Receipt(remote_path=remote_path, bytes=size, sha256=sha, already_present=False)

    def _check_same_delivery(
        self, key: str, ours: dict, theirs: dict, size: int, sha: str, remote_size: int, head: dict
    ) -> None:
        for field in ("plaintext_sha256", "sha256"):
            if ours.get(field) and theirs.get(field):
                if str(ours[field]).lower() != str(theirs[field]).lower():
                    raise self._error(
                        DeliveryConflict, f"{key} already holds a different delivery ({field} differs)"
                    )
                return
        if remote_size != size or self._remote_sha256(key, head) != sha:
            raise self._error(DeliveryConflict, f"{key} already holds a different file")

    def get(self, remote_name: str) -> bytes:
        key = self._key(remote_name)
        try:
            return self._read(key)
        except _NotFound:
            raise self._error(TransportError, f"{key} does not exist") from None

    def list(self, prefix: str = "") -> list[str]:
        """Names (relative to the transport prefix, no sub-prefixes) starting with ``prefix``."""
        names: list[str] = []
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": self.prefix + prefix, "Delimiter": "/"}
        while True:
            page = self._call("LIST", self.client.list_objects_v2, **kwargs)
            for obj in page.get("Contents", []):
                name = obj["Key"][len(self.prefix):]
                if name and not name.startswith("."):
                    names.append(name)
            if not page.get("IsTruncated"):
                break
            kwargs["ContinuationToken"] = page["NextContinuationToken"]
        return sorted(names)

    def exists(self, name: str) -> bool:
        return self._head(self._key(name)) is not None

    def delete(self, name: str) -> bool:
        key = self._key(name)
        if self._head(key) is None:
            return False
        self._call(f"DELETE {key}", self.client.delete_object, Bucket=self.bucket, Key=key)
        return True


class _PreconditionFailed(DeliveryConflict):
    """412 from a conditional write (internal; handled inside ``put``)."""


class _NotFound(TransportError):
    """404 (internal; turned into None/False or a clearer error by the callers)."""
