"""Staged feed files shared between workers: prepare, gate and deliver may run on three different machines.

Each stage works on a local copy under its own machine's staging root. With a shared store configured
(``VENDORPRIVACY_STAGING_URL`` or the Variable ``vendorprivacy_staging_url``, in Airflow's object-storage
form ``s3://<conn_id>@<bucket>/<prefix>``), ``prepare`` publishes the staged files there and the later
stages fetch them; every stage removes its local copy when it ends, and ``deliver`` removes the shared one.
Without a shared store the staging root itself is the hand-off (one machine, or a volume all workers mount).

Objects are written with server-side encryption and their sha256 in the metadata; a fetch checks it, and
``deliver`` still refuses a file other than the one the gate passed.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from .crypto import sha256_file

_URL = re.compile(r"^s3://(?P<conn>[^@/]+)@(?P<bucket>[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9])(?:/(?P<prefix>.*))?$")


class StagingError(RuntimeError):
    """The shared staging store could not be used (unreachable, denied, or a staged file is missing)."""


@dataclass(frozen=True)
class SharedStaging:
    conn_id: str
    bucket: str
    prefix: str = ""

    @classmethod
    def from_url(cls, url: str) -> SharedStaging:
        m = _URL.match(url.strip())
        if not m:
            raise ValueError(f"staging URL {url!r}: expected s3://<conn_id>@<bucket>/<prefix>")
        return cls(m["conn"], m["bucket"], (m["prefix"] or "").strip("/"))

    def url(self, key: str = "") -> str:
        return f"s3://{self.bucket}/{self._key(key)}"

    def _key(self, key: str, name: str = "") -> str:
        return "/".join(p for p in (self.prefix, key.strip("/"), name) if p)

    def _client(self) -> Any:
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        try:
            return S3Hook(aws_conn_id=self.conn_id).get_conn()
        except Exception as e:  # missing or malformed connection
            raise StagingError(f"shared staging {self.url()}: connection '{self.conn_id}': {type(e).__name__}: {e}") from None

    def _fail(self, what: str, e: Exception) -> StagingError:
        code = (getattr(e, "response", None) or {}).get("Error", {}).get("Code")
        return StagingError(f"shared staging {what}: {code or type(e).__name__} (connection '{self.conn_id}')")

    def publish(self, key: str, local_dir: Path, names: Iterable[str]) -> None:
        """Upload the staged files (each object appears whole or not at all)."""
        client = self._client()
        for name in names:
            path = local_dir / name
            try:
                client.upload_file(str(path), self.bucket, self._key(key, name),
                                   ExtraArgs={"ServerSideEncryption": "AES256", "Metadata": {"sha256": sha256_file(path)}})
            except Exception as e:
                raise self._fail(f"upload of {self.url(key)}/{name}", e) from None

    def fetch(self, key: str, local_dir: Path, names: Iterable[str]) -> None:
        """Bring the staged files to this machine (skipped for a local copy with the same sha256)."""
        client = self._client()
        local_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        for name in names:
            object_key, path = self._key(key, name), local_dir / name
            try:
                head = client.head_object(Bucket=self.bucket, Key=object_key)
            except Exception as e:
                status = (getattr(e, "response", None) or {}).get("ResponseMetadata", {}).get("HTTPStatusCode")
                if status == 404:
                    raise StagingError(f"staged file {self.url(key)}/{name} not found: run prepare again") from None
                raise self._fail(f"lookup of {self.url(key)}/{name}", e) from None
            expected = (head.get("Metadata") or {}).get("sha256")
            if path.exists() and expected and sha256_file(path) == expected:
                continue
            tmp = local_dir / f".{name}.download"
            try:
                client.download_file(self.bucket, object_key, str(tmp))
            except Exception as e:
                tmp.unlink(missing_ok=True)
                raise self._fail(f"download of {self.url(key)}/{name}", e) from None
            if expected and sha256_file(tmp) != expected:
                tmp.unlink(missing_ok=True)
                raise StagingError(f"staged file {self.url(key)}/{name} does not match its recorded sha256")
            os.replace(tmp, path)

    def discard(self, key: str) -> int:
        """Remove the shared copy of one staged delivery; returns how many objects went."""
        client = self._client()
        prefix = self._key(key) + "/"
        try:
            listed = client.list_objects_v2(Bucket=self.bucket, Prefix=prefix).get("Contents", [])
            if listed:
                client.delete_objects(Bucket=self.bucket, Delete={"Objects": [{"Key": o["Key"]} for o in listed]})
        except Exception as e:
            raise self._fail(f"removal of {self.url(key)}", e) from None
        return len(listed)

    def held(self, key: str) -> list[str]:
        """Names of the staged files waiting in the store for one delivery."""
        prefix = self._key(key) + "/"
        listed = self._client().list_objects_v2(Bucket=self.bucket, Prefix=prefix).get("Contents", [])
        return sorted(o["Key"][len(prefix):] for o in listed)
