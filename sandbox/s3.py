"""moto's S3 server on 127.0.0.1, in a subprocess, with one bucket per S3 vendor.

moto keeps objects in memory: a restart loses them (buckets are recreated by ``start``).
moto 5.2.5 honours ``If-None-Match: *`` and ``If-Match`` on PutObject (412 PreconditionFailed),
stores ``ServerSideEncryption`` and returns ``ChecksumSHA256`` when ``ChecksumAlgorithm=SHA256`` is
sent, but does not reject a body whose supplied ``ChecksumSHA256`` is wrong.
"""

from __future__ import annotations

import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterable
from pathlib import Path

from sandbox.procs import free_port, spawn, stop_process, wait_until

ACCESS_KEY = "sandbox-access-key"
SECRET_KEY = "sandbox-secret-key"
REGION = "us-east-1"


class MotoS3Server:
    def __init__(self, state_dir: Path, buckets: Iterable[str] = (), host: str = "127.0.0.1",
                 port: int | None = None) -> None:
        self.dir = Path(state_dir) / "s3"
        self.host = host
        self.port = port or free_port(host)
        self.buckets = list(dict.fromkeys(buckets))
        self.log_path = self.dir / "moto.log"
        self.proc: subprocess.Popen | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def launch(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        self.proc = spawn(
            [sys.executable, "-m", "moto.server", "-H", self.host, "-p", str(self.port)], self.log_path
        )

    def _ping(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.endpoint_url}/moto-api/", timeout=0.5) as resp:
                return resp.status < 500
        except urllib.error.HTTPError as exc:
            return exc.code < 500

    def wait_ready(self, timeout: float = 20.0) -> None:
        wait_until(self._ping, timeout=timeout, what="moto S3 server", proc=self.proc, log_path=self.log_path)
        for bucket in self.buckets:
            self.create_bucket(bucket)

    def start(self) -> None:
        self.launch()
        self.wait_ready()

    def create_bucket(self, bucket: str) -> None:
        # moto does not check signatures, so a plain PUT creates the bucket (us-east-1: no body).
        req = urllib.request.Request(f"{self.endpoint_url}/{bucket}", method="PUT")
        try:
            with urllib.request.urlopen(req, timeout=5):
                pass
        except urllib.error.HTTPError as exc:
            if exc.code != 409:  # BucketAlreadyOwnedByYou
                raise
        if bucket not in self.buckets:
            self.buckets.append(bucket)

    def stop(self) -> None:
        stop_process(self.proc)
        self.proc = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def client(self):
        """A boto3 S3 client for the sandbox itself (ingest, inspection)."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            config=Config(retries={"mode": "standard", "max_attempts": 3}),
        )

    def connection(self) -> dict:
        """Airflow connection (conn_type aws) for this server."""
        return {
            "conn_type": "aws",
            "login": ACCESS_KEY,
            "password": SECRET_KEY,
            "extra": {
                "endpoint_url": self.endpoint_url,
                "region_name": REGION,
                "config_kwargs": {
                    "retries": {"mode": "standard", "max_attempts": 3},
                    "connect_timeout": 5,
                    "read_timeout": 60,
                },
            },
        }
