"""Delivery faults: the vendor's server, the network, the ledger database and the local disk fail while a
feed runs (prepare -> gate -> deliver, exactly the DAG's task functions). Each: nothing lost, nothing
delivered twice, and either completion after recovery or a clear failure."""
from __future__ import annotations

import datetime as dt
import json
import subprocess

import pytest

from tests.faults.conftest import RUN_DAY, deliver_all, held_once



def _short(e: BaseException, n: int = 90) -> str:
    text = f"{type(e).__name__}: {e}".replace("\n", " ")
    return text[:n] + ("…" if len(text) > n else "")


def _fresh_ledger(url: str):
    """What a task retry gets: a new process, so a new connection pool."""
    from vendorprivacy.ledger import Ledger

    return Ledger(url)


# --------------------------------------------------------------------------------------------- SFTP
def kill_sshd(sandbox) -> int:
    """SIGKILL sshd and its per-connection children (which run in their own sessions): the open SFTP session
    dies with it, as when the vendor's server crashes. Returns how many processes were killed."""
    import psutil

    proc = psutil.Process(sandbox.sshd.proc.pid)
    family = proc.children(recursive=True) + [proc]
    for p in family:
        try:
            p.kill()
        except psutil.Error:
            pass
    return len(family)


def test_sshd_killed_mid_upload(row, sandbox, feed, ledger):
    import paramiko

    from vendorprivacy import share

    r = row("sshd killed mid-upload", "deliver fails clearly, nothing published; after restart: delivered once")
    run = feed("payflow_settlement", day=RUN_DAY)
    share.prepare(run)
    share.gate(run)
    original = paramiko.sftp_file.SFTPFile._write
    killed = []

    def write_then_kill(self, data):
        n = original(self, data)
        if not killed:
            killed.append(len(data))
            killed.append(kill_sshd(sandbox))   # SIGKILL: the server and the open session die mid-file
        return n

    paramiko.sftp_file.SFTPFile._write = write_then_kill
    try:
        with pytest.raises(Exception) as exc:
            r["observed"] = f"not killed: {share.deliver(run)} {killed}"
    finally:
        paramiko.sftp_file.SFTPFile._write = original
    published = [p.name for p in sandbox.drop_folder("payflow").iterdir() if run.delivery_id[:8] in p.name]
    status = ledger.get_delivery(run.delivery_id).status
    sandbox.sshd.stop()   # reap the killed server
    sandbox.sshd.start()
    again = share.deliver(run)
    held, sent, ids = held_once(sandbox, run, ledger)
    r["observed"] = (f"SIGKILL ({killed[1]} procs) after {killed[0]} B: {_short(exc.value, 60)}; ledger '{status}', on server "
                     f"{published or 'nothing'}; after restart {again['status']}, held {held}/{sent} rows")
    assert killed and status == "failed"
    assert not [p for p in published if not p.startswith(".")]   # only a hidden .part, never the final name
    assert again["status"] == "delivered" and held == sent > 0 and ids == {run.delivery_id}


def test_sshd_down_at_start(row, sandbox, feed, ledger):
    from vendorprivacy import share

    r = row("sshd down at start", "fails fast and clearly, nothing sent; after start: delivered once")
    run = feed("payflow_settlement", day=RUN_DAY - dt.timedelta(days=1))
    share.prepare(run)
    share.gate(run)
    kill_sshd(sandbox)
    sandbox.sshd.stop()
    try:
        import time

        t0 = time.monotonic()
        with pytest.raises(Exception) as exc:
            share.deliver(run)
        took = time.monotonic() - t0
    finally:
        sandbox.sshd.start()
    status = ledger.get_delivery(run.delivery_id).status
    again = share.deliver(run)
    held, sent, _ = held_once(sandbox, run, ledger)
    r["observed"] = (f"{_short(exc.value, 70)} after {took:.1f}s; ledger '{status}'; then {again['status']}, "
                     f"held {held}/{sent}")
    assert status == "failed" and took < 60 and "unreachable" in str(exc.value).lower() + type(exc.value).__name__.lower()
    assert again["status"] == "delivered" and held == sent > 0


# ----------------------------------------------------------------------------------------------- S3
@pytest.fixture
def s3_proxy(sandbox, monkeypatch):
    from tests.faults.netproxy import S3FaultProxy

    port = int(sandbox.s3.endpoint_url.rsplit(":", 1)[1])
    proxy = S3FaultProxy("127.0.0.1", port)
    for vendor in ("adgrid", "socialreach"):
        conn = sandbox.connection(vendor)
        conn["extra"] = {**conn["extra"], "endpoint_url": proxy.endpoint_url}
        monkeypatch.setenv(f"AIRFLOW_CONN_VENDOR_{vendor.upper()}_S3", json.dumps(conn))
    yield proxy
    proxy.close()


@pytest.mark.parametrize("statuses,label", [((503, 503), "503 SlowDown x2"), ((500,), "500 InternalError")])
def test_s3_transient_errors_are_retried(row, sandbox, feed, ledger, s3_proxy, statuses, label):
    r = row(f"S3 answers {label} (real XML error responses)", "retried by the client, then delivered once")
    day = RUN_DAY + dt.timedelta(days=7 * (1 + len(statuses)))
    run = feed("adgrid_customer_match", day=day)
    s3_proxy.inject(*statuses)
    result = deliver_all(run)
    held, sent, _ = held_once(sandbox, run, ledger)
    r["observed"] = (f"{len(s3_proxy.served)} error(s) served "
                     f"({', '.join(str(s) for _, _, s in s3_proxy.served)}); {result['status']}, held {held}/{sent}")
    assert len(s3_proxy.served) == len(statuses)
    assert result["status"] == "delivered" and held == sent > 0


def test_s3_slowdown_beyond_the_retry_budget(row, sandbox, feed, ledger, s3_proxy):
    r = row("S3 503 SlowDown on every attempt", "fails clearly after bounded retries; later run delivers once")
    run = feed("socialreach_custom_audience", day=RUN_DAY + dt.timedelta(days=35))
    s3_proxy.inject(*([503] * 20))
    with pytest.raises(Exception) as exc:
        deliver_all(run)
    attempts = len(s3_proxy.served)
    status = ledger.get_delivery(run.delivery_id).status
    s3_proxy.inject()
    from vendorprivacy import share

    again = share.deliver(run)
    held, sent, _ = held_once(sandbox, run, ledger)
    r["observed"] = f"{attempts} attempts, {_short(exc.value, 60)}; ledger '{status}'; then {again['status']}, held {held}/{sent}"
    assert status == "failed" and 1 < attempts < 20 and "SlowDown" in str(exc.value)
    assert again["status"] == "delivered" and held == sent > 0


# --------------------------------------------------------------------------------------- vendor HTTPS API
@pytest.mark.parametrize("status,retry_after", [(429, 1), (503, None)])
def test_vendor_api_throttling_and_unavailability(row, sandbox, feed, ledger, status, retry_after):
    r = row(f"vendor API {status}" + (f" Retry-After: {retry_after}" if retry_after else "") + " x2",
            "waits/backs off, then delivered once (idempotency keys)")
    run = feed("mailwave_subscribers", day=RUN_DAY + dt.timedelta(days=40 + status % 10))
    before = sandbox.vendor_api.stats("mailwave")["faults_served"]
    sandbox.vendor_api.set_fault("mailwave", status, retry_after=retry_after, count=2)
    import time

    t0 = time.monotonic()
    result = deliver_all(run)
    took = time.monotonic() - t0
    served = sandbox.vendor_api.stats("mailwave")["faults_served"] - before
    held, sent, _ = held_once(sandbox, run, ledger)
    r["observed"] = f"{served} x {status} served; {result['status']} in {took:.1f}s, held {held}/{sent}"
    assert served == 2 and result["status"] == "delivered" and held == sent > 0
    if retry_after:
        assert took >= 2 * retry_after


def test_vendor_api_down_beyond_the_attempt_budget(row, sandbox, feed, ledger):
    from vendorprivacy import share

    r = row("vendor API 503 on every attempt", "fails clearly within its budget; later run delivers once")
    run = feed("reviewhub_reviews", day=RUN_DAY + dt.timedelta(days=50))
    share.prepare(run)
    share.gate(run)
    sandbox.vendor_api.set_fault("reviewhub", 503, count=1000)
    import time

    t0 = time.monotonic()
    try:
        with pytest.raises(Exception) as exc:
            share.deliver(run)
    finally:
        sandbox.vendor_api.clear_fault("reviewhub")
    took = time.monotonic() - t0
    status = ledger.get_delivery(run.delivery_id).status
    again = share.deliver(run)
    held, sent, _ = held_once(sandbox, run, ledger)
    r["observed"] = f"{_short(exc.value, 60)} after {took:.0f}s; ledger '{status}'; then {again['status']}, held {held}/{sent}"
    assert status == "failed" and took < 180
    assert again["status"] == "delivered" and held == sent > 0


# ------------------------------------------------------------------------------------------ the ledger
def test_ledger_database_unavailable_for_a_while(row, sandbox, feed, pg_proxy, ledger_url, staging, shop, keys):
    from vendorprivacy import share

    r = row("ledger DB unavailable (connections cut, refused)", "run fails clearly, nothing sent; after recovery: delivered once")
    run = feed("parcelpost_manifest", day=RUN_DAY, ledger=_fresh_ledger(ledger_url))
    before = len(sandbox.records("parcelpost"))
    pg_proxy.down()
    try:
        with pytest.raises(Exception) as exc:
            deliver_all(run)
    finally:
        pg_proxy.up()
    sandbox.ingest("parcelpost")
    sent_meanwhile = len(sandbox.records("parcelpost")) - before
    run = feed("parcelpost_manifest", day=RUN_DAY, ledger=_fresh_ledger(ledger_url))   # the retry
    result = deliver_all(run)
    held, sent, _ = held_once(sandbox, run, run.ledger)
    r["observed"] = f"{_short(exc.value, 70)}; sent meanwhile: {sent_meanwhile}; retry {result['status']}, held {held}/{sent}"
    assert "OperationalError" in type(exc.value).__name__ + str(type(exc.value).__mro__)
    assert sent_meanwhile == 0 and result["status"] == "delivered" and held == sent > 0


def test_ledger_lost_between_upload_and_commit(row, sandbox, feed, pg_proxy, ledger_url, monkeypatch):
    from vendorprivacy import share

    r = row("ledger DB lost after upload, before the ledger commit", "retry finds the upload, records it, delivers nothing twice")
    run = feed("adgrid_customer_match", day=RUN_DAY + dt.timedelta(days=63), ledger=_fresh_ledger(ledger_url))
    share.prepare(run)
    share.gate(run)
    original = share._transport

    def cutting_transport(vendor):
        t = original(vendor)
        put = t.put

        def put_then_cut(*a, **kw):
            receipt = put(*a, **kw)
            pg_proxy.down()
            return receipt

        t.put = put_then_cut
        return t

    monkeypatch.setattr(share, "_transport", cutting_transport)
    try:
        with pytest.raises(Exception) as exc:
            share.deliver(run)
    finally:
        pg_proxy.up()
        monkeypatch.setattr(share, "_transport", original)
    retry = feed("adgrid_customer_match", day=run.logical_date, ledger=_fresh_ledger(ledger_url))
    result = share.deliver(retry)
    held, sent, _ = held_once(sandbox, retry, retry.ledger)
    r["observed"] = (f"{_short(exc.value, 50)}; retry: {result['status']}, already_present={result.get('already_present')}, "
                     f"held {held}/{sent}")
    assert result["status"] == "delivered" and result.get("already_present") is True and held == sent > 0


# ------------------------------------------------------------------------------------------- local disk
@pytest.fixture
def tiny_disk(tmp_path):
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip()}): needs root")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_disk_full_while_staging(row, sandbox, feed, ledger, tiny_disk):
    from vendorprivacy import share

    r = row("disk full while writing a staging file (64 kB tmpfs)", "prepare fails clearly, nothing sent; with space: delivered once")
    run = feed("reviewhub_reviews", day=RUN_DAY, staging_root=tiny_disk)
    before = len(sandbox.records("reviewhub"))
    with pytest.raises(OSError) as exc:
        share.prepare(run)
    d = ledger.get_delivery(run.delivery_id)
    with pytest.raises(Exception) as gate_exc:   # a half-written stage never passes the gate
        share.gate(run)
    subprocess.run(["mount", "-o", "remount,size=64m", str(tiny_disk)], check=True)
    result = deliver_all(run)
    held, sent, _ = held_once(sandbox, run, ledger)
    r["observed"] = (f"{_short(exc.value, 50)}; ledger {d.status if d else 'no row'}; gate: {type(gate_exc.value).__name__}; "
                     f"after remount {result['status']}, held {held}/{sent}")
    assert exc.value.errno == 28   # ENOSPC
    assert len(sandbox.records("reviewhub")) - before == held and result["status"] == "delivered" and held == sent > 0
