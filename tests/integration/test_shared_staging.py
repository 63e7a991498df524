"""Staged files handed between workers through the shared staging store (moto's S3 server over HTTP): prepare,
gate and deliver each run with their own staging directory, as three machines would, and the delivery is
the same as on one machine. A staged object that was changed or lost is refused, never sent."""
from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import pytest

from vendorprivacy.keys import Keys
from vendorprivacy.policy import load_register
from vendorprivacy.share import DeliveryRefused, FeedRun, deliver, gate, prepare
from vendorprivacy.shop.generate import generate_shop
from vendorprivacy.staging import SharedStaging, StagingError

RUN_DAY = dt.date(2026, 11, 1)
KEYS = Keys(b"staging-token-key", b"staging-subject-key")
REGISTER = load_register()


@pytest.fixture(scope="module")
def sandbox(module_sandbox):
    return module_sandbox


@pytest.fixture(scope="module")
def shared(sandbox) -> SharedStaging:
    return SharedStaging.from_url(sandbox.staging_url())


@pytest.fixture(scope="module")
def shop(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("shop") / "shop.db"
    generate_shop(f"sqlite:///{path}", customers=600, seed=11)
    return f"sqlite:///{path}"


@pytest.fixture(scope="module")
def ledger(module_ledger):
    return module_ledger


@pytest.fixture
def machines(tmp_path) -> dict[str, Path]:
    """Three workers' private staging directories."""
    return {name: tmp_path / name for name in ("a", "b", "c")}


def on(machine: Path, shop, ledger, shared, feed_id: str, day: dt.date) -> FeedRun:
    vendor, feed = REGISTER.feed(feed_id)
    return FeedRun(vendor=vendor, feed=feed, logical_date=day, shop_url=shop, ledger=ledger,
                   staging_root=machine, keys=KEYS, shared=shared)


def files_in(*dirs: Path) -> list[Path]:
    return [p for d in dirs if d.exists() for p in d.rglob("*") if p.is_file()]


def held(sandbox, run: FeedRun) -> list[dict]:
    sandbox.ingest(run.vendor.vendor)
    return [e for e in sandbox.entries(run.vendor.vendor) if e["delivery_id"] == run.delivery_id]


@pytest.mark.parametrize("feed_id", ["adgrid_customer_match", "mailwave_subscribers", "parcelpost_manifest"])
def test_each_stage_on_another_machine_delivers_once_and_leaves_nothing(feed_id, sandbox, shared, shop, ledger, machines):
    day = RUN_DAY
    prepared = prepare(on(machines["a"], shop, ledger, shared, feed_id, day))
    assert prepared["staged"].startswith(f"s3://{shared.bucket}/") and prepared["rows"] > 0
    run_b = on(machines["b"], shop, ledger, shared, feed_id, day)
    assert shared.held(run_b.staging_key) == ["data.csv", "subjects.arrow"]
    assert files_in(machines["a"]) == []           # the preparer keeps no plaintext once published
    assert gate(run_b)["status"] == "gate_passed"
    run_c = on(machines["c"], shop, ledger, shared, feed_id, day)
    result = deliver(run_c)
    assert result["status"] == "delivered" and result["rows"] == prepared["rows"]
    assert len(held(sandbox, run_c)) == prepared["rows"]
    assert ledger.get_delivery(run_c.delivery_id).status == "delivered"
    assert shared.held(run_c.staging_key) == [] and files_in(*machines.values()) == []
    again = deliver(on(machines["a"], shop, ledger, shared, feed_id, day))   # a retry on yet another worker
    assert again["status"] == "already_delivered" and len(held(sandbox, run_c)) == prepared["rows"]


def test_a_staged_file_changed_in_the_store_is_refused(sandbox, shared, shop, ledger, machines):
    run = on(machines["a"], shop, ledger, shared, "socialreach_custom_audience", RUN_DAY - dt.timedelta(days=1))
    prepare(run)
    gate(on(machines["b"], shop, ledger, shared, run.feed.id, run.logical_date))
    # Someone with write access to the bucket appends a row and even fixes the recorded checksum.
    client = sandbox.s3.client()
    key = f"{shared.prefix}/{run.staging_key}/data.csv"
    body = client.get_object(Bucket=shared.bucket, Key=key)["Body"].read() + b"deadbeef,extra,row\n"
    client.put_object(Bucket=shared.bucket, Key=key, Body=body,
                      Metadata={"sha256": hashlib.sha256(body).hexdigest()})
    with pytest.raises(DeliveryRefused, match="not the ones the gate passed; nothing sent"):
        deliver(on(machines["c"], shop, ledger, shared, run.feed.id, run.logical_date))
    assert held(sandbox, run) == [] and ledger.get_delivery(run.delivery_id).status != "delivered"
    assert files_in(*machines.values()) == []       # the refusing worker removed its copy too


def test_a_lost_staged_file_fails_the_gate_clearly_and_a_new_prepare_recovers(sandbox, shared, shop, ledger, machines):
    run = on(machines["a"], shop, ledger, shared, "fraudshield_orders", RUN_DAY - dt.timedelta(days=2))
    prepare(run)
    assert shared.discard(run.staging_key) == 2      # e.g. a lifecycle rule expired it
    with pytest.raises(StagingError, match=r"staged file s3://vendorprivacy-staging/feeds/fraudshield_orders/.*/data.csv "
                                           r"not found: run prepare again"):
        gate(on(machines["b"], shop, ledger, shared, run.feed.id, run.logical_date))
    assert ledger.get_delivery(run.delivery_id).status == "gate_failed" and held(sandbox, run) == []
    with pytest.raises(DeliveryRefused, match="quality gate has not passed"):
        deliver(on(machines["c"], shop, ledger, shared, run.feed.id, run.logical_date))
    prepare(on(machines["c"], shop, ledger, shared, run.feed.id, run.logical_date))
    gate(on(machines["a"], shop, ledger, shared, run.feed.id, run.logical_date))
    assert deliver(on(machines["b"], shop, ledger, shared, run.feed.id, run.logical_date))["status"] == "delivered"
    assert len(held(sandbox, run)) == ledger.get_delivery(run.delivery_id).row_count > 0


def test_a_stale_local_copy_is_replaced_by_the_published_one(sandbox, shared, shop, ledger, machines):
    run = on(machines["a"], shop, ledger, shared, "payflow_settlement", RUN_DAY - dt.timedelta(days=3))
    prepare(run)
    stale = on(machines["b"], shop, ledger, shared, run.feed.id, run.logical_date)
    stale.staging_dir.mkdir(parents=True)
    (stale.staging_dir / "data.csv").write_text("left,over\nfrom,an earlier attempt\n")
    assert gate(stale)["status"] == "gate_passed"
    assert deliver(stale)["status"] == "delivered"
    assert len(held(sandbox, run)) == ledger.get_delivery(run.delivery_id).row_count


def test_unreachable_store_fails_prepare_clearly(shop, ledger, machines, closed_port, monkeypatch):
    import json

    monkeypatch.setenv("AIRFLOW_CONN_VENDORPRIVACY_STAGING_DOWN", json.dumps({
        "conn_type": "aws", "login": "k", "password": "s",
        "extra": {"endpoint_url": f"http://127.0.0.1:{closed_port}", "region_name": "us-east-1",
                  "config_kwargs": {"retries": {"max_attempts": 1}, "connect_timeout": 2}}}))
    down = SharedStaging.from_url("s3://vendorprivacy_staging_down@vendorprivacy-staging/feeds")
    run = on(machines["a"], shop, ledger, down, "callvault_calls", RUN_DAY - dt.timedelta(days=4))
    with pytest.raises(StagingError, match="shared staging upload of s3://vendorprivacy-staging/feeds/callvault_calls"):
        prepare(run)
    assert ledger.get_delivery(run.delivery_id).status == "prepared"   # never gated, so never deliverable
    with pytest.raises(DeliveryRefused):
        deliver(run)


@pytest.mark.parametrize("url", ["s3://bucket/prefix", "file:///tmp/x", "s3://conn@/x", "s3://conn@Bad_Bucket/x"])
def test_staging_url_must_name_connection_and_bucket(url):
    with pytest.raises(ValueError, match="expected s3://<conn_id>@<bucket>/<prefix>"):
        SharedStaging.from_url(url)
