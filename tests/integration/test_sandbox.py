"""The sandbox vendors themselves: startup, teardown, connections, key-only sshd, the vendor API."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from base64 import b64decode
from pathlib import Path

import paramiko
import pytest
import requests

from sandbox import DEFAULT_VENDORS, Sandbox, VendorSpec

ROOT = Path(__file__).resolve().parents[2]


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.3)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ", 1)[1][0] != "Z"  # zombies are dead, just not reaped yet
    except FileNotFoundError:
        return False


def test_fresh_sandbox_starts_quickly_and_stops_completely(tmp_path):
    extra = VendorSpec("newvendor", "sftp", "vendor_newvendor_sftp", "newvendor/in")
    with Sandbox(tmp_path / "sb", vendors=[*DEFAULT_VENDORS, extra]) as sb:
        procs = [sb.sshd.proc, sb.s3.proc, sb.vendor_api.proc]
        ports = [sb.sshd.port, sb.s3.port, sb.vendor_api.port]
        assert sb.startup_seconds < 5, f"startup took {sb.startup_seconds:.2f}s"
        assert all(_port_open(p) for p in ports)
        # a vendor with no committed key gets a throwaway keypair and a drop folder
        assert sb.secret_key("newvendor").exists() and sb.public_key("newvendor").exists()
        assert sb.drop_folder("newvendor").is_dir()
        assert "AIRFLOW_CONN_VENDOR_NEWVENDOR_SFTP" in sb.airflow_env()
    assert all(p.poll() is not None for p in procs)
    assert not any(_port_open(p) for p in ports)


def test_airflow_env_covers_every_vendor_and_provider_hooks_resolve_it(sandbox):
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook
    from airflow.providers.http.hooks.http import HttpHook
    from airflow.providers.sftp.hooks.sftp import SFTPHook

    env = sandbox.airflow_env()
    assert set(env) == {f"AIRFLOW_CONN_{v.conn_id.upper()}" for v in DEFAULT_VENDORS} | {"AIRFLOW_CONN_VENDORPRIVACY_STAGING"}
    staging = S3Hook(aws_conn_id="vendorprivacy_staging").get_conn()   # the shared staging bucket, same S3 API
    assert staging.head_bucket(Bucket="vendorprivacy-staging")["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert all(os.environ[k] == v for k, v in env.items())  # applied by the fixture
    for spec in DEFAULT_VENDORS:
        conn = json.loads(env[f"AIRFLOW_CONN_{spec.conn_id.upper()}"])
        if spec.transport == "sftp":
            hook = SFTPHook(ssh_conn_id=spec.conn_id)
            assert (hook.remote_host, hook.port) == ("127.0.0.1", sandbox.sshd.port)
            assert hook.host_key is not None and hook.no_host_key_check is False and hook.compress is False
            assert conn["extra"]["host_key"] == sandbox.sshd.host_key
        elif spec.transport == "s3":
            hook = S3Hook(aws_conn_id=spec.conn_id)
            assert hook.conn_config.endpoint_url == sandbox.s3.endpoint_url
            assert hook.get_conn().head_bucket(Bucket=spec.bucket)["ResponseMetadata"]["HTTPStatusCode"] == 200
        else:
            hook = HttpHook(http_conn_id=spec.conn_id)
            session = hook.get_conn()
            assert hook.base_url == f"https://127.0.0.1:{sandbox.vendor_api.port}"
            assert session.verify == str(sandbox.vendor_api.tls["ca"])


def test_sshd_accepts_only_the_client_key(sandbox):
    kw = {"hostname": "127.0.0.1", "port": sandbox.sshd.port, "username": sandbox.sshd.user,
          "look_for_keys": False, "allow_agent": False, "timeout": 5}

    def client() -> paramiko.SSHClient:
        c = paramiko.SSHClient()
        c.set_missing_host_key_policy(paramiko.RejectPolicy())
        host, key = sandbox.sshd.host_key.split()
        c.get_host_keys().add(f"[127.0.0.1]:{sandbox.sshd.port}", host, paramiko.Ed25519Key(data=b64decode(key)))
        return c

    with pytest.raises(paramiko.AuthenticationException):
        client().connect(password="root", **kw)
    with pytest.raises(paramiko.AuthenticationException):
        client().connect(pkey=paramiko.ECDSAKey.generate(), **kw)  # a key sshd does not know
    ok = client()
    ok.connect(key_filename=str(sandbox.sshd.client_key_path), **kw)
    try:
        sftp = ok.open_sftp()
        assert Path(sftp.normalize(".")) == sandbox.sshd.sftp_root.resolve()  # starts in the sftp root
        _, stdout, _ = ok.exec_command("id")  # ForceCommand: no shell, only internal-sftp
        assert b"uid=" not in stdout.read()
    finally:
        ok.close()


def test_vendor_api_auth_validation_and_idempotency(sandbox, unique):
    api = sandbox.vendor_api
    url = f"{api.base_url}/fraudshield/v1/records"
    ca = str(api.tls["ca"])
    token = sandbox.connection("fraudshield")["password"]
    feed, delivery = unique("feed"), unique("d")
    body = {"feed": feed, "delivery_id": delivery, "batch_index": 0, "columns": ["a", "b"], "records": [["1", 2]]}
    auth = {"Authorization": f"Bearer {token}", "Idempotency-Key": f"{delivery}:0"}

    assert requests.post(url, json=body, verify=ca, timeout=5).status_code == 401
    other = sandbox.connection("mailwave")["password"]
    assert requests.post(url, json=body, verify=ca, timeout=5,
                         headers={**auth, "Authorization": f"Bearer {other}"}).status_code == 401
    assert requests.post(f"{api.base_url}/nosuchvendor/v1/records", json=body, headers=auth, verify=ca,
                         timeout=5).status_code == 404
    assert requests.post(url, json=body, verify=ca, timeout=5,
                         headers={"Authorization": f"Bearer {token}"}).status_code == 400  # no key
    assert requests.post(url, json={**body, "records": [["only-one"]]}, headers=auth, verify=ca,
                         timeout=5).status_code == 400
    first = requests.post(url, json=body, headers=auth, verify=ca, timeout=5)
    replay = requests.post(url, json=body, headers=auth, verify=ca, timeout=5)
    changed = requests.post(url, json={**body, "records": [["9", 9]]}, headers=auth, verify=ca, timeout=5)
    assert (first.status_code, replay.status_code, changed.status_code) == (200, 200, 409)
    assert replay.json() == first.json() and replay.headers["Idempotent-Replayed"] == "true"
    held = api.admin("GET", f"/_admin/fraudshield/records?feed={feed}")["records"]
    assert [e["row"] for e in held] == [{"a": "1", "b": 2}]
    assert sandbox.find("fraudshield", "b", 2) and sandbox.store("fraudshield").delete_matching("a", "1") >= 1
    assert sandbox.records("fraudshield", feed=feed) == []  # really deleted


def test_fault_injection_serves_exactly_count_faults(sandbox):
    api = sandbox.vendor_api
    token = sandbox.connection("reviewhub")["password"]
    url = f"{api.base_url}/reviewhub/v1/deliveries/unknown"
    headers = {"Authorization": f"Bearer {token}"}
    api.set_fault("reviewhub", status=500, count=1)
    statuses = [requests.get(url, headers=headers, verify=str(api.tls["ca"]), timeout=5).status_code
                for _ in range(2)]
    assert statuses == [500, 404]
    assert api.stats("reviewhub")["faults_pending"] == 0


def test_cli_prints_exports_and_children_die_with_it(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "include")])}
    cli = subprocess.Popen([sys.executable, "-m", "sandbox", "up", "--state-dir", str(tmp_path / "cli")],
                           cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        exports = [cli.stdout.readline() for _ in DEFAULT_VENDORS]
        assert all(line.startswith("export AIRFLOW_CONN_VENDOR_") for line in exports), exports
        assert "sandbox up in" in cli.stderr.readline()
        children = [int(p) for p in subprocess.run(["pgrep", "-P", str(cli.pid)], capture_output=True,
                                                    text=True).stdout.split()]
        assert len(children) == 3  # sshd, moto, vendor API
        cli.send_signal(signal.SIGKILL)  # a crash, not a clean exit: the children must still go
        cli.wait(5)
        deadline = time.monotonic() + 5
        while any(_alive(p) for p in children) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(_alive(p) for p in children)
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.wait(5)
