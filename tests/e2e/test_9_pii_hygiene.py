"""After the whole end-to-end run (feeds, a re-run, a dry run, an approved erasure, a UI trigger): no
synthetic customer's e-mail, phone or name in Airflow's metadata database, the task logs, the components'
logs or the reports. And the scan is not blind: an e-mail planted in XCom is found."""
from __future__ import annotations

import time

import pytest

from tests.e2e import pii
from tests.e2e.conftest import COUNTS, timed

PLANTED_KEY = "planted_pii_probe"


@pytest.fixture(scope="module")
def needles(stack):
    return pii.needles(stack.shop_path)


@pytest.fixture(scope="module")
def after_everything(scheduled_feeds):
    """This module runs last (file order): the other modules' runs have happened when they were selected."""
    return True


def test_no_personal_data_anywhere_airflow_keeps_things(after_everything, stack, needles, capsys):
    with timed("PII scan"):
        haystacks = pii.stack_haystacks(stack)
        hits = pii.scan(needles, haystacks)
    sizes = pii.sizes(haystacks)
    found = {f"{s} / {k}": n for (s, k), n in hits.items() if n}
    COUNTS["PII scan: needles (e-mails, phones, names)"] = len(needles)
    COUNTS["PII scan: bytes scanned"] = sum(sizes.values())
    for source in sorted(sizes):
        COUNTS[f"PII scan: hits in {source}"] = sum(n for (s, _), n in hits.items() if s == source)
    with capsys.disabled():
        print(f"\nPII scan: {len(needles)} needles ({len(needles.emails)} e-mails, "
              f"{sum(k == 'phone' for k in needles.substrings.values())} phones, "
              f"{sum(k == 'name' for k in needles.substrings.values())} names) in "
              f"{sum(sizes.values()) / 1e6:.1f} MB: " + ", ".join(f"{s} {n / 1e3:.0f} kB" for s, n in sorted(sizes.items())))
        print(f"PII scan hits: {sum(hits.values())} {found or ''}")
    assert len(needles) > 5000
    assert sizes["db:xcom"] > 0 and sizes["db:dag_run"] > 0 and sizes["task logs"] > 10_000
    assert found == {}


def test_a_planted_email_in_xcom_is_found(after_everything, stack, api, needles, scheduled_feeds, capsys):
    run = scheduled_feeds["share_payflow_settlement"]
    email = sorted(needles.emails)[0]
    path = f"/api/v2/dags/share_payflow_settlement/dagRuns/{run['dag_run_id']}/taskInstances/prepare/xcomEntries"
    api.post(path, {"key": PLANTED_KEY, "value": {"note": f"contact {email}"}, "map_index": -1})
    try:
        t0 = time.monotonic()
        hits = pii.scan(needles, pii.metadata_texts(stack.metadata_url, tables=("xcom",)))
        with capsys.disabled():
            print(f"\nplanted leak: {dict(hits)} ({time.monotonic() - t0:.1f}s)")
        COUNTS["PII scan: planted e-mail in XCom found"] = hits[("db:xcom", "email")]
        assert hits[("db:xcom", "email")] == 1
    finally:
        api.client.delete(f"{path}/{PLANTED_KEY}", params={"map_index": -1})
    assert pii.scan(needles, pii.metadata_texts(stack.metadata_url, tables=("xcom",)))[("db:xcom", "email")] == 0
